/**
 * The engine: keeps parsed rasters and decoded blocks in bytes-bounded caches, builds mosaics and renders windows.
 * Built once by the composition root and injected everywhere. Which locations may be read, the clients and the
 * Source objects are source.registry.ts's; a catalogue mosaic's window is rendered by render.items.ts, any other
 * by render.ts and its stages.
 */

import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { AzureClients } from './azure.client.ts';
import { renderMedian } from './composite.median.ts';
import { type BlockFailure, CogmillError, RenderError, SourceError, sourceName, withoutServerPaths } from './errors.ts';
import { loadCatalogueItems } from './mosaic.catalogue.ts';
import { buildItemsMosaic, type ItemsSampleInfo } from './mosaic.items.ts';
import { buildMosaic, type Mosaic, type MosaicBrokenSource, type MosaicSource, type MosaicSpec } from './mosaic.ts';
import type { RasterCaches } from './raster.info.ts';
import { Raster } from './raster.ts';
import { type EngineRenderOptions, itemAssets, renderItems } from './render.items.ts';
import { renderMosaic } from './render.ts';
import { HTTP_DEFAULTS } from './source.http.ts';
import type { FileHandlePool } from './source.pool.ts';
import { type SourceFactory, SourceRegistry, type SourceRegistrySettings } from './source.registry.ts';
import type { Source, SourceStats } from './source.ts';
import type { JsonFetch, TextFetch } from './stac.search.ts';
import type { CatalogAsset, CatalogItem } from './stac.ts';
import { type DType, type Grid, MiB, type Pixels, type RenderStats } from './types.ts';

export type { EngineRenderOptions } from './render.items.ts';
export type { SourceFactory } from './source.registry.ts';

export interface EngineSettings extends SourceRegistrySettings {
  readonly headerCacheBytes: number;
  readonly tileCacheBytes: number;
  /** largest window one render call accepts */
  readonly maxRenderPixels: number;
  /** parallel source opens while building a mosaic, rendering a catalogue window, or re-checking sources */
  readonly openConcurrency: number;
  /** parsed rasters kept (their header bytes stay in the header cache when they are dropped) */
  readonly maxOpenRasters: number;
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

export class Engine {
  readonly settings: EngineSettings;
  readonly caches: RasterCaches;
  private readonly rasters: LRUCache<string, Promise<Raster>>;
  /** which locations may be read, the clients, one Source per location */
  private readonly registry: SourceRegistry;
  /** the descriptors of every local source */
  readonly filePool: FileHandlePool;
  /** locations a catalogue mosaic has opened (what its refresh re-checks) */
  private readonly opened = new WeakMap<Mosaic, Set<string>>();

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
    this.registry = new SourceRegistry(this.settings, deps);
    this.filePool = this.registry.filePool;
  }

  /** The Azure clients, built on first use (the default credential chain is imported only then). */
  azure(): Promise<AzureClients> {
    return this.registry.azure();
  }

  /**
   * Allow the folders (local paths) and URL prefixes (up to the last "/") of `locations`, like configured roots and
   * prefixes. Only for what configuration or the command line names: a trusted catalogue and its assets.
   */
  trust(locations: Iterable<string>): void {
    this.registry.trust(locations);
  }

  /** Refuse a location outside the policy without opening it (local paths: by name; opening confines them again). */
  checkAllowed(location: string): void {
    this.registry.checkAllowed(location);
  }

  /**
   * Fetch a catalogue document or STAC API page as text under the source policy: local files inside the roots,
   * URLs under the allowed prefixes; at most maxCatalogueBytes.
   */
  readonly fetchText: TextFetch = (url, init) => this.registry.fetchText(url, init, (l) => this.source(l));

  /** fetchText, parsed. */
  readonly fetchJson: JsonFetch = (url, init) => this.registry.fetchJson(url, init, (l) => this.source(l));

  /** The Source for a location (one per location, reused). */
  source(location: string): Promise<Source> {
    return this.registry.source(location);
  }

  /**
   * Expand source patterns: local files, folders (their .tif files), globs, http(s) URLs, s3://bucket/key,
   * s3://bucket/prefix/ (its .tif objects), az://container/blob and az://container/prefix/ (its .tif blobs). Every result is checked against the policy.
   */
  expand(patterns: readonly string[]): Promise<string[]> {
    return this.registry.expand(patterns);
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
    if (mosaic.items) {
      return renderItems(mosaic, grid, options, stats, {
        openAssets: (m, assets, signal) => this.openAssets(m, assets, signal),
        openConcurrency: this.settings.openConcurrency,
      });
    }
    if ((options.composite ?? mosaic.composite) === 'median') return renderMedian(mosaic, grid, options, stats);
    return renderMosaic(mosaic, grid, options, stats);
  }
  /** The assets of a catalogue mosaic's items under `grid` (metadata only), in compositing order. */
  itemAssets(mosaic: Mosaic, grid: Grid, asset: string, datetime?: readonly [number, number]): CatalogAsset[] {
    return itemAssets(mosaic, grid, asset, datetime);
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

  /** Requests, bytes and retries of sources so far, by kind (file, http, https, s3, az). */
  sourceStats(): Record<string, SourceStats> {
    return this.registry.sourceStats();
  }

  async close(): Promise<void> {
    await this.registry.close();
    this.rasters.clear();
  }
}
