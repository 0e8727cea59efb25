/**
 * A window of a catalogue mosaic: per asset, the items under the window (spatial index, then exact footprint) are
 * opened and composited as a one-asset mosaic; the bands are stacked, and a pixel is valid where every band has a
 * value (elsewhere every band holds nodata). For first / last, items are opened a batch at a time in compositing
 * order and the rest are never opened once every pixel has its value.
 */

import { medianSourceLimit, medianTooLarge, renderMedian } from './composite.median.ts';
import { crsFromEpsg } from './crs.ts';
import { RenderError } from './errors.ts';
import { assetBounds, FOOTPRINT_MARGIN_PX } from './mosaic.index.ts';
import { selectItems } from './mosaic.items.ts';
import type { Mosaic, MosaicSource } from './mosaic.ts';
import { renderMosaic } from './render.ts';
import type { CatalogAsset } from './stac.ts';
import { transformBounds } from './transform.ts';
import {
  type Bounds,
  type Grid,
  invertTransform,
  type Pixels,
  pixelExtent,
  type RenderOptions,
  type RenderStats,
} from './types.ts';

/** Render options the engine adds to the pixel path's: the time interval a catalogue mosaic is restricted to. */
export interface EngineRenderOptions extends RenderOptions {
  /** a block that cannot be decoded fails the render whatever sources.onSourceError says (exports) */
  readonly strict?: boolean;
  /** [startMs, endMs], inclusive: only items whose time overlaps it */
  readonly datetime?: readonly [number, number];
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

/** The assets of a catalogue mosaic's items under `grid` (metadata only), in compositing order. */
export function itemAssets(
  mosaic: Mosaic,
  grid: Grid,
  asset: string,
  datetime?: readonly [number, number],
): CatalogAsset[] {
  const mi = mosaic.items;
  if (!mi) throw new RenderError('internal', `mosaic ${mosaic.id} is not a catalogue mosaic`);
  return selectItems(mi, grid, datetime)
    .map((i) => mi.items[i].assets[asset])
    .filter((a): a is CatalogAsset => a !== undefined);
}

/** How a catalogue window opens its items' rasters. */
export interface ItemsOpener {
  /** open the rasters of some assets (bounded concurrency, headers cached) as the sources of a sub-mosaic */
  openAssets(mosaic: Mosaic, assets: readonly CatalogAsset[], signal?: AbortSignal): Promise<MosaicSource[]>;
  /** how many items first / last open at once is twice this */
  readonly openConcurrency: number;
}

/** Render `grid` from a catalogue mosaic (see the top of this file). */
export async function renderItems(
  mosaic: Mosaic,
  grid: Grid,
  options: EngineRenderOptions,
  stats: RenderStats | undefined,
  opener: ItemsOpener,
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
  // validity: within a period every band must have a value; across the period band sets (periodBands) any may
  const periodMasks = new Map<string, Uint8Array>();
  const groupKey = (r: (typeof refs)[number]) => `${r.asset}\n${r.period?.id ?? ''}`;
  for (const key of new Set(refs.map(groupKey))) {
    const positions = refs.flatMap((r, k) => (groupKey(r) === key ? [k] : []));
    const { asset, period } = refs[positions[0]];
    const interval = intersect(options.datetime, period && [period.startMs, period.endMs]);
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
    const list = interval === null ? [] : itemAssets(mosaic, grid, asset, interval);
    let px: Pixels;
    if (composite === 'first' || composite === 'last') {
      const ordered = composite === 'last' ? list.slice().reverse() : list;
      const batch = Math.max(1, opener.openConcurrency * 2);
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
        const sources = await opener.openAssets(mosaic, rest.slice(0, batch), options.signal);
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
      const s = sub(await opener.openAssets(mosaic, list, options.signal));
      px =
        composite === 'median'
          ? await renderMedian(s, grid, subOptions, stats)
          : await renderMosaic(s, grid, subOptions, stats);
    }
    positions.forEach((k, i) => {
      bands[k] = px.bands[i];
    });
    const pm = periodMasks.get(period?.id ?? '');
    if (!pm) periodMasks.set(period?.id ?? '', px.mask);
    else for (let i = 0; i < n; i++) if (px.mask[i] === 0) pm[i] = 0;
  }
  const fill = mosaic.nodata ?? 0;
  let mask: Uint8Array | undefined;
  for (const [id, pm] of periodMasks) {
    // a band holds nodata where its period has no value
    refs.forEach((r, k) => {
      if ((r.period?.id ?? '') !== id) return;
      const b = bands[k];
      for (let i = 0; i < n; i++) if (pm[i] === 0) b[i] = fill;
    });
    if (!mask) mask = pm;
    else for (let i = 0; i < n; i++) if (pm[i] !== 0) mask[i] = 255;
  }
  return {
    width: grid.width,
    height: grid.height,
    dtype: mosaic.dtype,
    bands,
    mask: mask ?? new Uint8Array(n),
  };
}

/** The overlap of two inclusive intervals (either may be absent); null when they do not overlap. */
function intersect(
  a: readonly [number, number] | undefined,
  b: readonly [number, number] | undefined,
): readonly [number, number] | undefined | null {
  if (!a) return b;
  if (!b) return a;
  const lo = Math.max(a[0], b[0]);
  const hi = Math.min(a[1], b[1]);
  return lo <= hi ? [lo, hi] : null;
}
