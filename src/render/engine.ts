/**
 * The engine: opens sources under a security policy, keeps parsed rasters and decoded blocks in bytes-bounded
 * caches, builds mosaics and renders windows. Built once by the composition root and injected everywhere.
 */
import { glob, stat } from 'node:fs/promises';
import path from 'node:path';
import { LRUCache } from 'lru-cache';
import { CogmillError, SourceError } from './errors.ts';
import { buildMosaic, type Mosaic, type MosaicSpec } from './mosaic.ts';
import { Raster, type RasterCaches } from './raster.ts';
import { type RenderOptions, type RenderStats, renderMosaic } from './render.ts';
import { confinePath, SourceFile } from './source.file.ts';
import { HTTP_DEFAULTS, type HttpSettings, SourceHttp } from './source.http.ts';
import { createS3Client, listS3Tiffs, type S3Settings, SourceS3 } from './source.s3.ts';
import type { Source, SourceStats } from './source.ts';
import { type Grid, MiB, type Pixels } from './types.ts';

export interface EngineSettings {
  /** local folders sources may be read from (symlinks out of them are refused) */
  readonly roots: readonly string[];
  /** URL prefixes (http://, https://, s3://) sources may be read from; empty = none allowed */
  readonly allowedUrlPrefixes: readonly string[];
  readonly s3: S3Settings;
  readonly http: HttpSettings;
  readonly headerCacheBytes: number;
  readonly tileCacheBytes: number;
  /** largest window one render call accepts */
  readonly maxRenderPixels: number;
  /** parallel source opens while building a mosaic */
  readonly openConcurrency: number;
}

export const ENGINE_DEFAULTS: EngineSettings = {
  roots: [],
  allowedUrlPrefixes: [],
  s3: {},
  http: HTTP_DEFAULTS,
  headerCacheBytes: 64 * MiB,
  tileCacheBytes: 256 * MiB,
  maxRenderPixels: 4096 * 4096,
  openConcurrency: 16,
};

export type SourceFactory = (location: string) => Promise<Source>;

const TIFF_EXT = /\.(tif|tiff|gtiff)$/i;

/** The form of a source URL that is compared with the allowed prefixes (and that fetch would request). */
export function normalizeSourceUrl(url: string): string {
  if (url.startsWith('s3://')) {
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

export class Engine {
  readonly settings: EngineSettings;
  readonly caches: RasterCaches;
  private readonly rasters: LRUCache<string, Promise<Raster>>;
  private readonly sources = new Map<string, Source>();
  private s3Client: ReturnType<typeof createS3Client> | undefined;
  private readonly sourceFactory: SourceFactory;

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
    this.rasters = new LRUCache<string, Promise<Raster>>({ max: 100_000 });
    this.sourceFactory = deps.sourceFactory ?? ((loc) => this.defaultSource(loc));
  }

  private s3(): ReturnType<typeof createS3Client> {
    this.s3Client ??= createS3Client(this.settings.s3);
    return this.s3Client;
  }

  /**
   * Refuse a URL outside the allowed prefixes. The URL is compared in its normalised form (dot segments and
   * percent-encoded dots resolved, as fetch will resolve them), so `https://host/allowed/../x.tif` cannot escape
   * its prefix; S3 keys with dot segments are refused outright.
   */
  private checkUrlAllowed(url: string): void {
    const normal = normalizeSourceUrl(url);
    if (!this.settings.allowedUrlPrefixes.some((p) => normal.startsWith(normalizeSourceUrl(p)))) {
      throw new SourceError(
        'forbidden',
        `source ${url} is not under an allowed URL prefix; add its prefix to sources.allowedUrlPrefixes`,
      );
    }
  }

  private async defaultSource(location: string): Promise<Source> {
    if (/^https?:\/\//i.test(location)) {
      this.checkUrlAllowed(location);
      return new SourceHttp(location, this.settings.http);
    }
    if (location.startsWith('s3://')) {
      this.checkUrlAllowed(location);
      return new SourceS3(this.s3(), location);
    }
    const p = location.startsWith('file://') ? location.slice(7) : location;
    return new SourceFile(await confinePath(p, this.settings.roots));
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
   * Expand source patterns: local files, folders (their .tif files), globs, http(s) URLs, s3://bucket/key and
   * s3://bucket/prefix/ (its .tif objects). Every result is checked against the policy.
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

  /** Forget a raster (it changed): the next open re-reads its header. */
  forget(location: string): void {
    this.rasters.delete(location);
  }

  async openMosaic(spec: MosaicSpec, signal?: AbortSignal): Promise<Mosaic> {
    const rasters = new Array<Raster>(spec.sources.length);
    let next = 0;
    const worker = async () => {
      while (next < spec.sources.length) {
        const i = next++;
        rasters[i] = await this.openRaster(spec.sources[i], signal);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.settings.openConcurrency, spec.sources.length) }, worker));
    return buildMosaic(spec, rasters);
  }

  /** Re-open every source of a mosaic whose object changed, and refresh the mosaic's etag. */
  async refresh(mosaic: Mosaic): Promise<boolean> {
    let changed = false;
    await Promise.all(
      mosaic.sources.map(async (s) => {
        const src = await this.source(s.location);
        const st = await src.stat();
        if (st.etag !== s.raster.info.etag) {
          this.forget(s.location);
          s.raster = await this.openRaster(s.location);
          changed = true;
        }
      }),
    );
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

  /** Render a window; a source that changed under us is re-opened and the render retried once. */
  async render(mosaic: Mosaic, grid: Grid, options: RenderOptions = {}, stats?: RenderStats): Promise<Pixels> {
    if (grid.width * grid.height > this.settings.maxRenderPixels) {
      throw new CogmillError(
        'too-large',
        `a window of ${grid.width} x ${grid.height} pixels is larger than the limit of ${this.settings.maxRenderPixels} pixels`,
      );
    }
    try {
      return await renderMosaic(mosaic, grid, options, stats);
    } catch (e) {
      if (e instanceof SourceError && e.kind === 'changed') {
        await this.refresh(mosaic);
        return renderMosaic(mosaic, grid, options, stats);
      }
      throw e;
    }
  }

  /** Requests and bytes read from sources so far, by kind (file, http, s3). */
  sourceStats(): Record<string, SourceStats> {
    const out: Record<string, SourceStats> = {};
    for (const s of this.sources.values()) {
      const st = (s as { stats?: SourceStats }).stats;
      if (!st) continue;
      const kind = s.url.split(':')[0];
      out[kind] ??= { requests: 0, bytes: 0 };
      out[kind].requests += st.requests;
      out[kind].bytes += st.bytes;
    }
    return out;
  }

  async close(): Promise<void> {
    for (const s of this.sources.values()) await s.close?.();
    this.sources.clear();
    this.rasters.clear();
  }
}
