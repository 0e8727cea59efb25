/**
 * The 'auto' predictor, chosen on the mosaic's own pixels. Horizontal differencing (predictor 2; 3 for floats)
 * shrinks continuous imagery (reflectance, elevation) and grows categorical data, where every class edge becomes
 * two values instead of one (the benchmark's land-cover tiles: +17% with predictor 2). GDAL leaves the choice to
 * the user (its default: none); here full-resolution tiles of the mosaic are compressed both ways when the export
 * is planned, and the smaller wins (a tie keeps the differencing): one tile when one way is at least 10% smaller
 * there, else two. The tiles are the first two holding data
 * of a fixed list of places, so a plan made again, on any machine, picks the same predictor; the plan records it.
 */
import type { Engine } from '../render/engine.ts';
import type { Mosaic } from '../render/mosaic.ts';
import type { CogPredictor } from './cog.layout.ts';
import { mosaicCogLevels, renderCogTile } from './cog.tiles.ts';
import { type MaterializeOptions, resolvePredictor } from './pipeline.options.ts';
import { encodeSamples, interleaveTile } from './tile.encode.ts';

/** Full-resolution tiles compressed both ways, at most. */
export const SAMPLE_TILES = 2;
/** One predictor's bytes at most this share of the other's on the first tile: no second tile is needed. */
const CLEAR_MARGIN = 0.9;

/** Where the sample tiles are looked for, as fractions of the level's tile grid, in order. */
const PLACES: readonly (readonly [number, number])[] = [
  [0.5, 0.5],
  [0.25, 0.25],
  [0.75, 0.75],
  [0.25, 0.75],
  [0.75, 0.25],
  [0, 0],
  [1, 1],
];

/**
 * `options` with 'auto' (or no) predictor replaced by the one that compresses this mosaic smaller; options that
 * name a predictor, and encodings without one (none, jpeg, webp), are returned as they are resolved anyway.
 */
export async function choosePredictor(
  engine: Engine,
  mosaic: Mosaic,
  options: MaterializeOptions,
  signal?: AbortSignal,
): Promise<MaterializeOptions> {
  if (options.predictor !== undefined && options.predictor !== 'auto') return options;
  const compression = options.compression ?? 'deflate';
  const differencing = resolvePredictor(compression, 'auto', mosaic.dtype);
  if (differencing === 1) return { ...options, predictor: 1 };
  const blockSize = options.blockSize ?? mosaic.blockSize;
  const levels = mosaicCogLevels(mosaic, blockSize);
  const top = levels[0];
  const sizes = new Map<CogPredictor, number>([
    [differencing, 0],
    [1, 0],
  ]);
  const seen = new Set<number>();
  let sampled = 0;
  for (const [fx, fy] of PLACES) {
    if (sampled === SAMPLE_TILES) break;
    const tx = Math.min(top.tilesX - 1, Math.floor(fx * top.tilesX));
    const ty = Math.min(top.tilesY - 1, Math.floor(fy * top.tilesY));
    if (seen.has(ty * top.tilesX + tx)) continue;
    seen.add(ty * top.tilesX + tx);
    const tile = await renderCogTile(
      engine,
      mosaic,
      levels,
      0,
      tx,
      ty,
      { blockSize, resampling: options.resampling, strict: true },
      signal,
    );
    if (tile.validCount === 0) continue;
    const samples = tile.samples ?? interleaveTile(tile.bands, mosaic.dtype, mosaic.bandCount, blockSize);
    // both ways at once (on the calling thread each is compressed on libuv's pool): the plan waits for them
    const ways = [...sizes.keys()];
    const encoded = await Promise.all(
      ways.map((predictor) =>
        encodeSamples(samples.slice(), {
          dtype: mosaic.dtype,
          bands: mosaic.bandCount,
          blockSize,
          compression,
          predictor,
          level: options.level,
        }),
      ),
    );
    for (const [k, predictor] of ways.entries()) sizes.set(predictor, (sizes.get(predictor) ?? 0) + encoded[k].length);
    sampled++;
    // a clear margin on the first tile decides (every GDAL-made image of bench/predictor.bench.ts differs by 11% or
    // more); a close call takes the second tile too
    const [a, b] = [...sizes.values()];
    if (Math.min(a, b) <= CLEAR_MARGIN * Math.max(a, b)) break;
  }
  const none = sizes.get(1) ?? 0;
  const diff = sizes.get(differencing) ?? 0;
  return { ...options, predictor: sampled > 0 && none < diff ? 1 : differencing };
}
