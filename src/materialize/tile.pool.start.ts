/**
 * Materialisation worker threads started ahead of their pool. A thread spends ~0.1-0.2 s loading its modules
 * (geotiff, proj4, the render and encode code) before it can take a tile; the `materialize` command starts its
 * threads here first thing, so that this loading runs while the main thread loads its own modules and plans the
 * file, instead of after (a small job: ~0.1 s of a ~0.9 s run). The pool (tile.pool.ts) adopts them and sends
 * each its mosaic; a thread never adopted does not keep the process alive and is stopped by the pool's creation.
 * Imports nothing but Node's own modules: it runs before the rest of the program loads.
 */
import { Worker } from 'node:worker_threads';
import { sizeWorkerHeaps } from '../worker.heap.ts';

export const WORKER_URL = new URL('./pipeline.worker.start.ts', import.meta.url);

/** workerData of a thread started ahead: it waits for a message `{ init }` before it opens the mosaic */
export const DEFERRED = { deferred: true } as const;

interface Started {
  readonly worker: Worker;
  /** set once it failed or exited before being adopted */
  broken: boolean;
}

const started: Started[] = [];

/** Start `count` materialisation threads now, for the pool created later in this process. */
export function startTileWorkers(count: number): void {
  sizeWorkerHeaps();
  for (let i = 0; i < count; i++) {
    const s: Started = { worker: new Worker(WORKER_URL, { workerData: DEFERRED }), broken: false };
    // until adopted, neither a failure nor the thread itself may take the process down or keep it up
    s.worker.on('error', () => {
      s.broken = true;
    });
    s.worker.on('exit', () => {
      s.broken = true;
    });
    s.worker.unref();
    started.push(s);
  }
}

/**
 * Up to `count` threads started ahead and still healthy, for a pool to adopt (it sends each `{ init }`); every
 * other one started ahead is stopped. Later calls get none.
 */
export function adoptStartedWorkers(count: number): Worker[] {
  const taken: Worker[] = [];
  for (const s of started.splice(0)) {
    if (!s.broken && taken.length < count) {
      s.worker.removeAllListeners('error');
      s.worker.removeAllListeners('exit');
      s.worker.ref();
      taken.push(s.worker);
    } else {
      void s.worker.terminate();
    }
  }
  return taken;
}

/**
 * How many threads `cogmill materialize ARGS` should start ahead: its render threads (`--workers N`, else one per
 * core) when it writes tiles in this process; none for help, a dry run, a plan saved for others, a queue or the
 * completion step. The configuration may still ask for fewer (the pool stops the rest).
 */
export function threadsToStartAhead(args: readonly string[], cores: number): number {
  const has = (...flags: string[]) => args.some((a) => flags.some((f) => a === f || a.startsWith(`${f}=`)));
  if (!has('--out', '-o', '--plan')) return 0;
  if (has('--help', '-h', '--dry-run', '--plan-out', '--redis', '--complete')) return 0;
  const i = args.findIndex((a) => a === '--workers' || a.startsWith('--workers='));
  if (i < 0) return Math.max(1, Math.min(cores, 64));
  const n = Number(args[i].startsWith('--workers=') ? args[i].slice('--workers='.length) : args[i + 1]);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 64) : 0;
}
