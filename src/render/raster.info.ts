/**
 * What an opened raster is: its metadata (RasterInfo, one RasterLevel per overview), the pixels of a window
 * (RasterWindow) and the caches the reader keeps.
 */
import type { BaseDecoder, ImageFileDirectory } from 'geotiff';
import type { LRUCache } from 'lru-cache';
import type { Crs, DType, GeoTransform, TypedArray } from './types.ts';

export interface RasterCaches {
  /** header blocks: `${url}|${etag}|${block}` -> bytes */
  readonly header: LRUCache<string, Uint8Array>;
  /** decoded tiles: `${url}|${etag}|${level}|${index}` -> decoded tile bytes */
  readonly tiles: LRUCache<string, Uint8Array>;
}

export interface RasterLevel {
  readonly width: number;
  readonly height: number;
  readonly blockWidth: number;
  readonly blockHeight: number;
  readonly blocksAcross: number;
  readonly blocksDown: number;
  readonly tiled: boolean;
  /** full-resolution pixels per pixel of this level */
  readonly factorX: number;
  readonly factorY: number;
}

export interface RasterInfo {
  readonly url: string;
  readonly size: number;
  readonly etag: string;
  readonly width: number;
  readonly height: number;
  readonly bandCount: number;
  readonly dtype: DType;
  readonly nodata: number | undefined;
  readonly transform: GeoTransform;
  readonly crs: Crs;
  readonly blockWidth: number;
  readonly blockHeight: number;
  readonly compression: string;
  readonly interleave: 'pixel' | 'band';
  readonly photometric: 'minisblack' | 'rgb' | 'palette' | 'ycbcr' | 'other';
  readonly hasMask: boolean;
  /** full resolution first, then overviews, finest to coarsest */
  readonly levels: readonly RasterLevel[];
  readonly bandDescriptions: readonly string[];
  /** what was read differently from what the file says, as GDAL would (e.g. a GDAL_NODATA that is not a number) */
  readonly warnings: readonly string[];
}

/** Pixels of a window of one level: one typed array per requested band; `mask` when the file has an internal mask. */
export interface RasterWindow {
  /** one array per band asked for; may share memory with the block cache (a whole block is not copied): read only */
  readonly bands: TypedArray[];
  readonly mask?: Uint8Array;
}

export interface LevelInternal extends RasterLevel {
  readonly ifd: ImageFileDirectory;
  readonly compression: number;
  /** TIFF predictor (1 none, 2 horizontal, 3 floating point) */
  readonly predictor: number;
  /** the file's byte order */
  readonly littleEndian: boolean;
  readonly decoder: Promise<BaseDecoder>;
  readonly maskIfd?: LevelInternal;
  readonly offsetsTag: number;
  readonly countsTag: number;
  readonly bitsPerSample: number;
  readonly samples: number;
}
