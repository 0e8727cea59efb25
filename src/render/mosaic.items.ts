/**
 * Catalogue mosaics: a mosaic over STAC items (or a mosaic index) whose sources are opened only when a window
 * needs them. Opening needs nothing but the catalogue: the native grid, bands, dtype and nodata come from the items'
 * `proj:*` and `raster:bands` fields. Building the mosaic and choosing the items of a window are pure.
 *
 * Bands: `assets: [B04, B03, B02]` gives one mosaic band per asset (band 1 of each single-band asset; every band of a
 * multi-band asset, named asset:n). Assets at other resolutions (a 20 m band next to 10 m ones) are warped onto the
 * one native grid like any source. Each band is composited on its own over the items in order, and a pixel is valid
 * where every band has a value.
 *
 * Time: items carry their datetime; a window can be restricted to an interval, and `period` (P1D, P1W, P1M, P1Y)
 * cuts the items' time span into calendar periods (UTC; weeks start on Monday) a client picks with `datetime`.
 */
import { createHash } from 'node:crypto';
import { crsFromEpsg } from './crs.ts';
import { RenderError } from './errors.ts';
import { assetBounds, FootprintIndex, gridAsset, itemsUnder } from './mosaic.index.ts';
import {
  type Mosaic,
  type MosaicBandRef,
  type MosaicItems,
  type MosaicPeriodUnit,
  type MosaicSpec,
  nativeGrid,
} from './mosaic.ts';
import type { CatalogAsset, CatalogItem } from './stac.ts';
import { transformBounds } from './transform.ts';
import { type Bounds, type DType, type GeoTransform, type Grid, gridBounds } from './types.ts';

export interface MosaicPeriod {
  /** 2024-01-05 (P1D), 2024-W01 (P1W), 2024-01 (P1M), 2024 (P1Y) */
  readonly id: string;
  readonly startMs: number;
  /** exclusive */
  readonly endMs: number;
  /** the RFC 3339 interval a tile URL takes as `datetime` */
  readonly datetime: string;
  readonly items: number;
}

/** What the catalogue says about the assets' samples, or what one header said when it did not. */
export interface ItemsSampleInfo {
  readonly dtype: DType;
  readonly nodata: number | undefined;
  /** bands of each asset (1 when not known) */
  readonly bandCounts: Readonly<Record<string, number>>;
}

function pad(n: number, w = 2): string {
  return String(n).padStart(w, '0');
}

/** The period containing `ms`. */
export function periodOf(ms: number, unit: MosaicPeriodUnit): { id: string; startMs: number; endMs: number } {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  switch (unit) {
    case 'P1D': {
      const s = Date.UTC(y, m, d.getUTCDate());
      return { id: `${y}-${pad(m + 1)}-${pad(d.getUTCDate())}`, startMs: s, endMs: s + 86_400_000 };
    }
    case 'P1W': {
      const day = (d.getUTCDay() + 6) % 7; // Monday = 0
      const s = Date.UTC(y, m, d.getUTCDate() - day);
      // ISO week-numbering year: the year of the week's Thursday
      const thu = new Date(s + 3 * 86_400_000);
      const wy = thu.getUTCFullYear();
      const week = Math.floor((thu.getTime() - Date.UTC(wy, 0, 1)) / (7 * 86_400_000)) + 1;
      return { id: `${wy}-W${pad(week)}`, startMs: s, endMs: s + 7 * 86_400_000 };
    }
    case 'P1M':
      return { id: `${y}-${pad(m + 1)}`, startMs: Date.UTC(y, m, 1), endMs: Date.UTC(y, m + 1, 1) };
    case 'P1Y':
      return { id: String(y), startMs: Date.UTC(y, 0, 1), endMs: Date.UTC(y + 1, 0, 1) };
  }
}

/** The periods that hold at least one item, oldest first. */
export function mosaicPeriods(items: readonly CatalogItem[], unit: MosaicPeriodUnit): MosaicPeriod[] {
  const by = new Map<string, { id: string; startMs: number; endMs: number; items: number }>();
  for (const it of items) {
    if (!Number.isFinite(it.datetime)) continue;
    const p = periodOf(it.datetime, unit);
    const e = by.get(p.id);
    if (e) e.items++;
    else by.set(p.id, { ...p, items: 1 });
  }
  return [...by.values()]
    .sort((a, b) => a.startMs - b.startMs)
    .map((p) => ({
      ...p,
      // the interval is inclusive: end 1 ms before the next period starts
      datetime: `${new Date(p.startMs).toISOString()}/${new Date(p.endMs - 1).toISOString()}`,
    }));
}

/** The bands a mosaic exposes, from its `assets` option or the items' only raster asset. */
export function mosaicBandRefs(
  spec: MosaicSpec,
  items: readonly CatalogItem[],
  bandCounts: Readonly<Record<string, number>>,
): MosaicBandRef[] {
  let assets = spec.assets;
  if (!assets || assets.length === 0) {
    const names = new Set<string>();
    for (const it of items) for (const k of Object.keys(it.assets)) names.add(k);
    if (names.size !== 1) {
      throw new RenderError(
        'bad-request',
        `mosaic ${spec.id}: the items have several raster assets (${[...names].slice(0, 12).join(', ')}); name the ones to stack with assets: [...]`,
      );
    }
    assets = [...names];
  }
  const out: MosaicBandRef[] = [];
  for (const a of assets) {
    const n = bandCounts[a] ?? 1;
    for (let b = 0; b < n; b++) out.push({ asset: a, band: b, name: n === 1 ? a : `${a}:${b + 1}` });
  }
  const chosen = spec.bands
    ? spec.bands.map((b) => {
        const r = out[b - 1];
        if (!r)
          throw new RenderError('bad-request', `mosaic ${spec.id}: band ${b} does not exist (it has ${out.length})`);
        return r;
      })
    : out;
  if (!spec.periodBands || !spec.period) return chosen;
  // one band set per period that holds items, oldest first: B04@2024-W01, B11@2024-W01, B04@2024-W02, ...
  return mosaicPeriods(items, spec.period as MosaicPeriodUnit).flatMap((p) =>
    chosen.map((r) => ({
      ...r,
      name: `${r.name}@${p.id}`,
      period: { id: p.id, startMs: p.startMs, endMs: p.endMs - 1 },
    })),
  );
}

/** A source-like description (CRS, transform, size) for nativeGrid. */
interface GridLike {
  readonly crs: ReturnType<typeof crsFromEpsg>;
  readonly transform: GeoTransform;
  readonly width: number;
  readonly height: number;
}

/**
 * Grids for nativeGrid: the reference (the finest asset of the first item with a known grid), then one box per CRS
 * covering that CRS's items (the union is taken in each item's own CRS, so 20,000 items cost a few transforms).
 */
function itemGrids(items: readonly CatalogItem[], assets: readonly string[]): GridLike[] {
  // numbers only per item: 20,000 items x 3 assets must not leave 60,000 objects of garbage behind
  let ref: CatalogAsset | undefined;
  const unions = new Map<number, [number, number, number, number]>();
  for (const it of items) {
    let finest: CatalogAsset | undefined;
    for (const name of assets) {
      const a = it.assets[name];
      if (!a?.transform || a.epsg === undefined || a.width === undefined || a.height === undefined) continue;
      if (!finest || Math.abs(a.transform[1]) < Math.abs(finest.transform![1])) finest = a;
    }
    if (!finest) continue;
    ref ??= finest;
    const t = finest.transform!;
    const w = finest.width!;
    const h = finest.height!;
    // the four corners' extremes (a rotated grid's corners are not its first and last)
    const xa = t[1] * w;
    const xb = t[2] * h;
    const ya = t[4] * w;
    const yb = t[5] * h;
    const x0 = t[0] + Math.min(0, xa) + Math.min(0, xb);
    const x1 = t[0] + Math.max(0, xa) + Math.max(0, xb);
    const y0 = t[3] + Math.min(0, ya) + Math.min(0, yb);
    const y1 = t[3] + Math.max(0, ya) + Math.max(0, yb);
    const u = unions.get(finest.epsg!);
    if (!u) unions.set(finest.epsg!, [x0, y0, x1, y1]);
    else {
      if (x0 < u[0]) u[0] = x0;
      if (y0 < u[1]) u[1] = y0;
      if (x1 > u[2]) u[2] = x1;
      if (y1 > u[3]) u[3] = y1;
    }
  }
  if (!ref) return [];
  const out: GridLike[] = [
    { crs: crsFromEpsg(ref.epsg!), transform: ref.transform!, width: ref.width!, height: ref.height! },
  ];
  for (const [epsg, u] of unions) {
    const res = Math.max(1e-9, (u[2] - u[0]) / 1024);
    out.push({
      crs: crsFromEpsg(epsg),
      transform: [u[0], res, 0, u[3], 0, -res],
      width: Math.max(1, Math.round((u[2] - u[0]) / res)),
      height: Math.max(1, Math.round((u[3] - u[1]) / res)),
    });
  }
  return out;
}

export function itemsEtag(spec: MosaicSpec, items: readonly CatalogItem[]): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(spec));
  for (const it of items) {
    h.update(`\n${it.id}|${it.datetime}`);
    for (const k in it.assets) h.update(`|${k}=${it.assets[k].href}`);
  }
  return `"${h.digest('base64url').slice(0, 27)}"`;
}

/**
 * A catalogue mosaic from its spec and items (every item with its grid known: proj:* from the catalogue, or filled
 * in from headers by the engine). Pure.
 */
export function buildItemsMosaic(spec: MosaicSpec, items: readonly CatalogItem[], sample: ItemsSampleInfo): Mosaic {
  if (items.length === 0) throw new RenderError('bad-request', `mosaic ${spec.id}: the catalogue has no matching item`);
  const bands = mosaicBandRefs(spec, items, sample.bandCounts);
  const assets = [...new Set(bands.map((b) => b.asset))];
  const grids = itemGrids(items, assets);
  if (grids.length === 0)
    throw new RenderError('bad-request', `mosaic ${spec.id}: no item gives the grid of ${assets.join(', ')}`);
  const grid = nativeGrid(spec, grids);
  const boxes = items.map((it) => itemBox(it, assets));
  const wgs = transformBounds(gridBounds(grid), grid.crs, crsFromEpsg(4326));
  const period = spec.period as MosaicPeriodUnit | undefined;
  return {
    id: spec.id,
    title: spec.title ?? spec.id,
    spec,
    grid,
    dtype: spec.dtype ?? sample.dtype,
    bandIndices: bands.map((_, i) => i),
    bandCount: bands.length,
    bandNames: bands.map((b) => b.name),
    nodata: spec.nodata ?? sample.nodata,
    composite: spec.composite ?? 'first',
    resampling: spec.resampling ?? 'nearest',
    blockSize: spec.blockSize ?? 512,
    sources: [],
    items: { items, index: new FootprintIndex(boxes), bands, assets, ...(period ? { period } : {}) },
    boundsWgs84: wgs,
    etag: itemsEtag(spec, items),
    lastModified: new Date(),
  };
}

/** An item's longitude/latitude box: its bbox (what STAC gives), or its grid's extent transformed. */
function itemBox(it: CatalogItem, assets: readonly string[]): Bounds {
  const b = it.bbox;
  if (b.every(Number.isFinite)) return b;
  const a = gridAsset(it, assets);
  const ab = a ? assetBounds(a) : undefined;
  if (!a || !ab) return [Number.NaN, Number.NaN, Number.NaN, Number.NaN];
  return transformBounds(ab, crsFromEpsg(a.epsg!), crsFromEpsg(4326));
}

/** The items (indices into `mi.items`, in compositing order) under `grid` and inside `interval` when given. */
export function selectItems(mi: MosaicItems, grid: Grid, interval?: readonly [number, number]): number[] {
  const idx = itemsUnder(mi.items, mi.index, grid, mi.assets);
  if (!interval) return idx;
  return idx.filter((i) => {
    const it = mi.items[i];
    return it.endDatetime >= interval[0] && it.datetime <= interval[1];
  });
}
