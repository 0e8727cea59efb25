/**
 * One unit of materialisation work: render a COG tile, encode it, and (full resolution only) accumulate band
 * statistics. Runs in worker threads or inline; the same code either way.
 */
import type { Engine } from '../render/engine.ts';
import type { Mosaic } from '../render/mosaic.ts';
import type { Resampling } from '../render/types.ts';
import type { CogCompression, CogLevel, CogPredictor } from './cog.layout.ts';
import { renderCogTile } from './cog.tiles.ts';
import { accumulate, type BandAccumulator, newAccumulators } from './statistics.xml.ts';
import { encodeTile } from './tile.encode.ts';

export interface TileJobSettings {
  readonly blockSize: number;
  readonly compression: CogCompression;
  readonly predictor: CogPredictor;
  readonly level?: number;
  readonly quality?: number;
  readonly resampling?: Resampling;
  readonly overviewResampling?: Resampling;
}

export interface TileJobResult {
  readonly payload: Uint8Array;
  readonly stats?: BandAccumulator[];
  readonly validCount: number;
}

export async function runTileJob(
  engine: Engine,
  mosaic: Mosaic,
  levels: readonly CogLevel[],
  settings: TileJobSettings,
  level: number,
  tx: number,
  ty: number,
  signal?: AbortSignal,
): Promise<TileJobResult> {
  // an export fails on a source block it cannot decode: a COG with silently empty blocks is worse than an error
  const tile = await renderCogTile(engine, mosaic, levels, level, tx, ty, { ...settings, strict: true }, signal);
  const payload = await encodeTile(tile.bands, {
    dtype: mosaic.dtype,
    bands: mosaic.bandCount,
    blockSize: settings.blockSize,
    compression: settings.compression,
    predictor: settings.predictor,
    level: settings.level,
    quality: settings.quality,
  });
  let stats: BandAccumulator[] | undefined;
  if (level === 0) {
    stats = newAccumulators(mosaic.bandCount);
    if (tile.validCount > 0) accumulate(stats, tile.bands, tile.mask);
  }
  return { payload, stats, validCount: tile.validCount };
}
