/**
 * Encoded images (tiles, previews, crops) kept in a bytes-bounded LRU, keyed by mosaic etag + normalised request.
 * Concurrent requests for the same key share one render; the render is cancelled only when every request waiting
 * for it has gone. Failures are never cached.
 */
import { LRUCache } from 'lru-cache';

export interface CachedImage {
  readonly body: Uint8Array;
  readonly contentType: string;
  /** true when the image has no valid pixel (served with an `OATiles-hint: empty` header) */
  readonly empty: boolean;
}

/** How a lookup was answered: from the cache, by a new render, or by joining a render already running. */
export type TileCacheResult = 'hit' | 'miss' | 'shared';

interface Flight {
  readonly promise: Promise<CachedImage>;
  readonly controller: AbortController;
  waiting: number;
}

const ENTRY_OVERHEAD_BYTES = 256;

export class TileCache {
  private readonly lru: LRUCache<string, CachedImage>;
  private readonly flights = new Map<string, Flight>();

  /** `maxEntryBytes` (default an eighth of the cache) keeps one large crop from flushing every tile. */
  constructor(opts: { maxBytes: number; maxEntryBytes?: number }) {
    this.lru = new LRUCache<string, CachedImage>({
      maxSize: opts.maxBytes,
      maxEntrySize: opts.maxEntryBytes ?? Math.max(1, Math.floor(opts.maxBytes / 8)),
      sizeCalculation: (v, k) => v.body.byteLength + k.length + ENTRY_OVERHEAD_BYTES,
    });
  }

  get sizeBytes(): number {
    return this.lru.calculatedSize;
  }

  get entries(): number {
    return this.lru.size;
  }

  peek(key: string): CachedImage | undefined {
    return this.lru.get(key);
  }

  /**
   * The cached image for `key`, or the result of `render` (stored unless `store` is false). A request's `signal`
   * only detaches that request; the shared render's own signal aborts when no request is left waiting.
   */
  async getOrRender(
    key: string,
    render: (signal: AbortSignal) => Promise<CachedImage>,
    opts: { signal?: AbortSignal; store?: boolean } = {},
  ): Promise<{ image: CachedImage; result: TileCacheResult }> {
    const hit = this.lru.get(key);
    if (hit) return { image: hit, result: 'hit' };
    let flight = this.flights.get(key);
    let result: TileCacheResult = 'shared';
    if (!flight) {
      result = 'miss';
      const controller = new AbortController();
      const promise = render(controller.signal).then((image) => {
        if (opts.store !== false) this.lru.set(key, image);
        return image;
      });
      const f: Flight = { promise, controller, waiting: 0 };
      flight = f;
      this.flights.set(key, f);
      promise.then(
        () => this.flights.get(key) === f && this.flights.delete(key),
        () => this.flights.get(key) === f && this.flights.delete(key),
      );
    }
    const image = await this.wait(flight, key, opts.signal);
    return { image, result };
  }

  private wait(flight: Flight, key: string, signal: AbortSignal | undefined): Promise<CachedImage> {
    if (!signal) {
      flight.waiting++;
      return flight.promise.finally(() => flight.waiting--);
    }
    signal.throwIfAborted();
    flight.waiting++;
    return new Promise<CachedImage>((resolve, reject) => {
      let done = false;
      const finish = () => {
        if (done) return false;
        done = true;
        flight.waiting--;
        signal.removeEventListener('abort', onAbort);
        return true;
      };
      const onAbort = () => {
        if (!finish()) return;
        if (flight.waiting === 0) {
          flight.controller.abort(signal.reason);
          if (this.flights.get(key) === flight) this.flights.delete(key);
        }
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      flight.promise.then(
        (v) => finish() && resolve(v),
        (e) => finish() && reject(e),
      );
    });
  }
}
