/**
 * The median composite: each source is rendered on its own (the same warp as every other rule), then every pixel
 * takes the median of the values of the sources that have one, per band. An even count takes the mean of the two
 * middle values (as numpy.median does); integer outputs round half up and clamp, like the other rules.
 * Memory: one rendered window per source that has a value in it, bounded by MEDIAN_MEMORY_BYTES: a window with more
 * sources than fit is refused (413) before more is read, so a low-zoom tile over a large catalogue cannot take the
 * process's memory.
 */
import { RenderError } from './errors.ts';
import type { Mosaic } from './mosaic.ts';
import { renderMosaic } from './render.ts';
import {
  allocTyped,
  bytesPerSample,
  type DType,
  dtypeRange,
  type Grid,
  isFloat,
  type Pixels,
  type RenderOptions,
  type RenderStats,
} from './types.ts';

/** Memory one median render may hold in per-source windows. */
export const MEDIAN_MEMORY_BYTES = 256 * 1024 * 1024;

/** How many sources one median render of `grid` may hold (at least 2). */
export function medianSourceLimit(grid: Grid, bands: number, dtype: DType): number {
  const perSource = grid.width * grid.height * (bands * bytesPerSample(dtype) + 1);
  return Math.max(2, Math.floor(MEDIAN_MEMORY_BYTES / perSource));
}

export function medianTooLarge(count: number, limit: number): RenderError {
  return new RenderError(
    'too-large',
    `a median over ${count} or more sources under this window is more than one render holds (${limit} at this size); zoom in, narrow datetime, or use composite=first`,
  );
}

export async function renderMedian(
  mosaic: Mosaic,
  grid: Grid,
  options: RenderOptions = {},
  stats?: RenderStats,
): Promise<Pixels> {
  const n = grid.width * grid.height;
  const nb = options.bands?.length ?? mosaic.bandCount;
  const limit = medianSourceLimit(grid, nb, mosaic.dtype);
  const layers: Pixels[] = [];
  for (const s of mosaic.sources) {
    options.signal?.throwIfAborted();
    const px = await renderMosaic({ ...mosaic, sources: [s] }, grid, { ...options, composite: 'first' }, stats);
    let any = false;
    for (let i = 0; i < n && !any; i++) any = px.mask[i] !== 0;
    if (!any) continue;
    if (layers.length >= limit) throw medianTooLarge(layers.length + 1, limit);
    layers.push(px);
  }
  const dtype = mosaic.dtype;
  const float = isFloat(dtype);
  const [lo, hi] = dtypeRange(dtype);
  const fill = mosaic.nodata ?? 0;
  const bands = Array.from({ length: nb }, () => {
    const a = allocTyped(dtype, n);
    if (fill !== 0) a.fill(fill);
    return a;
  });
  const mask = new Uint8Array(n);
  const values = new Float64Array(layers.length);
  for (let i = 0; i < n; i++) {
    for (let b = 0; b < nb; b++) {
      let m = 0;
      for (const l of layers) {
        if (l.mask[i] === 0) continue;
        // insertion sort as the values come
        const v = l.bands[b][i];
        let j = m++;
        while (j > 0 && values[j - 1] > v) {
          values[j] = values[j - 1];
          j--;
        }
        values[j] = v;
      }
      if (m === 0) continue;
      mask[i] = 255;
      const x = m % 2 === 1 ? values[(m - 1) / 2] : (values[m / 2 - 1] + values[m / 2]) / 2;
      bands[b][i] = float ? x : Math.min(Math.max(Math.floor(x + 0.5), lo), hi);
    }
  }
  return { width: grid.width, height: grid.height, dtype, bands, mask };
}
