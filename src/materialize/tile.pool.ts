/** A small pool of worker threads rendering and encoding tiles (the CPU work stays off the calling event loop). */
import { Worker } from 'node:worker_threads';
import { RenderError } from '../render/errors.ts';
import { sizeWorkerHeaps } from '../worker.heap.ts';
import type { ReduceWindow } from './overview.reduce.ts';
import type { BandAccumulator } from './statistics.xml.ts';
import { type SampleMeasure, verdictOfSamples } from './stored.reuse.ts';
import type { TileJobResult, TilePixels } from './tile.job.ts';
import { adoptStartedWorkers, WORKER_URL } from './tile.pool.start.ts';

export interface TileRef {
  readonly level: number;
  readonly tx: number;
  readonly ty: number;
}

/** A tile job: rendered from the sources, or (with `window`) computed from the finer level's pixels. */
export interface TileJobRequest extends TileRef {
  /** return the decoded tile too */
  readonly keep?: boolean;
  readonly window?: ReduceWindow;
}

/** The buffers of decoded pixels (moved, not copied, between threads). */
export function pixelBuffers(p: TilePixels | ReduceWindow | undefined | null): ArrayBuffer[] {
  if (!p) return [];
  return [p.mask.buffer as ArrayBuffer, ...p.bands.map((b) => b.buffer as ArrayBuffer)];
}

interface PendingVerdict {
  /** samples not handed out yet (or handed back by a thread that failed to measure) */
  readonly unassigned: number[];
  readonly measured: SampleMeasure[];
  readonly count: number;
  readonly waiting: Worker[];
}

/**
 * Verdicts on reusing stored source bytes (stored.reuse.ts), shared by the pool's threads: the samples of a level
 * are handed out one per asking thread, and every thread that asked gets the verdict once all are measured. The
 * verdict is the same whoever measures (it depends on the data alone).
 */
class SharedVerdicts {
  private readonly known = new Map<string, boolean>();
  private readonly pending = new Map<string, PendingVerdict>();

  ask(w: Worker, key: string, count: number): void {
    const reuse = this.known.get(key);
    if (reuse !== undefined) {
      w.postMessage({ verdictAnswer: key, reuse });
      return;
    }
    let p = this.pending.get(key);
    if (!p) {
      p = { unassigned: Array.from({ length: count }, (_, k) => k), measured: [], count, waiting: [] };
      this.pending.set(key, p);
    }
    if (count === 0) this.settle(key, p, w);
    else this.next(key, p, w);
  }

  sample(w: Worker, key: string, k: number, measured: SampleMeasure | undefined): void {
    const p = this.pending.get(key);
    if (!p) return;
    if (measured === undefined) {
      // that thread failed (its tile fails): one waiting measures it instead
      p.unassigned.push(k);
      const other = p.waiting.shift();
      if (other) this.next(key, p, other);
      return;
    }
    p.measured.push(measured);
    if (measured === 'not-zlib' || p.measured.length === p.count) this.settle(key, p, w);
    else this.next(key, p, w);
  }

  /** Hand `w` a sample to measure, or let it wait for the verdict. */
  private next(key: string, p: PendingVerdict, w: Worker): void {
    const k = p.unassigned.shift();
    if (k !== undefined) w.postMessage({ verdictAnswer: key, measure: k });
    else p.waiting.push(w);
  }

  private settle(key: string, p: PendingVerdict, w: Worker): void {
    const reuse = verdictOfSamples(p.measured);
    this.known.set(key, reuse);
    this.pending.delete(key);
    for (const x of [w, ...p.waiting]) x.postMessage({ verdictAnswer: key, reuse });
  }
}

/** Jobs a worker holds at once (see the constructor). */
const JOBS_PER_WORKER = 2;

/** A small pool of worker threads running tile jobs. */
export class TilePool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly waiting: {
    job: TileJobRequest;
    resolve: (r: TileJobResult) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private readonly pending = new Map<
    number,
    { resolve: (r: TileJobResult) => void; reject: (e: unknown) => void; worker: Worker }
  >();
  private nextId = 1;
  private failed: unknown;
  private readonly verdicts = new SharedVerdicts();

  constructor(count: number, init: unknown) {
    // threads the command started ahead (tile.pool.start.ts) get their mosaic now, the rest start with it
    const adopted = adoptStartedWorkers(count);
    for (const w of adopted) w.postMessage({ init });
    for (let i = 0; i < count; i++) {
      sizeWorkerHeaps();
      const w = adopted[i] ?? new Worker(WORKER_URL, { workerData: init });
      w.on(
        'message',
        (m: {
          id: number;
          payload?: Uint8Array;
          framed?: boolean;
          stats?: BandAccumulator[];
          validCount?: number;
          pixels?: TilePixels;
          error?: { message: string; kind: string };
          verdictAsk?: string;
          count?: number;
          verdictSample?: string;
          k?: number;
          measured?: SampleMeasure;
        }) => {
          if (m.verdictAsk !== undefined) {
            this.verdicts.ask(w, m.verdictAsk, m.count ?? 0);
            return;
          }
          if (m.verdictSample !== undefined) {
            this.verdicts.sample(w, m.verdictSample, m.k ?? 0, m.measured);
            return;
          }
          const p = this.pending.get(m.id);
          if (!p) return;
          this.pending.delete(m.id);
          if (m.error) p.reject(new RenderError(m.error.kind as never, m.error.message));
          else
            p.resolve({
              ...(m.framed
                ? { payload: m.payload!.subarray(4, m.payload!.length - 4), framed: m.payload! }
                : { payload: m.payload! }),
              stats: m.stats,
              validCount: m.validCount ?? 0,
              ...(m.pixels ? { pixels: m.pixels } : {}),
            });
          this.release(w);
        },
      );
      w.on('error', (e) => this.fail(e));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new RenderError('internal', `a render worker exited with code ${code}`));
      });
      this.workers.push(w);
    }
    // each worker holds JOBS_PER_WORKER jobs: it starts the next tile while the last one is in native code (inflate,
    // deflate on the thread pool) or on its way back, instead of idling until this thread hands it another
    for (let k = 0; k < JOBS_PER_WORKER; k++) this.idle.push(...this.workers);
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
    job: TileJobRequest,
    resolve: (r: TileJobResult) => void,
    reject: (e: unknown) => void,
  ): void {
    const id = this.nextId++;
    this.pending.set(id, { resolve, reject, worker: w });
    w.postMessage(
      { id, level: job.level, tx: job.tx, ty: job.ty, keep: job.keep, window: job.window },
      pixelBuffers(job.window),
    );
  }

  run(job: TileJobRequest): Promise<TileJobResult> {
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
