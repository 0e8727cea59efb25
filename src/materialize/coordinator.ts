/**
 * The coordinator of a resumable materialisation to a staged destination (S3 multipart, Azure block blob), shared
 * by `cogmill materialize` and the server's `/materialize`:
 *
 * 1. prepare: plan, or take up the plan saved next to the destination (resume), create the upload (run.ts);
 * 2. run the shards not done yet: on this process's worker threads, or on `cogmill worker` processes through the
 *    queue (`redisUrl`; queue.ts, loaded only then);
 * 3. complete (here, or as the queue's last job), then remove the notes.
 *
 * A cancel (the signal) stops every shard, aborts the upload and removes the notes: nothing is left at the
 * destination. Any other failure leaves the upload and the notes for a later run to resume, unless
 * `abortOnFailure` asks otherwise (the server: a failed job leaves nothing behind).
 */
import type { Engine } from '../render/engine.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { MiB } from '../render/types.ts';
import { layoutCog, maxTilePayloadBytes } from './cog.layout.ts';
import {
  cogSpecFor,
  type MaterializeHooks,
  type MaterializeOptions,
  type MaterializeResult,
} from './pipeline.options.ts';
import { completeInProcess, runShardsInProcess } from './pipeline.ts';
import { choosePredictor } from './predictor.choice.ts';
import { type Prepared, prepare, saveReport } from './run.ts';
import type { SinkStaged } from './sink.ts';

export interface CoordinateOptions {
  readonly options: MaterializeOptions;
  /** shards the plan is cut into */
  readonly shards: number;
  /** take up a saved plan of the same mosaic and options (default true) */
  readonly resume?: boolean;
  /** abort the other unfinished uploads to the key */
  readonly abortStale?: boolean;
  /** run the shards on `cogmill worker` processes through this Redis (BullMQ); default: here */
  readonly redisUrl?: string;
  /** abort the upload on any failure, not only on a cancel (default false: the upload is kept for resume) */
  readonly abortOnFailure?: boolean;
}

export interface Coordinated {
  readonly result: MaterializeResult;
  readonly prep: Prepared;
  /** shards run by this call (the others were done by an earlier run) */
  readonly shardsRun: number;
  /** tiles rendered by this call, the complete step's glue included */
  readonly tilesRendered: number;
}

/** Run the shards a prepared plan still needs (here or on the queue) and complete. */
export async function runPrepared(
  engine: Engine,
  mosaic: Mosaic,
  prep: Prepared,
  sink: SinkStaged,
  o: Pick<CoordinateOptions, 'options' | 'redisUrl' | 'abortOnFailure'>,
  hooks: MaterializeHooks = {},
): Promise<Omit<Coordinated, 'prep'>> {
  const t0 = performance.now();
  const { plan } = prep;
  try {
    if (o.redisUrl !== undefined) {
      const { runOnQueue } = await import('./queue.ts');
      const run = await runOnQueue(o.redisUrl, prep, sink, hooks);
      const r = run.result;
      return {
        result: {
          location: r.location,
          bytes: r.bytes,
          ...(r.etag ? { etag: r.etag } : {}),
          ...(r.parts ? { parts: r.parts } : {}),
          tiles: r.tiles,
          levels: r.levels,
          bigTiff: r.bigTiff,
          elapsedMs: Math.round(performance.now() - t0),
        },
        shardsRun: run.shardsRun,
        tilesRendered: run.tilesRendered,
      };
    }
    const reports = [...prep.reports];
    const todo = plan.shards.filter((s) => !reports[s.index]).map((s) => s.index);
    const threads = { workers: o.options.workers, maxConcurrentUploads: o.options.maxConcurrentUploads };
    const ran = await runShardsInProcess(
      engine,
      mosaic,
      plan,
      sink,
      { ...threads, only: todo },
      {
        signal: hooks.signal,
        onProgress: hooks.onProgress,
        onReport: async (r) => {
          reports[r.shard] = r;
          await saveReport(sink, r, hooks.signal);
        },
      },
    );
    const done = await completeInProcess(engine, mosaic, plan, sink, reports, { ...threads, signal: hooks.signal });
    await sink.clearNotes().catch(() => {});
    // the last state is always shown: a finished job says 100%
    const elapsedMs = Math.round(performance.now() - t0);
    hooks.onProgress?.({
      tilesDone: plan.tileCount,
      tilesTotal: plan.tileCount,
      bytesWritten: sink.stats.bytes,
      parts: sink.stats.parts,
      retries: sink.stats.retries,
      elapsedMs,
      tilesPerSecond: 0,
      etaSeconds: 0,
    });
    return {
      result: {
        location: done.location,
        bytes: done.bytes,
        ...(done.etag !== undefined ? { etag: done.etag } : {}),
        ...(done.parts !== undefined ? { parts: done.parts } : {}),
        tiles: done.tiles,
        levels: done.levels,
        bigTiff: done.bigTiff,
        elapsedMs,
      },
      shardsRun: todo.length,
      tilesRendered: ran.reduce((a, r) => a + r.tilesRendered, 0) + done.tilesRendered,
    };
  } catch (e) {
    if (hooks.signal?.aborted || o.abortOnFailure) {
      await sink.abort(e).catch(() => {});
      await sink.clearNotes().catch(() => {});
    }
    throw e;
  }
}

/** prepare + runPrepared: one resumable materialisation, coordinated by this process. */
export async function materializeResumable(
  engine: Engine,
  mosaic: Mosaic,
  sink: SinkStaged,
  o: CoordinateOptions,
  hooks: MaterializeHooks = {},
): Promise<Coordinated> {
  // an unreachable queue fails before the upload exists: nothing to clean up
  if (o.redisUrl !== undefined) await (await import('./queue.ts')).pingQueue(o.redisUrl, { signal: hooks.signal });
  const prep = await prepare(mosaic, sink, {
    options: await choosePredictor(engine, mosaic, o.options, hooks.signal),
    shards: o.shards,
    resume: o.resume,
    abortStale: o.abortStale,
    signal: hooks.signal,
  });
  return { prep, ...(await runPrepared(engine, mosaic, prep, sink, o, hooks)) };
}

/** shards per this many bytes of the largest possible output, when the count is not given */
const AUTO_SHARD_BYTES = 256 * MiB;

/**
 * Shards for a materialisation on a queue: `configured` when above 0, else one per 256 MiB of the largest possible
 * output (every tile incompressible), from 2 to 1,000: enough for many machines to share, few enough that each
 * shard's parts stand alone.
 */
export function queueShardCount(mosaic: Mosaic, options: MaterializeOptions, configured = 0): number {
  if (configured > 0) return configured;
  const layout = layoutCog(cogSpecFor(mosaic, options));
  const upperBytes = layout.tileCount * (maxTilePayloadBytes(layout.spec) + layout.tileFrameBytes);
  return Math.max(2, Math.min(1000, Math.ceil(upperBytes / AUTO_SHARD_BYTES)));
}
