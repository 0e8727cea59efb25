/**
 * GeoTIFF / COG reading: the one import site of `geotiff` (this file and its raster.* stages).
 *
 * geotiff.js parses the IFDs (through a block cache over our Source, so a COG header costs one or two requests);
 * tile bytes are fetched by us (adjacent tiles merged into one range request, decoded tiles kept in a bytes-bounded
 * cache) and decoded by geotiff.js decoders, with deflate / zstd / webp backed by native code.
 *
 * Stages: raster.header.ts (the byte adapter), raster.preflight.ts (the IFD chain checked), raster.tags.ts (IFDs
 * -> RasterInfo), raster.decode.ts (decoders), raster.blocks.ts (block IO), raster.info.ts (the types).
 */
import { type BlockFailure, CogmillError, RenderError, SourceError } from './errors.ts';
import { type RasterIo, readWholeBlock, readWindow, type WholeBlock } from './raster.blocks.ts';
import { registerDecoders } from './raster.decode.ts';
import { HeaderReader } from './raster.header.ts';
import type { LevelInternal, RasterCaches, RasterInfo, RasterWindow } from './raster.info.ts';
import { parseRaster } from './raster.tags.ts';
import type { Source } from './source.ts';

/** An opened GeoTIFF: its metadata and window reads. Parse once, keep it (the engine caches Raster objects). */
export class Raster {
  readonly info: RasterInfo;
  private readonly io: RasterIo;
  private readonly levelsInternal: LevelInternal[];

  private constructor(info: RasterInfo, source: Source, caches: RasterCaches, levels: LevelInternal[]) {
    this.info = info;
    this.io = { source, caches, info };
    this.levelsInternal = levels;
  }

  /** Open and parse a GeoTIFF. Errors are SourceError (IO) or RenderError (content), never raw exceptions. */
  static async open(source: Source, caches: RasterCaches, signal?: AbortSignal): Promise<Raster> {
    registerDecoders();
    const reader = new HeaderReader(source, caches.header, signal);
    try {
      const { info, levels } = await parseRaster(reader, source.url);
      return new Raster(info, source, caches, levels);
    } catch (e) {
      if (e instanceof CogmillError) throw e;
      if (signal?.aborted) throw e;
      const msg = (e as Error)?.message ?? String(e);
      throw new RenderError('corrupt', `${source.url} is not a readable GeoTIFF: ${msg}`, { cause: e });
    }
  }

  get url(): string {
    return this.info.url;
  }

  /**
   * Read a window of `level` (0 = full resolution) into one typed array per band in `bands` (0-based).
   * The window must lie inside the level. A block that cannot be read fails the read with its `corrupt` error,
   * unless `onBlockError` is given: then it is reported there, and its pixels are returned empty (filled with
   * nodata and 0 in the returned mask).
   */
  async readWindow(
    levelIndex: number,
    x0: number,
    y0: number,
    w: number,
    h: number,
    bands: readonly number[],
    signal?: AbortSignal,
    onBlockError?: (failure: BlockFailure) => void,
  ): Promise<RasterWindow> {
    const level = this.levelsInternal[levelIndex];
    if (!level) throw new RenderError('internal', `level ${levelIndex} does not exist in ${this.info.url}`);
    return readWindow(this.io, level, levelIndex, x0, y0, w, h, bands, signal, onBlockError);
  }

  /**
   * Block (bx, by) of `level`: its pixel-interleaved samples (the caller's own, not cached) and its bytes as
   * stored; undefined for a sparse block. Pixel-interleaved or one-band rasters only. See readWholeBlock.
   */
  async readBlock(levelIndex: number, bx: number, by: number, signal?: AbortSignal): Promise<WholeBlock | undefined> {
    const level = this.levelsInternal[levelIndex];
    if (!level) throw new RenderError('internal', `level ${levelIndex} does not exist in ${this.info.url}`);
    return readWholeBlock(this.io, level, levelIndex, bx, by, signal);
  }
}

export { SourceError };
