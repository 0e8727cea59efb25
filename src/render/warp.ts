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
    const sx = f.scaleX < 1 ? f.scaleX : 1;
    const sy = f.scaleY < 1 ? f.scaleY : 1;
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
   * Area methods over the box spanned by the target pixel's transformed top-left (xa, ya) and bottom-right
   * (xb, yb) corners (GWKAverageOrMode).
   */
  area(method: 'average' | 'mode', xa: number, ya: number, xb: number, yb: number): boolean {
    const f = this.frame;
    const w = f.width;
    const h = f.height;
    if (Number.isNaN(xa) || Number.isNaN(xb) || Number.isNaN(ya) || Number.isNaN(yb)) return false;
    // a box up to one pixel left of or above the window still takes its first column / row (GDAL 3.6)
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
    return method === 'average' ? this.average(i0, i1, j0, j1, xMin, xMax, yMin, yMax) : this.mode(i0, i1, j0, j1);
  }

  private average(i0: number, i1: number, j0: number, j1: number, xMin: number, xMax: number, yMin: number, yMax: number) {
    const f = this.frame;
    const { width: stride, bands, valid } = this.win;
    const out = this.out;
    const nb = this.nb;
    for (let b = 0; b < nb; b++) out[b] = 0;
    let wsum = 0;
    const wxFirst = i0 + 1 === i1 ? 1 : 1 - (xMin - i0);
    const wxLast = 1 - (i1 - xMax);
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

interface Cell {
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly d: number;
  /** corners: top-left, top-right, bottom-left, bottom-right */
  readonly u: readonly [number, number, number, number];
  readonly v: readonly [number, number, number, number];
  kids?: Cell[];
  /** split point used by the kids */
  splitX?: number;
  splitY?: number;
  /** nothing inside transforms */
  empty?: boolean;
}

const TOP_CELL_PX = 64;

/**
 * An approximate transform over a lattice of target positions (ox + i, oy + j), 0 <= i < nx, 0 <= j < ny, with a
 * bounded error. Exact transforms are computed at the corners of 64-pixel cells; a cell is filled by bilinear
 * interpolation of its corners when the interpolation misses the exact transform at the cell's centre and edge
 * midpoints by at most `maxErrorPx` source pixels (|du| + |dv|), otherwise it is split in four at those points and
 * refined, down to single pixels. Affine
 * mappings (same CRS) are computed in closed form; `maxErrorPx <= 0` transforms every position exactly.
 * Interpolation in two dimensions keeps the error small for far fewer exact transforms than interpolating rows.
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
  private cache = new Map<number, [number, number]>();
  private affine?: Float64Array;
  private cellsX: number[] = [];
  private cellsY: number[] = [];
  private cells: Cell[] = [];
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
    if (maxErrorPx <= 0) return;
    if (affine && this.setAffine()) return;
    this.build();
  }

  /** Exact transform of one lattice position (cached: neighbouring cells share edge points). */
  private point(i: number, j: number): [number, number] {
    const key = j * (this.nx + 1) + i;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const xs = this.pt[0];
    const ys = this.pt[1];
    xs[0] = this.ox + i;
    ys[0] = this.oy + j;
    this.exact(xs, ys, 1);
    this.exactCount++;
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
    this.cellsX = breaks(this.nx);
    this.cellsY = breaks(this.ny);
    const bx = this.cellsX.length;
    const by = this.cellsY.length;
    // lattice corners in one batch
    const xs = new Float64Array(bx * by);
    const ys = new Float64Array(bx * by);
    for (let q = 0; q < by; q++) {
      for (let p = 0; p < bx; p++) {
        xs[q * bx + p] = this.ox + this.cellsX[p];
        ys[q * bx + p] = this.oy + this.cellsY[q];
      }
    }
    this.exact(xs, ys, xs.length);
    this.exactCount += xs.length;
    for (let q = 0; q + 1 < by; q++) {
      for (let p = 0; p + 1 < bx; p++) {
        const k00 = q * bx + p;
        const k10 = k00 + 1;
        const k01 = k00 + bx;
        const k11 = k01 + 1;
        const cell: Cell = {
          a: this.cellsX[p],
          b: this.cellsX[p + 1],
          c: this.cellsY[q],
          d: this.cellsY[q + 1],
          u: [xs[k00], xs[k10], xs[k01], xs[k11]],
          v: [ys[k00], ys[k10], ys[k01], ys[k11]],
        };
        this.refine(cell);
        this.cells.push(cell);
      }
    }
  }

  /**
   * Accept the cell when interpolation meets the exact transform at its centre and at its edge midpoints (testing
   * the centre alone is blind to conformal projections, whose curvatures along x and y cancel there), else split.
   */
  private refine(cell: Cell): void {
    const { a, b, c, d, u, v } = cell;
    if (b - a < 2 && d - c < 2) return; // every position is a corner
    const m = b - a >= 2 ? (a + b) >> 1 : a;
    const n = d - c >= 2 ? (c + d) >> 1 : c;
    const tx = b > a ? (m - a) / (b - a) : 0;
    const ty = d > c ? (n - c) / (d - c) : 0;
    const [uT, vT] = this.point(m, c);
    const [uB, vB] = this.point(m, d);
    const [uL, vL] = this.point(a, n);
    const [uR, vR] = this.point(b, n);
    const [um, vm] = this.point(m, n);
    const uTi = u[0] + (u[1] - u[0]) * tx;
    const vTi = v[0] + (v[1] - v[0]) * tx;
    const uBi = u[2] + (u[3] - u[2]) * tx;
    const vBi = v[2] + (v[3] - v[2]) * tx;
    const err = Math.max(
      Math.abs(uTi - uT) + Math.abs(vTi - vT),
      Math.abs(uBi - uB) + Math.abs(vBi - vB),
      Math.abs(u[0] + (u[2] - u[0]) * ty - uL) + Math.abs(v[0] + (v[2] - v[0]) * ty - vL),
      Math.abs(u[1] + (u[3] - u[1]) * ty - uR) + Math.abs(v[1] + (v[3] - v[1]) * ty - vR),
      Math.abs(uTi + (uBi - uTi) * ty - um) + Math.abs(vTi + (vBi - vTi) * ty - vm),
    );
    // NaN anywhere fails the test: the cell is split until its positions are all exact corners
    if (err <= this.maxErrorPx) return;
    if (Number.isNaN(um) && Number.isNaN(uT) && Number.isNaN(uB) && Number.isNaN(uL) && Number.isNaN(uR) && u.every(Number.isNaN)) {
      cell.empty = true;
      return;
    }
    const splitX = m > a;
    const splitY = n > c;
    const kids: Cell[] = [];
    if (splitX && splitY) {
      kids.push(
        { a, b: m, c, d: n, u: [u[0], uT, uL, um], v: [v[0], vT, vL, vm] },
        { a: m, b, c, d: n, u: [uT, u[1], um, uR], v: [vT, v[1], vm, vR] },
        { a, b: m, c: n, d, u: [uL, um, u[2], uB], v: [vL, vm, v[2], vB] },
        { a: m, b, c: n, d, u: [um, uR, uB, u[3]], v: [vm, vR, vB, v[3]] },
      );
    } else if (splitX) {
      kids.push({ a, b: m, c, d, u: [u[0], uT, u[2], uB], v: [v[0], vT, v[2], vB] });
      kids.push({ a: m, b, c, d, u: [uT, u[1], uB, u[3]], v: [vT, v[1], vB, v[3]] });
    } else {
      kids.push({ a, b, c, d: n, u: [u[0], u[1], uL, uR], v: [v[0], v[1], vL, vR] });
      kids.push({ a, b, c: n, d, u: [uL, uR, u[2], u[3]], v: [vL, vR, v[2], v[3]] });
    }
    cell.kids = kids;
    cell.splitX = splitX ? m : undefined;
    cell.splitY = splitY ? n : undefined;
    for (const k of kids) this.refine(k);
  }

  /** Source coordinates of lattice row `j` (0 <= j < ny) into outU[0..nx), outV[0..nx). */
  row(j: number, outU: Float64Array, outV: Float64Array): void {
    const nx = this.nx;
    if (this.maxErrorPx <= 0) {
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
    const bx = this.cellsX.length - 1;
    for (let p = 0; p < bx; p++) this.fill(this.cells[q * bx + p], j, outU, outV);
  }

  private fill(cell: Cell, j: number, outU: Float64Array, outV: Float64Array): void {
    const kids = cell.kids;
    if (kids) {
      if (kids.length === 4) {
        const top = j <= cell.splitY!;
        this.fill(kids[top ? 0 : 2], j, outU, outV);
        this.fill(kids[top ? 1 : 3], j, outU, outV);
      } else if (cell.splitX !== undefined) {
        this.fill(kids[0], j, outU, outV);
        this.fill(kids[1], j, outU, outV);
      } else {
        this.fill(kids[j <= cell.splitY! ? 0 : 1], j, outU, outV);
      }
      return;
    }
    const { a, b, c, d, u, v } = cell;
    if (cell.empty) {
      for (let i = a; i <= b; i++) {
        outU[i] = Number.NaN;
        outV[i] = Number.NaN;
      }
      return;
    }
    let uL: number;
    let uR: number;
    let vL: number;
    let vR: number;
    if (j === c) {
      uL = u[0];
      uR = u[1];
      vL = v[0];
      vR = v[1];
    } else if (j === d) {
      uL = u[2];
      uR = u[3];
      vL = v[2];
      vR = v[3];
    } else {
      const ty = (j - c) / (d - c);
      uL = u[0] + (u[2] - u[0]) * ty;
      uR = u[1] + (u[3] - u[1]) * ty;
      vL = v[0] + (v[2] - v[0]) * ty;
      vR = v[1] + (v[3] - v[1]) * ty;
    }
    outU[a] = uL;
    outV[a] = vL;
    if (b === a) return;
    const inv = 1 / (b - a);
    const du = (uR - uL) * inv;
    const dv = (vR - vL) * inv;
    for (let i = a + 1; i < b; i++) {
      outU[i] = uL + du * (i - a);
      outV[i] = vL + dv * (i - a);
    }
    outU[b] = uR;
    outV[b] = vR;
  }
}
