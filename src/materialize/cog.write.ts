/**
 * Write a COG from band arrays held in memory: for generated data (the demo mosaic, benchmark inputs) and small
 * crops (cog.crop.ts). `cogBytes` makes overviews as 2x2 averages of the finer level (nodata-aware);
 * `cogBytesOfLevels` takes levels already made. Large mosaics go through the pipeline.
 */
import { writeFile } from 'node:fs/promises';
import { allocTyped, type DType, type GeoTransform, isFloat, type TypedArray } from '../render/types.ts';
import {
  assembleCog,
  type CogCompression,
  type CogPhotometric,
  type CogPredictor,
  cogLevels,
  layoutCog,
} from './cog.layout.ts';
import { edgePad, encodeTile } from './tile.encode.ts';

export interface InMemoryRaster {
  readonly width: number;
  readonly height: number;
  readonly dtype: DType;
  readonly bands: readonly TypedArray[];
  readonly transform: GeoTransform;
  readonly epsg: number;
  readonly geographic: boolean;
  readonly nodata?: number;
}

export interface CogWriteOptions {
  readonly compression?: CogCompression;
  readonly predictor?: CogPredictor;
  readonly blockSize?: number;
  readonly level?: number;
  /** default: 'rgb' for 3 or 4 bands of uint8, else 'minisblack' */
  readonly photometric?: CogPhotometric;
  /** default: BigTIFF only when the file needs it (`cogBytes`: never) */
  readonly bigTiff?: boolean;
}

/** Halve a band with a nodata-aware 2x2 average (floor sizes, like GDAL's overview sizes). */
export function halve(
  src: TypedArray,
  w: number,
  h: number,
  dtype: DType,
  nodata?: number,
): { data: TypedArray; width: number; height: number } {
  const w2 = Math.max(1, Math.floor(w / 2));
  const h2 = Math.max(1, Math.floor(h / 2));
  const out = allocTyped(dtype, w2 * h2);
  const float = isFloat(dtype);
  for (let y = 0; y < h2; y++) {
    for (let x = 0; x < w2; x++) {
      let sum = 0;
      let n = 0;
      for (let dy = 0; dy < 2; dy++) {
        const sy = Math.min(h - 1, y * 2 + dy);
        for (let dx = 0; dx < 2; dx++) {
          const v = src[sy * w + Math.min(w - 1, x * 2 + dx)];
          if (v === nodata || Number.isNaN(v)) continue;
          sum += v;
          n++;
        }
      }
      out[y * w2 + x] = n === 0 ? (nodata ?? 0) : float ? sum / n : Math.round(sum / n);
    }
  }
  return { data: out, width: w2, height: h2 };
}

/** One level of a COG held in memory: one array per band, row-major. */
export interface CogLevelBands {
  readonly width: number;
  readonly height: number;
  readonly bands: readonly TypedArray[];
}

/** A COG of `r`, its overviews made by `halve`. */
export async function cogBytes(r: InMemoryRaster, options: CogWriteOptions = {}): Promise<Uint8Array> {
  const blockSize = options.blockSize ?? 512;
  const levelCount = cogLevels(r.width, r.height, blockSize).length;
  const levels: CogLevelBands[] = [{ width: r.width, height: r.height, bands: [...r.bands] }];
  for (let l = 1; l < levelCount; l++) {
    const prev = levels[l - 1];
    const next = prev.bands.map((b) => halve(b, prev.width, prev.height, r.dtype, r.nodata));
    levels.push({ width: next[0].width, height: next[0].height, bands: next.map((n) => n.data) });
  }
  return cogBytesOfLevels(r, levels, { bigTiff: false, ...options });
}

/**
 * A COG of levels already made: `levels[0]` is `r` at full resolution, then one entry per overview, of the sizes
 * `cogLevels` gives. Edge tiles are padded with the nodata value (or 0).
 */
export async function cogBytesOfLevels(
  r: Omit<InMemoryRaster, 'bands'>,
  levels: readonly CogLevelBands[],
  options: CogWriteOptions = {},
): Promise<Uint8Array> {
  const compression = options.compression ?? 'deflate';
  const predictor =
    options.predictor ??
    (compression === 'deflate' || compression === 'lzw' || compression === 'zstd' ? (isFloat(r.dtype) ? 3 : 2) : 1);
  const blockSize = options.blockSize ?? 512;
  const bandCount = levels[0].bands.length;
  const layout = layoutCog({
    width: r.width,
    height: r.height,
    bands: bandCount,
    dtype: r.dtype,
    blockSize,
    compression,
    predictor,
    transform: r.transform,
    epsg: r.epsg,
    geographic: r.geographic,
    nodata: r.nodata,
    photometric: options.photometric,
    ghost: { leaderTrailer: true },
    bigTiff: options.bigTiff,
  });
  const payloads: Uint8Array[] = new Array(layout.tileCount);
  for (const lvl of layout.levels) {
    const data = levels[lvl.level];
    const jobs: Promise<void>[] = [];
    for (let ty = 0; ty < lvl.tilesY; ty++) {
      for (let tx = 0; tx < lvl.tilesX; tx++) {
        const tiles = data.bands.map((b) => {
          const w = Math.min(blockSize, lvl.width - tx * blockSize);
          const h = Math.min(blockSize, lvl.height - ty * blockSize);
          const crop = allocTyped(r.dtype, w * h);
          for (let y = 0; y < h; y++) {
            const start = (ty * blockSize + y) * lvl.width + tx * blockSize;
            crop.set(b.subarray(start, start + w), y * w);
          }
          return edgePad(crop, w, h, blockSize, r.nodata ?? 0);
        });
        const index = layout.tileIndexInFile(lvl.level, tx, ty);
        jobs.push(
          encodeTile(tiles, {
            dtype: r.dtype,
            bands: bandCount,
            blockSize,
            compression,
            predictor,
            level: options.level,
          }).then((p) => {
            payloads[index] = p;
          }),
        );
        if (jobs.length >= 8) await Promise.all(jobs.splice(0));
      }
    }
    await Promise.all(jobs);
  }
  return assembleCog(layout, payloads);
}

export async function writeCog(path: string, r: InMemoryRaster, options: CogWriteOptions = {}): Promise<void> {
  await writeFile(path, await cogBytes(r, options));
}
