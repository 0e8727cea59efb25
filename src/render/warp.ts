/**
 * Resampling kernels for the warper. Pure functions over one source window: given continuous source pixel
 * coordinates (u, v) (pixel k covers [k, k+1)), produce a value per band or report "no valid pixel".
 * They follow GDAL's warp kernel: nearest takes floor(u); bilinear and cubic weigh pixel centres and widen the
 * kernel when downsampling; average weighs source pixels by the area they share with the target pixel; mode
 * takes the most frequent value. Invalid source pixels never contribute; weights are renormalised.
 */
import type { Resampling, TypedArray } from './types.ts';

export interface SourceWindow {
  readonly width: number;
  readonly height: number;
  readonly bands: TypedArray[];
  /** 1 = valid */
  readonly valid: Uint8Array;
}

/** How far (in source pixels) a kernel reaches, before widening for downsampling. */
export function kernelRadius(method: Resampling): number {
  switch (method) {
    case 'nearest':
      return 1;
    case 'bilinear':
      return 1;
    case 'cubic':
      return 2;
    default:
      return 1;
  }
}

function weightBilinear(t: number): number {
  const a = Math.abs(t);
  return a < 1 ? 1 - a : 0;
}

/** Keys cubic convolution, a = -0.5 (what GDAL calls "cubic"). */
function weightCubic(t: number): number {
  const a = Math.abs(t);
  if (a <= 1) return (1.5 * a - 2.5) * a * a + 1;
  if (a < 2) return ((-0.5 * a + 2.5) * a - 4) * a + 2;
  return 0;
}

/**
 * Sample one target pixel. `scaleX`/`scaleY` are target pixels per source pixel (<= 1 when downsampling),
 * `spanU`/`spanV` the size of the target pixel's footprint in source pixels (for average and mode).
 * Writes band values into `out` and returns true when the pixel is valid.
 */
export function samplePixel(
  method: Resampling,
  win: SourceWindow,
  u: number,
  v: number,
  scaleX: number,
  scaleY: number,
  spanU: number,
  spanV: number,
  out: Float64Array,
  scratch: Map<number, number>,
): boolean {
  const { width, height, bands, valid } = win;
  const nb = bands.length;
  if (method === 'nearest') {
    const ix = Math.floor(u + 1e-10);
    const iy = Math.floor(v + 1e-10);
    if (ix < 0 || iy < 0 || ix >= width || iy >= height) return false;
    const i = iy * width + ix;
    if (!valid[i]) return false;
    for (let b = 0; b < nb; b++) out[b] = bands[b][i];
    return true;
  }
  if (method === 'bilinear' || method === 'cubic') {
    const weight = method === 'bilinear' ? weightBilinear : weightCubic;
    const sx = Math.min(1, scaleX);
    const sy = Math.min(1, scaleY);
    const r = kernelRadius(method);
    const rx = Math.ceil(r / sx);
    const ry = Math.ceil(r / sy);
    const x = u - 0.5;
    const y = v - 0.5;
    const ix = Math.floor(x);
    const iy = Math.floor(y);
    if (ix + rx < 0 || iy + ry < 0 || ix - rx + 1 >= width || iy - ry + 1 >= height) return false;
    for (let b = 0; b < nb; b++) out[b] = 0;
    let wsum = 0;
    for (let j = iy - ry + 1; j <= iy + ry; j++) {
      if (j < 0 || j >= height) continue;
      const wy = weight((j - y) * sy);
      if (wy === 0) continue;
      for (let i = ix - rx + 1; i <= ix + rx; i++) {
        if (i < 0 || i >= width) continue;
        const k = j * width + i;
        if (!valid[k]) continue;
        const w = wy * weight((i - x) * sx);
        if (w === 0) continue;
        wsum += w;
        for (let b = 0; b < nb; b++) out[b] += w * bands[b][k];
      }
    }
    if (Math.abs(wsum) < 1e-5) return false;
    for (let b = 0; b < nb; b++) out[b] /= wsum;
    return true;
  }
  // area-based: average and mode
  const u0 = u - spanU / 2;
  const u1 = u + spanU / 2;
  const v0 = v - spanV / 2;
  const v1 = v + spanV / 2;
  const i0 = Math.max(0, Math.floor(u0));
  const i1 = Math.min(width - 1, Math.ceil(u1) - 1);
  const j0 = Math.max(0, Math.floor(v0));
  const j1 = Math.min(height - 1, Math.ceil(v1) - 1);
  if (i1 < i0 || j1 < j0) return false;
  if (method === 'average') {
    for (let b = 0; b < nb; b++) out[b] = 0;
    let wsum = 0;
    for (let j = j0; j <= j1; j++) {
      const wy = Math.min(v1, j + 1) - Math.max(v0, j);
      if (wy <= 0) continue;
      for (let i = i0; i <= i1; i++) {
        const k = j * width + i;
        if (!valid[k]) continue;
        const wx = Math.min(u1, i + 1) - Math.max(u0, i);
        if (wx <= 0) continue;
        const w = wx * wy;
        wsum += w;
        for (let b = 0; b < nb; b++) out[b] += w * bands[b][k];
      }
    }
    if (wsum <= 0) return false;
    for (let b = 0; b < nb; b++) out[b] /= wsum;
    return true;
  }
  // mode: most frequent value of the first band among covered valid pixels; other bands from that pixel
  scratch.clear();
  let bestCount = 0;
  let bestIndex = -1;
  for (let j = j0; j <= j1; j++) {
    if (Math.min(v1, j + 1) - Math.max(v0, j) <= 0) continue;
    for (let i = i0; i <= i1; i++) {
      if (Math.min(u1, i + 1) - Math.max(u0, i) <= 0) continue;
      const k = j * width + i;
      if (!valid[k]) continue;
      const val = bands[0][k];
      const c = (scratch.get(val) ?? 0) + 1;
      scratch.set(val, c);
      if (c > bestCount) {
        bestCount = c;
        bestIndex = k;
      }
    }
  }
  if (bestIndex < 0) return false;
  for (let b = 0; b < nb; b++) out[b] = bands[b][bestIndex];
  return true;
}
