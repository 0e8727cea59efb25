/**
 * Explain a render before doing it: which items and assets a window reads, which overview level and pixel window
 * of each, how many requests and bytes that should take, and how much of the window no source covers. No pixel is
 * read; headers are read only when asked (`headers: true`), and without them the window is given in
 * full-resolution pixels from the catalogue's grid and the level is left open.
 */
import { crsFromEpsg } from './crs.ts';
import type { Engine } from './engine.ts';
import { RenderError } from './errors.ts';
import { assetBounds } from './mosaic.index.ts';
import type { Mosaic } from './mosaic.ts';
import type { Raster } from './raster.ts';
import type { CatalogAsset, CatalogItem } from './stac.ts';
import { createTransformer, transformBounds } from './transform.ts';
import {
  applyTransform,
  type Bounds,
  type Grid,
  gridBounds,
  invertTransform,
  pixelExtent,
  type Resampling,
} from './types.ts';
import { sourceWarp } from './warp.window.ts';

export interface ExplainAsset {
  readonly asset: string;
  readonly href: string;
  /** overview level (0 = full resolution); null when headers were not read */
  readonly level: number | null;
  /** pixels of that level read (full-resolution pixels when level is null) */
  readonly window: { readonly x: number; readonly y: number; readonly width: number; readonly height: number } | null;
  /** source pixels per target pixel along x (the overview choice follows it) */
  readonly decimation: number;
  /** blocks of that level read (null without headers) */
  readonly blocks: number | null;
  /** whether the header is already parsed and cached (else opening it costs a request) */
  readonly headerCached: boolean;
  /** range requests expected: header (when not cached) + one per run of adjacent blocks */
  readonly requests: number;
  /** bytes expected: the blocks' share of the file (null without headers) */
  readonly bytes: number | null;
}

export interface ExplainItem {
  readonly id: string;
  readonly datetime: string | null;
  readonly cloudCover?: number;
  readonly assets: ExplainAsset[];
}

export interface MosaicExplain {
  readonly mosaic: string;
  readonly window: { readonly crs: string; readonly bounds: Bounds; readonly width: number; readonly height: number };
  readonly composite: string;
  readonly resampling: Resampling;
  readonly datetime: string | null;
  readonly headersRead: boolean;
  readonly items: ExplainItem[];
  readonly totals: {
    readonly items: number;
    readonly assets: number;
    readonly requests: number;
    readonly bytes: number | null;
  };
  /** share of the window's pixels (sampled on at most a 64 x 64 lattice) that no listed source covers */
  readonly emptyFraction: number;
  readonly notes: string[];
}

export interface ExplainOptions {
  readonly headers?: boolean;
  readonly datetime?: readonly [number, number];
  readonly resampling?: Resampling;
  readonly bands?: readonly number[];
  readonly signal?: AbortSignal;
}

/** The window of a footprint in its own full-resolution pixels, and the decimation, from its grid alone. */
function catalogueWindow(grid: Grid, a: CatalogAsset): { window: ExplainAsset['window']; decimation: number } {
  const ab = assetBounds(a);
  if (!ab) return { window: null, decimation: Number.NaN };
  let b: Bounds;
  try {
    b = transformBounds(gridBounds(grid), grid.crs, crsFromEpsg(a.epsg!));
  } catch {
    return { window: null, decimation: Number.NaN };
  }
  const inv = invertTransform(a.transform!);
  const [c0, r0, c1, r1] = pixelExtent(inv, b);
  const decimation = (c1 - c0) / grid.width;
  const x = Math.max(0, Math.floor(c0));
  const y = Math.max(0, Math.floor(r0));
  const x1 = Math.min(a.width!, Math.ceil(c1));
  const y1 = Math.min(a.height!, Math.ceil(r1));
  return { window: { x, y, width: Math.max(0, x1 - x), height: Math.max(0, y1 - y) }, decimation };
}

/** Share of sample points of `grid` outside every footprint. */
function emptyFraction(grid: Grid, footprints: readonly { epsg: number; bounds: Bounds }[]): number {
  const nx = Math.min(64, grid.width);
  const ny = Math.min(64, grid.height);
  const covered = new Uint8Array(nx * ny);
  const byCrs = new Map<number, Bounds[]>();
  for (const f of footprints) {
    const l = byCrs.get(f.epsg);
    if (l) l.push(f.bounds);
    else byCrs.set(f.epsg, [f.bounds]);
  }
  const xs0 = new Float64Array(nx * ny);
  const ys0 = new Float64Array(nx * ny);
  for (let j = 0; j < ny; j++) {
    for (let i = 0; i < nx; i++) {
      const [x, y] = applyTransform(grid.transform, ((i + 0.5) * grid.width) / nx, ((j + 0.5) * grid.height) / ny);
      xs0[j * nx + i] = x;
      ys0[j * nx + i] = y;
    }
  }
  for (const [epsg, list] of byCrs) {
    const xs = xs0.slice();
    const ys = ys0.slice();
    const tr = createTransformer(grid.crs, crsFromEpsg(epsg));
    if (!tr.identity) tr.forward(xs, ys);
    for (let k = 0; k < xs.length; k++) {
      if (covered[k]) continue;
      const x = xs[k];
      const y = ys[k];
      for (const b of list) {
        if (x >= b[0] && x < b[2] && y > b[1] && y <= b[3]) {
          covered[k] = 1;
          break;
        }
      }
    }
  }
  let empty = 0;
  for (const c of covered) if (!c) empty++;
  return covered.length ? empty / covered.length : 1;
}

/** Explain a render of `grid` from `mosaic` (catalogue or plain). */
export async function explainRender(
  engine: Engine,
  mosaic: Mosaic,
  grid: Grid,
  options: ExplainOptions = {},
): Promise<MosaicExplain> {
  const resampling = options.resampling ?? mosaic.resampling;
  const headers = options.headers === true;
  const entries: { item: CatalogItem | undefined; id: string; asset: string; a: CatalogAsset; raster?: Raster }[] = [];
  const notes: string[] = [];
  if (mosaic.items) {
    const mi = mosaic.items;
    const sel = options.bands ?? mi.bands.map((_, i) => i);
    const assets = [...new Set(sel.map((b) => mi.bands[b]?.asset ?? ''))];
    if (assets.includes(''))
      throw new RenderError('bad-request', `a band does not exist (the mosaic has ${mosaic.bandCount})`);
    const byHref = new Map<string, CatalogItem>();
    for (const it of mi.items) for (const a of Object.values(it.assets)) byHref.set(a.href, it);
    for (const asset of assets) {
      for (const a of engine.itemAssets(mosaic, grid, asset, options.datetime)) {
        const item = byHref.get(a.href);
        entries.push({ item, id: item?.id ?? a.href, asset, a });
      }
    }
    if (mosaic.composite === 'first' || mosaic.composite === 'last')
      notes.push(
        `${mosaic.composite}: items are opened in order and the rest skipped once the window is full, so a render may read fewer than listed`,
      );
  } else {
    for (const s of mosaic.sources) {
      const info = s.raster.info;
      const g = { crs: info.crs, transform: info.transform, width: info.width, height: info.height };
      if (!sourceWarp(grid, s.raster, resampling)) continue;
      entries.push({
        item: undefined,
        id: s.location,
        asset: 'data',
        a: { href: s.location, epsg: g.crs.epsg, transform: g.transform, width: g.width, height: g.height },
        raster: s.raster,
      });
    }
    if (options.datetime) notes.push('datetime applies to catalogue mosaics only; ignored');
  }
  const items = new Map<string, ExplainItem>();
  let requests = 0;
  let bytes = 0;
  let bytesKnown = true;
  const footprints: { epsg: number; bounds: Bounds }[] = [];
  for (const e of entries) {
    options.signal?.throwIfAborted();
    const ab = assetBounds(e.a);
    if (ab) footprints.push({ epsg: e.a.epsg!, bounds: ab });
    const cached = e.raster !== undefined || engine.isOpen(e.a.href);
    const guess = catalogueWindow(grid, e.a);
    let out: ExplainAsset;
    if (headers || cached) {
      const raster = e.raster ?? (await engine.openRaster(e.a.href, options.signal));
      const warp = sourceWarp(grid, raster, resampling);
      const info = raster.info;
      if (!warp) {
        out = {
          asset: e.asset,
          href: e.a.href,
          level: null,
          window: null,
          decimation: guess.decimation,
          blocks: 0,
          headerCached: cached,
          requests: cached ? 0 : 1,
          bytes: 0,
        };
      } else {
        const lvl = info.levels[warp.level];
        const bx0 = Math.floor(warp.x0 / lvl.blockWidth);
        const by0 = Math.floor(warp.y0 / lvl.blockHeight);
        const bx1 = Math.floor((warp.x0 + warp.w - 1) / lvl.blockWidth);
        const by1 = Math.floor((warp.y0 + warp.h - 1) / lvl.blockHeight);
        const planes = info.interleave === 'band' ? info.bandCount : 1;
        const blocks = (bx1 - bx0 + 1) * (by1 - by0 + 1) * planes;
        let totalBlocks = 0;
        for (const l of info.levels) totalBlocks += l.blocksAcross * l.blocksDown * planes;
        // row-major tiles: the blocks of one row are adjacent in the file and read with one request
        const dataRequests = (by1 - by0 + 1) * planes;
        out = {
          asset: e.asset,
          href: e.a.href,
          level: warp.level,
          window: { x: warp.x0, y: warp.y0, width: warp.w, height: warp.h },
          // not the read window's width over the target's: a source covering part of the target would seem
          // twice as fine as it is
          decimation: warp.decimation,
          blocks,
          headerCached: cached,
          requests: (cached ? 0 : 1) + dataRequests,
          bytes: Math.round((blocks * info.size) / Math.max(1, totalBlocks)),
        };
      }
    } else {
      out = {
        asset: e.asset,
        href: e.a.href,
        level: null,
        window: guess.window,
        decimation: guess.decimation,
        blocks: null,
        headerCached: false,
        requests: 2,
        bytes: null,
      };
    }
    requests += out.requests;
    if (out.bytes === null) bytesKnown = false;
    else bytes += out.bytes;
    const key = e.item ? `${e.item.collection ?? ''}/${e.item.id}` : e.id;
    let it = items.get(key);
    if (!it) {
      const dt = e.item?.datetime;
      const cc = e.item?.sortKeys['eo:cloud_cover'];
      it = {
        id: e.id,
        datetime: dt !== undefined && Number.isFinite(dt) ? new Date(dt).toISOString() : null,
        ...(typeof cc === 'number' ? { cloudCover: cc } : {}),
        assets: [],
      };
      items.set(key, it);
    }
    it.assets.push(out);
  }
  if (!headers)
    notes.push('headers not read: windows are in full-resolution pixels and bytes unknown; ask with headers=true');
  const dt = options.datetime;
  return {
    mosaic: mosaic.id,
    window: { crs: `EPSG:${grid.crs.epsg}`, bounds: gridBounds(grid), width: grid.width, height: grid.height },
    composite: mosaic.composite,
    resampling,
    datetime: dt
      ? `${Number.isFinite(dt[0]) ? new Date(dt[0]).toISOString() : '..'}/${Number.isFinite(dt[1]) ? new Date(dt[1]).toISOString() : '..'}`
      : null,
    headersRead: headers,
    items: [...items.values()],
    totals: { items: items.size, assets: entries.length, requests, bytes: bytesKnown ? bytes : null },
    emptyFraction: emptyFraction(grid, footprints),
    notes,
  };
}
