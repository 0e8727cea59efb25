/**
 * Registered mosaics kept in Redis (when the queue is configured, `materialize.redis`): one hash, `cogmill:mosaics`,
 * id -> definition (JSON). A registration is one HSET and a removal one HDEL, so replicas sharing the Redis add and
 * remove their own mosaics without rewriting each other's; every replica restores the whole hash when it starts and
 * reads it again every server.mosaicsRefreshSeconds (Catalog.refresh).
 */
import type { CatalogStore, MosaicDefinition } from '../render/catalog.ts';
import { RenderError } from '../render/errors.ts';
import { redisClient } from './queue.ts';

export const CATALOG_REDIS_KEY = 'cogmill:mosaics';

export class CatalogStoreRedis implements CatalogStore {
  private readonly client: ReturnType<typeof redisClient>;
  readonly where: string;
  private readonly key: string;

  constructor(redisUrl: string, key = CATALOG_REDIS_KEY) {
    this.client = redisClient(redisUrl);
    this.key = key;
    // the URL without its password
    const u = new URL(redisUrl);
    this.where = `${u.protocol}//${u.host}${u.pathname.length > 1 ? u.pathname : ''} ${key}`;
  }

  async load(): Promise<MosaicDefinition[]> {
    let all: Record<string, string>;
    try {
      all = await this.client.hgetall(this.key);
    } catch (e) {
      throw new RenderError(
        'unreachable',
        `registered mosaics could not be read from Redis (${this.where}): ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
    const out: MosaicDefinition[] = [];
    for (const [id, text] of Object.entries(all)) {
      try {
        const def = JSON.parse(text) as MosaicDefinition;
        if (def && typeof def === 'object' && def.id === id) out.push(def);
      } catch {
        // a value cogmill did not write: skipped (the next registration under this id replaces it)
      }
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async put(definition: MosaicDefinition): Promise<void> {
    await this.client.hset(this.key, definition.id, JSON.stringify(definition));
  }

  async remove(id: string): Promise<void> {
    await this.client.hdel(this.key, id);
  }

  async close(): Promise<void> {
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
