/** Options, progress and results of a materialisation, and the COG spec they give (shared by every mode). */
import type { Mosaic } from '../render/mosaic.ts';
import { isFloat, type Resampling } from '../render/types.ts';
import type { CogCompression, CogPredictor, CogSpec } from './cog.layout.ts';
import { mosaicCogSpec } from './cog.tiles.ts';
import type { SinkResult } from './sink.ts';

export interface MaterializeOptions {
  readonly compression?: CogCompression;
  /** deflate/zstd level */
  readonly level?: number;
  /**
   * 'auto' (default): 2 for integers, 3 for floats, 1 for none/jpeg/webp; `materialize` and the commands first
   * choose between that and 1 on the data (predictor.choice.ts)
   */
  readonly predictor?: CogPredictor | 'auto';
  readonly blockSize?: number;
  readonly quality?: number;
  readonly resampling?: Resampling;
  readonly overviewResampling?: Resampling;
  /**
   * 'finer': each overview level from the level below it, in one pass, as GDAL does when it computes overviews;
   * 'sources': every level rendered from the sources (equal to the virtual COG's levels). Default: finer for
   * average, mode and nearest when a source lacks overviews of its own, else sources.
   */
  readonly overviews?: 'finer' | 'sources';
  /** worker threads; 0 renders on the calling thread. Default: available cores */
  readonly workers?: number;
  /** parallel runs of tiles for parts sinks (default: max(1, workers)) */
  readonly runs?: number;
  readonly maxConcurrentUploads?: number;
  /** smallest part size (default 8 MiB; grows so that 10,000 parts hold the largest possible output) */
  readonly minPartSizeBytes?: number;
  /** S3's minimum part size; only tests lower it */
  readonly minPartBytes?: number;
  /** write band statistics into GDAL_METADATA (default true) */
  readonly statistics?: boolean;
  /**
   * compress every tile; by default a tile that is exactly one source block stored with deflate and the same
   * predictor keeps the source's bytes when they measure at most 1.5% larger (stored.reuse.ts)
   */
  readonly recompress?: boolean;
}

export interface MaterializeProgress {
  readonly tilesDone: number;
  readonly tilesTotal: number;
  readonly bytesWritten: number;
  readonly parts: number;
  readonly retries: number;
  readonly elapsedMs: number;
  readonly tilesPerSecond: number;
  readonly etaSeconds: number | null;
  /** on a queue: shards of the plan done (by any process, resumed ones included), running, in all */
  readonly shards?: { readonly total: number; readonly done: number; readonly running: number };
  /** on a queue: worker processes that reported progress */
  readonly workers?: number;
}

export interface MaterializeResult extends SinkResult {
  readonly tiles: number;
  readonly levels: number;
  readonly bigTiff: boolean;
  readonly elapsedMs: number;
}

export interface MaterializeHooks {
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: MaterializeProgress) => void;
}

export function resolvePredictor(
  compression: CogCompression,
  predictor: CogPredictor | 'auto' | undefined,
  dtype: Mosaic['dtype'],
): CogPredictor {
  if (predictor !== undefined && predictor !== 'auto') return predictor;
  if (compression !== 'deflate' && compression !== 'lzw' && compression !== 'zstd') return 1;
  return isFloat(dtype) ? 3 : 2;
}

/** The COG spec of a mosaic for the given options (gdalMetadata reserved at its final length). */
export function cogSpecFor(mosaic: Mosaic, options: MaterializeOptions, gdalMetadata?: string): CogSpec {
  const compression = options.compression ?? 'deflate';
  return mosaicCogSpec(mosaic, {
    blockSize: options.blockSize ?? mosaic.blockSize,
    compression,
    predictor: resolvePredictor(compression, options.predictor, mosaic.dtype),
    gdalMetadata,
    ghost: { leaderTrailer: true },
    bigTiff: false,
  });
}
