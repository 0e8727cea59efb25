/**
 * The warper's pixel maths: where each target pixel falls in a source (an approximate coordinate mapper with a
 * bounded error) and what value it takes there (the resampling kernels).
 *
 * The kernels reproduce GDAL's warp kernel (gdalwarpkernel.cpp), so that a render equals what gdalwarp draws:
 * - A window is warped in "chunks" (see render.ts). Each chunk has one source window and one pair of scales
 *   (target pixels per source pixel, from the chunk's extents, not per pixel). Kernel positions are relative to the
 *   chunk's source window and never reach outside it.
 * - nearest, bilinear and cubic need the source pixel under the target pixel centre to be inside the chunk window
 *   and valid; otherwise the target pixel gets nothing from this source.
 * - With both scales >= 0.95, bilinear uses its 2x2 formula and cubic its 4x4 Keys formula (a = -0.5); cubic falls
 *   back to bilinear when one of its 16 pixels is invalid or off the window. Below 0.95 the general kernel is used:
 *   the filter is stretched by 1/scale, its reach widened to ceil(radius / scale), and the weights of the valid
 *   pixels renormalised.
 * - average weighs each source pixel by the part of it inside the box spanned by the transformed top-left and
 *   bottom-right corners of the target pixel (clamped to the window; a box less than a pixel off the window's left
 *   or top edge still takes that edge's pixels); mode counts every source pixel that box touches, per band.
 *
 * Shortcuts that return exactly what the kernels would (render.ts copies the source pixel instead of sampling):
 * `index` is the pixel nearest takes; `areaOrIndex` names the one pixel an area box covers (mode returns its value,
 * average 0 + its value).
 */
import type { Resampling, TypedArray } from './types.ts';

/** The pixels read for one source: one array per band plus validity (1 = valid), row-major. */
export interface SourceWindow {
  readonly width: number;
  readonly height: number;
  readonly bands: TypedArray[];
  readonly valid: Uint8Array;
}

/** GDAL's filter radius per method (anGWKFilterRadius). */
export function filterRadius(method: Resampling): number {
  switch (method) {
    case 'bilinear':
      return 1;
    case 'cubic':
      return 2;
    default:
      return 0;
  }
}

/** One chunk's view of a source window and its kernel set-up (GDALWarpKernel::PerformWarp). */
export interface KernelFrame {
  /** the chunk's source window inside the SourceWindow arrays */
  readonly x0: number;
  readonly y0: number;
  readonly width: number;
  readonly height: number;
  /** target pixels per source pixel */
  readonly scaleX: number;
  readonly scaleY: number;
  /** the 2x2 bilinear / 4x4 cubic formulas (both scales >= 0.95) instead of the general kernel */
  readonly use4: boolean;
  /** general kernel taps: i = initX .. radiusX around floor(u - 0.5) */
  readonly initX: number;
  readonly radiusX: number;
  readonly initY: number;
  readonly radiusY: number;
}

/** Snap a downsampling scale whose inverse is within 0.05 of an integer to exactly 1/n, as GDAL does. */
function snapScale(scale: number): number {
  if (scale >= 1) return scale;
  const inv = 1 / scale;
  const n = Math.trunc(inv + 0.5);
  return Math.abs(inv - n) < 0.05 ? 1 / n : scale;
}

/**
 * The kernel set-up of a chunk of `dstW` x `dstH` target pixels whose source window is `srcW` x `srcH` pixels, of
 * which `extraX` / `extraY` are padding around the window's raw extent. `x0`, `y0`: where the chunk window starts
 * in the SourceWindow arrays.
 */
export function kernelFrame(
  method: Resampling,
  x0: number,
  y0: number,
  dstW: number,
  dstH: number,
  srcW: number,
  srcH: number,
  extraX: number,
  extraY: number,
): KernelFrame {
  let scaleX = dstW / (srcW - extraX);
  let scaleY = dstH / (srcH - extraY);
  if (srcW >= dstW && srcW <= dstW + extraX) scaleX = 1;
  if (srcH >= dstH && srcH <= dstH + extraY) scaleY = 1;
  if (!(scaleX > 0) || !Number.isFinite(scaleX)) scaleX = 1;
  if (!(scaleY > 0) || !Number.isFinite(scaleY)) scaleY = 1;
  scaleX = snapScale(scaleX);
  scaleY = snapScale(scaleY);
  const r = filterRadius(method);
  const radiusX = scaleX < 1 ? Math.ceil(r / scaleX) : r;
  const radiusY = scaleY < 1 ? Math.ceil(r / scaleY) : r;
  const parity = (r + 1) % 2;
  return {
    x0,
    y0,
    width: srcW,
    height: srcH,
    scaleX,
    scaleY,
    use4: scaleX >= 0.95 && scaleY >= 0.95,
    initX: parity - radiusX,
    radiusX,
    initY: parity - radiusY,
    radiusY,
  };
}

function weightBilinear(t: number): number {
  const a = Math.abs(t);
  return a <= 1 ? 1 - a : 0;
}

/** Keys cubic convolution, a = -0.5 (GDAL's "cubic"). */
function weightCubic(t: number): number {
  const a = Math.abs(t);
  if (a <= 1) return t * t * (1.5 * a - 2.5) + 1;
  if (a <= 2) return t * t * (-0.5 * a + 2.5) - 4 * a + 2;
  return 0;
}

/** `Sampler.areaOrIndex`: the box covered several pixels and `out` holds the value. */
export const AREA_SAMPLED = -2;

/**
 * Samples one source window for target pixels. Holds its scratch buffers so the per-pixel calls allocate nothing.
 * Positions are continuous pixel coordinates relative to the current frame's window (pixel k covers [k, k + 1)).
 * Each method writes one value per band into `out` and returns true when the target pixel gets a value.
 */
export class Sampler {
  readonly out: Float64Array;
  private readonly win: SourceWindow;
  private readonly nb: number;
  private frame: KernelFrame;
  private wx = new Float64Array(16);
  private readonly local: Float64Array;
  private modeValues = new Float64Array(64);
  private modeCounts = new Int32Array(64);
  /** The area box of the last `box` call: source columns [boxI0, boxI1) and rows [boxJ0, boxJ1) of the window. */
  private boxI0 = 0;
  private boxI1 = 0;
  private boxJ0 = 0;
  private boxJ1 = 0;
  private boxXMin = 0;
  private boxXMax = 0;
  private boxYMin = 0;
  private boxYMax = 0;

  constructor(win: SourceWindow, frame: KernelFrame) {
    this.win = win;
    this.nb = win.bands.length;
    this.out = new Float64Array(this.nb);
    this.local = new Float64Array(this.nb);
    this.frame = frame;
    this.setFrame(frame);
  }

  setFrame(frame: KernelFrame): void {
    this.frame = frame;
    const taps = frame.radiusX - frame.initX + 2;
    if (this.wx.length < taps) this.wx = new Float64Array(taps);
  }

  /** Array index of the source pixel under (u, v), or -1 when it is off the window or invalid (GDAL's centre test). */
  private centre(u: number, v: number): number {
    const f = this.frame;
    // NaN fails both tests
    if (!(u >= 0 && v >= 0)) return -1;
    if (u + 1e-10 > f.width || v + 1e-10 > f.height) return -1;
    let ix = Math.trunc(u + 1e-10);
    let iy = Math.trunc(v + 1e-10);
    if (ix === f.width) ix--;
    if (iy === f.height) iy--;
    const k = (f.y0 + iy) * this.win.width + f.x0 + ix;
    return this.win.valid[k] ? k : -1;
  }

  /** Array index of the pixel `nearest` takes at (u, v), or -1 when it gives nothing (off the window or invalid). */
  index(u: number, v: number): number {
    return this.centre(u, v);
  }

  nearest(u: number, v: number): boolean {
    const k = this.centre(u, v);
    if (k < 0) return false;
    const { bands } = this.win;
    const out = this.out;
    for (let b = 0; b < this.nb; b++) out[b] = bands[b][k];
    return true;
  }

  bilinear(u: number, v: number): boolean {
    if (this.centre(u, v) < 0) return false;
    return this.frame.use4 ? this.bilinear4(u, v) : this.general(u, v, weightBilinear);
  }

  cubic(u: number, v: number): boolean {
    if (this.centre(u, v) < 0) return false;
    return this.frame.use4 ? this.cubic4(u, v) : this.general(u, v, weightCubic);
  }

  /** The 2x2 formula with validity (GWKBilinearResample4Sample). */
  private bilinear4(u: number, v: number): boolean {
    const f = this.frame;
    const { width: stride, bands, valid } = this.win;
    const out = this.out;
    const nb = this.nb;
    let ix = Math.floor(u - 0.5);
    let iy = Math.floor(v - 0.5);
    let rx = 1.5 - (u - ix);
    let ry = 1.5 - (v - iy);
    if (ix === -1) {
      ix = 0;
      rx = 1;
    }
    if (iy === -1) {
      iy = 0;
      ry = 1;
    }
    for (let b = 0; b < nb; b++) out[b] = 0;
    let wsum = 0;
    for (let dj = 0; dj < 2; dj++) {
      const j = iy + dj;
      if (j < 0 || j >= f.height) continue;
      const wy = dj === 0 ? ry : 1 - ry;
      const row = (f.y0 + j) * stride + f.x0;
      for (let di = 0; di < 2; di++) {
        const i = ix + di;
        if (i < 0 || i >= f.width) continue;
        const k = row + i;
        if (!valid[k]) continue;
        const w = (di === 0 ? rx : 1 - rx) * wy;
        wsum += w;
        for (let b = 0; b < nb; b++) out[b] += bands[b][k] * w;
      }
    }
    if (wsum === 1) return true;
    if (wsum < 0.00001) return false;
    for (let b = 0; b < nb; b++) out[b] /= wsum;
    return true;
  }

  /** The 4x4 Keys formula; bilinear when a pixel is off the window or invalid (GWKCubicResample4Sample). */
  private cubic4(u: number, v: number): boolean {
    const f = this.frame;
    const { width: stride, bands, valid } = this.win;
    const ix = Math.trunc(u - 0.5);
    const iy = Math.trunc(v - 0.5);
    if (ix - 1 < 0 || ix + 2 >= f.width || iy - 1 < 0 || iy + 2 >= f.height) return this.bilinear4(u, v);
    const base = (f.y0 + iy - 1) * stride + f.x0 + ix - 1;
    for (let j = 0; j < 4; j++) {
      const k = base + j * stride;
      if (!valid[k] || !valid[k + 1] || !valid[k + 2] || !valid[k + 3]) return this.bilinear4(u, v);
    }
    const dx = u - 0.5 - ix;
    const dy = v - 0.5 - iy;
    const hx = 0.5 * dx;
    const hx2 = hx * dx;
    const cx0 = hx * (-1 + dx * (2 - dx));
    const cx1 = 1 + hx2 * (-5 + 3 * dx);
    const cx2 = hx * (1 + dx * (4 - 3 * dx));
    const cx3 = hx2 * (-1 + dx);
    const hy = 0.5 * dy;
    const hy2 = hy * dy;
    const cy0 = hy * (-1 + dy * (2 - dy));
    const cy1 = 1 + hy2 * (-5 + 3 * dy);
    const cy2 = hy * (1 + dy * (4 - 3 * dy));
    const cy3 = hy2 * (-1 + dy);
    for (let b = 0; b < this.nb; b++) {
      const a = bands[b];
      let k = base;
      const r0 = a[k] * cx0 + a[k + 1] * cx1 + a[k + 2] * cx2 + a[k + 3] * cx3;
      k += stride;
      const r1 = a[k] * cx0 + a[k + 1] * cx1 + a[k + 2] * cx2 + a[k + 3] * cx3;
      k += stride;
      const r2 = a[k] * cx0 + a[k + 1] * cx1 + a[k + 2] * cx2 + a[k + 3] * cx3;
      k += stride;
      const r3 = a[k] * cx0 + a[k + 1] * cx1 + a[k + 2] * cx2 + a[k + 3] * cx3;
      this.out[b] = r0 * cy0 + r1 * cy1 + r2 * cy2 + r3 * cy3;
    }
    return true;
  }

  /** The general separable kernel with stretched filter and renormalised weights (GWKResample). */
  private general(u: number, v: number, weight: (t: number) => number): boolean {
    const f = this.frame;
    const { width: stride, bands, valid } = this.win;
    const out = this.out;
    const local = this.local;
    const nb = this.nb;
    const ix = Math.floor(u - 0.5);
    const iy = Math.floor(v - 0.5);
    const dx = u - 0.5 - ix;
    const dy = v - 0.5 - iy;
    const sx = Math.min(f.scaleX, 1);
    const sy = Math.min(f.scaleY, 1);
    let j = f.initY;
    let jMax = f.radiusY;
    if (iy + j < 0) j = -iy;
    if (iy + jMax >= f.height) jMax = f.height - iy - 1;
    let iMin = f.initX;
    let iMax = f.radiusX;
    if (ix + iMin < 0) iMin = -ix;
    if (ix + iMax >= f.width) iMax = f.width - ix - 1;
    const wx = this.wx;
    for (let i = iMin; i <= iMax; i++) wx[i - iMin] = weight((i - dx) * sx);
    // taps and rows of zero weight add nothing (the sums are bit for bit those of the full loops)
    const wOff = iMin;
    while (iMin <= iMax && wx[iMin - wOff] === 0) iMin++;
    while (iMax >= iMin && wx[iMax - wOff] === 0) iMax--;
    let wsum = 0;
    if (nb === 1) {
      const a = bands[0];
      let acc = 0;
      for (; j <= jMax; j++) {
        const wy = weight((j - dy) * sy);
        if (wy === 0) continue;
        const row = (f.y0 + iy + j) * stride + f.x0 + ix;
        let wRow = 0;
        let sum = 0;
        for (let i = iMin; i <= iMax; i++) {
          const k = row + i;
          if (valid[k] === 0) continue;
          const w = wx[i - wOff];
          wRow += w;
          sum += a[k] * w;
        }
        acc += sum * wy;
        wsum += wRow * wy;
      }
      if (wsum < 0.000001) return false;
      out[0] = wsum < 0.99999 || wsum > 1.00001 ? acc / wsum : acc;
      return true;
    }
    for (let b = 0; b < nb; b++) out[b] = 0;
    for (; j <= jMax; j++) {
      const wy = weight((j - dy) * sy);
      if (wy === 0) continue;
      const row = (f.y0 + iy + j) * stride + f.x0 + ix;
      let wRow = 0;
      for (let b = 0; b < nb; b++) local[b] = 0;
      for (let i = iMin; i <= iMax; i++) {
        const k = row + i;
        if (valid[k] === 0) continue;
        const w = wx[i - wOff];
        wRow += w;
        for (let b = 0; b < nb; b++) local[b] += bands[b][k] * w;
      }
      for (let b = 0; b < nb; b++) out[b] += local[b] * wy;
      wsum += wRow * wy;
    }
    if (wsum < 0.000001) return false;
    if (wsum < 0.99999 || wsum > 1.00001) for (let b = 0; b < nb; b++) out[b] /= wsum;
    return true;
  }

  /**
   * The pixels an area box takes (GWKAverageOrMode): false when a corner is NaN. A box up to one pixel left of or
   * above the window still takes its first column / row (GDAL 3.6).
   */
  private box(xa: number, ya: number, xb: number, yb: number): boolean {
    if (Number.isNaN(xa) || Number.isNaN(xb) || Number.isNaN(ya) || Number.isNaN(yb)) return false;
    const f = this.frame;
    const w = f.width;
    const h = f.height;
    const xMin = Math.min(xa, xb);
    const xMax = Math.max(xa, xb);
    const yMin = Math.min(ya, yb);
    const yMax = Math.max(ya, yb);
    const i0 = Math.max(Math.floor(xMin + 1e-10), 0);
    let i1 = Math.min(Math.ceil(xMax - 1e-10), w);
    const j0 = Math.max(Math.floor(yMin + 1e-10), 0);
    let j1 = Math.min(Math.ceil(yMax - 1e-10), h);
    if (i0 === i1 && i1 < w) i1++;
    if (j0 === j1 && j1 < h) j1++;
    this.boxI0 = i0;
    this.boxI1 = i1;
    this.boxJ0 = j0;
    this.boxJ1 = j1;
    this.boxXMin = xMin;
    this.boxXMax = xMax;
    this.boxYMin = yMin;
    this.boxYMax = yMax;
    return true;
  }

  /**
   * Area methods over the box spanned by the target pixel's transformed top-left (xa, ya) and bottom-right
   * (xb, yb) corners (GWKAverageOrMode).
   */
  area(method: 'average' | 'mode', xa: number, ya: number, xb: number, yb: number): boolean {
    if (!this.box(xa, ya, xb, yb)) return false;
    return this.areaOfBox(method);
  }

  /**
   * `area` without sampling when the box covers one source pixel: returns that pixel's array index (mode would
   * return its value, average 0 + its value: weight 1), -1 when the pixel gets nothing (the one pixel is invalid,
   * the box is empty or a corner is NaN), AREA_SAMPLED when the box covers several pixels and `out` holds what
   * `area` returns.
   */
  areaOrIndex(method: 'average' | 'mode', xa: number, ya: number, xb: number, yb: number): number {
    if (!this.box(xa, ya, xb, yb)) return -1;
    const i0 = this.boxI0;
    const j0 = this.boxJ0;
    const di = this.boxI1 - i0;
    const dj = this.boxJ1 - j0;
    if (di <= 0 || dj <= 0) return -1;
    if (di === 1 && dj === 1) {
      const f = this.frame;
      const k = (f.y0 + j0) * this.win.width + f.x0 + i0;
      return this.win.valid[k] ? k : -1;
    }
    return this.areaOfBox(method) ? AREA_SAMPLED : -1;
  }

  private areaOfBox(method: 'average' | 'mode'): boolean {
    const i0 = this.boxI0;
    const i1 = this.boxI1;
    const j0 = this.boxJ0;
    const j1 = this.boxJ1;
    return method === 'average'
      ? this.average(i0, i1, j0, j1, this.boxXMin, this.boxXMax, this.boxYMin, this.boxYMax)
      : this.mode(i0, i1, j0, j1);
  }

  private average(
    i0: number,
    i1: number,
    j0: number,
    j1: number,
    xMin: number,
    xMax: number,
    yMin: number,
    yMax: number,
  ) {
    const f = this.frame;
    const { width: stride, bands, valid } = this.win;
    const out = this.out;
    const nb = this.nb;
    const wxFirst = i0 + 1 === i1 ? 1 : 1 - (xMin - i0);
    const wxLast = 1 - (i1 - xMax);
    if (nb === 1) {
      // the same sums in the same order, in locals
      const a = bands[0];
      let sum = 0;
      let wsum = 0;
      for (let j = j0; j < j1; j++) {
        const wy = j === j0 ? (j0 + 1 === j1 ? 1 : 1 - (yMin - j0)) : j + 1 === j1 ? 1 - (j1 - yMax) : 1;
        const row = (f.y0 + j) * stride + f.x0;
        for (let i = i0; i < i1; i++) {
          const k = row + i;
          if (!valid[k]) continue;
          const w = (i === i0 ? wxFirst : i + 1 === i1 ? wxLast : 1) * wy;
          wsum += w;
          sum += a[k] * w;
        }
      }
      if (!(wsum > 0)) return false;
      out[0] = sum / wsum;
      return true;
    }
    for (let b = 0; b < nb; b++) out[b] = 0;
    let wsum = 0;
    for (let j = j0; j < j1; j++) {
      const wy = j === j0 ? (j0 + 1 === j1 ? 1 : 1 - (yMin - j0)) : j + 1 === j1 ? 1 - (j1 - yMax) : 1;
      const row = (f.y0 + j) * stride + f.x0;
      for (let i = i0; i < i1; i++) {
        const k = row + i;
        if (!valid[k]) continue;
        const w = (i === i0 ? wxFirst : i + 1 === i1 ? wxLast : 1) * wy;
        wsum += w;
        for (let b = 0; b < nb; b++) out[b] += bands[b][k] * w;
      }
    }
    if (!(wsum > 0)) return false;
    for (let b = 0; b < nb; b++) out[b] /= wsum;
    return true;
  }

  /** Most frequent value per band; on ties the value that first reached the top count wins. */
  private mode(i0: number, i1: number, j0: number, j1: number): boolean {
    const f = this.frame;
    const { width: stride, bands, valid } = this.win;
    const cells = Math.max(0, i1 - i0) * Math.max(0, j1 - j0);
    if (this.modeValues.length < cells) {
      this.modeValues = new Float64Array(cells);
      this.modeCounts = new Int32Array(cells);
    }
    const values = this.modeValues;
    const counts = this.modeCounts;
    let found = false;
    for (let b = 0; b < this.nb; b++) {
      const a = bands[b];
      let n = 0;
      let best = -1;
      for (let j = j0; j < j1; j++) {
        const row = (f.y0 + j) * stride + f.x0;
        for (let i = i0; i < i1; i++) {
          const k = row + i;
          if (!valid[k]) continue;
          const x = a[k];
          let s = 0;
          while (s < n && values[s] !== x) s++;
          if (s === n) {
            values[n] = x;
            counts[n] = 0;
            n++;
          }
          counts[s]++;
          if (best < 0 || counts[s] > counts[best]) best = s;
        }
      }
      if (best < 0) return false;
      this.out[b] = values[best];
      found = true;
    }
    return found;
  }
}

/**
 * Maps target pixel positions to source pixel coordinates, in place: xs/ys hold target pixel coordinates on entry
 * and source pixel coordinates (NaN where the transform fails) on return; `n` entries are used.
 */
export type MapExact = (xs: Float64Array, ys: Float64Array, n: number) => void;

/** A lattice cell [a, b] x [c, d] and the exact transforms at its 3 x 3 nodes. */
interface Cell {
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly d: number;
  /** mid column and row: (a + b) >> 1 and (c + d) >> 1, or a / c for cells too thin to have one */
  readonly m: number;
  readonly n: number;
  /** source coordinates at the nodes, row-major: (a|m|b, c), (a|m|b, n), (a|m|b, d) */
  readonly u: Float64Array;
  readonly v: Float64Array;
  kids?: Cell[];
  /** nothing inside transforms */
  empty?: boolean;
  /** too irregular to interpolate: every position is transformed exactly */
  exact?: boolean;
}

const TOP_CELL_PX = 64;
/** Cells this small that still fail are transformed exactly, a row segment at a time. */
const EXACT_CELL_PX = 8;
/** Refinement that needs more exact transforms than this share of the positions gives up: every row is exact. */
const REFINE_BUDGET = 1 / 8;
/** Thrown inside refinement when the budget is spent. */
const OVER_BUDGET = Symbol('over budget');

/** Quadratic through (x0, f0), (x1, f1), (x2, f2) at x, in Newton form; linear or constant for thin cells. */
function quad(x: number, x0: number, x1: number, x2: number, f0: number, f1: number, f2: number): number {
  if (x2 === x0) return f0;
  if (x1 === x0) return f0 + ((f2 - f0) * (x - x0)) / (x2 - x0);
  const d1 = (f1 - f0) / (x1 - x0);
  const d2 = ((f2 - f1) / (x2 - x1) - d1) / (x2 - x0);
  return f0 + (x - x0) * (d1 + (x - x1) * d2);
}

/**
 * An approximate transform over a lattice of target positions (ox + i, oy + j), 0 <= i < nx, 0 <= j < ny, with a
 * bounded error. Exact transforms are computed at the corners, edge midpoints and centre of 64-pixel cells; a cell
 * is filled by biquadratic interpolation of those 9 nodes when that misses the exact transform at its four quarter
 * points (the centres of its would-be children) by at most `maxErrorPx` source pixels (|du| + |dv|); otherwise it
 * is split in four and refined; cells of 8 pixels that still fail are transformed exactly, and so is everything
 * when refining would cost more than an eighth of the exact transforms. A quadratic interpolant follows the curvature of map
 * projections (conformal ones bend one way along x and the other along y), so few exact transforms give errors
 * far below a pixel. Affine mappings (same CRS) are computed in closed form; `maxErrorPx <= 0` transforms every
 * position exactly.
 */
export class MapperLattice {
  private readonly exact: MapExact;
  private readonly ox: number;
  private readonly oy: number;
  private readonly nx: number;
  private readonly ny: number;
  private readonly maxErrorPx: number;
  private readonly xsRow: Float64Array;
  private readonly ysRow: Float64Array;
  private readonly pt = [new Float64Array(1), new Float64Array(1)] as const;
  private readonly cache = new Map<number, [number, number]>();
  private readonly guess = new Float64Array(2);
  private affine?: Float64Array;
  private cellsY: number[] = [];
  private cellsAcross = 0;
  private cells: Cell[] = [];
  /** every row transformed exactly (maxErrorPx <= 0, or a mapping too irregular to interpolate) */
  private allExact = false;
  private readonly budget: number;
  /** exact transforms computed (a measure of the mapping's cost) */
  exactCount = 0;

  constructor(exact: MapExact, ox: number, oy: number, nx: number, ny: number, maxErrorPx: number, affine: boolean) {
    this.exact = exact;
    this.ox = ox;
    this.oy = oy;
    this.nx = nx;
    this.ny = ny;
    this.maxErrorPx = maxErrorPx;
    this.xsRow = new Float64Array(nx);
    this.ysRow = new Float64Array(nx);
    this.budget = Math.max(256, nx * ny * REFINE_BUDGET);
    if (maxErrorPx <= 0) {
      this.allExact = true;
      return;
    }
    if (affine && this.setAffine()) return;
    try {
      this.build();
    } catch (e) {
      if (e !== OVER_BUDGET) throw e;
      this.cells = [];
      this.allExact = true;
    }
  }

  /** Exact transform of one lattice position (cached: neighbouring cells share nodes). */
  private point(i: number, j: number): [number, number] {
    const key = j * (this.nx + 1) + i;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const xs = this.pt[0];
    const ys = this.pt[1];
    xs[0] = this.ox + i;
    ys[0] = this.oy + j;
    this.exact(xs, ys, 1);
    if (++this.exactCount > this.budget) throw OVER_BUDGET;
    const p: [number, number] = [xs[0], ys[0]];
    this.cache.set(key, p);
    return p;
  }

  private setAffine(): boolean {
    const i1 = Math.max(1, this.nx - 1);
    const j1 = Math.max(1, this.ny - 1);
    const [u0, v0] = this.point(0, 0);
    const [ui, vi] = this.point(i1, 0);
    const [uj, vj] = this.point(0, j1);
    if (![u0, v0, ui, vi, uj, vj].every(Number.isFinite)) return false;
    this.affine = Float64Array.of(u0, (ui - u0) / i1, (uj - u0) / j1, v0, (vi - v0) / i1, (vj - v0) / j1);
    return true;
  }

  private build(): void {
    const breaks = (n: number): number[] => {
      const out: number[] = [];
      for (let k = 0; k < n - 1; k += TOP_CELL_PX) out.push(k);
      out.push(Math.max(0, n - 1));
      if (out.length === 1) out.push(out[0]);
      return out;
    };
    const bx = breaks(this.nx);
    const by = breaks(this.ny);
    // the cells' corners in one batch
    const xs = new Float64Array(bx.length * by.length);
    const ys = new Float64Array(bx.length * by.length);
    for (let q = 0; q < by.length; q++) {
      for (let p = 0; p < bx.length; p++) {
        xs[q * bx.length + p] = this.ox + bx[p];
        ys[q * bx.length + p] = this.oy + by[q];
      }
    }
    this.exact(xs, ys, xs.length);
    this.exactCount += xs.length;
    for (let k = 0; k < xs.length; k++)
      this.cache.set(by[Math.floor(k / bx.length)] * (this.nx + 1) + bx[k % bx.length], [xs[k], ys[k]]);
    this.cellsY = by;
    this.cellsAcross = bx.length - 1;
    for (let q = 0; q + 1 < by.length; q++) {
      for (let p = 0; p + 1 < bx.length; p++) {
        const cell = this.cell(bx[p], bx[p + 1], by[q], by[q + 1]);
        this.refine(cell);
        this.cells.push(cell);
      }
    }
  }

  /** A cell with the exact transforms of its 3 x 3 nodes. */
  private cell(a: number, b: number, c: number, d: number): Cell {
    const m = b - a >= 2 ? (a + b) >> 1 : a;
    const n = d - c >= 2 ? (c + d) >> 1 : c;
    const u = new Float64Array(9);
    const v = new Float64Array(9);
    const xsNodes = [a, m, b];
    const ysNodes = [c, n, d];
    for (let r = 0; r < 3; r++) {
      for (let k = 0; k < 3; k++) {
        const [pu, pv] = this.point(xsNodes[k], ysNodes[r]);
        u[r * 3 + k] = pu;
        v[r * 3 + k] = pv;
      }
    }
    return { a, b, c, d, m, n, u, v };
  }

  /** Biquadratic interpolation of the cell's nodes at (i, j), into out[0], out[1]. */
  private interpolate(cell: Cell, i: number, j: number, out: Float64Array): void {
    const { a, b, c, d, m, n, u, v } = cell;
    const u0 = quad(j, c, n, d, u[0], u[3], u[6]);
    const u1 = quad(j, c, n, d, u[1], u[4], u[7]);
    const u2 = quad(j, c, n, d, u[2], u[5], u[8]);
    const v0 = quad(j, c, n, d, v[0], v[3], v[6]);
    const v1 = quad(j, c, n, d, v[1], v[4], v[7]);
    const v2 = quad(j, c, n, d, v[2], v[5], v[8]);
    out[0] = quad(i, a, m, b, u0, u1, u2);
    out[1] = quad(i, a, m, b, v0, v1, v2);
  }

  /** Accept the cell when interpolation meets the exact transform at its quarter points, else split it in four. */
  private refine(cell: Cell): void {
    const { a, b, c, d, m, n, u } = cell;
    if (b - a < 2 && d - c < 2) return; // every position is a node
    const qx = [(a + m) >> 1, (m + b) >> 1];
    const qy = [(c + n) >> 1, (n + d) >> 1];
    const p = this.guess;
    let err = 0;
    let allNaN = u.every(Number.isNaN);
    for (const j of qy) {
      for (const i of qx) {
        const [eu, ev] = this.point(i, j);
        allNaN &&= Number.isNaN(eu);
        this.interpolate(cell, i, j, p);
        const e = Math.abs(p[0] - eu) + Math.abs(p[1] - ev);
        // NaN anywhere fails the test: the cell is split until its positions are all nodes
        err = e > err || Number.isNaN(e) ? e : err;
      }
    }
    if (err <= this.maxErrorPx) return;
    if (allNaN) {
      cell.empty = true;
      return;
    }
    if (b - a <= EXACT_CELL_PX && d - c <= EXACT_CELL_PX) {
      cell.exact = true;
      return;
    }
    const xsplit = m > a ? [a, m, b] : [a, b];
    const ysplit = n > c ? [c, n, d] : [c, d];
    const kids: Cell[] = [];
    for (let r = 0; r + 1 < ysplit.length; r++) {
      for (let k = 0; k + 1 < xsplit.length; k++)
        kids.push(this.cell(xsplit[k], xsplit[k + 1], ysplit[r], ysplit[r + 1]));
    }
    cell.kids = kids;
    for (const kid of kids) this.refine(kid);
  }

  /**
   * Row `j` when the mapping is affine: out = [u0, du, v0, dv], and `row` gives u0 + du * i and v0 + dv * i (those
   * very expressions) at position i. False when rows are computed another way.
   */
  linearRow(j: number, out: Float64Array): boolean {
    const af = this.affine;
    if (!af || this.allExact) return false;
    out[0] = af[0] + af[2] * j;
    out[1] = af[1];
    out[2] = af[3] + af[5] * j;
    out[3] = af[4];
    return true;
  }

  /** Source coordinates of lattice row `j` (0 <= j < ny) into outU[0..nx), outV[0..nx). */
  row(j: number, outU: Float64Array, outV: Float64Array): void {
    const nx = this.nx;
    if (this.allExact) {
      const xs = this.xsRow;
      const ys = this.ysRow;
      for (let i = 0; i < nx; i++) {
        xs[i] = this.ox + i;
        ys[i] = this.oy + j;
      }
      this.exact(xs, ys, nx);
      this.exactCount += nx;
      outU.set(xs);
      outV.set(ys);
      return;
    }
    const af = this.affine;
    if (af) {
      const u0 = af[0] + af[2] * j;
      const v0 = af[3] + af[5] * j;
      for (let i = 0; i < nx; i++) {
        outU[i] = u0 + af[1] * i;
        outV[i] = v0 + af[4] * i;
      }
      return;
    }
    const cy = this.cellsY;
    let q = 0;
    while (q + 2 < cy.length && j > cy[q + 1]) q++;
    const across = this.cellsAcross;
    for (let p = 0; p < across; p++) this.fill(this.cells[q * across + p], j, outU, outV);
  }

  private fill(cell: Cell, j: number, outU: Float64Array, outV: Float64Array): void {
    const kids = cell.kids;
    if (kids) {
      // kids are row-major, one or two rows of one or two cells
      const across = cell.m > cell.a ? 2 : 1;
      const first = kids.length > across && j > kids[0].d ? across : 0;
      for (let k = first; k < first + across; k++) this.fill(kids[k], j, outU, outV);
      return;
    }
    const { a, b, c, d, m, n, u, v } = cell;
    if (cell.empty) {
      for (let i = a; i <= b; i++) {
        outU[i] = Number.NaN;
        outV[i] = Number.NaN;
      }
      return;
    }
    if (cell.exact) {
      const xs = this.xsRow;
      const ys = this.ysRow;
      const len = b - a + 1;
      for (let k = 0; k < len; k++) {
        xs[k] = this.ox + a + k;
        ys[k] = this.oy + j;
      }
      this.exact(xs, ys, len);
      this.exactCount += len;
      for (let k = 0; k < len; k++) {
        outU[a + k] = xs[k];
        outV[a + k] = ys[k];
      }
      return;
    }
    // the three column values at row j (exact on the node rows), then a quadratic along the row
    let ua: number;
    let um: number;
    let ub: number;
    let va: number;
    let vm: number;
    let vb: number;
    const r = j === c ? 0 : j === d ? 6 : j === n ? 3 : -1;
    if (r >= 0) {
      ua = u[r];
      um = u[r + 1];
      ub = u[r + 2];
      va = v[r];
      vm = v[r + 1];
      vb = v[r + 2];
    } else {
      ua = quad(j, c, n, d, u[0], u[3], u[6]);
      um = quad(j, c, n, d, u[1], u[4], u[7]);
      ub = quad(j, c, n, d, u[2], u[5], u[8]);
      va = quad(j, c, n, d, v[0], v[3], v[6]);
      vm = quad(j, c, n, d, v[1], v[4], v[7]);
      vb = quad(j, c, n, d, v[2], v[5], v[8]);
    }
    outU[a] = ua;
    outV[a] = va;
    if (b === a) return;
    if (m === a) {
      // too thin for a mid column: every position is a node column
      outU[b] = ub;
      outV[b] = vb;
      return;
    }
    // Newton form: f(i) = fa + t * (d1 + (t - (m - a)) * d2), t = i - a
    const h1 = m - a;
    const h2 = b - m;
    const du1 = (um - ua) / h1;
    const dv1 = (vm - va) / h1;
    const du2 = ((ub - um) / h2 - du1) / (b - a);
    const dv2 = ((vb - vm) / h2 - dv1) / (b - a);
    for (let i = a + 1; i < b; i++) {
      const t = i - a;
      const s = t - h1;
      outU[i] = ua + t * (du1 + s * du2);
      outV[i] = va + t * (dv1 + s * dv2);
    }
    outU[m] = um;
    outV[m] = vm;
    outU[b] = ub;
    outV[b] = vb;
  }
}
