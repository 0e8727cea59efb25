/**
 * The warp loop: each source of a mosaic read (the level and window warp.window.ts chooses), its pixels' validity
 * worked out, then every chunk's target pixels mapped (warp.lattice.ts), sampled (warp.kernel.ts) or copied
 * (warp.copy.ts), and handed to the compositor (composite.ts).
 */
import { Composer, storesVerbatim } from './composite.ts';
import type { Mosaic } from './mosaic.ts';
import type { RasterWindow } from './raster.info.ts';
import type { RenderScratch } from './render.scratch.ts';
import {
  bytesPerSample,
  type Composite,
  type Grid,
  invertTransform,
  isFloat,
  type Pixels,
  type RenderOptions,
  type RenderStats,
  type Resampling,
  type TypedArray,
} from './types.ts';
import { alignedLevel, centreCopyTolerance, centreRun, cornerRun, NEAREST_RUN_TOL } from './warp.copy.ts';
import { AREA_SAMPLED, kernelFrame, Sampler, type SourceWindow } from './warp.kernel.ts';
import { DEFAULT_MAX_ERROR_PX, MapperLattice } from './warp.lattice.ts';
import { cachedTransformer, mapToSource, sourceWarp } from './warp.window.ts';

/** output pixels warped between two yields to the event loop (a few ms of work) */
const YIELD_EVERY_PIXELS = 1 << 16;
/** above this, a source is read chunk by chunk (each chunk's window is within gdalwarp's 64 MiB warp memory) */
const UNION_READ_MAX_BYTES = 64 * 1024 * 1024;

export async function renderWith(
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
    const warp = sourceWarp(grid, raster, resampling);
    if (!warp) {
      if (stats) stats.sourcesSkipped++;
      continue;
    }
    if (stats) stats.sourcesRead++;
    // one read of the union of the chunks' windows, unless that is large: then each chunk reads its own window, as
    // gdalwarp does (a source without overviews under an overview tile: 16384^2 pixels for a level-5 tile)
    const unionBytes = warp.w * warp.h * (srcBands.length * bytesPerSample(info.dtype) + 1);
    const perChunk = warp.chunks.length > 1 && unionBytes > (options.sourceReadMaxBytes ?? UNION_READ_MAX_BYTES);
    const aligned = shortcuts && alignedLevel(grid, info, warp);
    // nearest off the source's lattice samples few of the window's pixels: their validity is asked one by one
    const pointwise = resampling === 'nearest' && !aligned;
    const readSource = async (x0: number, y0: number, w: number, h: number) => {
      const win = await raster.readWindow(warp.level, x0, y0, w, h, srcBands, options.signal, options.onBlockError);
      if (stats) stats.sourcePixelsRead = (stats.sourcePixelsRead ?? 0) + w * h;
      if (stats) stats.largestSourceWindowPixels = Math.max(stats.largestSourceWindowPixels ?? 0, w * h);
      return pointwise
        ? {
            width: w,
            height: h,
            bands: win.bands,
            valid: NO_VALIDITY,
            validAt: pixelValidity(win.bands, win.mask, info.nodata),
          }
        : sourceWindow(win, w, h, info.nodata, scratch.valid(w * h));
    };
    let sw = perChunk ? undefined : await readSource(warp.x0, warp.y0, warp.w, warp.h);
    const tr = cachedTransformer(grid.crs, info.crs);
    const inv = invertTransform(info.transform);
    const verbatim = storesVerbatim(info.dtype, mosaic.dtype);
    // average returns 0 + the value of a single pixel (-0 becomes 0)
    const plusZero = resampling === 'average' && isFloat(info.dtype);
    const centreTol =
      aligned && (resampling === 'bilinear' || resampling === 'cubic')
        ? centreCopyTolerance(info.dtype, mosaic.dtype, composite)
        : -1;
    let sampler: Sampler | undefined;
    for (const ch of warp.chunks) {
      if (perChunk) {
        sw = await readSource(ch.sx, ch.sy, ch.sw, ch.sh);
        sampler = undefined;
      }
      if (!sw) throw new Error('no source window');
      const frame = kernelFrame(
        resampling,
        ch.sx - (perChunk ? ch.sx : warp.x0),
        ch.sy - (perChunk ? ch.sy : warp.y0),
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
      const exact = mapToSource(grid, tr, inv, warp.factorX, warp.factorY, ch.sx, ch.sy);
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
  return { width, height, dtype: mosaic.dtype, bands: comp.finish(), mask, validCount: comp.validCount };
}

/**
 * Validity of source pixels, into `valid` (w * h): the internal mask when present, else "not every band equals
 * nodata" (GDAL's rule); a NaN in any band is never valid.
 */
function sourceWindow(
  win: RasterWindow,
  w: number,
  h: number,
  nodata: number | undefined,
  valid: Uint8Array,
): SourceWindow {
  validRange(win.bands, win.mask, nodata, valid, 0, w * h);
  return { width: w, height: h, bands: win.bands, valid };
}

/** `valid` of a window whose validity is asked pixel by pixel (`validAt`). */
const NO_VALIDITY = new Uint8Array(0);

/**
 * `validRange`'s rule for one pixel, for windows that sample few of their pixels (nearest off the lattice: at 7.6x
 * decimation a tile samples 1 pixel in 58; whole rows of validity were 12% of its render).
 */
function pixelValidity(
  bands: SourceWindow['bands'],
  mask: Uint8Array | undefined,
  nodata: number | undefined,
): (k: number) => boolean {
  const useNodata = nodata !== undefined && !Number.isNaN(nodata);
  // integers without nodata or mask (8-bit RGB): every pixel
  if (!useNodata && !mask && !bands.some(isFloatBand)) return () => true;
  if (bands.length === 1 && !mask && !isFloatBand(bands[0])) {
    const a = bands[0];
    return useNodata ? (k) => a[k] !== nodata : () => true;
  }
  return (k) => {
    if (mask && mask[k] === 0) return false;
    let allNodata = useNodata;
    for (const a of bands) {
      const x = a[k];
      // NaN is never a value
      if (Number.isNaN(x)) return false;
      if (x !== nodata) allNodata = false;
    }
    return !allNodata;
  };
}

/** `sourceWindow`'s rule for the pixels from .. to - 1. */
function validRange(
  bands: SourceWindow['bands'],
  mask: Uint8Array | undefined,
  nodata: number | undefined,
  valid: Uint8Array,
  from: number,
  to: number,
): void {
  const useNodata = nodata !== undefined && !Number.isNaN(nodata);
  if (bands.length === 1 && !mask) {
    // one pass
    const a = bands[0];
    if (isFloatBand(a)) {
      if (useNodata) {
        for (let i = from; i < to; i++) {
          const x = a[i];
          valid[i] = x === nodata || Number.isNaN(x) ? 0 : 1;
        }
      } else {
        for (let i = from; i < to; i++) valid[i] = Number.isNaN(a[i]) ? 0 : 1;
      }
    } else if (useNodata) {
      for (let i = from; i < to; i++) valid[i] = a[i] === nodata ? 0 : 1;
    } else {
      valid.fill(1, from, to);
    }
    return;
  }
  if (mask) {
    for (let i = from; i < to; i++) valid[i] = mask[i] === 0 ? 0 : 1;
  } else {
    valid.fill(1, from, to);
  }
  if (useNodata) {
    if (bands.length === 1) {
      const a = bands[0];
      for (let i = from; i < to; i++) if (a[i] === nodata) valid[i] = 0;
    } else {
      for (let i = from; i < to; i++) {
        if (valid[i] === 0) continue;
        let b = 0;
        while (b < bands.length && bands[b][i] === nodata) b++;
        if (b === bands.length) valid[i] = 0;
      }
    }
  }
  // NaN is never a value: a NaN in any band invalidates the pixel (which also covers a NaN nodata)
  for (const a of bands) if (isFloatBand(a)) for (let i = from; i < to; i++) if (Number.isNaN(a[i])) valid[i] = 0;
}

function isFloatBand(b: TypedArray): boolean {
  return b instanceof Float32Array || b instanceof Float64Array;
}
