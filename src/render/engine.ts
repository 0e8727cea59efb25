/**
 * The engine: opens sources under a security policy, keeps parsed rasters and decoded blocks in bytes-bounded
 * caches, builds mosaics and renders windows. Built once by the composition root and injected everywhere.
 * Over 500 lines because the source policy, the caches and the open/refresh/render paths share the same bounded
 * state (open sources, parsed rasters, trusted roots); the pixel work itself lives in render.ts and its stages.
 */

import { createHash } from 'node:crypto';
import { glob, stat } from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import { medianSourceLimit, medianTooLarge, renderMedian } from './composite.median.ts';
import { crsFromEpsg } from './crs.ts';
import { type BlockFailure, CogmillError, RenderError, SourceError, sourceName, withoutServerPaths } from './errors.ts';
import { loadCatalogueItems } from './mosaic.catalogue.ts';
import { assetBounds, FOOTPRINT_MARGIN_PX } from './mosaic.index.ts';
import { buildItemsMosaic, type ItemsSampleInfo, selectItems } from './mosaic.items.ts';
import { buildMosaic, type Mosaic, type MosaicBrokenSource, type MosaicSource, type MosaicSpec } from './mosaic.ts';
import type { RasterCaches } from './raster.info.ts';
import { Raster } from './raster.ts';
import { renderMosaic } from './render.ts';
import {
  type AzureClients,
  type AzureSettings,
  azureEndpoint,
  createAzureClients,
  isAzureBlobUrl,
  listAzureTiffs,
  SourceAzure,
} from './source.azure.ts';
import { confinePath, SourceFile } from './source.file.ts';
import { HTTP_DEFAULTS, type HttpSettings, redactUrl, SourceHttp } from './source.http.ts';
import { FileHandlePool } from './source.pool.ts';
import { createS3Client, listS3Tiffs, type S3Settings, SourceS3 } from './source.s3.ts';
import type { Source, SourceStats } from './source.ts';
import type { CatalogAsset, CatalogItem, JsonFetch, TextFetch } from './stac.ts';
import { transformBounds } from './transform.ts';
import {
  type Bounds,
  type DType,
  type Grid,
  invertTransform,
  MiB,
  type Pixels,
  pixelExtent,
  type RenderOptions,
  type RenderStats,
} from './types.ts';

export interface EngineSettings {
  /** local folders sources may be read from (symlinks out of them are refused) */
  readonly roots: readonly string[];
  /** URL prefixes (http://, https://, s3://, az://) sources may be read from; empty = none allowed */
  readonly allowedUrlPrefixes: readonly string[];
  readonly s3: S3Settings;
  /** Azure Blob Storage account, endpoint and credentials (az:// and https://ACCOUNT.blob.core.windows.net/) */
  readonly azure: AzureSettings;
  readonly http: HttpSettings;
  readonly headerCacheBytes: number;
  readonly tileCacheBytes: number;
  /** largest window one render call accepts */
  readonly maxRenderPixels: number;
  /** parallel source opens while building a mosaic, rendering a catalogue window, or re-checking sources */
  readonly openConcurrency: number;
  /** open file descriptors shared by every local source (least recently used idle ones are closed) */
  readonly maxOpenFiles: number;
  /** parsed rasters kept (their header bytes stay in the header cache when they are dropped) */
  readonly maxOpenRasters: number;
  /** largest catalogue document (ItemCollection JSON, search page) read */
  readonly maxCatalogueBytes: number;
  /**
   * a source that cannot be opened (corrupt, unsupported, missing) or a block that cannot be decoded: `skip`
   * serves the mosaic without it (listed, logged and counted), `fail` fails the mosaic / the render
   */
  readonly onSourceError: SourceErrorPolicy;
}

export type SourceErrorPolicy = 'skip' | 'fail';

/** Kinds of open failures a source is skipped for; others (unreachable, timeout) fail the mosaic, to be retried. */
const SKIPPABLE_OPEN_ERRORS: ReadonlySet<string> = new Set([
  'corrupt',
  'unsupported',
  'not-found',
  'forbidden',
  'bad-request',
  'too-large',
]);

/** Render options the engine adds to the pixel path's: the time interval a catalogue mosaic is restricted to. */
export interface EngineRenderOptions extends RenderOptions {
  /** a block that cannot be decoded fails the render whatever sources.onSourceError says (exports) */
  readonly strict?: boolean;
  /** [startMs, endMs], inclusive: only items whose time overlaps it */
  readonly datetime?: readonly [number, number];
}

export const ENGINE_DEFAULTS: EngineSettings = {
  roots: [],
  allowedUrlPrefixes: [],
  s3: {},
  azure: {},
  http: HTTP_DEFAULTS,
  headerCacheBytes: 64 * MiB,
  tileCacheBytes: 256 * MiB,
  maxRenderPixels: 4096 * 4096,
  openConcurrency: 16,
  maxOpenFiles: 256,
  maxOpenRasters: 4096,
  maxCatalogueBytes: 512 * MiB,
  onSourceError: 'skip',
};

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

/**
 * True when some pixel of `grid` with mask 0 lies within the asset's footprint (grown by FOOTPRINT_MARGIN_PX of
 * its pixels, as a box in the grid's pixels), or when the footprint is not known. Metadata only.
 */
function footprintHasEmpty(a: CatalogAsset, grid: Grid, mask: Uint8Array): boolean {
  const ab = assetBounds(a);
  if (!ab) return true;
  const t = a.transform!;
  const mx = FOOTPRINT_MARGIN_PX * Math.hypot(t[1], t[4]);
  const my = FOOTPRINT_MARGIN_PX * Math.hypot(t[2], t[5]);
  let b: Bounds;
  try {
    b = transformBounds([ab[0] - mx, ab[1] - my, ab[2] + mx, ab[3] + my], crsFromEpsg(a.epsg!), grid.crs);
  } catch {
    return true;
  }
  const inv = invertTransform(grid.transform);
  const [c0, r0, c1, r1] = pixelExtent(inv, b);
  const x0 = Math.max(0, Math.floor(c0));
  const x1 = Math.min(grid.width, Math.ceil(c1));
  const y0 = Math.max(0, Math.floor(r0));
  const y1 = Math.min(grid.height, Math.ceil(r1));
  for (let y = y0; y < y1; y++) {
    const row = y * grid.width;
    for (let x = x0; x < x1; x++) if (mask[row + x] === 0) return true;
  }
  return false;
}

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new SourceError('bad-request', `${where} is not JSON: ${(e as Error).message}`, { cause: e });
  }
}

export class Engine {
  readonly settings: EngineSettings;
  readonly caches: RasterCaches;
  private readonly rasters: LRUCache<string, Promise<Raster>>;
  private readonly sources: LRUCache<string, Source>;
  /** counters of sources dropped from `sources`, by kind */
  private readonly retiredStats: Record<string, SourceStats> = {};
  /** the descriptors of every local source */
  readonly filePool: FileHandlePool;
  /** folders and URL prefixes of trusted catalogues and their assets (configuration, command line) */
  private readonly trustedRoots = new Set<string>();
  private readonly trustedPrefixes = new Set<string>();
  /** locations a catalogue mosaic has opened (what its refresh re-checks) */
  private readonly opened = new WeakMap<Mosaic, Set<string>>();
  private s3Client: ReturnType<typeof createS3Client> | undefined;
  private azureClients: Promise<AzureClients> | undefined;
  private readonly sourceFactory: SourceFactory;

  /** source blocks that could not be decoded, per mosaic id (skipped: their pixels are empty) */
  private readonly blockErrors = new Map<string, number>();
  /** told of every skipped block (the composition root logs them) */
  onBlockError: ((failure: BlockFailure & { readonly mosaic: string }) => void) | undefined;

  /** Count (and pass on) a block of `mosaic` that could not be decoded. */
  reportBlockError(mosaic: string, failure: BlockFailure): void {
    this.blockErrors.set(mosaic, (this.blockErrors.get(mosaic) ?? 0) + 1);
    this.onBlockError?.({ ...failure, mosaic });
  }

  /** Blocks that could not be decoded so far, by mosaic id. */
  blockErrorCounts(): ReadonlyMap<string, number> {
    return this.blockErrors;
  }

  constructor(settings: Partial<EngineSettings> = {}, deps: { sourceFactory?: SourceFactory } = {}) {
    this.settings = { ...ENGINE_DEFAULTS, ...settings };
    this.caches = {
      header: new LRUCache<string, Uint8Array>({
        maxSize: this.settings.headerCacheBytes,
        sizeCalculation: (b) => Math.max(1, b.byteLength),
      }),
      tiles: new LRUCache<string, Uint8Array>({
        maxSize: this.settings.tileCacheBytes,
        sizeCalculation: (b) => Math.max(64, b.byteLength),
      }),
    };
    this.rasters = new LRUCache<string, Promise<Raster>>({ max: this.settings.maxOpenRasters });
    this.filePool = new FileHandlePool(this.settings.maxOpenFiles);
    this.sources = new LRUCache<string, Source>({
      max: MAX_SOURCES,
      dispose: (s) => this.retire(s),
    });
    this.sourceFactory = deps.sourceFactory ?? ((loc) => this.defaultSource(loc));
  }

  private s3(): ReturnType<typeof createS3Client> {
    this.s3Client ??= createS3Client(this.settings.s3);
    return this.s3Client;
  }

  /** The Azure clients, built on first use (the default credential chain is imported only then). */
  azure(): Promise<AzureClients> {
    if (!this.azureClients) {
      const p = createAzureClients(this.settings.azure);
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
  private checkUrlAllowed(url: string): void {
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
      return SourceAzure.open(await this.azure(), location, this.settings.azure);
    }
    if (/^https?:\/\//i.test(location)) {
      this.checkUrlAllowed(location);
      return new SourceHttp(location, this.settings.http);
    }
    if (location.startsWith('s3://')) {
      this.checkUrlAllowed(location);
      return new SourceS3(this.s3(), location);
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
   * Fetch a catalogue document or STAC API page as text under the source policy: local files inside the roots,
   * URLs under the allowed prefixes; at most maxCatalogueBytes.
   */
  readonly fetchText: TextFetch = async (url, init) => {
    const limit = this.settings.maxCatalogueBytes;
    if (!/^https?:\/\//i.test(url)) {
      if (init.method !== 'GET')
        throw new SourceError('bad-request', `${url}: only an http(s) STAC API can be searched`);
      const src = await this.source(url);
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
  };

  /** fetchText, parsed. */
  readonly fetchJson: JsonFetch = async (url, init) =>
    parseJson(await this.fetchText(url, init), /^https?:/i.test(url) ? redactUrl(url) : url);

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
        if (p.endsWith('/')) out.push(...(await listS3Tiffs(this.s3(), p)));
        else out.push(p);
      } else if (p.startsWith('az://')) {
        this.checkUrlAllowed(p);
        if (p.endsWith('/')) out.push(...(await listAzureTiffs(await this.azure(), p)));
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

  /** Open (or reuse) the parsed raster of a location. Failed opens are not cached. */
  openRaster(location: string, signal?: AbortSignal): Promise<Raster> {
    const hit = this.rasters.get(location);
    if (hit) return hit;
    const p = (async () => Raster.open(await this.source(location), this.caches, signal))();
    this.rasters.set(location, p);
    p.catch(() => {
      if (this.rasters.get(location) === p) this.rasters.delete(location);
    });
    return p;
  }

  /** True when the raster of `location` is parsed and cached (opening it costs no request). */
  isOpen(location: string): boolean {
    return this.rasters.has(location);
  }

  /** Forget a raster (it changed): the next open re-reads its header. */
  forget(location: string): void {
    this.rasters.delete(location);
  }

  /** Run `fn` over `list` with at most openConcurrency calls in flight. */
  private async bounded<T>(list: readonly T[], fn: (x: T, i: number) => Promise<void>): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < list.length) {
        const i = next++;
        await fn(list[i], i);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.settings.openConcurrency, list.length) }, worker));
  }

  async openMosaic(spec: MosaicSpec, signal?: AbortSignal): Promise<Mosaic> {
    if (spec.catalogue) return this.openCatalogueMosaic(spec, signal);
    const rasters = new Array<Raster | undefined>(spec.sources.length);
    const broken: MosaicBrokenSource[] = [];
    const skip = this.settings.onSourceError === 'skip';
    await this.bounded(spec.sources, async (loc, i) => {
      try {
        rasters[i] = await this.openRaster(loc, signal);
      } catch (e) {
        if (!skip || signal?.aborted || !(e instanceof CogmillError) || !SKIPPABLE_OPEN_ERRORS.has(e.kind)) throw e;
        broken.push({
          index: i,
          location: loc,
          name: sourceName(loc),
          kind: e.kind,
          reason: withoutServerPaths(e.message),
        });
      }
    });
    if (broken.length === 0) return buildMosaic(spec, rasters as Raster[]);
    broken.sort((a, b) => a.index - b.index);
    const good = spec.sources.flatMap((loc, i) => (rasters[i] ? [{ loc, raster: rasters[i] }] : []));
    if (good.length === 0) {
      throw new RenderError(
        broken[0].kind as never,
        `mosaic ${spec.id}: none of its ${broken.length} sources can be read (${broken
          .slice(0, 3)
          .map((b) => `${b.name}: ${b.reason}`)
          .join('; ')}${broken.length > 3 ? '; ...' : ''})`,
      );
    }
    // served without the broken ones; their list is part of the definition, so of the etag
    const mosaic = buildMosaic(
      { ...spec, sources: good.map((g) => g.loc) },
      good.map((g) => g.raster),
    );
    mosaic.broken = broken;
    return mosaic;
  }

  /**
   * A catalogue mosaic: the items are read from the catalogue (document or search) and nothing else. Rasters are
   * opened only for items whose grid the catalogue does not give, and once when it gives no sample type.
   */
  private async openCatalogueMosaic(spec: MosaicSpec, signal?: AbortSignal): Promise<Mosaic> {
    const c = spec.catalogue!;
    if (c.trusted) this.trust([c.items, c.search].filter((x): x is string => x !== undefined));
    const loaded = await loadCatalogueItems(spec, {
      fetchJson: this.fetchJson,
      fetchText: this.fetchText,
      source: (l) => this.source(l),
      signal,
    });
    const hrefs = new Set<string>();
    for (const it of loaded) for (const k in it.assets) hrefs.add(it.assets[k].href);
    if (c.trusted) this.trust(hrefs);
    else for (const h of hrefs) this.checkAllowed(h);
    // items without proj:* fields: their grid comes from their header (bounded concurrency)
    const items: CatalogItem[] = loaded.slice();
    const needHeader: number[] = [];
    for (let i = 0; i < items.length; i++) {
      const assets = items[i].assets;
      for (const k in assets) {
        if (!assets[k].transform || assets[k].epsg === undefined) {
          needHeader.push(i);
          break;
        }
      }
    }
    await this.bounded(needHeader, async (i) => {
      const it = items[i];
      const assets: Record<string, CatalogAsset> = {};
      for (const [k, a] of Object.entries(it.assets)) {
        if (a.transform && a.epsg !== undefined) {
          assets[k] = a;
          continue;
        }
        const info = (await this.openRaster(a.href, signal)).info;
        assets[k] = {
          href: a.href,
          epsg: info.crs.epsg,
          transform: info.transform,
          width: info.width,
          height: info.height,
          dtype: info.dtype,
          nodata: info.nodata,
          bandCount: info.bandCount,
        };
      }
      items[i] = { ...it, assets };
    });
    return buildItemsMosaic(spec, items, await this.sampleInfo(spec, items, signal));
  }

  /** dtype, nodata and band counts of a catalogue mosaic's assets: from the catalogue, else from one header. */
  private async sampleInfo(
    spec: MosaicSpec,
    items: readonly CatalogItem[],
    signal?: AbortSignal,
  ): Promise<ItemsSampleInfo> {
    const bandCounts: Record<string, number> = {};
    let dtype: DType | undefined;
    let nodata: number | undefined;
    let nodataKnown = false;
    const names = spec.assets?.length ? spec.assets : [...new Set(items.flatMap((it) => Object.keys(it.assets)))];
    for (const name of names) {
      const it = items.find((x) => x.assets[name]);
      const a = it?.assets[name];
      if (!a) throw new SourceError('bad-request', `mosaic ${spec.id}: no item has an asset named ${name}`);
      let { dtype: dt, nodata: nd, bandCount } = a;
      if (dt === undefined || bandCount === undefined) {
        const info = (await this.openRaster(a.href, signal)).info;
        dt ??= info.dtype;
        bandCount ??= info.bandCount;
        if (nd === undefined) nd = info.nodata;
      }
      bandCounts[name] = bandCount;
      dtype ??= dt;
      if (!nodataKnown && nd !== undefined) {
        nodata = nd;
        nodataKnown = true;
      }
    }
    return { dtype: dtype ?? 'uint8', nodata, bandCounts };
  }

  /**
   * Re-check the sources of a mosaic and re-open those whose object changed (at most openConcurrency checks at a
   * time); a change refreshes the mosaic's etag. A catalogue mosaic re-checks the rasters it has opened.
   */
  async refresh(mosaic: Mosaic): Promise<boolean> {
    if (mosaic.items) return this.refreshItems(mosaic);
    let changed = false;
    await this.bounded(mosaic.sources, async (s) => {
      const src = await this.source(s.location);
      const st = await src.stat();
      if (st.etag !== s.raster.info.etag) {
        this.forget(s.location);
        s.raster = await this.openRaster(s.location);
        changed = true;
      }
    });
    if (changed) {
      const rebuilt = buildMosaic(
        mosaic.spec,
        mosaic.sources.map((s) => s.raster),
      );
      mosaic.etag = rebuilt.etag;
      mosaic.lastModified = new Date();
    }
    return changed;
  }

  private async refreshItems(mosaic: Mosaic): Promise<boolean> {
    const locations = [...(this.opened.get(mosaic) ?? [])];
    const changes: string[] = [];
    await this.bounded(locations, async (loc) => {
      const hit = this.rasters.get(loc);
      if (!hit) return;
      const raster = await hit.catch(() => undefined);
      if (!raster) return;
      const st = await (await this.source(loc)).stat();
      if (st.etag !== raster.info.etag) {
        this.forget(loc);
        changes.push(`${loc}|${st.etag}`);
      }
    });
    if (changes.length === 0) return false;
    const h = createHash('sha256').update(mosaic.etag);
    for (const c of changes.sort()) h.update(`\n${c}`);
    mosaic.etag = `"${h.digest('base64url').slice(0, 27)}"`;
    mosaic.lastModified = new Date();
    return true;
  }

  /** Render a window; a source that changed under us is re-opened and the render retried once. */
  async render(mosaic: Mosaic, grid: Grid, options: EngineRenderOptions = {}, stats?: RenderStats): Promise<Pixels> {
    if (grid.width * grid.height > this.settings.maxRenderPixels) {
      throw new CogmillError(
        'too-large',
        `a window of ${grid.width} x ${grid.height} pixels is larger than the limit of ${this.settings.maxRenderPixels} pixels`,
      );
    }
    // onSourceError: skip leaves a bad block's pixels empty (counted per mosaic); `strict` renders (exports) fail
    const opts: EngineRenderOptions =
      options.onBlockError || options.strict || this.settings.onSourceError === 'fail'
        ? options
        : { ...options, onBlockError: (f) => this.reportBlockError(mosaic.id, f) };
    try {
      return await this.renderOnce(mosaic, grid, opts, stats);
    } catch (e) {
      if (e instanceof SourceError && e.kind === 'changed') {
        await this.refresh(mosaic);
        return this.renderOnce(mosaic, grid, opts, stats);
      }
      throw e;
    }
  }

  private renderOnce(mosaic: Mosaic, grid: Grid, options: EngineRenderOptions, stats?: RenderStats): Promise<Pixels> {
    if (mosaic.items) return this.renderItems(mosaic, grid, options, stats);
    if ((options.composite ?? mosaic.composite) === 'median') return renderMedian(mosaic, grid, options, stats);
    return renderMosaic(mosaic, grid, options, stats);
  }

  /** The assets of a catalogue mosaic's items under `grid` (metadata only), in compositing order. */
  itemAssets(mosaic: Mosaic, grid: Grid, asset: string, datetime?: readonly [number, number]): CatalogAsset[] {
    const mi = mosaic.items;
    if (!mi) throw new RenderError('internal', `mosaic ${mosaic.id} is not a catalogue mosaic`);
    return selectItems(mi, grid, datetime)
      .map((i) => mi.items[i].assets[asset])
      .filter((a): a is CatalogAsset => a !== undefined);
  }

  /** Open the rasters of some assets (bounded concurrency, headers cached) as the sources of a sub-mosaic. */
  private async openAssets(
    mosaic: Mosaic,
    assets: readonly CatalogAsset[],
    signal?: AbortSignal,
  ): Promise<MosaicSource[]> {
    let opened = this.opened.get(mosaic);
    if (!opened) this.opened.set(mosaic, (opened = new Set()));
    const out = new Array<MosaicSource>(assets.length);
    await this.bounded(assets, async (a, index) => {
      opened.add(a.href);
      out[index] = { index, location: a.href, raster: await this.openRaster(a.href, signal) };
    });
    return out;
  }

  /**
   * A catalogue window: per asset, the items under the window (spatial index, then exact footprint) are opened and
   * composited as a one-asset mosaic; the bands are stacked, and a pixel is valid where every band has a value
   * (elsewhere every band holds nodata). For first / last, items are opened a batch at a time in compositing
   * order and the rest are never opened once every pixel has its value.
   */
  private async renderItems(
    mosaic: Mosaic,
    grid: Grid,
    options: EngineRenderOptions,
    stats?: RenderStats,
  ): Promise<Pixels> {
    const mi = mosaic.items!;
    const bandSel = options.bands ?? mosaic.bandIndices.map((_, i) => i);
    const refs = bandSel.map((b) => {
      const r = mi.bands[b];
      if (!r) throw new RenderError('bad-request', `band ${b + 1} does not exist (the mosaic has ${mosaic.bandCount})`);
      return r;
    });
    const composite = options.composite ?? mosaic.composite;
    const n = grid.width * grid.height;
    const bands = new Array<Pixels['bands'][number]>(refs.length);
    let mask: Uint8Array | undefined;
    for (const asset of new Set(refs.map((r) => r.asset))) {
      const positions = refs.flatMap((r, k) => (r.asset === asset ? [k] : []));
      const sub = (sources: MosaicSource[]): Mosaic => {
        for (const s of sources) {
          for (const k of positions) {
            if (refs[k].band >= s.raster.info.bandCount) {
              throw new RenderError(
                'bad-request',
                `mosaic ${mosaic.id}: asset ${asset} of ${s.location} has ${s.raster.info.bandCount} band(s), not ${refs[k].band + 1}`,
              );
            }
          }
        }
        return {
          ...mosaic,
          items: undefined,
          sources,
          bandIndices: positions.map((k) => refs[k].band),
          bandCount: positions.length,
          bandNames: positions.map((k) => refs[k].name),
        };
      };
      const subOptions: RenderOptions = { ...options, composite, bands: positions.map((_, i) => i) };
      const list = this.itemAssets(mosaic, grid, asset, options.datetime);
      let px: Pixels;
      if (composite === 'first' || composite === 'last') {
        const ordered = composite === 'last' ? list.slice().reverse() : list;
        const batch = Math.max(1, this.settings.openConcurrency * 2);
        let acc: Pixels | undefined;
        let filled = 0;
        let rest = ordered;
        while (rest.length > 0 && (acc === undefined || filled < n)) {
          if (acc) {
            // only the items that could still give an empty pixel a value
            const m = acc.mask;
            rest = rest.filter((a) => footprintHasEmpty(a, grid, m));
            if (rest.length === 0) break;
          }
          const sources = await this.openAssets(mosaic, rest.slice(0, batch), options.signal);
          rest = rest.slice(batch);
          const part = await renderMosaic(sub(sources), grid, { ...subOptions, composite: 'first' }, stats);
          if (!acc) {
            acc = part;
            for (let j = 0; j < n; j++) if (part.mask[j] !== 0) filled++;
            continue;
          }
          for (let j = 0; j < n; j++) {
            if (acc.mask[j] !== 0 || part.mask[j] === 0) continue;
            acc.mask[j] = 255;
            filled++;
            for (let b = 0; b < acc.bands.length; b++) acc.bands[b][j] = part.bands[b][j];
          }
        }
        px = acc ?? (await renderMosaic(sub([]), grid, subOptions, stats));
      } else {
        if (composite === 'median') {
          // refuse before opening anything when the items under the window cannot all be held
          const limit = medianSourceLimit(grid, positions.length, mosaic.dtype);
          if (list.length > limit) throw medianTooLarge(list.length, limit);
        }
        const s = sub(await this.openAssets(mosaic, list, options.signal));
        px =
          composite === 'median'
            ? await renderMedian(s, grid, subOptions, stats)
            : await renderMosaic(s, grid, subOptions, stats);
      }
      positions.forEach((k, i) => {
        bands[k] = px.bands[i];
      });
      if (!mask) mask = px.mask;
      else for (let i = 0; i < n; i++) if (px.mask[i] === 0) mask[i] = 0;
    }
    const out: Pixels = {
      width: grid.width,
      height: grid.height,
      dtype: mosaic.dtype,
      bands,
      mask: mask ?? new Uint8Array(n),
    };
    const fill = mosaic.nodata ?? 0;
    for (let i = 0; i < n; i++) if (out.mask[i] === 0) for (const b of out.bands) b[i] = fill;
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

  async close(): Promise<void> {
    for (const s of this.sources.values()) await s.close?.();
    this.sources.clear();
    this.rasters.clear();
    await this.filePool.close();
  }
}
