/**
 * The materialisation pipeline: render + encode every COG tile on all cores (worker threads), stream the tiles in
 * file order to a sink, and write the header last.
 *
 * Every level is rendered from the sources at its own resolution by the same call the virtual COG uses, so the
 * materialised COG equals the virtual COG bit for bit at every level, tiles are independent (any order, any
 * machine), and memory is bounded by (tiles in flight x tile size) + (runs x part size), never by the mosaic.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Engine } from '../render/engine.ts';
import { CogmillError, errorMessage, RenderError } from '../render/errors.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { isFloat, MiB, type Resampling } from '../render/types.ts';
import {
  buildHeader,
  type CogCompression,
  type CogLayout,
  type CogPredictor,
  type CogSpec,
  frameTile,
  maxTilePayloadBytes,
  needsBigTiff,
  planCog,
} from './cog.layout.ts';
import { defaultOverviewResampling } from './cog.tiles.ts';
import { Gluer, type Part, type PartPlan, planParts, RunWriter } from './part.plan.ts';
import type { Sink, SinkResult } from './sink.ts';
import { type BandAccumulator, merge, newAccumulators, statisticsXml, statisticsXmlBytes } from './statistics.xml.ts';
import { runTileJob, type TileJobResult, type TileJobSettings } from './tile.job.ts';

export interface MaterializeOptions {
  readonly compression?: CogCompression;
  /** deflate/zstd level */
  readonly level?: number;
  /** 'auto' (default): 2 for integers, 3 for floats, 1 for none/jpeg/webp */
  readonly predictor?: CogPredictor | 'auto';
  readonly blockSize?: number;
  readonly quality?: number;
  readonly resampling?: Resampling;
  readonly overviewResampling?: Resampling;
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
  return {
    width: mosaic.grid.width,
    height: mosaic.grid.height,
    bands: mosaic.bandCount,
    dtype: mosaic.dtype,
    blockSize: options.blockSize ?? mosaic.blockSize,
    compression,
    predictor: resolvePredictor(compression, options.predictor, mosaic.dtype),
    transform: mosaic.grid.transform,
    epsg: mosaic.grid.crs.epsg,
    geographic: mosaic.grid.crs.geographic,
    nodata: mosaic.nodata,
    gdalMetadata,
    ghost: { leaderTrailer: true },
    bigTiff: false,
  };
}

/** A small pool of worker threads running tile jobs. */
class TilePool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: {
    job: { level: number; tx: number; ty: number };
    resolve: (r: TileJobResult) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private readonly pending = new Map<
    number,
    { resolve: (r: TileJobResult) => void; reject: (e: unknown) => void; worker: Worker }
  >();
  private nextId = 1;
  private failed: unknown;

  constructor(count: number, init: unknown) {
    for (let i = 0; i < count; i++) {
      const w = new Worker(new URL('./pipeline.worker.ts', import.meta.url), { workerData: init });
      w.on(
        'message',
        (m: {
          id: number;
          payload?: Uint8Array;
          stats?: BandAccumulator[];
          validCount?: number;
          error?: { message: string; kind: string };
        }) => {
          const p = this.pending.get(m.id);
          if (!p) return;
          this.pending.delete(m.id);
          if (m.error) p.reject(new RenderError(m.error.kind as never, m.error.message));
          else p.resolve({ payload: m.payload!, stats: m.stats, validCount: m.validCount ?? 0 });
          this.release(w);
        },
      );
      w.on('error', (e) => this.fail(e));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new RenderError('internal', `a render worker exited with code ${code}`));
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  private fail(e: unknown): void {
    this.failed ??= e;
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(e);
    }
    for (const w of this.waiting.splice(0)) w.reject(e);
  }

  private release(w: Worker): void {
    const next = this.waiting.shift();
    if (next) this.dispatch(w, next.job, next.resolve, next.reject);
    else this.idle.push(w);
  }

  private dispatch(
    w: Worker,
    job: { level: number; tx: number; ty: number },
    resolve: (r: TileJobResult) => void,
    reject: (e: unknown) => void,
  ): void {
    const id = this.nextId++;
    this.pending.set(id, { resolve, reject, worker: w });
    w.postMessage({ id, ...job });
  }

  run(job: { level: number; tx: number; ty: number }): Promise<TileJobResult> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      const w = this.idle.pop();
      if (w) this.dispatch(w, job, resolve, reject);
      else this.waiting.push({ job, resolve, reject });
    });
  }

  /**
   * Stop the workers. Jobs still running (after a failure or a cancel) are let finish first, bounded: terminating
   * a worker in the middle of native work (zlib, sharp) can abort the whole process in Node's teardown.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.failed ??= new RenderError('internal', 'the tile pool is closed');
    for (const w of this.waiting.splice(0)) w.reject(this.failed);
    const deadline = Date.now() + graceMs;
    while (this.pending.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

/** Bounded-concurrency runner for uploads; the first failure is kept and reported. */
class UploadQueue {
  private running = 0;
  private readonly queue: (() => Promise<void>)[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  error: unknown;
  private readonly limit: number;
  constructor(limit: number) {
    this.limit = Math.max(1, limit);
  }
  get size(): number {
    return this.running + this.queue.length;
  }
  push(task: () => Promise<void>): void {
    this.queue.push(task);
    this.pump();
  }
  private pump(): void {
    while (this.running < this.limit && this.queue.length) {
      const t = this.queue.shift()!;
      this.running++;
      t()
        .catch((e) => {
          this.error ??= e;
        })
        .finally(() => {
          this.running--;
          this.pump();
          if (this.size === 0 || this.size < this.limit * 2) for (const w of this.idleWaiters.splice(0)) w();
        });
    }
  }
  /** resolves when fewer than `n` uploads are queued or running */
  async below(n: number): Promise<void> {
    while (this.size >= n) await new Promise<void>((r) => this.idleWaiters.push(r));
  }
  async drain(): Promise<void> {
    await this.below(1);
  }
}

/**
 * Materialise `mosaic` into `sink`. On failure or cancel the sink is aborted (nothing at the destination) and
 * the error is rethrown.
 */
export async function materialize(
  engine: Engine,
  mosaic: Mosaic,
  sink: Sink,
  options: MaterializeOptions = {},
  hooks: MaterializeHooks = {},
): Promise<MaterializeResult> {
  const t0 = performance.now();
  const statsWanted = options.statistics !== false;
  const metadataPlaceholder = statsWanted ? ' '.repeat(statisticsXmlBytes(mosaic.bandCount)) : undefined;
  const spec = cogSpecFor(mosaic, options, metadataPlaceholder);
  let layout: CogLayout = planCog(spec);
  const blockSize = layout.blockSize;
  const settings: TileJobSettings = {
    blockSize,
    compression: spec.compression,
    predictor: spec.predictor,
    level: options.level,
    quality: options.quality,
    resampling: options.resampling ?? mosaic.resampling,
    overviewResampling: options.overviewResampling ?? defaultOverviewResampling(mosaic),
  };
  const tileCount = layout.tileCount;
  const workers = Math.max(0, Math.min(options.workers ?? availableParallelism(), 64));
  const controller = new AbortController();
  const signal = hooks.signal ? AbortSignal.any([hooks.signal, controller.signal]) : controller.signal;
  const counts = new Float64Array(tileCount);
  const stats = newAccumulators(mosaic.bandCount);
  const tileStats = new Map<number, BandAccumulator[]>();
  let tilesDone = 0;
  const uploads = new UploadQueue(options.maxConcurrentUploads ?? 4);

  const progress = (): MaterializeProgress => {
    const elapsedMs = performance.now() - t0;
    const rate = tilesDone / Math.max(elapsedMs / 1000, 1e-3);
    return {
      tilesDone,
      tilesTotal: tileCount,
      bytesWritten: sink.stats.bytes,
      parts: sink.stats.parts,
      retries: sink.stats.retries,
      elapsedMs: Math.round(elapsedMs),
      tilesPerSecond: Math.round(rate * 10) / 10,
      etaSeconds: tilesDone > 0 ? Math.round((tileCount - tilesDone) / rate) : null,
    };
  };
  let lastProgress = 0;
  const report = (force = false) => {
    const now = performance.now();
    if (!hooks.onProgress || (!force && now - lastProgress < 250)) return;
    lastProgress = now;
    hooks.onProgress(progress());
  };

  const pool =
    workers > 0
      ? new TilePool(workers, {
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
        })
      : undefined;
  const renderTile = (level: number, tx: number, ty: number): Promise<TileJobResult> =>
    pool
      ? pool.run({ level, tx, ty })
      : runTileJob(engine, mosaic, layoutLevels(layout), settings, level, tx, ty, signal);

  // run layout: parts sinks get several runs (each its own part-number range); sequential sinks one run
  let plan: PartPlan | undefined;
  let writers: RunWriter[] = [];
  let gluer: Gluer | undefined;
  const runBounds: { first: number; end: number }[] = [];
  const uploadPart = (part: Part) => {
    if (sink.mode !== 'parts') return;
    uploads.push(() => sink.putPart(part, signal));
  };
  if (sink.mode === 'parts') {
    const upper = new Float64Array(tileCount).fill(maxTilePayloadBytes(spec) + layout.tileFrameBytes);
    plan = planParts(upper, options.runs ?? Math.max(1, workers), {
      minPartSizeBytes: options.minPartSizeBytes,
      minPartBytes: options.minPartBytes ?? sink.minPartBytes,
      maxParts: sink.maxParts,
    });
    gluer = new Gluer(plan, uploadPart);
    writers = plan.runs.map((r) => new RunWriter(plan!, r, uploadPart));
    for (const r of plan.runs) runBounds.push({ first: r.firstTile, end: r.endTile });
  } else {
    runBounds.push({ first: 0, end: tileCount });
  }

  try {
    if (sink.mode === 'parts') await sink.open(signal);
    else await sink.open(layout.headerBytes, signal);

    let seqWrite: Promise<void> = Promise.resolve();
    let seqPendingBytes = 0;
    let writeError: unknown;
    const next = runBounds.map((r) => r.first);
    const ready = runBounds.map(() => new Map<number, Uint8Array>());
    const deliver = (run: number, index: number, payload: Uint8Array) => {
      counts[index] = payload.byteLength;
      ready[run].set(index, payload);
      while (ready[run].has(next[run])) {
        const p = ready[run].get(next[run])!;
        ready[run].delete(next[run]);
        const framed = frameTile(layout, p);
        if (sink.mode === 'parts') {
          writers[run].push(framed);
        } else {
          seqPendingBytes += framed.byteLength;
          seqWrite = seqWrite.then(async () => {
            if (writeError !== undefined) return;
            try {
              await sink.write(framed, signal);
            } catch (e) {
              writeError ??= e;
            }
            seqPendingBytes -= framed.byteLength;
          });
        }
        next[run]++;
        if (sink.mode === 'parts' && next[run] === runBounds[run].end) gluer!.runFinished(writers[run].finish());
      }
    };
    // empty runs finish at once
    if (sink.mode === 'parts') {
      runBounds.forEach((b, r) => {
        if (b.first === b.end) gluer!.runFinished(writers[r].finish());
      });
    }

    // schedule: round-robin across runs in file order, bounded in flight, paced by the upload queue
    const maxInflight = Math.max(2, (workers || 1) * 3);
    const inflight = new Set<Promise<void>>();
    let failure: unknown;
    const cursor = runBounds.map((r) => r.first);
    let remaining = tileCount;
    while (remaining > 0 && failure === undefined) {
      for (let r = 0; r < runBounds.length && remaining > 0; r++) {
        if (cursor[r] >= runBounds[r].end) continue;
        const index = cursor[r]++;
        remaining--;
        signal.throwIfAborted();
        if (uploads.error) throw uploads.error;
        if (writeError !== undefined) throw writeError;
        const { level, tx, ty } = layout.tileAtFileIndex(index);
        const task = renderTile(level, tx, ty).then(
          (res) => {
            // kept per tile and merged in file order at the end, so float statistics do not depend on timing
            if (res.stats) tileStats.set(index, res.stats);
            deliver(r, index, res.payload);
            tilesDone++;
            report();
          },
          (e) => {
            failure ??= e;
          },
        );
        const tracked = task.finally(() => inflight.delete(tracked));
        inflight.add(tracked);
        while (inflight.size >= maxInflight) await Promise.race(inflight);
        if (sink.mode === 'parts') await uploads.below((options.maxConcurrentUploads ?? 4) * 2);
        else if (seqPendingBytes > 64 * MiB) await seqWrite;
      }
    }
    await Promise.all(inflight);
    if (failure !== undefined) throw failure;
    await seqWrite;
    if (writeError !== undefined) throw writeError;
    signal.throwIfAborted();

    // the header, now that every tile size is known
    const payloadTotal = counts.reduce((a, b) => a + b, 0);
    for (const i of [...tileStats.keys()].sort((a, b) => a - b)) merge(stats, tileStats.get(i)!);
    const gdalMetadata = statsWanted ? statisticsXml(stats, mosaic.grid.width * mosaic.grid.height) : undefined;
    const finalSpec: CogSpec = { ...spec, gdalMetadata, bigTiff: needsBigTiff(spec, payloadTotal) };
    layout = planCog(finalSpec);
    const header = buildHeader(layout, counts);

    let result: SinkResult;
    if (sink.mode === 'parts') {
      const { headerPart } = gluer!.finish(header);
      await uploads.drain();
      if (uploads.error) throw uploads.error;
      await sink.putPart(headerPart, signal);
      result = await sink.complete(signal);
    } else {
      result = await sink.complete(header, signal);
    }
    report(true);
    return {
      ...result,
      tiles: tileCount,
      levels: layout.levels.length,
      bigTiff: layout.bigTiff,
      elapsedMs: Math.round(performance.now() - t0),
    };
  } catch (e) {
    controller.abort(e);
    await uploads.drain().catch(() => {});
    await sink.abort(e).catch(() => {});
    if (e instanceof CogmillError) throw e;
    if (hooks.signal?.aborted) throw new RenderError('bad-request', 'materialisation cancelled', { cause: e });
    throw new RenderError('internal', `materialisation failed: ${errorMessage(e)}`, { cause: e });
  } finally {
    await pool?.close();
  }
}

function layoutLevels(layout: CogLayout) {
  return layout.levels;
}

export const DEFAULT_PART_SIZE = 8 * MiB;
const WORKER_BLOCK_CACHE_BYTES = 32 * MiB;
