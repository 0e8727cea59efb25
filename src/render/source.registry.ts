/**
 * The sources of an engine: which locations may be read (configured roots and URL prefixes, plus what a trusted
 * catalogue names), the S3 and Azure clients, one Source object per location (evicted ones hand their counters
 * on), source patterns expanded to locations, and catalogue documents fetched under the same policy.
 */
import { glob, stat } from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import type { AzureClients, AzureSettings } from './azure.client.ts';
import { azureEndpoint, isAzureBlobUrl } from './azure.url.ts';
import { SourceError } from './errors.ts';
import type { S3Client, S3Settings } from './s3.client.ts';
import { confinePath, SourceFile } from './source.file.ts';
import { type HttpSettings, redactUrl, SourceHttp } from './source.http.ts';
import { FileHandlePool } from './source.pool.ts';
import type { Source, SourceStats } from './source.ts';
import type { JsonFetch, TextFetch } from './stac.search.ts';

/** What the source policy and the source objects are made from (part of EngineSettings). */
export interface SourceRegistrySettings {
  /** local folders sources may be read from (symlinks out of them are refused) */
  readonly roots: readonly string[];
  /** URL prefixes (http://, https://, s3://, az://) sources may be read from; empty = none allowed */
  readonly allowedUrlPrefixes: readonly string[];
  readonly s3: S3Settings;
  /** Azure Blob Storage account, endpoint and credentials (az:// and https://ACCOUNT.blob.core.windows.net/) */
  readonly azure: AzureSettings;
  readonly http: HttpSettings;
  /** open file descriptors shared by every local source (least recently used idle ones are closed) */
  readonly maxOpenFiles: number;
  /** largest catalogue document (ItemCollection JSON, search page) read */
  readonly maxCatalogueBytes: number;
}

/** Source objects kept by location (cheap: descriptors are pooled); evicted ones hand their counters on. */
const MAX_SOURCES = 65_536;

export type SourceFactory = (location: string) => Promise<Source>;

const TIFF_EXT = /\.(tif|tiff|gtiff)$/i;

/** The form of a source URL that is compared with the allowed prefixes (and that fetch would request). */
export function normalizeSourceUrl(url: string): string {
  if (url.startsWith('s3://') || url.startsWith('az://')) {
    if (/(^|\/)(\.|%2e){1,2}(\/|$)/i.test(url.slice(5))) {
      throw new SourceError('forbidden', `source ${url} has "." or ".." segments in its key`);
    }
    return url;
  }
  try {
    return new URL(url).href;
  } catch {
    throw new SourceError('forbidden', `source ${url} is not a valid URL`);
  }
}

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SourceError('bad-request', `${where} is not JSON: ${(e as Error).message}`, { cause: e });
  }
}

export class SourceRegistry {
  private readonly settings: SourceRegistrySettings;
  private readonly sources: LRUCache<string, Source>;
  /** counters of sources dropped from `sources`, by kind */
  private readonly retiredStats: Record<string, SourceStats> = {};
  /** the descriptors of every local source */
  readonly filePool: FileHandlePool;
  /** folders and URL prefixes of trusted catalogues and their assets (configuration, command line) */
  private readonly trustedRoots = new Set<string>();
  private readonly trustedPrefixes = new Set<string>();
  /** built on first use: the S3 and Azure SDKs are loaded only by a process that reads s3:// or az:// sources */
  private s3Client: Promise<S3Client> | undefined;
  private azureClients: Promise<AzureClients> | undefined;
  private readonly sourceFactory: SourceFactory;

  constructor(settings: SourceRegistrySettings, deps: { sourceFactory?: SourceFactory } = {}) {
    this.settings = settings;
    this.filePool = new FileHandlePool(this.settings.maxOpenFiles);
    this.sources = new LRUCache<string, Source>({
      max: MAX_SOURCES,
      dispose: (s) => this.retire(s),
    });
    this.sourceFactory = deps.sourceFactory ?? ((loc) => this.defaultSource(loc));
  }

  private s3(): Promise<S3Client> {
    this.s3Client ??= import('./s3.client.ts').then((m) => m.createS3Client(this.settings.s3));
    return this.s3Client;
  }

  /** The Azure clients, built on first use (the SDK and the default credential chain are imported only then). */
  azure(): Promise<AzureClients> {
    if (!this.azureClients) {
      const p = import('./azure.client.ts').then((m) => m.createAzureClients(this.settings.azure));
      this.azureClients = p;
      p.catch(() => {
        if (this.azureClients === p) this.azureClients = undefined;
      });
    }
    return this.azureClients;
  }

  /** An https URL of Azure Blob Storage (public cloud host, or under the configured endpoint). */
  private isAzureUrl(location: string): boolean {
    return isAzureBlobUrl(location, azureEndpoint(this.settings.azure));
  }

  /**
   * Refuse a URL outside the allowed prefixes. The URL is compared in its normalised form (dot segments and
   * percent-encoded dots resolved, as fetch will resolve them), so `https://host/allowed/../x.tif` cannot escape
   * its prefix; S3 keys with dot segments are refused outright.
   */
  checkUrlAllowed(url: string): void {
    const normal = normalizeSourceUrl(url);
    const allowed = (p: string) => normal.startsWith(normalizeSourceUrl(p));
    if (!this.settings.allowedUrlPrefixes.some(allowed) && ![...this.trustedPrefixes].some(allowed)) {
      throw new SourceError(
        'forbidden',
        `source ${url} is not under an allowed URL prefix; add its prefix to sources.allowedUrlPrefixes`,
      );
    }
  }

  private async defaultSource(location: string): Promise<Source> {
    if (location.startsWith('az://') || (/^https?:\/\//i.test(location) && this.isAzureUrl(location))) {
      this.checkUrlAllowed(location);
      const { SourceAzure } = await import('./source.azure.ts');
      return SourceAzure.open(await this.azure(), location, this.settings.azure);
    }
    if (/^https?:\/\//i.test(location)) {
      this.checkUrlAllowed(location);
      return new SourceHttp(location, this.settings.http);
    }
    if (location.startsWith('s3://')) {
      this.checkUrlAllowed(location);
      const { SourceS3 } = await import('./source.s3.ts');
      return new SourceS3(await this.s3(), location);
    }
    const p = location.startsWith('file://') ? location.slice(7) : location;
    return new SourceFile(await confinePath(p, this.roots()), this.filePool);
  }

  private roots(): string[] {
    return this.trustedRoots.size ? [...this.settings.roots, ...this.trustedRoots] : [...this.settings.roots];
  }

  /**
   * Allow the folders (local paths) and URL prefixes (up to the last "/") of `locations`, like configured roots and
   * prefixes. Only for what configuration or the command line names: a trusted catalogue and its assets.
   */
  trust(locations: Iterable<string>): void {
    for (const loc of locations) {
      if (/^(https?|s3|az):\/\//i.test(loc)) {
        const bare = loc.replace(/[?#].*$/s, '');
        const slash = bare.lastIndexOf('/');
        if (slash > bare.indexOf('://') + 2) this.trustedPrefixes.add(bare.slice(0, slash + 1));
      } else {
        const p = loc.replace(/^file:\/\//, '');
        // an absolute path without dot segments (every href of a local catalogue): its folder without a path walk
        const plain = p.startsWith('/') && !/\/\.\.?(\/|$)|\/\/|\\/.test(p);
        this.trustedRoots.add(plain ? p.slice(0, Math.max(1, p.lastIndexOf('/'))) : path.dirname(path.resolve(p)));
      }
    }
  }

  /** Refuse a location outside the policy without opening it (local paths: by name; opening confines them again). */
  checkAllowed(location: string): void {
    if (/^(https?|s3|az):\/\//i.test(location)) {
      this.checkUrlAllowed(location);
      return;
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location) && !location.startsWith('file://'))
      throw new SourceError('forbidden', `source ${location}: only file, http(s), s3 and az locations are read`);
    const abs = path.resolve(location.replace(/^file:\/\//, ''));
    const inside = this.roots().some((r) => {
      const rel = path.relative(path.resolve(r), abs);
      return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
    });
    if (!inside) throw new SourceError('forbidden', `local file ${location} is outside the configured source roots`);
  }

  private retire(s: Source): void {
    const st = (s as { stats?: SourceStats }).stats;
    if (st) {
      const kind = s.url.split(':')[0];
      this.retiredStats[kind] ??= { requests: 0, bytes: 0, retries: 0 };
      this.retiredStats[kind].requests += st.requests;
      this.retiredStats[kind].bytes += st.bytes;
      this.retiredStats[kind].retries = (this.retiredStats[kind].retries ?? 0) + (st.retries ?? 0);
    }
    s.close?.().catch(() => {});
  }

  /**
   * Fetch a catalogue document or STAC API page as text under the source policy: local files inside the roots
   * (read through `source`), URLs under the allowed prefixes; at most maxCatalogueBytes.
   */
  async fetchText(
    url: string,
    init: Parameters<TextFetch>[1],
    source: (location: string) => Promise<Source>,
  ): Promise<string> {
    const limit = this.settings.maxCatalogueBytes;
    if (!/^https?:\/\//i.test(url)) {
      if (init.method !== 'GET')
        throw new SourceError('bad-request', `${url}: only an http(s) STAC API can be searched`);
      const src = await source(url);
      const st = await src.stat({ signal: init.signal });
      if (st.size > limit) throw new SourceError('too-large', `${url} is larger than ${limit} bytes`);
      const r = await src.read(0, st.size, { signal: init.signal });
      return new TextDecoder().decode(r.bytes);
    }
    this.checkUrlAllowed(url);
    const { timeoutMs } = this.settings.http;
    const timeout = AbortSignal.timeout(timeoutMs * 4);
    const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await fetch(url, {
        method: init.method,
        headers: {
          accept: 'application/geo+json, application/json',
          ...(init.body ? { 'content-type': 'application/json' } : {}),
        },
        ...(init.body ? { body: init.body } : {}),
        signal,
      });
    } catch (e) {
      if (init.signal?.aborted) throw e;
      throw new SourceError(timeout.aborted ? 'timeout' : 'unreachable', `${redactUrl(url)}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    if (!res.ok) {
      const text = (await res.text().catch(() => '')).slice(0, 300);
      throw new SourceError(
        res.status === 404 ? 'not-found' : res.status === 400 ? 'bad-request' : 'unreachable',
        `${redactUrl(url)} answered HTTP ${res.status}${text ? `: ${text}` : ''}`,
      );
    }
    const length = Number(res.headers.get('content-length'));
    if (length > limit) {
      await res.body?.cancel().catch(() => {});
      throw new SourceError('too-large', `${redactUrl(url)} is larger than ${limit} bytes`);
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      total += chunk.byteLength;
      if (total > limit) throw new SourceError('too-large', `${redactUrl(url)} is larger than ${limit} bytes`);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  /** fetchText, parsed. */
  async fetchJson(
    url: string,
    init: Parameters<JsonFetch>[1],
    source: (location: string) => Promise<Source>,
  ): Promise<unknown> {
    return parseJson(await this.fetchText(url, init, source), /^https?:/i.test(url) ? redactUrl(url) : url);
  }

  /** The Source for a location (one per location, reused). */
  async source(location: string): Promise<Source> {
    const hit = this.sources.get(location);
    if (hit) return hit;
    const s = await this.sourceFactory(location);
    this.sources.set(location, s);
    return s;
  }

  /**
   * Expand source patterns: local files, folders (their .tif files), globs, http(s) URLs, s3://bucket/key,
   * s3://bucket/prefix/ (its .tif objects), az://container/blob and az://container/prefix/ (its .tif blobs). Every result is checked against the policy.
   */
  async expand(patterns: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (const p of patterns) {
      if (/^https?:\/\//i.test(p)) {
        this.checkUrlAllowed(p);
        out.push(p);
      } else if (p.startsWith('s3://')) {
        this.checkUrlAllowed(p);
        if (p.endsWith('/')) out.push(...(await (await import('./source.s3.ts')).listS3Tiffs(await this.s3(), p)));
        else out.push(p);
      } else if (p.startsWith('az://')) {
        this.checkUrlAllowed(p);
        if (p.endsWith('/'))
          out.push(...(await (await import('./source.azure.ts')).listAzureTiffs(await this.azure(), p)));
        else out.push(p);
      } else if (/[*?[{]/.test(p)) {
        const found: string[] = [];
        for await (const f of glob(p)) if (TIFF_EXT.test(f)) found.push(path.resolve(f));
        found.sort();
        for (const f of found) out.push(await confinePath(f, this.settings.roots));
      } else {
        const abs = await confinePath(p, this.settings.roots);
        const s = await stat(abs);
        if (s.isDirectory()) {
          const found: string[] = [];
          for await (const f of glob('**/*', { cwd: abs })) if (TIFF_EXT.test(f)) found.push(path.join(abs, f));
          found.sort();
          for (const f of found) out.push(await confinePath(f, this.settings.roots));
        } else {
          out.push(abs);
        }
      }
    }
    return out;
  }

  /** Requests, bytes and retries of sources so far, by kind (file, http, https, s3, az). */
  sourceStats(): Record<string, SourceStats> {
    const out: Record<string, SourceStats> = {};
    for (const [kind, st] of Object.entries(this.retiredStats)) out[kind] = { ...st };
    for (const s of this.sources.values()) {
      const st = (s as { stats?: SourceStats }).stats;
      if (!st) continue;
      const kind = s.url.split(':')[0];
      out[kind] ??= { requests: 0, bytes: 0, retries: 0 };
      out[kind].requests += st.requests;
      out[kind].bytes += st.bytes;
      out[kind].retries = (out[kind].retries ?? 0) + (st.retries ?? 0);
    }
    return out;
  }

  /** Close every source and the file descriptors. */
  async close(): Promise<void> {
    for (const s of this.sources.values()) await s.close?.();
    this.sources.clear();
    await this.filePool.close();
  }
}
