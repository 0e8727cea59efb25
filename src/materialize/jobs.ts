/**
 * Materialisation jobs: a registry that runs at most `maxConcurrentJobs` at once (more wait in a bounded queue),
 * reports progress (tiles, bytes, parts, retries, rate, ETA, recent errors), lets a job be cancelled (its upload
 * is aborted by the pipeline), emits events for live progress streams, and forgets finished jobs after a while.
 *
 * A job is `queued -> running -> succeeded | failed | cancelled` (or `queued -> cancelled`).
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { CogmillError, errorMessage, RenderError } from '../render/errors.ts';
import type { MaterializeHooks, MaterializeProgress, MaterializeResult } from './pipeline.ts';

export const JOB_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type JobState = (typeof JOB_STATES)[number];

export function isFinalState(state: JobState): boolean {
  return state === 'succeeded' || state === 'failed' || state === 'cancelled';
}

export interface JobProgress {
  readonly tilesDone: number;
  readonly tilesTotal: number;
  /** 0..100, from tiles */
  readonly percent: number;
  readonly bytesWritten: number;
  readonly parts: number;
  readonly retries: number;
  readonly elapsedMs: number;
  readonly tilesPerSecond: number;
  readonly bytesPerSecond: number;
  readonly etaSeconds: number | null;
  /** the last few errors that were retried (the job goes on) */
  readonly errors: readonly string[];
  /** on a queue (materialize.redis): shards done, running, in all */
  readonly shards?: MaterializeProgress['shards'];
  /** on a queue: worker processes that reported progress */
  readonly workers?: number;
}

export interface JobError {
  readonly kind: string;
  readonly status: number;
  readonly message: string;
}

/** A job as reported to clients (JSON). */
export interface JobView {
  readonly id: string;
  readonly state: JobState;
  readonly mosaic: string;
  readonly destination: string;
  readonly options: Readonly<Record<string, unknown>>;
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly finishedAt: string | null;
  /** a cancel was asked for and the job is winding down (its upload being aborted) */
  readonly cancelRequested: boolean;
  readonly progress: JobProgress;
  readonly result: (MaterializeResult & { readonly bytesPerSecond: number }) | null;
  readonly error: JobError | null;
}

export type JobEvent = { readonly type: 'progress' | 'state'; readonly job: JobView };

export interface JobRequest {
  readonly mosaic: string;
  /** where the COG goes (s3://bucket/key, a path, or "download") */
  readonly destination: string;
  /** the options as asked for, for display */
  readonly options?: Readonly<Record<string, unknown>>;
  /** run the materialisation; the hooks carry the cancel signal and the progress callback */
  run(hooks: MaterializeHooks): Promise<MaterializeResult>;
  /** errors that were retried so far (the sink's) */
  recentErrors?(): readonly string[];
}

export interface JobRegistryOptions {
  /** jobs running at once (default 2) */
  readonly maxConcurrentJobs?: number;
  /** jobs waiting for a slot; more are refused (default 100) */
  readonly maxQueuedJobs?: number;
  /** how long a finished job stays visible (default 1 hour) */
  readonly retainMs?: number;
  /** at most this many finished jobs are kept, the oldest forgotten first (default 200) */
  readonly maxRetained?: number;
  /** called once per job when it reaches a final state */
  readonly onFinish?: (job: JobView) => void;
  /** called when a job starts running */
  readonly onStart?: (job: JobView) => void;
}

export const JOB_DEFAULTS = {
  maxConcurrentJobs: 2,
  maxQueuedJobs: 100,
  retainMs: 3_600_000,
  maxRetained: 200,
} as const;

/** The queue is full: the caller should try again later. */
export class JobQueueFullError extends CogmillError {
  override readonly name = 'JobQueueFullError';
  override readonly code: number = 503;
  constructor(message: string) {
    super('unreachable', message);
  }
}

const EMPTY_PROGRESS: JobProgress = {
  tilesDone: 0,
  tilesTotal: 0,
  percent: 0,
  bytesWritten: 0,
  parts: 0,
  retries: 0,
  elapsedMs: 0,
  tilesPerSecond: 0,
  bytesPerSecond: 0,
  etaSeconds: null,
  errors: [],
};

interface JobEntry {
  readonly id: string;
  readonly request: JobRequest;
  readonly controller: AbortController;
  readonly createdAt: number;
  state: JobState;
  startedAt?: number;
  finishedAt?: number;
  progress: MaterializeProgress | undefined;
  result?: MaterializeResult;
  error?: JobError;
  settled: Promise<void>;
  settle: () => void;
}

function iso(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

function jobError(e: unknown): JobError {
  if (e instanceof CogmillError) return { kind: e.kind, status: e.code, message: e.message };
  return { kind: 'internal', status: 500, message: `materialisation failed: ${errorMessage(e)}` };
}

export class JobRegistry {
  private readonly jobs = new Map<string, JobEntry>();
  private readonly queue: JobEntry[] = [];
  private running = 0;
  private readonly events = new EventEmitter();
  private readonly opts: Required<Omit<JobRegistryOptions, 'onFinish' | 'onStart'>> & JobRegistryOptions;
  private closed = false;

  constructor(options: JobRegistryOptions = {}) {
    this.opts = { ...JOB_DEFAULTS, ...options };
    // one listener per open event stream
    this.events.setMaxListeners(0);
  }

  get counts(): { queued: number; running: number; retained: number } {
    return { queued: this.queue.length, running: this.running, retained: this.jobs.size };
  }

  /** Queue a job; it starts as soon as a slot is free. */
  create(request: JobRequest): JobView {
    if (this.closed)
      throw new JobQueueFullError('the server is shutting down and takes no new jobs; try again on another instance');
    this.prune();
    if (this.queue.length >= this.opts.maxQueuedJobs) {
      throw new JobQueueFullError(
        `${this.queue.length} jobs are already waiting (materialize.maxConcurrentJobs=${this.opts.maxConcurrentJobs} run at once); try again later`,
      );
    }
    let settle = () => {};
    const settled = new Promise<void>((resolve) => {
      settle = resolve;
    });
    const entry: JobEntry = {
      id: randomUUID(),
      request,
      controller: new AbortController(),
      createdAt: Date.now(),
      state: 'queued',
      progress: undefined,
      settled,
      settle,
    };
    this.jobs.set(entry.id, entry);
    this.queue.push(entry);
    this.pump();
    return this.view(entry);
  }

  get(id: string): JobView | undefined {
    this.prune();
    const e = this.jobs.get(id);
    return e ? this.view(e) : undefined;
  }

  /** Every job kept, newest first. */
  list(): JobView[] {
    this.prune();
    return [...this.jobs.values()].sort((a, b) => b.createdAt - a.createdAt).map((e) => this.view(e));
  }

  /** The job (queued or running) writing to `destination`, if any. */
  activeFor(destination: string): JobView | undefined {
    for (const e of this.jobs.values())
      if (!isFinalState(e.state) && e.request.destination === destination) return this.view(e);
    return undefined;
  }

  /**
   * Ask a job to stop. A queued job is cancelled at once; a running one is signalled and becomes `cancelled`
   * once the pipeline has aborted its upload. A finished job is left as it is. Undefined for an unknown id.
   */
  cancel(id: string, reason = 'cancelled by request'): JobView | undefined {
    const e = this.jobs.get(id);
    if (!e) return undefined;
    if (e.state === 'queued') {
      const i = this.queue.indexOf(e);
      if (i >= 0) this.queue.splice(i, 1);
      e.controller.abort(new RenderError('bad-request', `materialisation ${reason}`));
      this.finish(e, 'cancelled', undefined, { kind: 'cancelled', status: 499, message: `materialisation ${reason}` });
    } else if (e.state === 'running' && !e.controller.signal.aborted) {
      e.controller.abort(new RenderError('bad-request', `materialisation ${reason}`));
      this.emit(e, 'state');
    }
    return this.view(e);
  }

  /** Resolves with the job once it is finished, or with its current state when `timeoutMs` passes first. */
  async wait(id: string, timeoutMs?: number): Promise<JobView | undefined> {
    const e = this.jobs.get(id);
    if (!e) return undefined;
    if (timeoutMs === undefined) await e.settled;
    else {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([e.settled, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
      clearTimeout(timer);
    }
    return this.view(e);
  }

  /** Listen to one job's events; returns the function that stops listening. */
  subscribe(id: string, listener: (event: JobEvent) => void): () => void {
    this.events.on(id, listener);
    return () => this.events.off(id, listener);
  }

  /**
   * Shutdown: take no new jobs, cancel every queued and running job and wait until their uploads are aborted,
   * or until `signal` aborts.
   */
  async cancelAll(reason: string, signal?: AbortSignal): Promise<void> {
    this.closed = true;
    const pending = [...this.jobs.values()].filter((e) => !isFinalState(e.state));
    for (const e of pending) this.cancel(e.id, reason);
    const all = Promise.all(pending.map((e) => e.settled));
    if (!signal) return all.then(() => {});
    if (signal.aborted) return;
    await new Promise<void>((resolve) => {
      signal.addEventListener('abort', () => resolve(), { once: true });
      all.then(() => resolve());
    });
  }

  private pump(): void {
    while (this.running < this.opts.maxConcurrentJobs && this.queue.length) {
      const e = this.queue.shift()!;
      this.start(e);
    }
  }

  private start(e: JobEntry): void {
    this.running++;
    e.state = 'running';
    e.startedAt = Date.now();
    this.opts.onStart?.(this.view(e));
    this.emit(e, 'state');
    const hooks: MaterializeHooks = {
      signal: e.controller.signal,
      onProgress: (p) => {
        e.progress = p;
        this.emit(e, 'progress');
      },
    };
    let run: Promise<MaterializeResult>;
    try {
      run = e.request.run(hooks);
    } catch (err) {
      run = Promise.reject(err);
    }
    run.then(
      (result) => {
        // a cancel that came too late to stop anything: the COG is complete, report it as it is
        this.finish(e, 'succeeded', result);
      },
      (err: unknown) => {
        if (e.controller.signal.aborted) {
          this.finish(e, 'cancelled', undefined, {
            kind: 'cancelled',
            status: 499,
            message: errorMessage(e.controller.signal.reason),
          });
        } else {
          this.finish(e, 'failed', undefined, jobError(err));
        }
      },
    );
  }

  private finish(e: JobEntry, state: JobState, result?: MaterializeResult, error?: JobError): void {
    const wasRunning = e.state === 'running';
    e.state = state;
    e.finishedAt = Date.now();
    e.result = result;
    e.error = error;
    if (wasRunning) this.running--;
    const view = this.view(e);
    try {
      this.opts.onFinish?.(view);
    } finally {
      this.emit(e, 'state');
      e.settle();
      this.pump();
    }
  }

  private emit(e: JobEntry, type: JobEvent['type']): void {
    if (this.events.listenerCount(e.id) === 0) return;
    const event: JobEvent = { type, job: this.view(e) };
    for (const l of this.events.listeners(e.id) as ((ev: JobEvent) => void)[]) {
      try {
        l(event);
      } catch {
        // a broken listener must not break the job
      }
    }
  }

  /** Forget finished jobs that are too old, and the oldest beyond maxRetained. */
  private prune(): void {
    const now = Date.now();
    const finished = [...this.jobs.values()]
      .filter((e) => isFinalState(e.state))
      .sort((a, b) => a.finishedAt! - b.finishedAt!);
    let excess = finished.length - this.opts.maxRetained;
    for (const e of finished) {
      if (excess > 0 || now - e.finishedAt! > this.opts.retainMs) {
        this.jobs.delete(e.id);
        this.events.removeAllListeners(e.id);
        excess--;
      }
    }
  }

  private view(e: JobEntry): JobView {
    const p = e.progress;
    const end = e.finishedAt ?? Date.now();
    const elapsedMs = e.startedAt === undefined ? 0 : end - e.startedAt;
    const seconds = Math.max(elapsedMs / 1000, 1e-3);
    const errors = e.request.recentErrors?.() ?? [];
    const progress: JobProgress = p
      ? {
          tilesDone: p.tilesDone,
          tilesTotal: p.tilesTotal,
          percent: p.tilesTotal > 0 ? Math.round((1000 * p.tilesDone) / p.tilesTotal) / 10 : 0,
          bytesWritten: p.bytesWritten,
          parts: p.parts,
          retries: p.retries,
          elapsedMs: p.elapsedMs,
          tilesPerSecond: p.tilesPerSecond,
          bytesPerSecond: Math.round(p.bytesWritten / Math.max(p.elapsedMs / 1000, 1e-3)),
          etaSeconds: isFinalState(e.state) ? 0 : p.etaSeconds,
          errors: [...errors],
          ...(p.shards ? { shards: p.shards } : {}),
          ...(p.workers !== undefined ? { workers: p.workers } : {}),
        }
      : { ...EMPTY_PROGRESS, elapsedMs, errors: [...errors] };
    const result = e.result ? { ...e.result, bytesPerSecond: Math.round(e.result.bytes / seconds) } : null;
    return {
      id: e.id,
      state: e.state,
      mosaic: e.request.mosaic,
      destination: e.request.destination,
      options: e.request.options ?? {},
      createdAt: new Date(e.createdAt).toISOString(),
      startedAt: iso(e.startedAt),
      finishedAt: iso(e.finishedAt),
      cancelRequested: e.controller.signal.aborted && !isFinalState(e.state),
      progress,
      result,
      error: e.error ?? null,
    };
  }
}
