/**
 * COG tiles that are one source block as it is. Where a tile lies exactly on one whole block of the source that
 * gives its pixels (same CRS, pixel size and sample type; the block on the tile's lattice and the same size; the
 * bands in order; no internal mask), the block's decoded samples are the tile's, already pixel-interleaved as the
 * COG stores them: no window copy, no compositing, no interleaving. A COG re-tiled into a COG, overview levels taken
 * from the sources' own overviews, and mosaics of sources on one grid are made mostly of such tiles.
 *
 * The result is the render's, bit for bit: on an aligned source nearest, average, mode, bilinear and cubic all take
 * the source pixel itself for integer samples (warp.copy.ts; the warp loop copies those rows too). Pixels this source
 * leaves empty (nodata) would come from the next source in compositing order, so such a tile goes this way only when
 * no other source touches it.
 */
import { recycleDecoded } from '../render/deflate.ts';
import type { Mosaic } from '../render/mosaic.ts';
import type { Raster } from '../render/raster.ts';
import { type Grid, isFloat, type Resampling, type TypedArray, typedFromBytes } from '../render/types.ts';
import { alignedLevel } from '../render/warp.copy.ts';
import { sourceWarp } from '../render/warp.window.ts';

export interface BlockTile {
  /**
   * blockSize^2 pixels, every band's sample interleaved; the caller's own (may be overwritten or transferred). The
   * first read undoes the source's predictor where `predicted` held the bytes: read `predicted` first.
   */
  readonly samples: TypedArray;
  /** blockSize^2, 255 where a pixel holds data */
  readonly mask: Uint8Array;
  readonly validCount: number;
  /** the block's bytes as the source stores them (little-endian samples), when read from the file just now */
  readonly stored?: StoredBlock;
  /**
   * the samples with the source's predictor still applied (`predictor`: that predictor), when it has one, until
   * `samples` is first read (a tile whose stored bytes are kept never undoes it)
   */
  readonly predicted?: { readonly bytes: Uint8Array; readonly predictor: number };
  /** always empty: the tile's pixels are `samples` (the shape of CogTilePixels) */
  readonly bands: TypedArray[];
  /** hand the decoded block's buffer back for the next block's inflate (see CogTilePixels.recycle) */
  recycle(payload: Uint8Array): void;
}

/** A source block's compressed bytes, how they were made (TIFF compression code and predictor), and where from. */
export interface StoredBlock {
  readonly bytes: Uint8Array;
  readonly compression: number;
  readonly predictor: number;
  readonly raster: Raster;
  readonly level: number;
}

/** Resamplings that take the source pixel itself on an aligned source (integer samples). */
const TAKES_THE_PIXEL: ReadonlySet<Resampling> = new Set<Resampling>([
  'nearest',
  'average',
  'mode',
  'bilinear',
  'cubic',
]);

/**
 * Tile `grid` (a whole blockSize x blockSize tile) as one source block, when it is one (see the file's comment);
 * undefined when the render must make it.
 */
export async function blockTile(
  mosaic: Mosaic,
  grid: Grid,
  resampling: Resampling,
  blockSize: number,
  signal?: AbortSignal,
): Promise<BlockTile | undefined> {
  const { composite, bandCount } = mosaic;
  if (mosaic.items || grid.width !== blockSize || grid.height !== blockSize) return undefined;
  if ((composite !== 'first' && composite !== 'last') || isFloat(mosaic.dtype) || !TAKES_THE_PIXEL.has(resampling))
    return undefined;
  for (let b = 0; b < bandCount; b++) if (mosaic.bandIndices[b] !== b) return undefined;
  const order = composite === 'first' ? mosaic.sources : [...mosaic.sources].reverse();
  let k = 0;
  let warp: ReturnType<typeof sourceWarp>;
  for (; k < order.length && !warp; k++) warp = sourceWarp(grid, order[k].raster, resampling);
  if (!warp) return undefined;
  const raster = order[k - 1].raster;
  const info = raster.info;
  if (info.dtype !== mosaic.dtype || info.bandCount !== bandCount || info.hasMask) return undefined;
  if (info.interleave === 'band' && bandCount > 1) return undefined;
  if (!alignedLevel(grid, info, warp)) return undefined;
  const level = info.levels[warp.level];
  if (!level || level.blockWidth !== blockSize || level.blockHeight !== blockSize) return undefined;
  const t = info.transform;
  const g = grid.transform;
  const ox = Math.round((g[0] - t[0]) / (t[1] * warp.factorX));
  const oy = Math.round((g[3] - t[3]) / (t[5] * warp.factorY));
  if (ox < 0 || oy < 0 || ox % blockSize !== 0 || oy % blockSize !== 0) return undefined;
  if (ox + blockSize > level.width || oy + blockSize > level.height) return undefined;

  const block = await raster.readBlock(warp.level, ox / blockSize, oy / blockSize, signal);
  if (!block) return undefined; // sparse: the render fills it (and may take later sources)
  const stored =
    block.stored && block.littleEndian
      ? { bytes: block.stored, compression: block.compression, predictor: block.predictor, raster, level: warp.level }
      : undefined;
  const n = blockSize * blockSize;
  // made when asked for where every pixel holds data (most tiles never ask: see tile.job.ts)
  let mask: Uint8Array | undefined;
  const nodata = info.nodata;
  let validCount = n;
  if (nodata !== undefined && !Number.isNaN(nodata)) {
    // finding empty pixels reads the samples: the predicted bytes are copied aside first
    block.keepPredicted();
    mask = new Uint8Array(n);
    validCount = validity(typedFromBytes(info.dtype, block.samples), bandCount, nodata, mask);
  }
  if (validCount < n) {
    // empty pixels: another source could fill them, and they must read as the mosaic's nodata
    if (nodata !== mosaic.nodata) return undefined;
    for (let j = k; j < order.length; j++) if (sourceWarp(grid, order[j].raster, resampling)) return undefined;
  }
  let samples: TypedArray | undefined;
  return {
    bands: [],
    get samples() {
      samples ??= typedFromBytes(info.dtype, block.samples);
      return samples;
    },
    get predicted() {
      const bytes = block.littleEndian ? block.predicted : undefined;
      return bytes ? { bytes, predictor: block.predictor } : undefined;
    },
    get mask() {
      mask ??= new Uint8Array(n).fill(255);
      return mask;
    },
    validCount,
    stored,
    recycle(payload: Uint8Array) {
      if (payload.buffer !== block.buffer) recycleDecoded(block.buffer);
    },
  };
}

/** The warp's rule (warp.loop.ts validRange): a pixel is empty when every band holds nodata. Returns the valid count. */
function validity(samples: TypedArray, bands: number, nodata: number, mask: Uint8Array): number {
  const n = mask.length;
  // most blocks hold no nodata sample at all: one native scan says so (a categorical 8-bit block: 0.5 ms -> 20 us)
  if (samples.indexOf(nodata as never) < 0) {
    mask.fill(255);
    return n;
  }
  let valid = 0;
  if (bands === 1) {
    for (let i = 0; i < n; i++) {
      if (samples[i] !== nodata) {
        mask[i] = 255;
        valid++;
      }
    }
    return valid;
  }
  for (let i = 0, s = 0; i < n; i++, s += bands) {
    let b = 0;
    while (b < bands && samples[s + b] === nodata) b++;
    if (b < bands) {
      mask[i] = 255;
      valid++;
    }
  }
  return valid;
}
