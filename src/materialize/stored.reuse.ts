/**
 * Source blocks reused as their file stores them. A COG tile that is exactly one source block (cog.tiles.block.ts)
 * can take that block's compressed bytes instead of compressing its samples again: the same pixels read back, and
 * the deflate pass (most of a COG-to-COG export's CPU) is gone. Where the bytes qualify: deflate in and out (a whole
 * zlib stream, no preset dictionary), the same predictor, a little-endian source.
 *
 * Whether the source's compressor did as well as this one is measured, once per source level and encoding: up to
 * SAMPLE_BLOCKS blocks at fixed places of the level are compressed here too, and the level's bytes are reused when
 * they are at most MAX_GROWTH larger in sum (a file written by GDAL with libdeflate at the same level: identical
 * bytes; zlib at level 6-7: about 1% larger; a fast level: re-encoded). The verdict depends on the data alone, so
 * every thread and process decides alike and the output stays the same bytes however the work is split.
 * `recompress` turns reuse off.
 */
import { RenderError } from '../render/errors.ts';
import type { Raster } from '../render/raster.ts';
import { typedFromBytes } from '../render/types.ts';
import type { StoredBlock } from './cog.tiles.block.ts';
import { encodeSamples, type TileEncodeOptions } from './tile.encode.ts';

/** Blocks compressed to judge a source level. */
export const SAMPLE_BLOCKS = 2;
/** How much larger (in sum over the sample) a source's stored blocks may be than this process's. */
export const MAX_GROWTH = 0.015;

/** TIFF compression codes of deflate (the registered one and the old one). */
const TIFF_DEFLATE = new Set([8, 32946]);

/** True when `bytes` start a zlib stream of deflate data without a preset dictionary. */
export function isZlibStream(bytes: Uint8Array): boolean {
  if (bytes.length < 2) return false;
  const cmf = bytes[0];
  const flg = bytes[1];
  return (cmf & 0x0f) === 8 && cmf >> 4 <= 7 && ((cmf << 8) | flg) % 31 === 0 && (flg & 0x20) === 0;
}

const verdicts = new WeakMap<Raster, Map<string, Promise<boolean>>>();

/** One sample block measured: its stored bytes and this process's, or not evidence (sparse, corrupt), or no zlib. */
export type SampleMeasure = { readonly theirs: number; readonly ours: number } | 'none' | 'not-zlib';

/** The verdict from a level's measured samples (in any order). */
export function verdictOfSamples(samples: readonly SampleMeasure[]): boolean {
  let theirs = 0;
  let ours = 0;
  for (const m of samples) {
    if (m === 'not-zlib') return false;
    if (m === 'none') continue;
    theirs += m.theirs;
    ours += m.ours;
  }
  return ours > 0 && theirs <= ours * (1 + MAX_GROWTH);
}

/**
 * How a thread gets a verdict it has not judged: `measure(k)` measures sample k of `count` here. The
 * materialisation threads share the work through their pool (tile.pool.ts): they reach each new source level
 * together, and each judged it in full; now each measures a different sample and all take the verdict of the lot
 * (RGB COG: 0.25 CPU s of judging -> half). By default the calling thread measures every sample, side by side.
 */
export type VerdictSharing = (
  key: string,
  count: number,
  measure: (k: number) => Promise<SampleMeasure>,
) => Promise<boolean>;

let sharing: VerdictSharing = async (_key, count, measure) =>
  // side by side: on the calling thread each sample is compressed on the thread pool, and every tile of the level
  // waits for the verdict
  verdictOfSamples(await Promise.all(Array.from({ length: count }, (_, k) => measure(k))));

export function shareVerdicts(via: VerdictSharing): void {
  sharing = via;
}

/** The block's stored bytes as the tile's payload, when they qualify (see the file's comment); else undefined. */
export async function reusableStored(stored: StoredBlock, options: TileEncodeOptions): Promise<Uint8Array | undefined> {
  if (options.compression !== 'deflate' || !TIFF_DEFLATE.has(stored.compression)) return undefined;
  if (stored.predictor !== options.predictor || !isZlibStream(stored.bytes)) return undefined;
  let perRaster = verdicts.get(stored.raster);
  if (!perRaster) verdicts.set(stored.raster, (perRaster = new Map()));
  const key = `${stored.level}|${options.level ?? ''}|${options.predictor}|${options.blockSize ?? ''}`;
  let verdict = perRaster.get(key);
  if (!verdict) {
    // named alike in every thread: the source (as its header was read), the level and the encoding
    const raster = stored.raster;
    const places = samplePlaces(raster, stored.level);
    const made = sharing(`${raster.info.url}|${raster.info.etag}|${raster.info.size}|${key}`, places.length, (k) =>
      measureSample(raster, stored.level, places[k], options),
    );
    verdict = made;
    perRaster.set(key, made);
    // a read that failed (unreachable source) is not a verdict: the next tile judges again
    made.catch(() => perRaster.get(key) === made && perRaster.delete(key));
  }
  return (await verdict) ? stored.bytes : undefined;
}

/** The block indices of a level's samples: up to SAMPLE_BLOCKS whole blocks at fixed places. */
function samplePlaces(raster: Raster, levelIndex: number): number[] {
  const level = raster.info.levels[levelIndex];
  if (!level) return [];
  const fullAcross = Math.floor(level.width / level.blockWidth);
  const fullDown = Math.floor(level.height / level.blockHeight);
  const places = new Set<number>();
  for (let k = 1; k <= SAMPLE_BLOCKS; k++) {
    const bx = Math.min(fullAcross - 1, Math.floor((k * fullAcross) / (SAMPLE_BLOCKS + 1)));
    const by = Math.min(fullDown - 1, Math.floor((k * fullDown) / (SAMPLE_BLOCKS + 1)));
    if (bx >= 0 && by >= 0) places.add(by * level.blocksAcross + bx);
  }
  return [...places];
}

/** Compress one sample block of a source level here and report both sizes. */
async function measureSample(
  raster: Raster,
  levelIndex: number,
  index: number,
  options: TileEncodeOptions,
): Promise<SampleMeasure> {
  const level = raster.info.levels[levelIndex];
  const block = await raster
    .readBlock(levelIndex, index % level.blocksAcross, Math.floor(index / level.blocksAcross))
    .catch((e: unknown) => {
      // a corrupt block reads the same everywhere: not evidence either way; anything else fails the tile
      if (e instanceof RenderError && e.kind === 'corrupt') return undefined;
      throw e;
    });
  if (!block?.stored) return 'none'; // sparse or corrupt
  if (!isZlibStream(block.stored)) return 'not-zlib';
  const samples = typedFromBytes(raster.info.dtype, block.samples);
  const ours = (await encodeSamples(samples, { ...options, blockSize: level.blockWidth })).byteLength;
  return { theirs: block.stored.byteLength, ours };
}
