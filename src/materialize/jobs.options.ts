/**
 * The options of a materialisation job as a person writes them (query string, JSON body, command line): parsed,
 * checked against the mosaic, and echoed back as understood. Errors name the option.
 */
import { CogmillError, RenderError } from '../render/errors.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { RESAMPLINGS, type Resampling } from '../render/types.ts';
import { COG_COMPRESSIONS, type CogCompression, layoutCog } from './cog.layout.ts';
import { cogSpecFor, type MaterializeOptions } from './pipeline.ts';

/** Option names shared by `GET/POST /materialize`, `GET /mosaics/{id}/export.tif` and the command line. */
export const JOB_OPTION_NAMES = [
  'compress',
  'level',
  'quality',
  'predictor',
  'blocksize',
  'resampling',
  'overview_resampling',
  'overviews',
  'statistics',
  'recompress',
] as const;
export type JobOptionName = (typeof JOB_OPTION_NAMES)[number];

const LEVEL_RANGE: Partial<Record<CogCompression, readonly [number, number]>> = { deflate: [1, 9], zstd: [1, 22] };

function badOption(name: string, message: string): RenderError {
  return new RenderError('bad-request', `${name}: ${message}`);
}

function text(name: string, v: unknown): string {
  if (typeof v === 'string') return v.trim();
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  throw badOption(name, `expected a string or a number, got ${v === null ? 'null' : typeof v}`);
}

function integer(name: string, v: unknown, min: number, max: number): number {
  const s = text(name, v);
  const n = Number(s);
  if (s === '' || !Number.isInteger(n) || n < min || n > max)
    throw badOption(name, `must be an integer from ${min} to ${max} (got "${s}")`);
  return n;
}

function oneOf<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  const s = text(name, v).toLowerCase();
  if (!(allowed as readonly string[]).includes(s))
    throw badOption(name, `must be one of ${allowed.join(', ')} (got "${s}")`);
  return s as T;
}

/**
 * Parse job options (strings or JSON values, keyed by JOB_OPTION_NAMES; undefined entries are skipped). Returns the
 * pipeline options and the options as understood, for display. Errors name the option.
 */
export function parseJobOptions(input: Readonly<Record<string, unknown>>): {
  options: MaterializeOptions;
  asked: Record<string, unknown>;
} {
  const asked: Record<string, unknown> = {};
  const has = (k: JobOptionName) => input[k] !== undefined && input[k] !== '';
  const compression: CogCompression = has('compress') ? oneOf('compress', input.compress, COG_COMPRESSIONS) : 'deflate';
  asked.compress = compression;
  let level: number | undefined;
  if (has('level')) {
    const range = LEVEL_RANGE[compression];
    if (!range) throw badOption('level', `applies to compress=deflate (1-9) and zstd (1-22), not ${compression}`);
    level = integer('level', input.level, range[0], range[1]);
    asked.level = level;
  }
  let quality: number | undefined;
  if (has('quality')) {
    if (compression !== 'jpeg' && compression !== 'webp')
      throw badOption('quality', `applies to compress=jpeg and webp, not ${compression}`);
    quality = integer('quality', input.quality, 1, 100);
    asked.quality = quality;
  }
  let predictor: MaterializeOptions['predictor'];
  if (has('predictor')) {
    const p = oneOf('predictor', input.predictor, ['auto', '1', '2', '3'] as const);
    predictor = p === 'auto' ? 'auto' : (Number(p) as 1 | 2 | 3);
    if (
      predictor !== 'auto' &&
      predictor !== 1 &&
      compression !== 'deflate' &&
      compression !== 'lzw' &&
      compression !== 'zstd'
    ) {
      throw badOption('predictor', `applies to compress=deflate, lzw and zstd, not ${compression}`);
    }
    asked.predictor = p;
  }
  let blockSize: number | undefined;
  if (has('blocksize')) {
    blockSize = integer('blocksize', input.blocksize, 64, 4096);
    if (blockSize % 16 !== 0) throw badOption('blocksize', `must be a multiple of 16 (got ${blockSize})`);
    asked.blocksize = blockSize;
  }
  let resampling: Resampling | undefined;
  if (has('resampling')) {
    resampling = oneOf('resampling', input.resampling, RESAMPLINGS);
    asked.resampling = resampling;
  }
  let overviewResampling: Resampling | undefined;
  if (has('overview_resampling')) {
    overviewResampling = oneOf('overview_resampling', input.overview_resampling, RESAMPLINGS);
    asked.overview_resampling = overviewResampling;
  }
  let overviews: MaterializeOptions['overviews'];
  if (has('overviews')) {
    overviews = oneOf('overviews', input.overviews, ['finer', 'sources'] as const);
    asked.overviews = overviews;
  }
  /** A true / false option (also 1 / 0, yes / no), when given. */
  const flag = (name: 'statistics' | 'recompress'): boolean | undefined => {
    if (!has(name)) return undefined;
    const v = text(name, input[name]).toLowerCase();
    if (!['true', 'false', '1', '0', 'yes', 'no'].includes(v))
      throw badOption(name, `must be true or false (got "${v}")`);
    const on = v === 'true' || v === '1' || v === 'yes';
    asked[name] = on;
    return on;
  };
  const statistics = flag('statistics');
  const recompress = flag('recompress');
  const options: MaterializeOptions = {
    compression,
    level,
    quality,
    predictor,
    blockSize,
    resampling,
    overviewResampling,
    overviews,
    statistics,
    recompress,
  };
  return { options, asked };
}

/** Check the options fit the mosaic (jpeg needs uint8 with 1 or 3 bands, ...) before any work starts. */
export function checkJobOptions(mosaic: Mosaic, options: MaterializeOptions): void {
  try {
    layoutCog(cogSpecFor(mosaic, options));
  } catch (e) {
    if (e instanceof CogmillError)
      throw new RenderError('bad-request', `mosaic ${mosaic.id}: ${e.message}`, { cause: e });
    throw e;
  }
}
