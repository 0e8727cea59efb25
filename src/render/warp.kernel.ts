/**
 * The warper's resampling kernels: what value a target pixel takes where it falls in a source.
 * One file over 500 lines because Sampler is one unit: GDAL's warp kernel, whose methods share its frame and buffers.
 *
 * The kernels reproduce GDAL's warp kernel (gdalwarpkernel.cpp), so that a render equals what gdalwarp draws:
 * - A window is warped in "chunks" (see warp.window.ts). Each chunk has one source window and one pair of scales
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
 * Shortcuts that return exactly what the kernels would (warp.loop.ts copies the source pixel instead of sampling):
 * `index` is the pixel nearest takes; `areaOrIndex` names the one pixel an area box covers (mode returns its value,
 * average 0 + its value).
 */
import type { Resampling, TypedArray } from './types.ts';

/**
 * The pixels read for one source: one array per band plus validity (1 = valid), row-major. With `validAt`, `valid`
 * is not filled and validity is asked pixel by pixel (nearest sampling of a decimated window looks at few pixels).
 */
export interface SourceWindow {
  readonly width: number;
  readonly height: number;
  readonly bands: TypedArray[];
  readonly valid: Uint8Array;
  /** when present, `valid` is not filled: this tells a pixel's validity (see sourceWindow in warp.loop.ts) */
  readonly validAt?: (k: number) => boolean;
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
    const validAt = this.win.validAt;
    if (validAt !== undefined) return validAt(k) ? k : -1;
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
