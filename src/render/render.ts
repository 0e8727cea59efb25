/**
 * render(window) = reproject + resample + composite. The one pixel path every view goes through.
 *
 * For each source whose footprint touches the window: pick the overview just finer than the target resolution
 * (GDAL's rule), read the covering source window, map each target pixel centre to source pixel coordinates
 * (per-row linear approximation within a bounded error), sample, and composite into the output.
 */
import { RenderError } from './errors.ts';
import type { Mosaic } from './mosaic.ts';
import type { Raster } from './raster.ts';
import { createTransformer, mapRowToSource, type Transformer, transformBounds } from './transform.ts';
import {
  allocTyped,
  type Bounds,
  type Composite,
  dtypeRange,
  type Grid,
  gridBounds,
  invertTransform,
  isFloat,
  type Pixels,
  type Resampling,
} from './types.ts';
import { kernelRadius, type SourceWindow, samplePixel } from './warp.ts';

export interface RenderOptions {
  readonly resampling?: Resampling;
  readonly composite?: Composite;
  /** 0-based mosaic band indices (default: all) */
  readonly bands?: readonly number[];
  readonly signal?: AbortSignal;
  /** max error of the approximate transform, in source pixels (default 0.125, as GDAL) */
  readonly maxErrorPx?: number;
}

export interface RenderStats {
  sourcesRead: number;
  sourcesSkipped: number;
  pixelsSampled: number;
}

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

function intersects(a: Bounds, b: Bounds): boolean {
  return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
}

const transformerCache = new WeakMap<object, Map<string, Transformer>>();
function transformerFor(grid: Grid, raster: Raster): Transformer {
  let m = transformerCache.get(grid.crs);
  if (!m) transformerCache.set(grid.crs, (m = new Map()));
  const key = String(raster.info.crs.epsg);
  let t = m.get(key);
  if (!t) m.set(key, (t = createTransformer(grid.crs, raster.info.crs)));
  return t;
}

interface SourcePlan {
  readonly level: number;
  readonly factorX: number;
  readonly factorY: number;
  /** window in level pixels */
  readonly x0: number;
  readonly y0: number;
  readonly w: number;
  readonly h: number;
}

/** Plan the read of one source for a target grid (pure apart from coordinate math). */
export function planSource(grid: Grid, raster: Raster, resampling: Resampling): SourcePlan | undefined {
  const info = raster.info;
  const srcGrid = { crs: info.crs, transform: info.transform, width: info.width, height: info.height };
  const srcBounds = gridBounds(srcGrid);
  const winInSrc = info.crs.epsg === grid.crs.epsg ? gridBounds(grid) : transformBounds(gridBounds(grid), grid.crs, info.crs);
  if (!winInSrc.every(Number.isFinite) || !intersects(winInSrc, srcBounds)) return undefined;
  // the window's extent in full-resolution source pixels
  const inv = invertTransform(info.transform);
  const corners = [
    [winInSrc[0], winInSrc[1]],
    [winInSrc[2], winInSrc[1]],
    [winInSrc[0], winInSrc[3]],
    [winInSrc[2], winInSrc[3]],
  ].map(([x, y]) => [inv[0] + x * inv[1] + y * inv[2], inv[3] + x * inv[4] + y * inv[5]]);
  let u0 = Math.min(...corners.map((c) => c[0]));
  let u1 = Math.max(...corners.map((c) => c[0]));
  let v0 = Math.min(...corners.map((c) => c[1]));
  let v1 = Math.max(...corners.map((c) => c[1]));
  const ratio = Math.min((u1 - u0) / grid.width, (v1 - v0) / grid.height);
  const level = chooseLevel(info.levels.map((l) => l.factorX), ratio);
  const lvl = info.levels[level];
  const fx = lvl.factorX;
  const fy = lvl.factorY;
  const ratioAtLevel = ratio / fx;
  const pad = Math.ceil(kernelRadius(resampling) * Math.max(1, ratioAtLevel)) + 1;
  u0 = Math.floor(u0 / fx) - pad;
  u1 = Math.ceil(u1 / fx) + pad;
  v0 = Math.floor(v0 / fy) - pad;
  v1 = Math.ceil(v1 / fy) + pad;
  const x0 = Math.max(0, u0);
  const y0 = Math.max(0, v0);
  const x1 = Math.min(lvl.width, u1);
  const y1 = Math.min(lvl.height, v1);
  if (x1 <= x0 || y1 <= y0) return undefined;
  return { level, factorX: fx, factorY: fy, x0, y0, w: x1 - x0, h: y1 - y0 };
}

/**
 * Render `grid` from the mosaic. Returns the mosaic's dtype, one array per requested band, and a validity mask.
 */
export async function renderMosaic(mosaic: Mosaic, grid: Grid, options: RenderOptions = {}, stats?: RenderStats): Promise<Pixels> {
  const resampling = options.resampling ?? mosaic.resampling;
  const composite = options.composite ?? mosaic.composite;
  const bandSel = options.bands ?? mosaic.bandIndices.map((_, i) => i);
  const srcBands = bandSel.map((b) => {
    const s = mosaic.bandIndices[b];
    if (s === undefined) throw new RenderError('bad-request', `band ${b + 1} does not exist (the mosaic has ${mosaic.bandCount})`);
    return s;
  });
  const { width, height } = grid;
  const n = width * height;
  const nb = srcBands.length;
  const acc = Array.from({ length: nb }, () => new Float64Array(n));
  const valid = new Uint8Array(n);
  const counts = composite === 'mean' || composite === 'count' ? new Uint32Array(n) : undefined;
  let validCount = 0;

  const u = new Float64Array(width);
  const v = new Float64Array(width);
  const uNext = new Float64Array(width);
  const vNext = new Float64Array(width);
  const px = new Float64Array(nb);
  const scratch = new Map<number, number>();
  const maxErr = options.maxErrorPx ?? 0.125;

  for (const src of mosaic.sources) {
    options.signal?.throwIfAborted();
    if (composite === 'first' && validCount === n) break;
    const raster = src.raster;
    const plan = planSource(grid, raster, resampling);
    if (!plan) {
      if (stats) stats.sourcesSkipped++;
      continue;
    }
    if (stats) stats.sourcesRead++;
    const win = await raster.readWindow(plan.level, plan.x0, plan.y0, plan.w, plan.h, srcBands, options.signal);
    const sw = sourceWindow(win.bands, win.mask, plan.w, plan.h, raster.info.nodata);
    const tr = transformerFor(grid, raster);
    const inv = invertTransform(raster.info.transform);
    const area = resampling === 'average' || resampling === 'mode';
    const kernel = resampling === 'bilinear' || resampling === 'cubic';
    mapRowToSource(grid, 0, inv, tr, u, v, maxErr);
    for (let row = 0; row < height; row++) {
      // the next row's mapping gives the footprint along y (the previous one on the last row)
      if (area || kernel) mapRowToSource(grid, row + 1 < height ? row + 1 : row - 1, inv, tr, uNext, vNext, maxErr);
      const base = row * width;
      for (let col = 0; col < width; col++) {
        const o = base + col;
        if (composite === 'first' && valid[o]) continue;
        const uu = u[col];
        const vv = v[col];
        if (Number.isNaN(uu) || Number.isNaN(vv)) continue;
        const ul = uu / plan.factorX - plan.x0;
        const vl = vv / plan.factorY - plan.y0;
        let spanU = 1;
        let spanV = 1;
        let scaleX = 1;
        let scaleY = 1;
        if (area || kernel) {
          const c0 = col > 0 ? col - 1 : col;
          const c1 = col < width - 1 ? col + 1 : col;
          const dc = Math.max(1, c1 - c0);
          const dux = (u[c1] - u[c0]) / dc / plan.factorX;
          const dvx = (v[c1] - v[c0]) / dc / plan.factorY;
          const duy = Math.abs(uNext[col] - uu) / plan.factorX;
          const dvy = Math.abs(vNext[col] - vv) / plan.factorY;
          spanU = Math.abs(dux) + duy;
          spanV = Math.abs(dvx) + dvy;
          if (!(spanU > 0)) spanU = 1;
          if (!(spanV > 0)) spanV = 1;
          scaleX = 1 / Math.hypot(dux, dvx);
          scaleY = 1 / Math.hypot(duy, dvy);
          if (!Number.isFinite(scaleX)) scaleX = 1;
          if (!Number.isFinite(scaleY)) scaleY = 1;
        }
        if (!samplePixel(resampling, sw, ul, vl, scaleX, scaleY, spanU, spanV, px, scratch)) continue;
        if (stats) stats.pixelsSampled++;
        if (!valid[o]) {
          valid[o] = 1;
          validCount++;
          for (let b = 0; b < nb; b++) acc[b][o] = composite === 'count' ? 1 : px[b];
          if (counts) counts[o] = 1;
          continue;
        }
        switch (composite) {
          case 'first':
            break;
          case 'last':
            for (let b = 0; b < nb; b++) acc[b][o] = px[b];
            break;
          case 'min':
            for (let b = 0; b < nb; b++) if (px[b] < acc[b][o]) acc[b][o] = px[b];
            break;
          case 'max':
            for (let b = 0; b < nb; b++) if (px[b] > acc[b][o]) acc[b][o] = px[b];
            break;
          case 'mean':
            for (let b = 0; b < nb; b++) acc[b][o] += px[b];
            counts![o]++;
            break;
          case 'count':
            for (let b = 0; b < nb; b++) acc[b][o] += 1;
            break;
        }
      }
      if (row + 1 < height) {
        if (area || kernel) {
          u.set(uNext);
          v.set(vNext);
        } else {
          mapRowToSource(grid, row + 1, inv, tr, u, v, maxErr);
        }
      }
    }
  }

  const dtype = mosaic.dtype;
  const [lo, hi] = dtypeRange(dtype);
  const fill = mosaic.nodata ?? 0;
  const float = isFloat(dtype);
  const bands = acc.map((a) => {
    const out = allocTyped(dtype, n);
    for (let i = 0; i < n; i++) {
      if (!valid[i]) {
        out[i] = fill;
        continue;
      }
      let x = composite === 'mean' ? a[i] / counts![i] : a[i];
      if (!float) {
        x = Math.round(x);
        if (x < lo) x = lo;
        else if (x > hi) x = hi;
      }
      out[i] = x;
    }
    return out;
  });
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) mask[i] = valid[i] ? 255 : 0;
  return { width, height, dtype, bands, mask };
}

/** Validity of source pixels: the internal mask when present, else "not every band equals nodata" (GDAL's rule). */
function sourceWindow(bands: SourceWindow['bands'], mask: Uint8Array | undefined, w: number, h: number, nodata: number | undefined): SourceWindow {
  const n = w * h;
  const valid = new Uint8Array(n);
  if (mask) {
    for (let i = 0; i < n; i++) valid[i] = mask[i] ? 1 : 0;
  } else {
    valid.fill(1);
  }
  if (nodata !== undefined) {
    const nan = Number.isNaN(nodata);
    for (let i = 0; i < n; i++) {
      if (!valid[i]) continue;
      let all = true;
      for (let b = 0; b < bands.length && all; b++) {
        const x = bands[b][i];
        all = nan ? Number.isNaN(x) : x === nodata;
      }
      if (all) valid[i] = 0;
    }
  }
  for (const band of bands) {
    if (band instanceof Float32Array || band instanceof Float64Array) {
      for (let i = 0; i < n; i++) if (Number.isNaN(band[i])) valid[i] = 0;
    }
  }
  return { width: w, height: h, bands, valid };
}
