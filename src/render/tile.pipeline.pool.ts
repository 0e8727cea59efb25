/**
 * Tile images rendered in worker threads, so a cold tile uses every core while the main thread keeps HTTP, ETags
 * and the tile cache. Each worker runs the tile pipeline (tile.pipeline.worker.ts) with its own engine: its own
 * parsed headers, decoded blocks (a share of the block cache budget) and open files, all bounded.
 *
 * A request is resolved on the main thread first (its stretch: the mosaic statistics are computed and cached once,
 * here), then posted as plain data to the worker with the fewest jobs, with the mosaic's spec the first time that
 * worker sees this mosaic (or this version of it). Aborting a request's signal answers at once and tells the worker
 * to abort the render. Errors come back with their kind and message (the same status as in-thread); a worker that
 * dies fails its jobs with a clear error and is replaced on the next request.
 * Workers start on the first request and never hold the process open.
 */
import { Worker } from 'node:worker_threads';
import { sizeWorkerHeaps } from '../worker.heap.ts';
import type { SourceIo } from './engine.counted.ts';
import type { EngineSettings } from './engine.ts';
import { type BlockFailure, CogmillError, type ErrorKind, RenderError, SourceError } from './errors.ts';
import type { Mosaic, MosaicSpec } from './mosaic.ts';
import type { TileImage, TilePipeline, TileRequest } from './tile.pipeline.ts';

/** What the routes call: the pool, or the pipeline itself (in-thread). */
export interface TileRunner {
  run(request: TileRequest, signal?: AbortSignal): Promise<TileImage>;
}

/** Messages to a worker. */
export type TileWorkerCommand =
  | {
      readonly type: 'run';
      readonly job: number;
      readonly request: TileRequest;
      /** the mosaic's spec, when this worker has not been given this version of it yet */
      readonly spec?: MosaicSpec;
    }
  | {
      /**
       * a task of another layer on this worker's engine and an opened mosaic: `module` (a URL the composition root
       * gives) exports `runTileTask(engine, mosaic, args, signal)` returning bytes (the virtual COG's tiles)
       */
      readonly type: 'task';
      readonly job: number;
      readonly module: string;
      readonly mosaicId: string;
      readonly mosaicEtag: string;
      readonly spec?: MosaicSpec;
      readonly args: unknown;
    }
  | { readonly type: 'cancel'; readonly job: number };

/** An error as it crosses the thread boundary. */
export interface TileWorkerError {
  readonly name: string;
  readonly kind?: ErrorKind;
  readonly message: string;
}

/** Messages from a worker. */
export type TileWorkerReply =
  | { readonly type: 'ready' }
  | { readonly type: 'done'; readonly job: number; readonly image: TileImage; readonly io: SourceIo }
  | { readonly type: 'task-done'; readonly job: number; readonly bytes: Uint8Array; readonly io: SourceIo }
  | { readonly type: 'error'; readonly job: number; readonly error: TileWorkerError; readonly io: SourceIo }
  | {
      readonly type: 'block-error';
      readonly mosaic: string;
      readonly source: string;
      readonly level: number;
      readonly block: number;
      readonly error: TileWorkerError;
    };

/** What a worker is started with (plain data). */
export interface TileWorkerInit {
  readonly engine: Partial<EngineSettings>;
}

/** Counts since the pool started: renders posted, answered, failed, aborted; workers started and lost. */
export interface TilePoolStats {
  started: number;
  completed: number;
  failed: number;
  /** renders a worker stopped because their request was cancelled */
  aborted: number;
  workersStarted: number;
  workersLost: number;
}

export interface TilePipelinePoolOptions {
  /** worker threads (>= 1) */
  readonly size: number;
  /** each worker's engine settings (plain data; cache budgets are per worker) */
  readonly engine: Partial<EngineSettings>;
  /** the main thread's pipeline: resolves each request's stretch before it is posted */
  readonly pipeline: Pick<TilePipeline, 'withStretch'>;
  /** the mosaic of a request, by id (throws when there is none) */
  readonly mosaic: (id: string) => Mosaic;
  /** told of every source block a worker could not decode (the composition root counts and logs them) */
  readonly onBlockError?: (mosaic: string, failure: BlockFailure) => void;
  /** the current request's IO counters: a worker's source reads for a request are added there */
  readonly io?: () => SourceIo | undefined;
}

interface Job {
  readonly resolve: (result: TileImage | Uint8Array) => void;
  readonly reject: (e: unknown) => void;
  readonly io: SourceIo | undefined;
  readonly timings: Record<string, number>;
  /** answered (or abandoned) already: the worker's late reply only frees its slot */
  settled: boolean;
  cancelled: boolean;
}

interface Slot {
  readonly worker: Worker;
  readonly jobs: Map<number, Job>;
  /** mosaic id -> etag of the spec this worker was given */
  readonly known: Map<string, string>;
  /** resolves when the worker has loaded its modules (or has died) */
  readonly ready: Promise<void>;
  dead: boolean;
  /** jobs promised to callers that have not posted them yet */
  reserved: number;
}

/**
 * Renders a worker holds at once: two, so that one renders while the other waits on a read or on inflate (on
 * libuv's pool); more requests wait on this thread, first come, first served.
 */
const JOBS_PER_WORKER = 2;

/** An error from a worker as the error it was (same kind, so the same HTTP status), or a plain Error. */
export function errorFromWorker(e: TileWorkerError): Error {
  if (e.name === 'AbortError') {
    const err = new Error(e.message);
    err.name = 'AbortError';
    return err;
  }
  if (e.kind) return e.name === 'SourceError' ? new SourceError(e.kind, e.message) : new RenderError(e.kind, e.message);
  return new Error(e.message);
}

/** An error as plain data for the other thread. */
export function errorToWorker(e: unknown): TileWorkerError {
  const err = e as Error;
  return {
    name: err?.name ?? 'Error',
    kind: e instanceof CogmillError ? e.kind : undefined,
    message: err?.message ?? String(e),
  };
}

const WORKER_URL = new URL('./tile.pipeline.worker.ts', import.meta.url);

export class TilePipelinePool implements TileRunner {
  private readonly opts: TilePipelinePoolOptions;
  private readonly slots: (Slot | undefined)[];
  private nextJob = 1;
  private closed = false;
  private readonly waiting: { take: (slot: Slot) => void; fail: (e: unknown) => void }[] = [];
  readonly stats: TilePoolStats = {
    started: 0,
    completed: 0,
    failed: 0,
    aborted: 0,
    workersStarted: 0,
    workersLost: 0,
  };

  constructor(opts: TilePipelinePoolOptions) {
    if (!(opts.size >= 1)) throw new RangeError('a tile pool needs at least one worker');
    this.opts = opts;
    this.slots = Array.from({ length: opts.size }, () => undefined);
  }

  get size(): number {
    return this.slots.length;
  }

  /** Jobs in flight per worker (for tests and metrics). */
  inFlight(): number[] {
    return this.slots.map((s) => s?.jobs.size ?? 0);
  }

  async run(request: TileRequest, signal?: AbortSignal): Promise<TileImage> {
    if (this.closed) throw new RenderError('internal', 'the tile workers are shut down');
    signal?.throwIfAborted();
    const timings: Record<string, number> = {};
    const resolved = await this.opts.pipeline.withStretch(request, timings);
    signal?.throwIfAborted();
    const slot = await this.acquire(signal);
    const spec = resolved.inside
      ? this.reserving(slot, () => this.specFor(slot, resolved.mosaicId, resolved.mosaicEtag))
      : undefined;
    return this.dispatch(
      slot,
      (job) => ({ type: 'run', job, request: resolved, spec }),
      spec ? resolved.mosaicId : undefined,
      timings,
      signal,
    ) as Promise<TileImage>;
  }

  /**
   * Run a task of another layer on a worker (see TileWorkerCommand 'task'), on the mosaic `mosaicId` as the main
   * thread has it now; resolves with the bytes the task returned.
   */
  async runTask(mosaicId: string, module: string, args: unknown, signal?: AbortSignal): Promise<Uint8Array> {
    if (this.closed) throw new RenderError('internal', 'the tile workers are shut down');
    signal?.throwIfAborted();
    const m = this.opts.mosaic(mosaicId);
    const slot = await this.acquire(signal);
    const spec = this.reserving(slot, () => this.specFor(slot, m.id, m.etag));
    return this.dispatch(
      slot,
      (job) => ({ type: 'task', job, module, mosaicId: m.id, mosaicEtag: m.etag, spec, args }),
      spec ? m.id : undefined,
      {},
      signal,
    ) as Promise<Uint8Array>;
  }

  /** `fn`'s result; when it throws, the job reserved on `slot` is given back first. */
  private reserving<T>(slot: Slot, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      slot.reserved--;
      this.pump();
      throw e;
    }
  }

  /** The mosaic's spec when this worker has not been given this version of it yet (then it is marked given). */
  private specFor(slot: Slot, id: string, etag: string): MosaicSpec | undefined {
    if (slot.known.get(id) === etag) return undefined;
    slot.known.set(id, etag);
    return this.opts.mosaic(id).spec;
  }

  private dispatch(
    slot: Slot,
    command: (job: number) => TileWorkerCommand,
    specOf: string | undefined,
    timings: Record<string, number>,
    signal: AbortSignal | undefined,
  ): Promise<TileImage | Uint8Array> {
    const io = this.opts.io?.();
    const job = this.nextJob++;
    slot.reserved--;
    if (slot.dead) {
      // it stopped between being promised and this post
      this.pump();
      return Promise.reject(
        new RenderError('internal', 'the tile worker stopped before rendering; send the request again'),
      );
    }
    return new Promise<TileImage | Uint8Array>((resolve, reject) => {
      const j: Job = {
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(v);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
        io,
        timings,
        settled: false,
        cancelled: false,
      };
      // answered at once; the worker is told to stop, and its slot stays taken until it has
      const onAbort = () => {
        if (j.settled) return;
        j.settled = true;
        j.cancelled = true;
        if (!slot.dead) slot.worker.postMessage({ type: 'cancel', job } satisfies TileWorkerCommand);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      slot.jobs.set(job, j);
      this.stats.started++;
      try {
        slot.worker.postMessage(command(job));
      } catch (e) {
        // a request that cannot be cloned: a bug, not the client's fault
        slot.jobs.delete(job);
        this.pump();
        if (specOf) slot.known.delete(specOf);
        j.settled = true;
        j.reject(
          new RenderError('internal', `a tile request could not be passed to a worker: ${(e as Error).message}`),
        );
      }
    });
  }

  /**
   * Start every worker now and resolve once each has loaded its modules (a server that says it is listening then
   * answers its first cold tiles without waiting for threads to start). Workers otherwise start on first use.
   */
  async warm(): Promise<void> {
    await Promise.all(
      this.slots.map((s, i) => {
        if (!s || s.dead) this.slots[i] = this.start();
        return this.slots[i]!.ready;
      }),
    );
  }

  /**
   * A worker with room for one more job (reserved for the caller, who dispatches on it at once), or, when every
   * worker holds JOBS_PER_WORKER, the first to have room, in the order requests asked (first come, first served:
   * renders interleaved on one thread would all finish late, a tile that is slow to render the latest of all).
   */
  private acquire(signal: AbortSignal | undefined): Promise<Slot> {
    const free = this.free();
    if (free) {
      free.reserved++;
      return Promise.resolve(free);
    }
    return new Promise<Slot>((resolve, reject) => {
      const waiter = {
        take: (slot: Slot) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(slot);
        },
        fail: (e: unknown) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
    });
  }

  /** True when a job posted now would start at once, with nobody waiting (for work that may be skipped). */
  idle(): boolean {
    return !this.closed && this.waiting.length === 0 && this.free() !== undefined;
  }

  /** Hand free workers to the requests waiting for one. */
  private pump(): void {
    while (this.waiting.length > 0) {
      const slot = this.free();
      if (!slot) return;
      slot.reserved++;
      this.waiting.shift()!.take(slot);
    }
  }

  /**
   * Run `requests` once on every worker, one after another, before serving: a thread's first tiles run its render
   * code before V8 has compiled it (measured: cold RGB tiles at 8 clients rendered in 20-72 ms against 12 ms once
   * warm, and were the run's 99th percentile). Failures are ignored: this only costs start-up time, and at most
   * `deadlineMs` of it (slow or unreachable sources: the renders go on, nobody waits for them).
   */
  async warmUp(requests: readonly TileRequest[], deadlineMs = 3000): Promise<void> {
    await this.warm();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, deadlineMs);
      timer.unref();
    });
    const renders = Promise.all(
      this.slots.map(async (slot) => {
        if (!slot || slot.dead) return;
        for (const request of requests) {
          slot.reserved++;
          const spec = request.inside ? this.specFor(slot, request.mosaicId, request.mosaicEtag) : undefined;
          await this.dispatch(
            slot,
            (job) => ({ type: 'run', job, request, spec }),
            spec ? request.mosaicId : undefined,
            {},
            undefined,
          ).catch(() => undefined);
        }
      }),
    );
    await Promise.race([renders, deadline]);
    clearTimeout(timer);
  }

  /** The live worker with the fewest jobs if it has room (workers are started, or started again, on demand). */
  private free(): Slot | undefined {
    let best: Slot | undefined;
    for (let i = 0; i < this.slots.length; i++) {
      let s = this.slots[i];
      if (!s || s.dead) {
        if (this.closed) continue;
        s = this.slots[i] = this.start();
      }
      const load = s.jobs.size + s.reserved;
      if (load < JOBS_PER_WORKER && (!best || load < best.jobs.size + best.reserved)) best = s;
    }
    return best;
  }

  private start(): Slot {
    const init: TileWorkerInit = { engine: this.opts.engine };
    // no V8 heap limit: pixels live outside the heap (bounded by the engine's limits and caches), and a limit too
    // small for a new isolate ends the whole process, not the worker
    sizeWorkerHeaps();
    const worker = new Worker(WORKER_URL, { workerData: init });
    worker.unref();
    this.stats.workersStarted++;
    let loaded = () => {};
    const ready = new Promise<void>((resolve) => {
      loaded = resolve;
    });
    const slot: Slot = { worker, jobs: new Map(), known: new Map(), ready, dead: false, reserved: 0 };
    worker.on('message', (msg: TileWorkerReply) => (msg.type === 'ready' ? loaded() : this.onMessage(slot, msg)));
    const lost = (why: string) => {
      if (slot.dead) return;
      slot.dead = true;
      loaded();
      if (!this.closed) this.stats.workersLost++;
      for (const [, j] of slot.jobs) {
        if (j.settled) continue;
        j.settled = true;
        this.stats.failed++;
        j.reject(
          new RenderError('internal', `the tile worker stopped (${why}) while rendering; send the request again`),
        );
      }
      slot.jobs.clear();
      // the waiting requests go to the other workers, or to this one started again
      this.pump();
    };
    worker.on('error', (e: Error) => lost(e.message));
    worker.on('exit', (code) => lost(`exit code ${code}`));
    return slot;
  }

  private onMessage(slot: Slot, msg: Exclude<TileWorkerReply, { type: 'ready' }>): void {
    if (msg.type === 'block-error') {
      this.opts.onBlockError?.(msg.mosaic, {
        source: msg.source,
        level: msg.level,
        block: msg.block,
        error: errorFromWorker(msg.error) as CogmillError,
      });
      return;
    }
    const j = slot.jobs.get(msg.job);
    if (!j) return;
    slot.jobs.delete(msg.job);
    this.pump();
    if (j.io) {
      j.io.sourceRequests += msg.io.sourceRequests;
      j.io.sourceBytes += msg.io.sourceBytes;
    }
    if (msg.type === 'done' || msg.type === 'task-done') {
      this.stats.completed++;
      if (j.settled) return;
      j.settled = true;
      j.resolve(msg.type === 'done' ? { ...msg.image, timings: { ...j.timings, ...msg.image.timings } } : msg.bytes);
      return;
    }
    if (j.cancelled && msg.error.name === 'AbortError') this.stats.aborted++;
    else this.stats.failed++;
    if (j.settled) return;
    j.settled = true;
    j.reject(errorFromWorker(msg.error));
  }

  /** Stop every worker; requests still running fail. */
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w.fail(new RenderError('internal', 'the tile workers are shut down'));
    await Promise.all(this.slots.map((s) => s?.worker.terminate()));
  }
}
