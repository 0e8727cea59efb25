/**
 * The materialisation pipeline in one process: plan -> shards -> complete, the same three steps every mode runs
 * (see plan.ts), with the shards run concurrently on this process's worker threads.
 *
 * Full resolution is rendered from the sources by the same call the virtual COG uses (equal to it bit for bit).
 * Overviews are built from the finer level in one pass (overview.pyramid.ts, GDAL's way: within rounding of the
 * overviews GDAL computes from the same pixels), or with `overviews: 'sources'` rendered from the sources at each
 * level's resolution (equal to the virtual COG's at every level). Tiles can be asked for in any order by any shard;
 * memory is bounded by (tiles in flight x tile size) + (shards x part size) + two rows of decoded tiles per level.
 * The bytes do not depend on the number of shards, threads or machines (band statistics are summed exactly).
 */
import { availableParallelism } from 'node:os';
import type { Engine } from '../render/engine.ts';
import { CogmillError, errorMessage, RenderError } from '../render/errors.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { bytesPerSample, MiB } from '../render/types.ts';
import type { CogLayout } from './cog.layout.ts';
import { checkReports, completeMaterialization, headerOf } from './complete.ts';
import { OverviewPyramid, type TileJobRunner } from './overview.pyramid.ts';
import type { Part } from './part.plan.ts';
import { S3_MAX_PART_BYTES, S3_MAX_PARTS, S3_MIN_PART_BYTES } from './part.plan.ts';
import type {
  MaterializeHooks,
  MaterializeOptions,
  MaterializeProgress,
  MaterializeResult,
} from './pipeline.options.ts';
import { type MaterializePlan, planLayout, planMaterialization, tileJobSettings } from './plan.ts';
import { choosePredictor } from './predictor.choice.ts';
import { runShard, type ShardReport, type TileRenderer } from './shard.ts';
import {
  isStaged,
  type Sink,
  type SinkParts,
  type SinkResult,
  type SinkSequential,
  type SinkStaged,
  type StagedPart,
} from './sink.ts';
import { reduceShapeOf, runReduceJob, runTileJob } from './tile.job.ts';
import { TilePool } from './tile.pool.ts';

export * from './pipeline.options.ts';

export const DEFAULT_PART_SIZE = 8 * MiB;
const WORKER_BLOCK_CACHE_BYTES = 32 * MiB;

/**
 * Renders the tiles of one plan (any tile, any order) on threads of their own (each thread opens the plan's mosaic
 * once); close it once done.
 */
export interface PlanRenderer {
  readonly render: TileRenderer;
  close(): Promise<void>;
}

/**
 * Tile rendering on `workers` threads (0: on the calling thread). With the plan's overviews from the finer level,
 * overview tiles come from one pass over the full-resolution tiles (overview.pyramid.ts).
 */
export function tileRenderer(
  engine: Engine,
  mosaic: Mosaic,
  plan: MaterializePlan,
  layout: CogLayout,
  workers: number,
): PlanRenderer {
  const settings = { ...tileJobSettings(plan), frame: layout.tileFrameBytes > 0 };
  let run: TileJobRunner;
  let closePool = async () => {};
  if (workers <= 0) {
    const shape = reduceShapeOf(mosaic, settings);
    run = (j) =>
      j.window
        ? runReduceJob(shape, layout.levels, settings, j.level, j.tx, j.ty, j.window, j.keep)
        : runTileJob(engine, mosaic, layout.levels, settings, j.level, j.tx, j.ty, undefined, j.keep);
  } else {
    const pool = new TilePool(workers, {
      // tiles are rendered in file order, so each source block is wanted for a short while only: a small
      // block cache per worker keeps peak memory flat as the mosaic grows (256 MiB each measured +50% RSS for
      // 4x the pixels; 32 MiB: +2%, at the same speed)
      engine: {
        ...engine.settings,
        tileCacheBytes: Math.min(engine.settings.tileCacheBytes, WORKER_BLOCK_CACHE_BYTES),
        // the process's descriptor budget is shared by this engine and every worker's
        maxOpenFiles: Math.max(4, Math.floor(engine.settings.maxOpenFiles / (workers + 1))),
      },
      spec: mosaic.spec,
      settings,
    });
    run = (j) => pool.run(j);
    closePool = () => pool.close();
  }
  if (plan.options.overviews === 'finer' && layout.levels.length > 1) {
    const resampling = reduceShapeOf(mosaic, settings).overviewResampling;
    const pyramid = new OverviewPyramid(layout.levels, settings.blockSize, resampling, run, {
      tilesInFlight: Math.max(2, workers * 2),
    });
    return {
      render: (t, signal) => pyramid.render(t, signal),
      close: async () => {
        try {
          await pyramid.close();
        } finally {
          await closePool();
        }
      },
    };
  }
  return { render: (t) => run({ level: t.level, tx: t.tx, ty: t.ty }), close: closePool };
}

/** At most `n` calls of `fn` at once. */
export function limitConcurrency<A extends unknown[], R>(n: number, fn: (...a: A) => Promise<R>) {
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (...a: A): Promise<R> => {
    while (running >= n) await new Promise<void>((r) => waiting.push(r));
    running++;
    try {
      return await fn(...a);
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}

/**
 * A staged sink over an in-process parts sink (one that keeps its own part list): for this process only. Its
 * commit accepts exactly the parts staged through it.
 */
export function stagedOf(sink: SinkParts): SinkStaged {
  const staged = new Map<number, StagedPart>();
  const notes = new Map<string, string>();
  let id: string | undefined;
  return {
    kind: sink.kind,
    location: sink.location,
    limits: {
      minPartBytes: sink.minPartBytes ?? S3_MIN_PART_BYTES,
      maxPartBytes: S3_MAX_PART_BYTES,
      maxParts: sink.maxParts ?? S3_MAX_PARTS,
    },
    stats: sink.stats,
    get uploadId() {
      return id;
    },
    async create(signal) {
      await sink.open(signal);
      id = `${sink.kind}-in-process`;
      return id;
    },
    attach() {
      throw new CogmillError('unsupported', `the ${sink.kind} sink cannot be shared between processes yet`);
    },
    async stage(part: Part, signal) {
      await sink.putPart(part, signal);
      const p = { partNumber: part.partNumber, bytes: part.bytes, etag: `in-process-${part.partNumber}` };
      staged.set(part.partNumber, p);
      return p;
    },
    async listStaged() {
      return [...staged.values()].sort((a, b) => a.partNumber - b.partNumber);
    },
    async commit(parts, signal) {
      if (parts.length !== staged.size || parts.some((p) => staged.get(p.partNumber)?.etag !== p.etag))
        throw new CogmillError('internal', `${sink.location}: this sink commits every staged part, no other list`);
      return sink.complete(signal);
    },
    abort: (reason) => sink.abort(reason),
    listUploads: async () => [],
    abortUpload: async () => {},
    putNote: async (name, text) => {
      notes.set(name, text);
    },
    getNote: async (name) => notes.get(name),
    listNotes: async () => [...notes.keys()],
    clearNotes: async () => notes.clear(),
  };
}

export interface PlanRunHooks extends MaterializeHooks {
  /** called with each shard's report as it arrives (to save it for resume) */
  readonly onReport?: (report: ShardReport) => Promise<void> | void;
}

interface Progressor {
  tile(): void;
  report(force?: boolean): void;
}

function progressor(tileCount: number, sink: { stats: Sink['stats'] }, hooks: MaterializeHooks, already = 0) {
  const t0 = performance.now();
  let tilesDone = already;
  let last = 0;
  const progress = (): MaterializeProgress => {
    const elapsedMs = performance.now() - t0;
    const rate = (tilesDone - already) / Math.max(elapsedMs / 1000, 1e-3);
    return {
      tilesDone,
      tilesTotal: tileCount,
      bytesWritten: sink.stats.bytes,
      parts: sink.stats.parts,
      retries: sink.stats.retries,
      elapsedMs: Math.round(elapsedMs),
      tilesPerSecond: Math.round(rate * 10) / 10,
      etaSeconds: tilesDone > already ? Math.round((tileCount - tilesDone) / rate) : null,
    };
  };
  const p: Progressor = {
    tile() {
      tilesDone++;
      p.report();
    },
    report(force = false) {
      const now = performance.now();
      if (!hooks.onProgress || (!force && now - last < 250)) return;
      last = now;
      hooks.onProgress(progress());
    },
  };
  return p;
}

/**
 * Run shards of a plan in this process (all of them, or `only`), concurrently on `workers` threads, staging into
 * `sink` (attached to the plan's upload). Resolves with their reports.
 */
export async function runShardsInProcess(
  engine: Engine,
  mosaic: Mosaic,
  plan: MaterializePlan,
  sink: SinkStaged,
  options: {
    workers?: number;
    maxConcurrentUploads?: number;
    only?: readonly number[];
    /** render with these threads (kept open: the caller owns them) rather than `workers` new ones */
    renderer?: PlanRenderer;
  },
  hooks: PlanRunHooks & { progress?: Progressor } = {},
): Promise<ShardReport[]> {
  const layout = planLayout(mosaic, plan);
  const workers = Math.max(0, Math.min(options.workers ?? availableParallelism(), 64));
  const renderer = options.renderer
    ? { render: options.renderer.render, close: async () => {} }
    : tileRenderer(engine, mosaic, plan, layout, workers);
  const controller = new AbortController();
  const signal = hooks.signal ? AbortSignal.any([hooks.signal, controller.signal]) : controller.signal;
  const stage = limitConcurrency(options.maxConcurrentUploads ?? 4, (part: Part) => sink.stage(part, signal));
  const only = options.only ?? plan.shards.map((s) => s.index);
  const progress = hooks.progress ?? progressor(plan.tileCount, sink, hooks);
  const perShard = Math.max(2, Math.ceil((Math.max(1, workers) * 3) / Math.max(1, only.length)));
  try {
    return await Promise.all(
      only.map(async (i) => {
        const report = await runShard(i, {
          plan,
          layout,
          render: renderer.render,
          stage,
          signal,
          tilesInFlight: perShard,
          stagesInFlight: options.maxConcurrentUploads ?? 4,
          onTile: () => progress.tile(),
        });
        await hooks.onReport?.(report);
        return report;
      }),
    );
  } catch (e) {
    controller.abort(e);
    throw e;
  } finally {
    await renderer.close();
  }
}

/** Complete a plan in this process (glue tiles rendered on `workers` threads). */
export async function completeInProcess(
  engine: Engine,
  mosaic: Mosaic,
  plan: MaterializePlan,
  sink: SinkStaged,
  reports: readonly (ShardReport | undefined)[],
  options: { workers?: number; signal?: AbortSignal; renderer?: PlanRenderer } = {},
) {
  const layout = planLayout(mosaic, plan);
  const workers = Math.max(0, Math.min(options.workers ?? Math.min(2, availableParallelism()), 64));
  const renderer = options.renderer ?? tileRenderer(engine, mosaic, plan, layout, workers);
  try {
    return await completeMaterialization(checkReports(plan, reports), {
      plan,
      mosaic,
      layout,
      sink,
      render: renderer.render,
      signal: options.signal,
      tilesInFlight: Math.max(2, workers),
    });
  } finally {
    if (!options.renderer) await renderer.close();
  }
}

/** Decoded bytes the tiles in flight on the calling thread may hold together (see inlineTilesInFlight). */
const INLINE_FLIGHT_BYTES = 128 * MiB;

/**
 * Tiles in flight when they are rendered on the calling thread: up to 16, fewer for large tiles. There each tile's
 * inflate and deflate run on libuv's thread pool, and a tile waits on them in turn: with 3 in flight (as for one
 * worker) an RGB COG export kept 1.6 of 2 cores busy (2.54 s); with 16, 2.16-2.22 s, the same bytes.
 */
function inlineTilesInFlight(mosaic: Mosaic, plan: MaterializePlan): number {
  const tileBytes = plan.options.blockSize * plan.options.blockSize * mosaic.bandCount * bytesPerSample(mosaic.dtype);
  return Math.max(3, Math.min(16, Math.floor(INLINE_FLIGHT_BYTES / tileBytes)));
}

async function materializeSequential(
  engine: Engine,
  mosaic: Mosaic,
  sink: SinkSequential,
  plan: MaterializePlan,
  workers: number,
  hooks: MaterializeHooks,
  signal: AbortSignal,
): Promise<SinkResult & { levels: number; bigTiff: boolean }> {
  const layout = planLayout(mosaic, plan);
  const renderer = tileRenderer(engine, mosaic, plan, layout, workers);
  const progress = progressor(plan.tileCount, sink, hooks);
  try {
    await sink.open(layout.headerBytes, signal);
    const report = await runShard(0, {
      plan,
      layout,
      render: renderer.render,
      stage: () => Promise.reject(new Error('a sequential sink takes no parts')),
      write: (chunk) => sink.write(chunk, signal),
      signal,
      tilesInFlight: workers === 0 ? inlineTilesInFlight(mosaic, plan) : Math.max(2, Math.max(1, workers) * 3),
      onTile: () => progress.tile(),
    });
    const final = headerOf(plan, mosaic, [report]);
    const result = await sink.complete(final.header, signal);
    progress.report(true);
    return { ...result, levels: final.layout.levels.length, bigTiff: final.layout.bigTiff };
  } finally {
    await renderer.close();
  }
}

/**
 * Materialise `mosaic` into `sink`. On failure or cancel the sink is aborted (nothing at the destination) and
 * the error is rethrown.
 */
export async function materialize(
  engine: Engine,
  mosaic: Mosaic,
  sink: Sink | SinkStaged,
  options: MaterializeOptions = {},
  hooks: MaterializeHooks = {},
): Promise<MaterializeResult> {
  const t0 = performance.now();
  const workers = Math.max(0, Math.min(options.workers ?? availableParallelism(), 64));
  const controller = new AbortController();
  const signal = hooks.signal ? AbortSignal.any([hooks.signal, controller.signal]) : controller.signal;
  const sequential = !isStaged(sink) && sink.mode === 'sequential';
  const staged = isStaged(sink) ? sink : sequential ? undefined : stagedOf(sink as SinkParts);
  const limits = staged?.limits ?? { minPartBytes: 1, maxPartBytes: S3_MAX_PART_BYTES, maxParts: S3_MAX_PARTS };
  let plan: MaterializePlan | undefined;
  try {
    // 'auto' predictor: chosen on one or two tiles of the mosaic (predictor.choice.ts), then fixed by the plan
    const chosen = await choosePredictor(engine, mosaic, options, signal);
    plan = planMaterialization({
      mosaic,
      options: { ...chosen, minPartSizeBytes: options.minPartSizeBytes },
      destination: sink.location,
      limits: options.minPartBytes !== undefined ? { ...limits, minPartBytes: options.minPartBytes } : limits,
      shards: sequential ? 1 : (options.runs ?? Math.max(1, workers)),
    });
    let result: SinkResult & { levels?: number; bigTiff?: boolean };
    if (sequential) {
      result = await materializeSequential(engine, mosaic, sink as SinkSequential, plan, workers, hooks, signal);
    } else {
      const s = staged!;
      plan = { ...plan, uploadId: await s.create(signal) };
      const progress = progressor(plan.tileCount, s, hooks);
      // one renderer for the shards and the complete step: the tiles the complete step renders again (the held
      // ones) come from the same overview pass
      const renderer = tileRenderer(engine, mosaic, plan, planLayout(mosaic, plan), workers);
      try {
        const reports = await runShardsInProcess(
          engine,
          mosaic,
          plan,
          s,
          { workers, maxConcurrentUploads: options.maxConcurrentUploads, renderer },
          { signal, progress },
        );
        result = await completeInProcess(engine, mosaic, plan, s, reports, { workers, signal, renderer });
      } finally {
        await renderer.close();
      }
      progress.report(true);
    }
    const { layout } = headerOfResult(result, plan, mosaic);
    return {
      location: result.location,
      bytes: result.bytes,
      ...(result.etag !== undefined ? { etag: result.etag } : {}),
      ...(result.parts !== undefined ? { parts: result.parts } : {}),
      tiles: plan.tileCount,
      levels: layout.levels,
      bigTiff: layout.bigTiff,
      elapsedMs: Math.round(performance.now() - t0),
    };
  } catch (e) {
    controller.abort(e);
    await sink.abort(e).catch(() => {});
    if (e instanceof CogmillError) throw e;
    if (hooks.signal?.aborted) throw new RenderError('bad-request', 'materialisation cancelled', { cause: e });
    throw new RenderError('internal', `materialisation failed: ${errorMessage(e)}`, { cause: e });
  }
}

function headerOfResult(
  result: SinkResult & { levels?: number; bigTiff?: boolean },
  plan: MaterializePlan,
  mosaic: Mosaic,
): { layout: { levels: number; bigTiff: boolean } } {
  if (result.levels !== undefined && result.bigTiff !== undefined)
    return { layout: { levels: result.levels, bigTiff: result.bigTiff } };
  const layout = planLayout(mosaic, plan);
  return { layout: { levels: layout.levels.length, bigTiff: result.bytes > 0xffffffff } };
}
