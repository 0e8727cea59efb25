/**
 * Source windows: for one raster and a target grid, the overview level and the chunks (target rectangles, each
 * with its source window) the warp reads, as gdalwarp chooses them:
 * - overview: the level whose decimation is just below the ratio of the window's extent in source pixels (along x,
 *   from its edges) to its width (gdalwarp's "-ovr AUTO");
 * - chunks: the window is split in halves (longest side first) while the source covers less than half of the window
 *   it would need, or the buffers would pass gdalwarp's default 64 MiB; each chunk has its own source window and
 *   kernel scales (GDALWarpOperation::ComputeSourceWindow / CollectChunkList).
 * Coordinate maths only: no pixel is read here.
 */
import type { Raster } from './raster.ts';
import { createTransformer, type Transformer } from './transform.ts';
import {
  bytesPerSample,
  type Crs,
  type GeoTransform,
  type Grid,
  invertTransform,
  MiB,
  type Resampling,
} from './types.ts';
import { filterRadius } from './warp.kernel.ts';
import type { MapExact } from './warp.lattice.ts';

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
export function cachedTransformer(from: Crs, to: Crs): Transformer {
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
export function mapToSource(
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

interface SourceWindowBox {
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
): SourceWindowBox | undefined {
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

export interface SourceWarp {
  readonly level: number;
  readonly factorX: number;
  readonly factorY: number;
  /** full-resolution source pixels per target pixel along x, over the whole target (what chose the level) */
  readonly decimation: number;
  /** window to read, in level pixels: the union of the chunks' source windows */
  readonly x0: number;
  readonly y0: number;
  readonly w: number;
  readonly h: number;
  /** target rectangles with their source windows, in warp order */
  readonly chunks: readonly SourceChunk[];
}

/** How one source is warped onto a target grid: overview level and chunks (coordinate maths only, no pixel read). */
export function sourceWarp(grid: Grid, raster: Raster, resampling: Resampling): SourceWarp | undefined {
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
  const decimation = (extent.maxX - extent.minX) / grid.width;
  const level = chooseLevel(
    info.levels.map((l) => l.factorX),
    decimation,
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
  return { level, factorX: lvl.factorX, factorY: lvl.factorY, decimation, x0, y0, w: x1 - x0, h: y1 - y0, chunks };
}
