/**
 * render(window) = reproject + resample + composite. The one pixel path every view goes through.
 *
 * Each source is warped the way gdalwarp warps it onto the same window, so the two agree pixel for pixel:
 * - overview: the level whose decimation is just below the ratio of the window's extent in source pixels (along x,
 *   from its edges) to its width (gdalwarp's "-ovr AUTO");
 * - chunks: the window is split in halves (longest side first) while the source covers less than half of the window
 *   it would need, or the buffers would pass gdalwarp's default 64 MiB; each chunk has its own source window and
 *   kernel scales (GDALWarpOperation::ComputeSourceWindow / CollectChunkList);
 * - kernels: see warp.ts. Target pixel centres (corners for average and mode) are mapped to source pixels by an
 *   approximate transform with a bounded error (MapperLattice), then sampled and composited.
 * Where a kernel provably takes one source pixel as it is (every pixel of a source on the target's pixel lattice,
 * with nearest; area boxes that cover one pixel), that pixel is copied instead, rows at a time where they line up:
 * the same bytes, several times cheaper. `generalPath` turns the copies off, for tests that compare the two.
 */
import { type BlockFailure, RenderError } from './errors.ts';
import type { Mosaic } from './mosaic.ts';
import type { Raster, RasterInfo } from './raster.ts';
import { createTransformer, type Transformer } from './transform.ts';
import {
  allocTyped,
  bytesPerSample,
  type Composite,
  type Crs,
  type DType,
  dtypeRange,
  type GeoTransform,
  type Grid,
  invertTransform,
  isFloat,
  MiB,
  type Pixels,
  type Resampling,
  type TypedArray,
} from './types.ts';
import {
  AREA_SAMPLED,
  filterRadius,
  kernelFrame,
  type MapExact,
  MapperLattice,
  Sampler,
  type SourceWindow,
} from './warp.ts';

export interface RenderOptions {
  readonly resampling?: Resampling;
  readonly composite?: Composite;
  /** 0-based mosaic band indices (default: all) */
  readonly bands?: readonly number[];
  readonly signal?: AbortSignal;
  /**
   * Max error of the approximate transform, in source pixels (default DEFAULT_MAX_ERROR_PX). 0 transforms every
   * pixel exactly.
   */
  readonly maxErrorPx?: number;
  /**
   * For tests: send every pixel through the kernels, without the copies of renderMosaic's shortcuts (aligned
   * sources, single-pixel boxes). The result is the same either way.
   */
  readonly generalPath?: boolean;
  /**
   * A source block that cannot be decoded: without this the render fails with its `corrupt` error; with it, the
   * failure is reported here and the block's pixels are left empty.
   */
  readonly onBlockError?: (failure: BlockFailure) => void;
}

export interface RenderStats {
  sourcesRead: number;
  sourcesSkipped: number;
  pixelsSampled: number;
}

/**
 * Default error bound of the approximate transform, in source pixels. gdalwarp's default (0.125, a linear fit per
 * row) moves nearest-neighbour picks on about 1% of the pixels against an exact transform; the biquadratic lattice
 * stays within 0.001 px for about 150 exact transforms per 256 x 256 tile, so renders agree with an exact warp.
 */
export const DEFAULT_MAX_ERROR_PX = 0.001;

/** output pixels warped between two yields to the event loop (a few ms of work) */
const YIELD_EVERY_PIXELS = 1 << 16;

/** gdalwarp's default warp memory (GDALWarpOptions.dfWarpMemoryLimit). */
const WARP_MEMORY_BYTES = 64 * MiB;
/** Points per edge when sampling a window's extent (GDAL's SAMPLE_STEPS). */
const SAMPLE_STEPS = 21;

/** GDAL's overview choice: the level whose decimation is just below the target ratio (or within 0.1 of it). */
export function chooseLevel(factors: readonly number[], targetRatio: number): number {
  if (!(targetRatio > 1) || factors.length <= 1) return 0;
  let i = 0;
  for (; i < factors.length - 1; i++) {
    const cur = factors[i];
    const next = factors[i + 1];
    if (cur < targetRatio && next > targetRatio) break;
    if (Math.abs(cur - targetRatio) < 1e-1) break;
  }
  // the loop runs past the coarsest overview only if every overview is still finer than the target
  return Math.min(i, factors.length - 1);
}

const transformerCache = new WeakMap<object, Map<string, Transformer>>();
function cachedTransformer(from: Crs, to: Crs): Transformer {
  let m = transformerCache.get(from);
  if (!m) transformerCache.set(from, (m = new Map()));
  const key = `${to.epsg}:${to.proj4}`;
  let t = m.get(key);
  if (!t) m.set(key, (t = createTransformer(from, to)));
  return t;
}

/**
 * Target pixel coordinates -> source pixel coordinates of a level (full-resolution pixels / factor), minus an
 * offset (the chunk's window origin).
 */
function mapToSource(
  grid: Grid,
  tr: Transformer,
  inv: GeoTransform,
  fx: number,
  fy: number,
  offX = 0,
  offY = 0,
): MapExact {
  const [g0, g1, g2, g3, g4, g5] = grid.transform;
  const [i0, i1, i2, i3, i4, i5] = inv;
  return (xs, ys, n) => {
    for (let k = 0; k < n; k++) {
      const px = xs[k];
      const py = ys[k];
      xs[k] = g0 + px * g1 + py * g2;
      ys[k] = g3 + px * g4 + py * g5;
    }
    if (!tr.identity) tr.forward(n === xs.length ? xs : xs.subarray(0, n), n === ys.length ? ys : ys.subarray(0, n));
    for (let k = 0; k < n; k++) {
      const x = xs[k];
      const y = ys[k];
      xs[k] = (i0 + x * i1 + y * i2) / fx - offX;
      ys[k] = (i3 + x * i4 + y * i5) / fy - offY;
    }
  };
}

/** Source pixel coordinates of a level -> target pixel coordinates (for the reverse sampling fallback). */
function mapToTarget(grid: Grid, tr: Transformer, gt: GeoTransform, fx: number, fy: number): MapExact {
  const [i0, i1, i2, i3, i4, i5] = invertTransform(grid.transform);
  return (xs, ys, n) => {
    for (let k = 0; k < n; k++) {
      const px = xs[k] * fx;
      const py = ys[k] * fy;
      xs[k] = gt[0] + px * gt[1] + py * gt[2];
      ys[k] = gt[3] + px * gt[4] + py * gt[5];
    }
    if (!tr.identity) tr.forward(xs.subarray(0, n), ys.subarray(0, n));
    for (let k = 0; k < n; k++) {
      const x = xs[k];
      const y = ys[k];
      xs[k] = i0 + x * i1 + y * i2;
      ys[k] = i3 + x * i4 + y * i5;
    }
  };
}

interface SourceLevelContext {
  readonly toSource: MapExact;
  /** lazily built reverse mapping, only needed when edge points fail to transform */
  readonly toTarget: () => MapExact;
  readonly width: number;
  readonly height: number;
  readonly radius: number;
}

interface SourceExtent {
  minX: number;
  minY: number;
  maxX: number;
  maxY: number;
  readonly failed: number;
}

/**
 * The extent in source pixels of target rectangle (dx, dy, dw, dh): its edges sampled at 21 points each; when an
 * edge point fails, a 23 x 23 grid plus the source pixels that land inside the rectangle (as GDAL does).
 */
function sourceExtent(
  ctx: SourceLevelContext,
  dx: number,
  dy: number,
  dw: number,
  dh: number,
): SourceExtent | undefined {
  const step = 1 / (SAMPLE_STEPS - 1);
  for (const useGrid of [false, true]) {
    const xs: number[] = [];
    const ys: number[] = [];
    if (!useGrid) {
      for (let r = 0; r <= 1 + step * 0.5; r += step) {
        xs.push(r * dw + dx, r * dw + dx, dx, dx + dw);
        ys.push(dy, dy + dh, r * dh + dy, r * dh + dy);
      }
    } else {
      // GDAL uses the width for both ratios' half-pixel insets here
      const ratio = (k: number) => (k === 0 ? 0.5 / dw : k <= SAMPLE_STEPS ? (k - 1) * step : 1 - 0.5 / dw);
      for (let iy = 0; iy < SAMPLE_STEPS + 2; iy++) {
        for (let ix = 0; ix < SAMPLE_STEPS + 2; ix++) {
          xs.push(ratio(ix) * dw + dx);
          ys.push(ratio(iy) * dh + dy);
        }
      }
    }
    const n = xs.length;
    const px = Float64Array.from(xs);
    const py = Float64Array.from(ys);
    ctx.toSource(px, py, n);
    const e: SourceExtent = { minX: Infinity, minY: Infinity, maxX: -Infinity, maxY: -Infinity, failed: 0 };
    let failed = 0;
    for (let k = 0; k < n; k++) {
      const x = px[k];
      const y = py[k];
      if (!Number.isFinite(x) || !Number.isFinite(y)) {
        failed++;
        continue;
      }
      if (x < e.minX) e.minX = x;
      if (x > e.maxX) e.maxX = x;
      if (y < e.minY) e.minY = y;
      if (y > e.maxY) e.maxY = y;
    }
    if (!useGrid && failed > 0) continue;
    if (failed > n - 5) return undefined;
    const out = { ...e, failed };
    if (useGrid) extendFromSource(ctx, out, dx, dy, dw, dh);
    return out;
  }
  return undefined;
}

/** Source grid points whose transform lands inside the target rectangle extend the extent. */
function extendFromSource(ctx: SourceLevelContext, e: SourceExtent, dx: number, dy: number, dw: number, dh: number) {
  const step = 1 / (SAMPLE_STEPS - 1);
  const ratio = (k: number, size: number) =>
    k === 0 ? 0.5 / size : k <= SAMPLE_STEPS ? (k - 1) * step : 1 - 0.5 / size;
  const sx: number[] = [];
  const sy: number[] = [];
  for (let iy = 0; iy < SAMPLE_STEPS + 2; iy++) {
    for (let ix = 0; ix < SAMPLE_STEPS + 2; ix++) {
      sx.push(ratio(ix, ctx.width) * ctx.width);
      sy.push(ratio(iy, ctx.height) * ctx.height);
    }
  }
  const tx = Float64Array.from(sx);
  const ty = Float64Array.from(sy);
  ctx.toTarget()(tx, ty, tx.length);
  for (let k = 0; k < tx.length; k++) {
    if (!(tx[k] >= dx && tx[k] <= dx + dw && ty[k] >= dy && ty[k] <= dy + dh)) continue;
    e.minX = Math.min(e.minX, sx[k]);
    e.minY = Math.min(e.minY, sy[k]);
    e.maxX = Math.max(e.maxX, sx[k]);
    e.maxY = Math.max(e.maxY, sy[k]);
  }
}

/** One chunk: a target rectangle, its source window (level pixels) and the padding part of that window. */
export interface SourceChunk {
  readonly dx: number;
  readonly dy: number;
  readonly dw: number;
  readonly dh: number;
  readonly sx: number;
  readonly sy: number;
  readonly sw: number;
  readonly sh: number;
  readonly extraX: number;
  readonly extraY: number;
}

interface SourceWindowPlan {
  readonly sx: number;
  readonly sy: number;
  readonly sw: number;
  readonly sh: number;
  readonly extraX: number;
  readonly extraY: number;
  /** share of the unclamped window that lies on the source */
  readonly fill: number;
}

function roundIfClose(x: number): number {
  const r = Math.round(x);
  return Math.abs(r - x) < 1e-6 ? r : x;
}

/** GDALWarpOperation::ComputeSourceWindow for one target rectangle. undefined: the rectangle cannot be mapped. */
function computeSourceWindow(
  ctx: SourceLevelContext,
  dx: number,
  dy: number,
  dw: number,
  dh: number,
): SourceWindowPlan | undefined {
  const e = sourceExtent(ctx, dx, dy, dw, dh);
  if (!e) return undefined;
  const W = ctx.width;
  const H = ctx.height;
  if (e.minX > W || e.maxX < 0 || e.minY > H || e.maxY < 0)
    return { sx: 0, sy: 0, sw: 0, sh: 0, extraX: 0, extraY: 0, fill: 0 };
  const minX = roundIfClose(e.minX);
  const minY = roundIfClose(e.minY);
  const maxX = roundIfClose(e.maxX);
  const maxY = roundIfClose(e.maxY);
  const scaleX = Math.max(1e-3, dw / (maxX - minX));
  const scaleY = Math.max(1e-3, dh / (maxY - minY));
  let rx = scaleX < 0.95 ? Math.ceil(ctx.radius / scaleX) : ctx.radius;
  let ry = scaleY < 0.95 ? Math.ceil(ctx.radius / scaleY) : ctx.radius;
  if (e.failed > 0) {
    rx += 10;
    ry += 10;
  }
  const minXc = Math.trunc(Math.max(0, minX));
  const minYc = Math.trunc(Math.max(0, minY));
  const maxXc = Math.trunc(Math.min(Math.ceil(maxX), W));
  const maxYc = Math.trunc(Math.min(Math.ceil(maxY), H));
  const rawX = Math.max(0, Math.min(W - minXc, maxX - minX));
  const rawY = Math.max(0, Math.min(H - minYc, maxY - minY));
  let sx: number;
  let sw: number;
  if (maxXc - minXc > 0.9 * W) {
    sx = 0;
    sw = W;
  } else {
    sx = Math.max(0, Math.min(minXc - rx, W));
    sw = Math.max(0, Math.min(W - sx, maxXc - sx + rx));
  }
  let sy: number;
  let sh: number;
  if (maxYc - minYc > 0.9 * H) {
    sy = 0;
    sh = H;
  } else {
    sy = Math.max(0, Math.min(minYc - ry, H));
    sh = Math.max(0, Math.min(H - sy, maxYc - sy + ry));
  }
  const fill = (sw * sh) / Math.max(1, (maxX - minX + 2 * rx) * (maxY - minY + 2 * ry));
  return { sx, sy, sw, sh, extraX: sw - rawX, extraY: sh - rawY, fill };
}

/** GDALWarpOperation::CollectChunkList: split while the source fills under half its window, or memory is short. */
function collectChunks(
  ctx: SourceLevelContext,
  cost: { srcBits: number; dstBits: number },
  dx: number,
  dy: number,
  dw: number,
  dh: number,
  out: SourceChunk[],
): void {
  const win = computeSourceWindow(ctx, dx, dy, dw, dh);
  if (!win || win.sw <= 0 || win.sh <= 0) return;
  const memoryBytes = (cost.srcBits * win.sw * win.sh + cost.dstBits * dw * dh) / 8;
  if (
    (memoryBytes > WARP_MEMORY_BYTES && (dw > 2 || dh > 2)) ||
    (win.fill > 0 && win.fill < 0.5 && (dw > 100 || dh > 100))
  ) {
    if (dw > dh) {
      const c1 = Math.floor(dw / 2);
      collectChunks(ctx, cost, dx, dy, c1, dh, out);
      collectChunks(ctx, cost, dx + c1, dy, dw - c1, dh, out);
    } else {
      const c1 = Math.floor(dh / 2);
      collectChunks(ctx, cost, dx, dy, dw, c1, out);
      collectChunks(ctx, cost, dx, dy + c1, dw, dh - c1, out);
    }
    return;
  }
  out.push({ dx, dy, dw, dh, sx: win.sx, sy: win.sy, sw: win.sw, sh: win.sh, extraX: win.extraX, extraY: win.extraY });
}

export interface SourcePlan {
  readonly level: number;
  readonly factorX: number;
  readonly factorY: number;
  /** window to read, in level pixels: the union of the chunks' source windows */
  readonly x0: number;
  readonly y0: number;
  readonly w: number;
  readonly h: number;
  /** target rectangles with their source windows, in warp order */
  readonly chunks: readonly SourceChunk[];
}

/** Plan the read and warp of one source for a target grid: overview level and chunks (coordinate math only). */
export function planSource(grid: Grid, raster: Raster, resampling: Resampling): SourcePlan | undefined {
  const info = raster.info;
  const tr = cachedTransformer(grid.crs, info.crs);
  const inv = invertTransform(info.transform);
  const levelContext = (fx: number, fy: number, width: number, height: number): SourceLevelContext => {
    let back: MapExact | undefined;
    return {
      toSource: mapToSource(grid, tr, inv, fx, fy),
      toTarget: () => (back ??= mapToTarget(grid, cachedTransformer(info.crs, grid.crs), info.transform, fx, fy)),
      width,
      height,
      radius: filterRadius(resampling),
    };
  };
  // overview: the window's x extent in full-resolution source pixels per target pixel
  const full = levelContext(1, 1, info.width, info.height);
  const extent = sourceExtent(full, 0, 0, grid.width, grid.height);
  if (!extent) return undefined;
  if (extent.minX > info.width || extent.maxX < 0 || extent.minY > info.height || extent.maxY < 0) return undefined;
  const level = chooseLevel(
    info.levels.map((l) => l.factorX),
    (extent.maxX - extent.minX) / grid.width,
  );
  const lvl = info.levels[level];
  const ctx = level === 0 ? full : levelContext(lvl.factorX, lvl.factorY, lvl.width, lvl.height);
  const bits = bytesPerSample(info.dtype) * 8;
  const cost = {
    srcBits: (bits + (info.nodata !== undefined ? 1 : 0)) * info.bandCount + (info.hasMask ? 1 : 0),
    dstBits: (bits + 1) * info.bandCount,
  };
  const chunks: SourceChunk[] = [];
  collectChunks(ctx, cost, 0, 0, grid.width, grid.height, chunks);
  if (chunks.length === 0) return undefined;
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const c of chunks) {
    x0 = Math.min(x0, c.sx);
    y0 = Math.min(y0, c.sy);
    x1 = Math.max(x1, c.sx + c.sw);
    y1 = Math.max(y1, c.sy + c.sh);
  }
  return { level, factorX: lvl.factorX, factorY: lvl.factorY, x0, y0, w: x1 - x0, h: y1 - y0, chunks };
}

/** Elements of the largest scratch buffer kept for later renders (larger windows allocate theirs and drop them). */
const SCRATCH_KEEP_ELEMENTS = 1 << 20;
/** Scratch sets kept between renders (each render in flight takes one). */
const SCRATCH_KEEP_SETS = 4;
/** Runs shorter than this are copied pixel by pixel rather than with `set`. */
const RUN_SET_MIN = 16;

/** Buffers one render call works in and gives back; never part of its result. */
class RenderScratch {
  private validBuf = new Uint8Array(0);
  private accBufs: Float64Array[] = [];
  private countsBuf = new Uint32Array(0);
  private rowsBuf = new Float64Array(0);
  private idxBuf = new Int32Array(0);

  valid(n: number): Uint8Array {
    if (this.validBuf.length < n) this.validBuf = new Uint8Array(n);
    return this.validBuf.subarray(0, n);
  }

  acc(nb: number, n: number): Float64Array[] {
    const out: Float64Array[] = [];
    for (let b = 0; b < nb; b++) {
      if (!(this.accBufs[b]?.length >= n)) this.accBufs[b] = new Float64Array(n);
      out.push(this.accBufs[b].subarray(0, n));
    }
    return out;
  }

  counts(n: number): Uint32Array {
    if (this.countsBuf.length < n) this.countsBuf = new Uint32Array(n);
    return this.countsBuf.subarray(0, n);
  }

  /** Four rows of `len` positions. */
  rows(len: number): [Float64Array, Float64Array, Float64Array, Float64Array] {
    if (this.rowsBuf.length < 4 * len) this.rowsBuf = new Float64Array(4 * len);
    const r = this.rowsBuf;
    return [r.subarray(0, len), r.subarray(len, 2 * len), r.subarray(2 * len, 3 * len), r.subarray(3 * len, 4 * len)];
  }

  idx(len: number): Int32Array {
    if (this.idxBuf.length < len) this.idxBuf = new Int32Array(len);
    return this.idxBuf;
  }

  /** Drop the buffers too large to keep. */
  trim(): void {
    if (this.validBuf.length > SCRATCH_KEEP_ELEMENTS) this.validBuf = new Uint8Array(0);
    this.accBufs = this.accBufs.filter((a) => a.length <= SCRATCH_KEEP_ELEMENTS);
    if (this.countsBuf.length > SCRATCH_KEEP_ELEMENTS) this.countsBuf = new Uint32Array(0);
    if (this.rowsBuf.length > SCRATCH_KEEP_ELEMENTS) this.rowsBuf = new Float64Array(0);
    if (this.idxBuf.length > SCRATCH_KEEP_ELEMENTS) this.idxBuf = new Int32Array(0);
  }
}

/** Scratch sets free for the next render of this thread (filled as renders finish, bounded). */
const scratchFree: RenderScratch[] = [];

/**
 * Where the sources' values go: straight into arrays of the output type for 'first' and 'last' (one value per
 * pixel survives, stored as the output conversion would store it), Float64 accumulators for the other rules.
 * The output conversion: integers round half up (as GDAL does) and clamp to the type; floats are stored as they are.
 */
class Composer {
  /** 255 where a pixel has a value: the result's mask */
  readonly mask: Uint8Array;
  validCount = 0;
  private readonly composite: Composite;
  private readonly dtype: DType;
  private readonly nb: number;
  private readonly n: number;
  private readonly float: boolean;
  private readonly lo: number;
  private readonly hi: number;
  private readonly fill: number;
  /** the result's bands ('first', 'last') */
  private readonly out: TypedArray[] | undefined;
  private readonly acc: Float64Array[] | undefined;
  private readonly counts: Uint32Array | undefined;
  private readonly px: Float64Array;

  constructor(dtype: DType, nb: number, n: number, composite: Composite, fill: number, scratch: RenderScratch) {
    this.composite = composite;
    this.dtype = dtype;
    this.nb = nb;
    this.n = n;
    this.float = isFloat(dtype);
    [this.lo, this.hi] = dtypeRange(dtype);
    this.fill = fill;
    this.mask = new Uint8Array(n);
    this.px = new Float64Array(nb);
    if (composite === 'first' || composite === 'last') {
      this.out = Array.from({ length: nb }, () => {
        const a = allocTyped(dtype, n);
        if (fill !== 0) a.fill(fill);
        return a;
      });
    } else {
      this.acc = scratch.acc(nb, n);
      if (composite === 'mean' || composite === 'count') this.counts = scratch.counts(n);
    }
  }

  /** `x` into `out[o]` as the output type holds it. */
  private store(out: TypedArray, o: number, x: number): void {
    if (this.float) {
      out[o] = x;
      return;
    }
    const r = Math.floor(x + 0.5);
    out[o] = Math.min(Math.max(r, this.lo), this.hi);
  }

  /** One source's value per band for pixel `o`. */
  put(o: number, px: Float64Array): void {
    const mask = this.mask;
    const nb = this.nb;
    const out = this.out;
    if (out) {
      if (mask[o] === 0) {
        mask[o] = 255;
        this.validCount++;
      } else if (this.composite === 'first') {
        return;
      }
      for (let b = 0; b < nb; b++) this.store(out[b], o, px[b]);
      return;
    }
    const acc = this.acc!;
    const composite = this.composite;
    if (mask[o] === 0) {
      mask[o] = 255;
      this.validCount++;
      for (let b = 0; b < nb; b++) acc[b][o] = composite === 'count' ? 1 : px[b];
      if (this.counts) this.counts[o] = 1;
      return;
    }
    switch (composite) {
      case 'min':
        for (let b = 0; b < nb; b++) if (px[b] < acc[b][o]) acc[b][o] = px[b];
        break;
      case 'max':
        for (let b = 0; b < nb; b++) if (px[b] > acc[b][o]) acc[b][o] = px[b];
        break;
      case 'mean':
        for (let b = 0; b < nb; b++) acc[b][o] += px[b];
        this.counts![o]++;
        break;
      case 'count':
        for (let b = 0; b < nb; b++) acc[b][o] += 1;
        break;
      default:
        break;
    }
  }

  /** Source pixels k .. k + m of `bands` into pixels o .. o + m, as they are (a `verbatim` source). */
  private copySegment(o: number, k: number, m: number, bands: readonly TypedArray[]): void {
    const out = this.out!;
    const mask = this.mask;
    for (let b = 0; b < this.nb; b++) {
      const src = bands[b];
      const dst = out[b];
      if (m >= RUN_SET_MIN) dst.set(src.subarray(k, k + m), o);
      else for (let i = 0; i < m; i++) dst[o + i] = src[k + i];
    }
    if (this.composite === 'first') {
      // the caller takes only pixels without a value
      mask.fill(255, o, o + m);
      this.validCount += m;
      return;
    }
    for (let i = o; i < o + m; i++) {
      if (mask[i] === 0) {
        mask[i] = 255;
        this.validCount++;
      }
    }
  }

  /** `put` of source pixel k of `bands` (0 + its value when `plusZero`) for pixel o. */
  private take(o: number, k: number, bands: readonly TypedArray[], plusZero: boolean): void {
    const px = this.px;
    const nb = this.nb;
    if (plusZero) for (let b = 0; b < nb; b++) px[b] = bands[b][k] + 0;
    else for (let b = 0; b < nb; b++) px[b] = bands[b][k];
    this.put(o, px);
  }

  /**
   * For each c < len with idx[c] >= 0: `put` of source pixel idx[c] of `bands` (0 + its value when `plusZero`) for
   * pixel o0 + c. With `verbatim` (the output type holds every source value unchanged), runs of consecutive source
   * pixels are copied as they are. Returns the pixels taken.
   */
  takeRow(
    o0: number,
    idx: Int32Array,
    len: number,
    bands: readonly TypedArray[],
    plusZero: boolean,
    verbatim: boolean,
  ): number {
    const mask = this.mask;
    const first = this.composite === 'first';
    let taken = 0;
    if (this.out && verbatim && !plusZero) {
      let c = 0;
      while (c < len) {
        const k = idx[c];
        if (k < 0 || (first && mask[o0 + c] !== 0)) {
          c++;
          continue;
        }
        let e = c + 1;
        while (e < len && idx[e] === k + (e - c) && !(first && mask[o0 + e] !== 0)) e++;
        this.copySegment(o0 + c, k, e - c, bands);
        taken += e - c;
        c = e;
      }
      return taken;
    }
    for (let c = 0; c < len; c++) {
      const k = idx[c];
      if (k < 0) continue;
      const o = o0 + c;
      if (first && mask[o] !== 0) continue;
      this.take(o, k, bands, plusZero);
      taken++;
    }
    return taken;
  }

  /** `takeRow` of the source pixels k0 + c (c < len) that are valid. Returns the pixels taken. */
  takeRun(
    o0: number,
    k0: number,
    len: number,
    bands: readonly TypedArray[],
    valid: Uint8Array,
    plusZero: boolean,
    verbatim: boolean,
  ): number {
    const mask = this.mask;
    const first = this.composite === 'first';
    let taken = 0;
    if (this.out && verbatim && !plusZero) {
      let c = 0;
      while (c < len) {
        while (c < len && (valid[k0 + c] === 0 || (first && mask[o0 + c] !== 0))) c++;
        let e = c;
        while (e < len && valid[k0 + e] !== 0 && !(first && mask[o0 + e] !== 0)) e++;
        if (e > c) this.copySegment(o0 + c, k0 + c, e - c, bands);
        taken += e - c;
        c = e;
      }
      return taken;
    }
    for (let c = 0; c < len; c++) {
      const k = k0 + c;
      if (valid[k] === 0) continue;
      const o = o0 + c;
      if (first && mask[o] !== 0) continue;
      this.take(o, k, bands, plusZero);
      taken++;
    }
    return taken;
  }

  /** The result's bands. */
  finish(): TypedArray[] {
    if (this.out) return this.out;
    const { n, mask, counts, float, lo, hi, fill } = this;
    const mean = this.composite === 'mean';
    return this.acc!.map((a) => {
      const out = allocTyped(this.dtype, n);
      if (fill !== 0) out.fill(fill);
      for (let i = 0; i < n; i++) {
        if (mask[i] === 0) continue;
        let x = mean ? a[i] / counts![i] : a[i];
        if (!float) {
          x = Math.floor(x + 0.5);
          x = Math.min(Math.max(x, lo), hi);
        }
        out[i] = x;
      }
      return out;
    });
  }
}

/** True when every value of `src` is stored unchanged by the output conversion into `dst`. */
function storesVerbatim(src: DType, dst: DType): boolean {
  // a float output stores the value as assignment (and `set`) convert it
  if (isFloat(dst)) return true;
  if (isFloat(src)) return false;
  const [slo, shi] = dtypeRange(src);
  const [dlo, dhi] = dtypeRange(dst);
  return slo >= dlo && shi <= dhi;
}

/**
 * The plan's level lies on the target's pixel lattice: same CRS, same pixel size (1e-9 relative), no rotation, an
 * integer pixel offset (within 1e-6).
 */
function alignedLevel(grid: Grid, info: RasterInfo, plan: SourcePlan): boolean {
  if (grid.crs.epsg !== info.crs.epsg) return false;
  const g = grid.transform;
  const t = info.transform;
  if (g[2] !== 0 || g[4] !== 0 || t[2] !== 0 || t[4] !== 0) return false;
  const rx = t[1] * plan.factorX;
  const ry = t[5] * plan.factorY;
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
function centreCopyTolerance(src: DType, dst: DType, composite: Composite): number {
  if (isFloat(src)) return -1;
  if (isFloat(dst) || composite === 'mean') return 0;
  const [lo, hi] = dtypeRange(src);
  return 1e-3 / (hi - lo);
}

/** How far from pixel centres nearest may sample a row and still be copied as a run (any distance under 0.25 is). */
const NEAREST_RUN_TOL = 1e-6;

/**
 * The row u(i) = u0 + du * i, v(i) = v0 + dv * i (i < n; lin = [u0, du, v0, dv], evaluated as written) when every
 * position lies within `tol` of the centre of source pixel (ix + i, iy) along each axis (tol 0: exactly on it):
 * into `at` = [ix, iy]. False otherwise.
 */
function centreRun(lin: Float64Array, n: number, tol: number, at: Int32Array): boolean {
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
const AREA_RUN_TOL = 5e-11;

/**
 * Two rows of corners, `top` and `below` ([u0, du, v0, dv] as in centreRun, n corners each), when every corner lies
 * within AREA_RUN_TOL of source pixel corner (ix + i, iy) (top) and (ix + i, iy + 1) (below), rounding of the
 * box's own arithmetic included: into `at` = [ix, iy]. Then target pixel c's box is source pixel (ix + c, iy).
 */
function cornerRun(top: Float64Array, below: Float64Array, n: number, at: Int32Array): boolean {
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

/**
 * Render `grid` from the mosaic. Returns the mosaic's dtype, one array per requested band, and a validity mask.
 *
 * Where a kernel provably returns one source pixel's value the pixel is copied instead of sampled (the result is
 * the same, bit for bit): nearest always (runs of consecutive source pixels, e.g. every row of a source on the
 * target's lattice, are copied with `set`); average and mode where the box covers a single source pixel; bilinear
 * and cubic on sources aligned with the target grid, at pixel centres (see centreCopyTolerance).
 */
export async function renderMosaic(
  mosaic: Mosaic,
  grid: Grid,
  options: RenderOptions = {},
  stats?: RenderStats,
): Promise<Pixels> {
  const resampling = options.resampling ?? mosaic.resampling;
  const composite = options.composite ?? mosaic.composite;
  const bandSel = options.bands ?? mosaic.bandIndices.map((_, i) => i);
  const srcBands = bandSel.map((b) => {
    const s = mosaic.bandIndices[b];
    if (s === undefined)
      throw new RenderError('bad-request', `band ${b + 1} does not exist (the mosaic has ${mosaic.bandCount})`);
    return s;
  });
  const scratch = scratchFree.pop() ?? new RenderScratch();
  try {
    return await renderWith(mosaic, grid, resampling, composite, srcBands, options, scratch, stats);
  } finally {
    scratch.trim();
    if (scratchFree.length < SCRATCH_KEEP_SETS) scratchFree.push(scratch);
  }
}

async function renderWith(
  mosaic: Mosaic,
  grid: Grid,
  resampling: Resampling,
  composite: Composite,
  srcBands: readonly number[],
  options: RenderOptions,
  scratch: RenderScratch,
  stats: RenderStats | undefined,
): Promise<Pixels> {
  const { width, height } = grid;
  const n = width * height;
  const comp = new Composer(mosaic.dtype, srcBands.length, n, composite, mosaic.nodata ?? 0, scratch);
  const mask = comp.mask;
  const first = composite === 'first';
  const maxErr = options.maxErrorPx ?? DEFAULT_MAX_ERROR_PX;
  const area = resampling === 'average' || resampling === 'mode';
  const shortcuts = options.generalPath !== true;
  const idx = scratch.idx(width);
  const lin = new Float64Array(4);
  const linBelow = new Float64Array(4);
  const at = new Int32Array(2);
  // mapped positions of one row (centres) or two rows of corners (area methods)
  let [u0, v0, u1, v1] = scratch.rows(width + 1);
  // a large window is warped in slices with a yield to the event loop between them (other requests go on)
  let sinceYield = 0;
  const pace = async (pixels: number) => {
    sinceYield += pixels;
    if (sinceYield < YIELD_EVERY_PIXELS) return;
    sinceYield = 0;
    await new Promise<void>((r) => setImmediate(r));
    options.signal?.throwIfAborted();
  };

  for (const src of mosaic.sources) {
    options.signal?.throwIfAborted();
    if (first && comp.validCount === n) break;
    const raster = src.raster;
    const info = raster.info;
    const plan = planSource(grid, raster, resampling);
    if (!plan) {
      if (stats) stats.sourcesSkipped++;
      continue;
    }
    if (stats) stats.sourcesRead++;
    const win = await raster.readWindow(
      plan.level,
      plan.x0,
      plan.y0,
      plan.w,
      plan.h,
      srcBands,
      options.signal,
      options.onBlockError,
    );
    const sw = sourceWindow(win.bands, win.mask, plan.w, plan.h, info.nodata, scratch.valid(plan.w * plan.h));
    const tr = cachedTransformer(grid.crs, info.crs);
    const inv = invertTransform(info.transform);
    const verbatim = storesVerbatim(info.dtype, mosaic.dtype);
    // average returns 0 + the value of a single pixel (-0 becomes 0)
    const plusZero = resampling === 'average' && isFloat(info.dtype);
    const aligned = shortcuts && alignedLevel(grid, info, plan);
    const centreTol =
      aligned && (resampling === 'bilinear' || resampling === 'cubic')
        ? centreCopyTolerance(info.dtype, mosaic.dtype, composite)
        : -1;
    let sampler: Sampler | undefined;
    for (const ch of plan.chunks) {
      const frame = kernelFrame(
        resampling,
        ch.sx - plan.x0,
        ch.sy - plan.y0,
        ch.dw,
        ch.dh,
        ch.sw,
        ch.sh,
        ch.extraX,
        ch.extraY,
      );
      if (sampler) sampler.setFrame(frame);
      else sampler = new Sampler(sw, frame);
      const s = sampler;
      const px = s.out;
      const exact = mapToSource(grid, tr, inv, plan.factorX, plan.factorY, ch.sx, ch.sy);
      const dw = ch.dw;
      let taken = 0;
      if (area) {
        const method = resampling as 'average' | 'mode';
        // corners (dx + i, dy + j), 0 <= i <= dw, 0 <= j <= dh
        const mapper = new MapperLattice(exact, ch.dx, ch.dy, dw + 1, ch.dh + 1, maxErr, tr.identity);
        // the lattice row held in u0 / v0
        let top = -1;
        for (let r = 0; r < ch.dh; r++) {
          await pace(dw);
          const base = (ch.dy + r) * width + ch.dx;
          if (
            aligned &&
            mapper.linearRow(r, lin) &&
            mapper.linearRow(r + 1, linBelow) &&
            cornerRun(lin, linBelow, dw + 1, at)
          ) {
            // every box is source pixel (ix + c, iy); one left of / above the window takes its first column / row
            const ix = at[0];
            const iy = at[1];
            if (iy < -1 || iy >= frame.height) continue;
            const row = (frame.y0 + Math.max(iy, 0)) * sw.width + frame.x0;
            const c0 = Math.max(0, -ix);
            const c1 = Math.min(dw, frame.width - ix);
            if (c1 > c0)
              taken += comp.takeRun(base + c0, row + ix + c0, c1 - c0, sw.bands, sw.valid, plusZero, verbatim);
            const cLeft = -ix - 1;
            if (cLeft >= 0 && cLeft < dw && frame.width > 0) {
              idx[0] = sw.valid[row] ? row : -1;
              taken += comp.takeRow(base + cLeft, idx, 1, sw.bands, plusZero, verbatim);
            }
            continue;
          }
          if (top !== r) mapper.row(r, u0, v0);
          mapper.row(r + 1, u1, v1);
          top = r + 1;
          if (shortcuts) {
            for (let c = 0; c < dw; c++) {
              idx[c] = -1;
              const o = base + c;
              if (first && mask[o] !== 0) continue;
              const k = s.areaOrIndex(method, u0[c], v0[c], u1[c + 1], v1[c + 1]);
              if (k >= 0) {
                idx[c] = k;
              } else if (k === AREA_SAMPLED) {
                comp.put(o, px);
                taken++;
              }
            }
            taken += comp.takeRow(base, idx, dw, sw.bands, plusZero, verbatim);
          } else {
            for (let c = 0; c < dw; c++) {
              const o = base + c;
              if (first && mask[o] !== 0) continue;
              if (!s.area(method, u0[c], v0[c], u1[c + 1], v1[c + 1])) continue;
              comp.put(o, px);
              taken++;
            }
          }
          const tu = u0;
          u0 = u1;
          u1 = tu;
          const tv = v0;
          v0 = v1;
          v1 = tv;
        }
      } else {
        const kind = resampling === 'nearest' ? 0 : resampling === 'bilinear' ? 1 : 2;
        const tol = frame.use4 ? centreTol : -1;
        const runTol = !aligned ? -1 : kind === 0 ? NEAREST_RUN_TOL : tol;
        const mapper = new MapperLattice(exact, ch.dx + 0.5, ch.dy + 0.5, dw, ch.dh, maxErr, tr.identity);
        for (let r = 0; r < ch.dh; r++) {
          await pace(dw);
          const base = (ch.dy + r) * width + ch.dx;
          if (runTol >= 0 && mapper.linearRow(r, lin) && centreRun(lin, dw, runTol, at)) {
            // the whole row takes source row iy, columns ix .. ix + dw (those inside the chunk's window)
            const ix = at[0];
            const iy = at[1];
            if (iy < 0 || iy >= frame.height) continue;
            const c0 = Math.max(0, -ix);
            const c1 = Math.min(dw, frame.width - ix);
            if (c1 <= c0) continue;
            const k0 = (frame.y0 + iy) * sw.width + frame.x0 + ix;
            taken += comp.takeRun(base + c0, k0 + c0, c1 - c0, sw.bands, sw.valid, false, verbatim);
            continue;
          }
          mapper.row(r, u0, v0);
          if (kind === 0 && shortcuts) {
            for (let c = 0; c < dw; c++) idx[c] = first && mask[base + c] !== 0 ? -1 : s.index(u0[c], v0[c]);
            taken += comp.takeRow(base, idx, dw, sw.bands, false, verbatim);
          } else if (tol >= 0) {
            for (let c = 0; c < dw; c++) {
              idx[c] = -1;
              const o = base + c;
              if (first && mask[o] !== 0) continue;
              const u = u0[c];
              const v = v0[c];
              const k = s.index(u, v);
              if (k < 0) continue;
              if (Math.abs(u - Math.floor(u) - 0.5) <= tol && Math.abs(v - Math.floor(v) - 0.5) <= tol) {
                idx[c] = k;
                continue;
              }
              if (!(kind === 1 ? s.bilinear(u, v) : s.cubic(u, v))) continue;
              comp.put(o, px);
              taken++;
            }
            taken += comp.takeRow(base, idx, dw, sw.bands, false, verbatim);
          } else {
            for (let c = 0; c < dw; c++) {
              const o = base + c;
              if (first && mask[o] !== 0) continue;
              const u = u0[c];
              const v = v0[c];
              const ok = kind === 0 ? s.nearest(u, v) : kind === 1 ? s.bilinear(u, v) : s.cubic(u, v);
              if (!ok) continue;
              comp.put(o, px);
              taken++;
            }
          }
        }
      }
      if (stats) stats.pixelsSampled += taken;
    }
  }
  return { width, height, dtype: mosaic.dtype, bands: comp.finish(), mask };
}

/**
 * Validity of source pixels, into `valid` (w * h): the internal mask when present, else "not every band equals
 * nodata" (GDAL's rule); a NaN in any band is never valid.
 */
function sourceWindow(
  bands: SourceWindow['bands'],
  mask: Uint8Array | undefined,
  w: number,
  h: number,
  nodata: number | undefined,
  valid: Uint8Array,
): SourceWindow {
  const n = w * h;
  const useNodata = nodata !== undefined && !Number.isNaN(nodata);
  const isFloatBand = (b: TypedArray) => b instanceof Float32Array || b instanceof Float64Array;
  if (bands.length === 1 && !mask) {
    // one pass
    const a = bands[0];
    if (isFloatBand(a)) {
      if (useNodata) {
        for (let i = 0; i < n; i++) {
          const x = a[i];
          valid[i] = x === nodata || Number.isNaN(x) ? 0 : 1;
        }
      } else {
        for (let i = 0; i < n; i++) valid[i] = Number.isNaN(a[i]) ? 0 : 1;
      }
    } else if (useNodata) {
      for (let i = 0; i < n; i++) valid[i] = a[i] === nodata ? 0 : 1;
    } else {
      valid.fill(1, 0, n);
    }
    return { width: w, height: h, bands, valid };
  }
  if (mask) {
    for (let i = 0; i < n; i++) valid[i] = mask[i] === 0 ? 0 : 1;
  } else {
    valid.fill(1, 0, n);
  }
  if (useNodata) {
    if (bands.length === 1) {
      const a = bands[0];
      for (let i = 0; i < n; i++) if (a[i] === nodata) valid[i] = 0;
    } else {
      for (let i = 0; i < n; i++) {
        if (valid[i] === 0) continue;
        let b = 0;
        while (b < bands.length && bands[b][i] === nodata) b++;
        if (b === bands.length) valid[i] = 0;
      }
    }
  }
  // NaN is never a value: a NaN in any band invalidates the pixel (which also covers a NaN nodata)
  for (const a of bands) if (isFloatBand(a)) for (let i = 0; i < n; i++) if (Number.isNaN(a[i])) valid[i] = 0;
  return { width: w, height: h, bands, valid };
}
