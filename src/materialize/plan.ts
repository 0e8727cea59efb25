/**
 * The plan of a materialisation: pure, deterministic from the mosaic and the options, decided before any pixel is
 * read, and serialisable (JSON) so other processes and machines can run its shards.
 *
 * ```
 * plan      = planMaterialization(mosaic, options, destination, limits, shardCount)   (pure)
 * report_i  = runShard(plan, i, deps)      render + encode + stage tiles [first_i, end_i) as parts of its own
 *                                         number range; returns a few KB: tile sizes, part numbers + ETags,
 *                                         the byte extents it held back, exact band statistics
 * result    = completeMaterialization(plan, reports, deps)   glue the held extents (re-rendering their tiles:
 *                                         encoding is deterministic), build the header from the reported sizes,
 *                                         stage part 1 (header + first data) last, commit, verify
 * ```
 *
 * Shards are runs of tiles in file order (smallest overview first, full resolution last, row-major), of about
 * equal size. Shard i owns part numbers [partBase_i, partBase_i + partSlots_i): it stages its data as parts
 * partBase_i + 1, ... and leaves partBase_i free for the complete step's glue. Part 1 is the header part.
 * A plan carries a fingerprint of the mosaic (spec + every source's identity: URL, ETag, size) and of the
 * options: a process whose mosaic does not give the same fingerprint refuses the plan (`changed`).
 */
import { createHash, randomUUID } from 'node:crypto';
import { CogmillError } from '../render/errors.ts';
import type { Mosaic, MosaicSpec } from '../render/mosaic.ts';
import { MiB, type Resampling } from '../render/types.ts';
import { type CogLayout, layoutCog, maxTilePayloadBytes } from './cog.layout.ts';
import { defaultOverviewResampling } from './cog.tiles.ts';
import { isReducible, REDUCIBLE_RESAMPLINGS } from './overview.reduce.ts';
import { cogSpecFor, type MaterializeOptions } from './pipeline.options.ts';
import type { SinkLimits } from './sink.ts';
import { statisticsXmlBytes } from './statistics.xml.ts';
import type { TileJobSettings } from './tile.job.ts';

export const PLAN_KIND = 'cogmill.materialize.plan';
export const PLAN_VERSION = 1;
/** the default part size; it grows when 10,000 parts could not hold the largest possible output */
export const DEFAULT_PART_SIZE_BYTES = 8 * MiB;

export interface ShardRange {
  readonly index: number;
  /** first tile (file order), inclusive */
  readonly firstTile: number;
  /** end tile (file order), exclusive */
  readonly endTile: number;
  /** the shard's part numbers are [partBase, partBase + partSlots); partBase itself is left for the glue */
  readonly partBase: number;
  readonly partSlots: number;
}

/** The options a plan fixes (everything that changes bytes), JSON-safe. */
export interface PlanOptions {
  readonly compression: NonNullable<MaterializeOptions['compression']>;
  readonly level?: number;
  readonly predictor: 1 | 2 | 3;
  readonly blockSize: number;
  readonly quality?: number;
  readonly resampling: Resampling;
  readonly overviewResampling: Resampling;
  /**
   * How overview levels are made: 'finer' = each from the level below it (2x2, see overview.reduce.ts), 'sources'
   * = rendered from the sources at the level's resolution (the virtual COG's way). Absent in older plans: sources.
   */
  readonly overviews?: OverviewMethod;
  readonly statistics: boolean;
  /** compress every tile, reusing no source block's stored bytes (absent: reuse where they qualify) */
  readonly recompress?: boolean;
}

export type OverviewMethod = 'finer' | 'sources';

export interface MaterializePlan {
  readonly kind: typeof PLAN_KIND;
  readonly version: typeof PLAN_VERSION;
  /** this materialisation (queue job ids, notes); a resumed materialisation keeps it */
  readonly id: string;
  /** sha256 of the mosaic's identity (spec and sources) and the options */
  readonly fingerprint: string;
  readonly createdAt: string;
  readonly mosaic: MosaicSpec;
  /** s3://bucket/key.tif, az://container/blob.tif */
  readonly destination: string;
  /** the upload every shard stages into (null until the coordinator created it) */
  readonly uploadId: string | null;
  readonly options: PlanOptions;
  readonly width: number;
  readonly height: number;
  readonly bands: number;
  readonly dtype: string;
  readonly tileCount: number;
  readonly partSizeBytes: number;
  readonly minPartBytes: number;
  readonly maxParts: number;
  readonly shards: readonly ShardRange[];
}

/**
 * True when every source has overviews of its own (COG inputs): rendering each level from them was measured
 * cheaper than the pass over the full resolution (land cover, back to back: 3.9 vs 5.4 CPU s) and is
 * what GDAL's COG driver does with them (it copies a VRT's levels). A catalogue mosaic (sources opened per window)
 * counts as without.
 */
function sourcesHaveOverviews(mosaic: Mosaic): boolean {
  if (mosaic.items || mosaic.sources.length === 0) return false;
  return mosaic.sources.every((s) => s.raster.info.levels.length > 1);
}

/**
 * The options of a plan that many processes run (the queue, static shards): overviews default to 'sources'. The
 * pass from the finer level renders every full-resolution tile in whichever process is asked for an overview tile
 * (overview.pyramid.ts), so with more than two machines it would put one full-resolution read on one node;
 * rendering each level from the sources spreads that work over the shards. Asked for explicitly, 'finer' stays.
 */
export function clusterOptions<T extends MaterializeOptions>(options: T): T {
  return options.overviews !== undefined ? options : { ...options, overviews: 'sources' };
}

/** Everything that changes the output bytes, resolved from the options and the mosaic. */
export function planOptions(mosaic: Mosaic, options: MaterializeOptions): PlanOptions {
  const spec = cogSpecFor(mosaic, options);
  const overviewResampling = options.overviewResampling ?? defaultOverviewResampling(mosaic);
  const overviews =
    options.overviews ?? (isReducible(overviewResampling) && !sourcesHaveOverviews(mosaic) ? 'finer' : 'sources');
  if (overviews === 'finer' && !isReducible(overviewResampling))
    throw new CogmillError(
      'bad-request',
      `overviews from the finer level take ${REDUCIBLE_RESAMPLINGS.join(', ')} resampling, not ${overviewResampling}`,
    );
  return {
    compression: spec.compression,
    ...(options.level !== undefined ? { level: options.level } : {}),
    predictor: spec.predictor,
    blockSize: spec.blockSize ?? mosaic.blockSize,
    ...(options.quality !== undefined ? { quality: options.quality } : {}),
    resampling: options.resampling ?? mosaic.resampling,
    overviewResampling,
    overviews,
    statistics: options.statistics !== false,
    ...(options.recompress === true ? { recompress: true } : {}),
  };
}

/** The materialize options that reproduce a plan's bytes. */
export function optionsOfPlan(plan: MaterializePlan): MaterializeOptions {
  const o = plan.options;
  return {
    compression: o.compression,
    level: o.level,
    predictor: o.predictor,
    blockSize: o.blockSize,
    quality: o.quality,
    resampling: o.resampling,
    overviewResampling: o.overviewResampling,
    overviews: o.overviews ?? 'sources',
    statistics: o.statistics,
    recompress: o.recompress,
  };
}

export function tileJobSettings(plan: MaterializePlan): TileJobSettings {
  const o = plan.options;
  return {
    blockSize: o.blockSize,
    compression: o.compression,
    predictor: o.predictor,
    level: o.level,
    quality: o.quality,
    resampling: o.resampling,
    overviewResampling: o.overviewResampling,
    recompress: o.recompress,
  };
}

/** The COG layout of a plan before the tile sizes are known (classic TIFF, statistics reserved). */
export function planLayout(mosaic: Mosaic, plan: MaterializePlan): CogLayout {
  const placeholder = plan.options.statistics ? ' '.repeat(statisticsXmlBytes(mosaic.bandCount)) : undefined;
  return layoutCog(cogSpecFor(mosaic, optionsOfPlan(plan), placeholder));
}

export function planFingerprint(mosaic: Mosaic, destination: string, options: PlanOptions): string {
  const h = createHash('sha256');
  h.update(`${PLAN_KIND}/${PLAN_VERSION}\n${mosaic.etag}\n${destination}\n${JSON.stringify(options)}`);
  return h.digest('hex');
}

/**
 * Shards of about equal size over `tileCount` tiles of at most `tileUpperBytes` (framed) each, and a part size
 * that fits even incompressible data into `limits.maxParts` parts.
 */
export function planShards(
  tileCount: number,
  tileUpperBytes: number,
  shardCount: number,
  limits: SinkLimits,
  minPartSizeBytes = DEFAULT_PART_SIZE_BYTES,
): { partSizeBytes: number; shards: ShardRange[] } {
  const shards = Math.max(1, Math.min(Math.floor(shardCount), tileCount || 1));
  const total = tileCount * tileUpperBytes;
  // part 1 (header), per shard: 1 glue slot + 1 for the remainder + its full parts
  const available = limits.maxParts - 1 - 2 * shards;
  if (available < shards)
    throw new CogmillError('bad-request', `${shards} shards need more than the ${limits.maxParts} parts allowed`);
  let partSize = Math.max(minPartSizeBytes, limits.minPartBytes, Math.ceil(total / available));
  partSize = Math.ceil(partSize / MiB) * MiB;
  if (partSize + limits.minPartBytes > limits.maxPartBytes)
    throw new CogmillError('too-large', 'the output may be too large for one upload (parts would pass the limit)');
  const out: ShardRange[] = [];
  let base = 2;
  for (let i = 0; i < shards; i++) {
    const firstTile = Math.floor((i * tileCount) / shards);
    const endTile = Math.floor(((i + 1) * tileCount) / shards);
    const partSlots = Math.ceil(((endTile - firstTile) * tileUpperBytes) / partSize) + 2;
    out.push({ index: i, firstTile, endTile, partBase: base, partSlots });
    base += partSlots;
  }
  if (base - 1 > limits.maxParts)
    throw new CogmillError('too-large', `the plan needs ${base - 1} part numbers, more than ${limits.maxParts}`);
  return { partSizeBytes: partSize, shards: out };
}

export interface PlanInput {
  readonly mosaic: Mosaic;
  readonly options: MaterializeOptions;
  readonly destination: string;
  readonly limits: SinkLimits;
  readonly shards: number;
  /** default 8 MiB (grown as needed) */
  readonly minPartSizeBytes?: number;
  readonly id?: string;
  readonly now?: Date;
}

/**
 * Plan a materialisation; pure apart from the random id and the clock (both injectable). An 'auto' predictor here
 * is the type's (2, 3 for floats): the commands, the server and `materialize` choose it on the data first
 * (predictor.choice.ts `choosePredictor`), and a plan made directly should too, to write what they write.
 */
export function planMaterialization(input: PlanInput): MaterializePlan {
  const { mosaic, limits } = input;
  const options = planOptions(mosaic, input.options);
  const base: Omit<MaterializePlan, 'tileCount' | 'partSizeBytes' | 'shards'> = {
    kind: PLAN_KIND,
    version: PLAN_VERSION,
    id: input.id ?? randomUUID(),
    fingerprint: planFingerprint(mosaic, input.destination, options),
    createdAt: (input.now ?? new Date()).toISOString(),
    mosaic: mosaic.spec,
    destination: input.destination,
    uploadId: null,
    options,
    width: mosaic.grid.width,
    height: mosaic.grid.height,
    bands: mosaic.bandCount,
    dtype: mosaic.dtype,
    minPartBytes: limits.minPartBytes,
    maxParts: limits.maxParts,
  };
  const layout = planLayout(mosaic, { ...base, tileCount: 0, partSizeBytes: 0, shards: [] });
  const upper = maxTilePayloadBytes(layout.spec) + layout.tileFrameBytes;
  const { partSizeBytes, shards } = planShards(
    layout.tileCount,
    upper,
    input.shards,
    limits,
    input.minPartSizeBytes ?? input.options.minPartSizeBytes,
  );
  return { ...base, tileCount: layout.tileCount, partSizeBytes, shards };
}

function bad(why: string): CogmillError {
  return new CogmillError('bad-request', `not a usable materialisation plan: ${why}`);
}

/** Read a plan from its JSON text; a plan of another version or shape is refused with a clear message. */
export function parsePlan(text: string): MaterializePlan {
  let v: Partial<MaterializePlan>;
  try {
    v = JSON.parse(text) as Partial<MaterializePlan>;
  } catch (e) {
    throw bad(`it is not JSON (${(e as Error).message})`);
  }
  if (v?.kind !== PLAN_KIND) throw bad(`"kind" is not "${PLAN_KIND}"`);
  if (v.version !== PLAN_VERSION)
    throw bad(`it is version ${v.version}; this cogmill reads version ${PLAN_VERSION}: plan again`);
  for (const k of ['id', 'fingerprint', 'destination'] as const)
    if (typeof v[k] !== 'string' || v[k] === '') throw bad(`"${k}" is missing`);
  if (!v.mosaic || !Array.isArray(v.mosaic.sources)) throw bad('"mosaic" is missing');
  if (!v.options || typeof v.options.compression !== 'string') throw bad('"options" is missing');
  const ints = ['tileCount', 'partSizeBytes', 'minPartBytes', 'maxParts', 'width', 'height', 'bands'] as const;
  for (const k of ints) if (!Number.isSafeInteger(v[k]) || (v[k] as number) < 0) throw bad(`"${k}" is not a count`);
  if (!Array.isArray(v.shards) || v.shards.length === 0) throw bad('it has no shards');
  let expect = 0;
  let base = 2;
  for (const [i, s] of v.shards.entries()) {
    if (s.index !== i || s.firstTile !== expect || !(s.endTile >= s.firstTile) || s.partBase !== base)
      throw bad(`shard ${i} does not follow shard ${i - 1}`);
    if (!Number.isSafeInteger(s.partSlots) || s.partSlots < 2) throw bad(`shard ${i} has no part numbers`);
    expect = s.endTile;
    base += s.partSlots;
  }
  if (expect !== v.tileCount) throw bad('its shards do not cover every tile');
  if (base - 1 > (v.maxParts as number)) throw bad('its part numbers pass maxParts');
  if (v.uploadId !== null && typeof v.uploadId !== 'string') throw bad('"uploadId" is neither null nor a string');
  return v as MaterializePlan;
}

/** Refuse a plan made for another mosaic, other sources (changed since), other options or another destination. */
export function checkPlanFits(plan: MaterializePlan, mosaic: Mosaic): void {
  const fp = planFingerprint(mosaic, plan.destination, plan.options);
  if (fp !== plan.fingerprint) {
    throw new CogmillError(
      'changed',
      `the plan ${plan.id} was made for another state of the mosaic "${plan.mosaic.id}" (a source changed, or the sources or options differ): plan again`,
    );
  }
}

/** "I/N" -> shard numbers of a plan with `count` shards handled by worker I of N (I from 0). */
export function shardsOfWorker(spec: string, count: number): number[] {
  const m = /^(\d+)\/(\d+)$/.exec(spec.trim());
  if (!m) throw new CogmillError('bad-request', `--shard must be I/N, e.g. 3/10 (got "${spec}")`);
  const i = Number(m[1]);
  const n = Number(m[2]);
  if (n < 1 || i >= n) throw new CogmillError('bad-request', `--shard ${spec}: I must be from 0 to N-1`);
  const out: number[] = [];
  for (let s = i; s < count; s += n) out.push(s);
  return out;
}
