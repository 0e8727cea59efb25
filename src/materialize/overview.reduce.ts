/**
 * Overview tiles from the finer level, pure: a tile of level k + 1 is computed from a window of level k's decoded
 * pixels, the way GDAL computes overviews from the level before (GDALRegenerateOverviews): the ratio per axis is
 * finerSize / coarserSize (exactly 2 for even sizes, a little more for odd ones, since sizes halve with floor),
 * and for each coarser pixel j the finer pixels under it are:
 * - average: [j * r, (j + 1) * r) with fractional weights at both ends; the weighted mean of the pixels that hold
 *   data (uncovered pixels, and in each band its nodata value, are left out, as GDAL does), rounded half up for
 *   integer types;
 * - nearest: the pixel floor(j * r + 0.5) with its validity (the upper left one of 2 x 2), as GDAL's COG driver;
 * - mode: the same pixels as average (partly covered ones count whole); the most frequent value among the pixels
 *   that hold data, counted in row order (on a tie, the value whose count got there first).
 * Pixels are no data where none of their finer pixels holds data; a band with nothing left in a pixel that holds
 * data in another band gets the fill value.
 */
import { allocTyped, type DType, type Resampling, type TypedArray } from '../render/types.ts';

/** The resamplings whose overviews are built from the finer level; others are rendered from the sources. */
export const REDUCIBLE_RESAMPLINGS: readonly Resampling[] = ['average', 'mode', 'nearest'];

export function isReducible(resampling: Resampling): boolean {
  return REDUCIBLE_RESAMPLINGS.includes(resampling);
}

/** Decoded pixels of a rectangle of the finer level (global pixel coordinates of that level). */
export interface ReduceWindow {
  readonly x0: number;
  readonly y0: number;
  readonly width: number;
  readonly height: number;
  readonly bands: TypedArray[];
  /** 255 where a pixel holds data */
  readonly mask: Uint8Array;
}

/** The finer pixels [start, end) under coarser pixel j along one axis (finer size n, coarser size m). */
export function spanOf(j: number, n: number, m: number, resampling: Resampling): [number, number] {
  const r = n / m;
  if (resampling === 'nearest') {
    const s = Math.min(n - 1, Math.floor(j * r + 0.5));
    return [s, s + 1];
  }
  return [Math.floor(j * r + 1e-9), Math.min(n, Math.ceil((j + 1) * r - 1e-9))];
}

/** The finer window [start, end) the coarser pixels [from, to) need along one axis. */
export function windowOf(from: number, to: number, n: number, m: number, resampling: Resampling): [number, number] {
  return [spanOf(from, n, m, resampling)[0], spanOf(to - 1, n, m, resampling)[1]];
}

interface AxisPlan {
  readonly start: Int32Array;
  readonly end: Int32Array;
  /** weights of the finer pixels of each coarser pixel, flattened (average only) */
  readonly weight: Float64Array;
  readonly weightAt: Int32Array;
}

function axisPlan(from: number, count: number, n: number, m: number, resampling: Resampling): AxisPlan {
  const start = new Int32Array(count);
  const end = new Int32Array(count);
  const weightAt = new Int32Array(count + 1);
  let total = 0;
  for (let k = 0; k < count; k++) {
    const [s, e] = spanOf(from + k, n, m, resampling);
    start[k] = s;
    end[k] = e;
    weightAt[k] = total;
    total += e - s;
  }
  weightAt[count] = total;
  const weight = new Float64Array(total);
  const r = n / m;
  for (let k = 0; k < count; k++) {
    const a = (from + k) * r;
    const b = (from + k + 1) * r;
    for (let i = start[k]; i < end[k]; i++) {
      weight[weightAt[k] + i - start[k]] =
        resampling === 'nearest' ? 1 : Math.max(0, Math.min(i + 1, b) - Math.max(i, a));
    }
  }
  return { start, end, weight, weightAt };
}

const INTEGER: Record<DType, boolean> = {
  uint8: true,
  int8: true,
  uint16: true,
  int16: true,
  uint32: true,
  int32: true,
  float32: false,
  float64: false,
};

/**
 * Tile (tx, ty) of a coarser level (`coarser` = its size) from `win`, a window of the finer level (`finer` = its
 * size) that covers every finer pixel the tile needs. Returns the tile as the COG stores it: `blockSize`^2 per
 * band, padding and no-data pixels filled with `fill`.
 */
export function reduceToTile(
  win: ReduceWindow,
  finer: { width: number; height: number },
  coarser: { width: number; height: number },
  tx: number,
  ty: number,
  blockSize: number,
  dtype: DType,
  resampling: Resampling,
  fill: number,
  nodata?: number,
  general = false,
): { bands: TypedArray[]; mask: Uint8Array; validCount: number } {
  const bs = blockSize;
  const cx0 = tx * bs;
  const cy0 = ty * bs;
  const w = Math.min(bs, coarser.width - cx0);
  const h = Math.min(bs, coarser.height - cy0);
  if (!general && resampling === 'average' && finer.width === 2 * coarser.width && finer.height === 2 * coarser.height)
    return averageBy2(win, cx0, cy0, w, h, bs, dtype, fill, nodata);
  const xs = axisPlan(cx0, w, finer.width, coarser.width, resampling);
  const ys = axisPlan(cy0, h, finer.height, coarser.height, resampling);
  const nb = win.bands.length;
  const mask = new Uint8Array(bs * bs);
  const bands: TypedArray[] = [];
  for (let b = 0; b < nb; b++) {
    const a = allocTyped(dtype, bs * bs);
    if (fill !== 0) a.fill(fill);
    bands.push(a);
  }
  const round = INTEGER[dtype];
  const ww = win.width;
  const values = new Float64Array(64);
  let validCount = 0;
  for (let y = 0; y < h; y++) {
    const ys0 = ys.start[y];
    const ys1 = ys.end[y];
    for (let x = 0; x < w; x++) {
      const xs0 = xs.start[x];
      const xs1 = xs.end[x];
      const o = y * bs + x;
      if (resampling === 'nearest') {
        const i = (ys0 - win.y0) * ww + (xs0 - win.x0);
        if (win.mask[i] === 0) continue;
        mask[o] = 255;
        validCount++;
        for (let b = 0; b < nb; b++) bands[b][o] = win.bands[b][i];
        continue;
      }
      if (resampling === 'mode') {
        let found = false;
        for (let b = 0; b < nb; b++) {
          let count = 0;
          for (let sy = ys0; sy < ys1; sy++) {
            const row = (sy - win.y0) * ww - win.x0;
            for (let sx = xs0; sx < xs1; sx++) {
              const v = win.bands[b][row + sx];
              if (win.mask[row + sx] === 0 || v === nodata || count >= values.length) continue;
              values[count++] = v;
            }
          }
          if (count === 0) continue;
          found = true;
          bands[b][o] = modeOf(values, count);
        }
        if (found) {
          mask[o] = 255;
          validCount++;
        }
        continue;
      }
      let any = false;
      for (let b = 0; b < nb; b++) {
        const src = win.bands[b];
        let wsum = 0;
        let total = 0;
        for (let sy = ys0; sy < ys1; sy++) {
          const wy = ys.weight[ys.weightAt[y] + sy - ys0];
          const row = (sy - win.y0) * ww - win.x0;
          for (let sx = xs0; sx < xs1; sx++) {
            const i = row + sx;
            if (win.mask[i] === 0 || src[i] === nodata) continue;
            const wt = wy * xs.weight[xs.weightAt[x] + sx - xs0];
            if (wt === 0) continue;
            wsum += wt;
            total += src[i] * wt;
          }
        }
        if (wsum === 0) continue;
        any = true;
        bands[b][o] = round ? Math.floor(total / wsum + 0.5) : total / wsum;
      }
      if (!any) continue;
      mask[o] = 255;
      validCount++;
    }
  }
  return { bands, mask, validCount };
}

/**
 * Average when both sizes halve exactly (every pixel has its 2 x 2, weights 1): the same values as the general
 * loop (test/overview.reduce.test.ts compares them), a band at a time in a tight loop.
 */
function averageBy2(
  win: ReduceWindow,
  cx0: number,
  cy0: number,
  w: number,
  h: number,
  bs: number,
  dtype: DType,
  fill: number,
  nodata: number | undefined,
): { bands: TypedArray[]; mask: Uint8Array; validCount: number } {
  const ww = win.width;
  const m = win.mask;
  const mask = new Uint8Array(bs * bs);
  const base = (2 * cy0 - win.y0) * ww + (2 * cx0 - win.x0);
  const round = INTEGER[dtype];
  // nodata that the type cannot hold matches no pixel (NaN matches none either, as in GDAL)
  const nd = nodata ?? Number.NaN;
  const bands = win.bands.map((src) => {
    const out = allocTyped(dtype, bs * bs);
    if (fill !== 0) out.fill(fill);
    for (let y = 0; y < h; y++) {
      const r0 = base + 2 * y * ww;
      const r1 = r0 + ww;
      const o = y * bs;
      for (let x = 0; x < w; x++) {
        const i0 = r0 + 2 * x;
        const i1 = r1 + 2 * x;
        const a = src[i0];
        const b = src[i0 + 1];
        const c = src[i1];
        const d = src[i1 + 1];
        // the same order of additions as the general loop
        let sum = 0;
        let n = 0;
        if (m[i0] !== 0 && a !== nd) {
          sum += a;
          n++;
        }
        if (m[i0 + 1] !== 0 && b !== nd) {
          sum += b;
          n++;
        }
        if (m[i1] !== 0 && c !== nd) {
          sum += c;
          n++;
        }
        if (m[i1 + 1] !== 0 && d !== nd) {
          sum += d;
          n++;
        }
        if (n === 0) continue;
        mask[o + x] = 255;
        out[o + x] = round ? Math.floor(sum / n + 0.5) : sum / n;
      }
    }
    return out;
  });
  let validCount = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i] !== 0) validCount++;
  return { bands, mask, validCount };
}

/**
 * The most frequent of values[0..count), counted in row order: the value whose running count first passes every
 * other's wins a tie (what GDAL's mode gives).
 */
function modeOf(values: Float64Array, count: number): number {
  let best = values[0];
  let bestCount = 0;
  for (let a = 0; a < count; a++) {
    const v = values[a];
    let c = 0;
    for (let p = 0; p <= a; p++) if (values[p] === v) c++;
    if (c > bestCount) {
      bestCount = c;
      best = v;
    }
  }
  return best;
}
