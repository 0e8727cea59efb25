/**
 * One unit of materialisation work: render a COG tile, encode it, and (full resolution only) accumulate band
 * statistics. Runs in worker threads or inline; the same code either way.
 *
 * Two kinds: a tile rendered from the sources (`runTileJob`), and an overview tile computed from a window of the
 * finer level's decoded pixels (`runReduceJob`, see overview.reduce.ts). Either can also return its decoded pixels
 * for the next coarser level.
 */
import type { Engine } from '../render/engine.ts';
import type { Mosaic } from '../render/mosaic.ts';
import type { DType, Resampling, TypedArray } from '../render/types.ts';
import type { CogCompression, CogLevel, CogPredictor } from './cog.layout.ts';
import { type CogTilePixels, defaultOverviewResampling, renderCogTile, tileBands } from './cog.tiles.ts';
import { type ReduceWindow, reduceToTile } from './overview.reduce.ts';
import {
  accumulate,
  accumulateInterleaved,
  accumulatePredicted8,
  type BandAccumulator,
  newAccumulators,
} from './statistics.xml.ts';
import { reusableStored } from './stored.reuse.ts';
import { encodePredicted, encodeSamples, encodeTile } from './tile.encode.ts';

/** A decoded tile as the COG stores it: blockSize^2 per band, mask 255 where data. */
export interface TilePixels {
  readonly bands: TypedArray[];
  readonly mask: Uint8Array;
}

export interface TileJobSettings {
  readonly blockSize: number;
  readonly compression: CogCompression;
  readonly predictor: CogPredictor;
  readonly level?: number;
  readonly quality?: number;
  readonly resampling?: Resampling;
  readonly overviewResampling?: Resampling;
  /** compress every tile, never reusing a source block's stored bytes (stored.reuse.ts) */
  readonly recompress?: boolean;
  /** worker threads send payloads framed as the file stores them (the layout's leader and trailer) */
  readonly frame?: boolean;
}

export interface TileJobResult {
  readonly payload: Uint8Array;
  /** the payload framed as the file stores it (`framedPayload`), when the worker made it */
  readonly framed?: Uint8Array;
  readonly stats?: BandAccumulator[];
  readonly validCount: number;
  /** the decoded tile, blockSize^2 per band and its mask (when asked for) */
  readonly pixels?: TilePixels;
}

/** What a reduce job needs of the mosaic (plain data: a worker has it without opening the mosaic). */
export interface ReduceShape {
  readonly dtype: DType;
  readonly bandCount: number;
  readonly nodata?: number;
  readonly overviewResampling: Resampling;
}

export function reduceShapeOf(mosaic: Mosaic, settings: TileJobSettings): ReduceShape {
  return {
    dtype: mosaic.dtype,
    bandCount: mosaic.bandCount,
    ...(mosaic.nodata !== undefined ? { nodata: mosaic.nodata } : {}),
    overviewResampling: settings.overviewResampling ?? defaultOverviewResampling(mosaic),
  };
}

let allValidMask = new Uint8Array(0);

/** A mask of `n` valid pixels, shared (read only: the statistics read it). */
function allValid(n: number): Uint8Array {
  if (allValidMask.length !== n) allValidMask = new Uint8Array(n).fill(255);
  return allValidMask;
}

async function finish(
  shape: ReduceShape,
  settings: TileJobSettings,
  tile: CogTilePixels,
  level: number,
  keep: boolean,
): Promise<TileJobResult> {
  const nb = shape.bandCount;
  const encoding = {
    dtype: shape.dtype,
    bands: nb,
    blockSize: settings.blockSize,
    compression: settings.compression,
    predictor: settings.predictor,
    level: settings.level,
    quality: settings.quality,
    consume: !keep,
  };
  // a source block's own bytes where they will do, else its bytes with the predictor still applied when the output
  // takes the same one (no predictor pass); both before the samples are first read, which undoes that predictor
  const predicted = tile.predicted;
  let payload =
    (settings.recompress !== true && tile.stored && (await reusableStored(tile.stored, encoding))) ||
    (predicted && predicted.predictor === 2 && settings.predictor === 2
      ? await encodePredicted(predicted.bytes, encoding)
      : undefined);
  // the bands the next level is reduced from: split out of a tile given pixel-interleaved (one source block)
  const bands = keep && tile.samples ? tileBands(tile, shape.dtype, nb) : tile.bands;
  // statistics before the samples are encoded: without `keep`, the encoder may overwrite them
  let stats: BandAccumulator[] | undefined;
  if (level === 0) {
    stats = newAccumulators(nb);
    // a tile whose every pixel holds data is counted without its mask (a block tile then never makes one)
    const all = tile.validCount === settings.blockSize * settings.blockSize;
    // 8-bit bytes still differenced (not read as samples yet) are counted as they are: the tile never undoes them
    const still = tile.predicted;
    const counted =
      all &&
      still !== undefined &&
      still.predictor === 2 &&
      shape.dtype === 'uint8' &&
      accumulatePredicted8(stats, still.bytes, nb, settings.blockSize);
    if (!counted && tile.validCount > 0) {
      const mask = all ? allValid(tile.validCount) : tile.mask;
      if (tile.samples) accumulateInterleaved(stats, tile.samples, nb, mask, tile.validCount);
      else accumulate(stats, tile.bands, mask, tile.validCount);
    }
  }
  // interleaved samples are encoded in place, unless they are also the one band kept
  payload ||= tile.samples
    ? await encodeSamples(keep && nb === 1 ? tile.samples.slice() : tile.samples, encoding)
    : await encodeTile(tile.bands, encoding);
  // encoded, counted and not kept: the decoded block's memory serves the next one
  if (!keep) tile.recycle?.(payload);
  return {
    payload,
    stats,
    validCount: tile.validCount,
    ...(keep ? { pixels: { bands, mask: tile.mask } } : {}),
  };
}

/** Render tile (tx, ty) of `level` from the sources and encode it (and return its pixels too, with `keep`). */
export async function runTileJob(
  engine: Engine,
  mosaic: Mosaic,
  levels: readonly CogLevel[],
  settings: TileJobSettings,
  level: number,
  tx: number,
  ty: number,
  signal?: AbortSignal,
  keep = false,
): Promise<TileJobResult> {
  // an export fails on a source block it cannot decode: a COG with silently empty blocks is worse than an error
  const tile = await renderCogTile(engine, mosaic, levels, level, tx, ty, { ...settings, strict: true }, signal);
  return finish(reduceShapeOf(mosaic, settings), settings, tile, level, keep);
}

/**
 * Overview tile (tx, ty) of `level` (>= 1) from `window`, the finer level's decoded pixels it needs; encoded, and
 * returned decoded too with `keep`.
 */
export async function runReduceJob(
  shape: ReduceShape,
  levels: readonly CogLevel[],
  settings: TileJobSettings,
  level: number,
  tx: number,
  ty: number,
  window: ReduceWindow,
  keep = false,
): Promise<TileJobResult> {
  const tile = reduceToTile(
    window,
    levels[level - 1],
    levels[level],
    tx,
    ty,
    settings.blockSize,
    shape.dtype,
    shape.overviewResampling,
    shape.nodata ?? 0,
    shape.nodata,
  );
  return finish(shape, settings, tile, level, keep);
}
