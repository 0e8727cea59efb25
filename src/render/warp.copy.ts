/**
 * The warp's copy shortcuts: where a kernel provably takes one source pixel as it is (a source on the target's
 * pixel lattice with nearest; area boxes that cover one pixel; bilinear and cubic at pixel centres), the warp loop
 * copies that pixel instead, rows at a time where they line up: the same bytes, several times cheaper.
 */
import type { RasterInfo } from './raster.info.ts';
import { type Composite, type DType, dtypeRange, type Grid, isFloat } from './types.ts';
import type { SourceWarp } from './warp.window.ts';

/**
 * The level a source is warped from lies on the target's pixel lattice: same CRS, same pixel size (1e-9 relative), no rotation, an
 * integer pixel offset (within 1e-6).
 */
export function alignedLevel(grid: Grid, info: RasterInfo, warp: SourceWarp): boolean {
  if (grid.crs.epsg !== info.crs.epsg) return false;
  const g = grid.transform;
  const t = info.transform;
  if (g[2] !== 0 || g[4] !== 0 || t[2] !== 0 || t[4] !== 0) return false;
  const rx = t[1] * warp.factorX;
  const ry = t[5] * warp.factorY;
  if (Math.abs(rx - g[1]) > 1e-9 * Math.abs(g[1]) || Math.abs(ry - g[5]) > 1e-9 * Math.abs(g[5])) return false;
  const ox = (g[0] - t[0]) / rx;
  const oy = (g[3] - t[3]) / ry;
  return Math.abs(ox - Math.round(ox)) <= 1e-6 && Math.abs(oy - Math.round(oy)) <= 1e-6;
}

/**
 * How far from a source pixel's centre (in source pixels, along each axis) bilinear and cubic may sample and the
 * stored result still be that pixel's value; -1: never. Exactly at the centre (0) their weights are exactly 1 and 0:
 * an integer value comes through unchanged. Within 1e-3 / (the source type's span) of it the other pixels' weights
 * add up to less than 3x the distance, so the value moves by less than 0.01 and an integer output rounds it back;
 * not for 'mean', which adds the moved values of several sources. Float sources: never, -0 and infinities do not
 * come through the kernels unchanged.
 */
export function centreCopyTolerance(src: DType, dst: DType, composite: Composite): number {
  if (isFloat(src)) return -1;
  if (isFloat(dst) || composite === 'mean') return 0;
  const [lo, hi] = dtypeRange(src);
  return 1e-3 / (hi - lo);
}

/** How far from pixel centres nearest may sample a row and still be copied as a run (any distance under 0.25 is). */
export const NEAREST_RUN_TOL = 1e-6;

/**
 * The row u(i) = u0 + du * i, v(i) = v0 + dv * i (i < n; lin = [u0, du, v0, dv], evaluated as written) when every
 * position lies within `tol` of the centre of source pixel (ix + i, iy) along each axis (tol 0: exactly on it):
 * into `at` = [ix, iy]. False otherwise.
 */
export function centreRun(lin: Float64Array, n: number, tol: number, at: Int32Array): boolean {
  const [u0, du, v0, dv] = lin;
  const ix = Math.round(u0 - 0.5);
  const iy = Math.round(v0 - 0.5);
  if (!(Math.abs(ix) < 2 ** 30 && Math.abs(iy) < 2 ** 30)) return false;
  if (tol === 0) {
    if (!(u0 === ix + 0.5 && du === 1 && v0 === iy + 0.5 && dv === 0)) return false;
  } else {
    // rounding of the row's own arithmetic
    const slack = (Math.abs(u0) + Math.abs(v0) + (Math.abs(du) + Math.abs(dv)) * n + 1) * 2 ** -50;
    const span = Math.max(0, n - 1);
    if (!(Math.abs(u0 - (ix + 0.5)) + Math.abs(du - 1) * span + slack <= tol)) return false;
    if (!(Math.abs(v0 - (iy + 0.5)) + Math.abs(dv) * span + slack <= tol)) return false;
  }
  at[0] = ix;
  at[1] = iy;
  return true;
}

/**
 * How close (source pixels) the corners of target pixels must be to source pixel corners for the area methods' box
 * (its ends moved inwards by 1e-10, then floor / ceil) to be exactly one source pixel.
 */
export const AREA_RUN_TOL = 5e-11;

/**
 * Two rows of corners, `top` and `below` ([u0, du, v0, dv] as in centreRun, n corners each), when every corner lies
 * within AREA_RUN_TOL of source pixel corner (ix + i, iy) (top) and (ix + i, iy + 1) (below), rounding of the
 * box's own arithmetic included: into `at` = [ix, iy]. Then target pixel c's box is source pixel (ix + c, iy).
 */
export function cornerRun(top: Float64Array, below: Float64Array, n: number, at: Int32Array): boolean {
  const ix = Math.round(top[0]);
  const iy = Math.round(top[2]);
  if (!(Math.abs(ix) < 2 ** 30 && Math.abs(iy) < 2 ** 30)) return false;
  const span = Math.max(0, n - 1);
  // the rows' arithmetic, and the ulp of the box's +-1e-10 at these magnitudes
  const mag = Math.abs(top[0]) + Math.abs(top[2]) + Math.abs(below[0]) + Math.abs(below[2]);
  const slack =
    (mag + (Math.abs(top[1]) + Math.abs(top[3]) + Math.abs(below[1]) + Math.abs(below[3])) * n + 4) * 2 ** -49;
  const off = (line: Float64Array, u: number, v: number) =>
    Math.max(Math.abs(line[0] - u) + Math.abs(line[1] - 1) * span, Math.abs(line[2] - v) + Math.abs(line[3]) * span);
  if (!(Math.max(off(top, ix, iy), off(below, ix, iy + 1)) + slack <= AREA_RUN_TOL)) return false;
  at[0] = ix;
  at[1] = iy;
  return true;
}
