/**
 * render(window) = reproject + resample + composite. The one pixel path every view goes through.
 *
 * Each source is warped the way gdalwarp warps it onto the same window, so the two agree pixel for pixel. The
 * stages, in the order a pixel meets them: warp.window.ts (overview level and chunks of each source),
 * raster.ts (the source window read), warp.loop.ts (the loop over sources and chunks), warp.lattice.ts (target pixel
 * -> source pixel), warp.kernel.ts (the resampling kernels), warp.copy.ts (where a copy gives the kernel's result),
 * composite.ts (the compositing rule). Where a kernel provably takes one source pixel as it is, that pixel is
 * copied instead; `generalPath` turns the copies off, for tests that compare the two.
 */
import { RenderError } from './errors.ts';
import type { Mosaic } from './mosaic.ts';
import { RenderScratch, SCRATCH_KEEP_SETS, scratchFree } from './render.scratch.ts';
import type { Grid, Pixels, RenderOptions, RenderStats } from './types.ts';
import { renderWith } from './warp.loop.ts';

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
