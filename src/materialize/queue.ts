/**
 * Over 500 lines because it is the one import site of bullmq and ioredis: the coordinator, the worker and the
 * Redis checks share the flow's job names and payload shapes, which must agree.
 *
 * Shards on many machines through BullMQ on Redis (the one import site of bullmq and its Redis client, ioredis).
 *
 * A materialisation is one flow: its children are the shards still to do (`shard` jobs), its parent the complete
 * step (`complete`), which BullMQ starts once every child succeeded. Jobs carry only the destination, the plan id
 * and a shard number: workers read the plan from next to the destination, stage their parts straight to it and
 * save their reports there. Redis sees a few hundred bytes per shard; no tile byte goes through it or through
 * the coordinator.
 *
 * Delivery is at least once: a worker that dies or stalls loses its lock and the shard runs again elsewhere; it
 * stages the same bytes under the same part numbers. Rendering runs on worker threads, so the event loop that
 * renews the lock stays free. Cancel: the coordinator sets `cogmill:cancel:{planId}`; every worker polls it, stops
 * its shard, and the coordinator aborts the upload once no shard of the plan is active any more.
 */
import { availableParallelism, hostname } from 'node:os';
import { FlowProducer, type Job, Queue, QueueEvents, UnrecoverableError, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { Engine } from '../render/engine.ts';
import { CogmillError, errorMessage } from '../render/errors.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { sizeWorkerHeaps } from '../worker.heap.ts';
import type { MaterializeProgress } from './pipeline.options.ts';
import { completeInProcess, type PlanRenderer, runShardsInProcess, tileRenderer } from './pipeline.ts';
import type { MaterializePlan } from './plan.ts';
import { parsePlan, planLayout } from './plan.ts';
import { doneReports, openPlanMosaic, PLAN_NOTE, type Prepared, saveReport } from './run.ts';
import type { SinkStaged } from './sink.ts';

export const QUEUE_NAME = 'cogmill-materialize';
const CANCEL_POLL_MS = 500;
const PROGRESS_EVERY_MS = 500;

interface ShardJobData {
  readonly destination: string;
  readonly planId: string;
  readonly shard: number;
}
interface CompleteJobData {
  readonly destination: string;
  readonly planId: string;
}

/** What a worker reports of a running shard (a few numbers, through BullMQ's job progress). */
interface ShardProgress {
  readonly shard: number;
  readonly tilesDone: number;
  readonly bytesWritten: number;
  readonly parts: number;
  readonly retries: number;
  /** host:pid of the worker process */
  readonly worker: string;
}

function shardProgressOf(data: unknown): ShardProgress | undefined {
  const d = data as Partial<ShardProgress> | null;
  if (typeof d !== 'object' || d === null || typeof d.shard !== 'number' || typeof d.tilesDone !== 'number')
    return undefined;
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  return {
    shard: d.shard,
    tilesDone: d.tilesDone,
    bytesWritten: n(d.bytesWritten),
    parts: n(d.parts),
    retries: n(d.retries),
    worker: typeof d.worker === 'string' ? d.worker : '?',
  };
}

export interface ShardJobResult {
  readonly shard: number;
  readonly tilesRendered: number;
  readonly parts: number;
}
export interface CompleteJobResult {
  readonly location: string;
  readonly bytes: number;
  readonly etag: string | null;
  readonly parts: number | null;
  readonly tiles: number;
  readonly levels: number;
  readonly bigTiff: boolean;
  readonly tilesRendered: number;
}

/** redis://[user:password@]host:port[/db] -> ioredis options (what BullMQ takes) */
export function redisConnection(url: string) {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new CogmillError('bad-request', `--redis "${url}" is not a URL: write redis://host:port`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:')
    throw new CogmillError('bad-request', `--redis "${url}": only redis:// and rediss:// URLs are supported`);
  return {
    host: u.hostname,
    port: Number(u.port || 6379),
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.pathname.length > 1 ? { db: Number(u.pathname.slice(1)) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
    // BullMQ workers need commands that wait for Redis to come back rather than fail
    maxRetriesPerRequest: null,
  };
}

const cancelKey = (planId: string) => `cogmill:cancel:${planId}`;

/** One Redis connection per BullMQ object (blocking reads must not share one); closed with it. */
function connector(url: string) {
  const options = redisConnection(url);
  const made: Redis[] = [];
  return {
    connect(): Redis {
      const r = new Redis(options);
      // errors surface through the commands that fail; an unhandled 'error' event would end the process
      r.on('error', () => {});
      made.push(r);
      return r;
    },
    close: () => Promise.allSettled(made.map((r) => r.quit().catch(() => r.disconnect()))),
  };
}

/** how long a coordinator waits for Redis to answer before the materialisation fails (nothing created yet) */
const REDIS_ANSWER_MS = 10_000;

/** host:port of a Redis URL, without credentials (for messages) */
function redisHost(url: string): string {
  const o = redisConnection(url);
  return `${o.host}:${o.port}`;
}

/**
 * Check that the queue's Redis answers (a PING) within `timeoutMs`: a coordinator asks before it creates the
 * upload, so an unreachable Redis fails fast, with nothing to clean up, rather than waiting forever.
 */
export async function pingQueue(redisUrl: string, o: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<void> {
  const options = redisConnection(redisUrl);
  let lastError: unknown;
  let client: Redis | undefined;
  let stopped = false;
  const timeoutMs = o.timeoutMs ?? REDIS_ANSWER_MS;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      (async () => {
        // one attempt per connection (no reconnecting client left behind), again every 250 ms
        while (!stopped) {
          client = new Redis({ ...options, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
          client.on('error', (e) => {
            lastError = e;
          });
          try {
            await client.connect();
            await client.ping();
            return;
          } catch (e) {
            lastError = e;
            client.disconnect();
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      })(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new CogmillError(
                'unreachable',
                `the queue's Redis at ${redisHost(redisUrl)} did not answer within ${timeoutMs} ms${lastError ? ` (${errorMessage(lastError)})` : ''}`,
              ),
            ),
          timeoutMs,
        );
      }),
      new Promise<never>((_, reject) => {
        if (!o.signal) return;
        if (o.signal.aborted) reject(o.signal.reason);
        o.signal.addEventListener('abort', () => reject(o.signal!.reason), { once: true });
      }),
    ]);
  } finally {
    stopped = true;
    clearTimeout(timer);
    client?.disconnect();
  }
}

export interface QueueRunHooks {
  readonly signal?: AbortSignal;
  readonly onProgress?: (p: MaterializeProgress) => void;
}

/**
 * Coordinator: enqueue the shards not done yet as one flow, show the progress every worker reports, wait for the
 * complete step. A cancel (signal) stops every worker's shard and aborts the upload.
 */
export async function runOnQueue(
  redisUrl: string,
  prep: Prepared,
  sink: SinkStaged,
  hooks: QueueRunHooks = {},
): Promise<{ result: CompleteJobResult; shardsRun: number; tilesRendered: number }> {
  const redis = connector(redisUrl);
  const { plan } = prep;
  const queue = new Queue(QUEUE_NAME, { connection: redis.connect() });
  const events = new QueueEvents(QUEUE_NAME, { connection: redis.connect() });
  const flows = new FlowProducer({ connection: redis.connect() });
  const control = redis.connect();
  const run = `${plan.id}-${Date.now().toString(36)}`;
  const todo = plan.shards.filter((s) => !prep.reports[s.index]).map((s) => s.index);
  const t0 = performance.now();
  const doneBefore = plan.shards.filter((s) => prep.reports[s.index]).reduce((a, s) => a + s.endTile - s.firstTile, 0);
  const shardsBefore = plan.shards.length - todo.length;
  const shards = new Map<number, ShardProgress>();
  const finished = new Set<number>();
  const report = (final?: CompleteJobResult) => {
    let tilesDone = doneBefore;
    let bytesWritten = 0;
    let parts = 0;
    let retries = 0;
    const workers = new Set<string>();
    for (const p of shards.values()) {
      tilesDone += p.tilesDone;
      bytesWritten += p.bytesWritten;
      parts += p.parts;
      retries += p.retries;
      workers.add(p.worker);
    }
    if (final) tilesDone = plan.tileCount;
    const elapsedMs = performance.now() - t0;
    const rate = (tilesDone - doneBefore) / Math.max(elapsedMs / 1000, 1e-3);
    hooks.onProgress?.({
      tilesDone,
      tilesTotal: plan.tileCount,
      bytesWritten: final ? Math.max(final.bytes, bytesWritten) : bytesWritten,
      parts: final?.parts ?? parts,
      retries,
      elapsedMs: Math.round(elapsedMs),
      tilesPerSecond: Math.round(rate * 10) / 10,
      etaSeconds: final ? 0 : rate > 0 ? Math.round((plan.tileCount - tilesDone) / rate) : null,
      shards: {
        total: plan.shards.length,
        done: shardsBefore + finished.size,
        running: [...shards.keys()].filter((s) => !finished.has(s)).length,
      },
      workers: workers.size,
    });
  };
  const shardOf = (jobId: string): number | undefined => {
    const m = jobId.startsWith(`${run}-shard-`) ? Number(jobId.slice(run.length + 7)) : Number.NaN;
    return Number.isInteger(m) ? m : undefined;
  };
  const onProgress = ({ jobId, data }: { jobId: string; data: unknown }) => {
    const shard = shardOf(jobId);
    const p = shardProgressOf(data);
    if (shard === undefined || !p || p.shard !== shard) return;
    shards.set(shard, p);
    report();
  };
  const onCompleted = ({ jobId }: { jobId: string }) => {
    const shard = shardOf(jobId);
    if (shard === undefined) return;
    finished.add(shard);
    report();
  };
  events.on('progress', onProgress);
  events.on('completed', onCompleted);
  try {
    await events.waitUntilReady();
    const base = { destination: plan.destination, planId: plan.id };
    const tree = await flows.add({
      name: 'complete',
      queueName: QUEUE_NAME,
      data: base satisfies CompleteJobData,
      opts: { jobId: `${run}-complete`, attempts: 3, backoff: { type: 'exponential', delay: 1000 } },
      children: todo.map((shard) => ({
        name: 'shard',
        queueName: QUEUE_NAME,
        data: { ...base, shard } satisfies ShardJobData,
        opts: {
          jobId: `${run}-shard-${shard}`,
          attempts: 5,
          backoff: { type: 'exponential', delay: 1000 },
          failParentOnFailure: true,
        },
      })),
    });
    const parent = tree.job;
    const cancelled = new Promise<never>((_, reject) => {
      if (!hooks.signal) return;
      const onAbort = () => reject(hooks.signal!.reason);
      if (hooks.signal.aborted) onAbort();
      else hooks.signal.addEventListener('abort', onAbort, { once: true });
    });
    cancelled.catch(() => {});
    let result: CompleteJobResult;
    try {
      result = (await Promise.race([parent.waitUntilFinished(events), cancelled])) as CompleteJobResult;
    } catch (e) {
      if (hooks.signal?.aborted) {
        await cancelRun(queue, control, run, plan, todo);
        await sink.abort(e).catch(() => {});
        await sink.clearNotes().catch(() => {});
      }
      throw e instanceof Error ? e : new CogmillError('internal', `the materialisation failed: ${errorMessage(e)}`);
    }
    report(result);
    let tilesRendered = result.tilesRendered;
    for (const shard of todo) {
      const job = await queue.getJob(`${run}-shard-${shard}`);
      tilesRendered += (job?.returnvalue as ShardJobResult | undefined)?.tilesRendered ?? 0;
    }
    return { result, shardsRun: todo.length, tilesRendered };
  } finally {
    events.off('progress', onProgress);
    events.off('completed', onCompleted);
    await Promise.allSettled([events.close(), flows.close(), queue.close()]);
    await redis.close();
  }
}

/** Ask every worker to stop this run's shards; resolves once none is active (or after `timeoutMs`). */
async function cancelRun(
  queue: Queue,
  client: Redis,
  run: string,
  plan: MaterializePlan,
  shards: readonly number[],
  timeoutMs = 60_000,
): Promise<void> {
  await client.set(cancelKey(plan.id), '1', 'EX', 24 * 3600);
  const deadline = Date.now() + timeoutMs;
  const ids = [...shards.map((s) => `${run}-shard-${s}`), `${run}-complete`];
  for (;;) {
    let active = 0;
    for (const id of ids) {
      const job = await queue.getJob(id);
      if (!job) continue;
      const state = await job.getState();
      if (state === 'active') active++;
      else if (state !== 'completed' && state !== 'failed') await job.remove({ removeChildren: true }).catch(() => {});
    }
    if (active === 0 || Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, CANCEL_POLL_MS));
  }
}

export interface WorkerDeps {
  readonly redisUrl: string;
  /** shard jobs at once (default 1) */
  readonly concurrency?: number;
  /** render threads per shard (default: the cores) */
  readonly threads?: number;
  readonly maxConcurrentUploads?: number;
  /** BullMQ lock: a worker silent this long loses its shard to another (default 30 s) */
  readonly lockMs?: number;
  /** the engine for a plan's sources (its sources are trusted: plans come from the operator's coordinators) */
  readonly engineFor: (plan: MaterializePlan) => Engine;
  /** the staged sink of a destination, with this worker's credentials and the plan's smallest part */
  readonly sinkFor: (destination: string, minPartBytes?: number) => SinkStaged | Promise<SinkStaged>;
  readonly log?: (line: Record<string, unknown>) => void;
  /** a plan no job used for this long has its threads and engine closed (default 30 s) */
  readonly planIdleMs?: number;
}

/** how long a worker keeps a plan's threads and opened mosaic without a job of that plan */
const PLAN_IDLE_MS = 30_000;

interface PlanOpened {
  readonly plan: MaterializePlan;
  readonly mosaic: Mosaic;
  readonly engine: Engine;
}

interface PlanEntry extends PlanOpened {
  /** the plan's thread pool, started on first use */
  renderer(): PlanRenderer;
  /** the job is over; `failed`: retire the pool (a new one for the next job) */
  release(failed: boolean): void;
}

/**
 * The plans a worker has open: each with its engine, mosaic and one thread pool shared by its jobs; closed when
 * the plan completes or no job used it for `idleMs`. A pool a failed job used is retired once idle (a crashed
 * thread must not fail every later shard).
 */
class PlanCache {
  private readonly open = new Map<
    string,
    {
      opened: Promise<PlanOpened>;
      users: number;
      pool?: { renderer: PlanRenderer; users: number; retired: boolean };
      timer?: NodeJS.Timeout;
    }
  >();
  private readonly load: (destination: string, planId: string) => Promise<PlanOpened>;
  private readonly makeRenderer: (p: PlanOpened) => PlanRenderer;
  private readonly idleMs: number;
  constructor(
    load: (destination: string, planId: string) => Promise<PlanOpened>,
    makeRenderer: (p: PlanOpened) => PlanRenderer,
    idleMs: number,
  ) {
    this.load = load;
    this.makeRenderer = makeRenderer;
    this.idleMs = idleMs;
  }

  async acquire(destination: string, planId: string): Promise<PlanEntry> {
    let slot = this.open.get(planId);
    if (!slot) {
      slot = { opened: this.load(destination, planId), users: 0 };
      this.open.set(planId, slot);
    }
    clearTimeout(slot.timer);
    slot.users++;
    let opened: PlanOpened;
    try {
      opened = await slot.opened;
    } catch (e) {
      slot.users--;
      if (this.open.get(planId) === slot) this.open.delete(planId);
      throw e;
    }
    const s = slot;
    let pool: { renderer: PlanRenderer; users: number; retired: boolean } | undefined;
    let released = false;
    return {
      ...opened,
      renderer: () => {
        if (!pool) {
          if (!s.pool || s.pool.retired) s.pool = { renderer: this.makeRenderer(opened), users: 0, retired: false };
          pool = s.pool;
          pool.users++;
        }
        return pool.renderer;
      },
      release: (failed) => {
        if (released) return;
        released = true;
        if (pool) {
          pool.users--;
          if (failed) pool.retired = true;
          if (pool.retired && pool.users === 0) pool.renderer.close().catch(() => {});
        }
        s.users--;
        if (s.users === 0 && this.open.get(planId) === s)
          s.timer = setTimeout(() => this.evict(planId).catch(() => {}), this.idleMs).unref();
      },
    };
  }

  /** the plan completed: close what it holds now (no job of it runs any more) */
  finished(planId: string): void {
    const slot = this.open.get(planId);
    if (slot?.users === 1) this.evict(planId).catch(() => {});
  }

  private evict(planId: string): Promise<void> {
    const slot = this.open.get(planId);
    if (!slot) return Promise.resolve();
    clearTimeout(slot.timer);
    this.open.delete(planId);
    const pool = slot.pool;
    return slot.opened.then(
      async (p) => {
        // a retired pool was closed by its last user
        if (pool && !pool.retired) await pool.renderer.close().catch(() => {});
        await p.engine.close().catch(() => {});
      },
      () => {},
    );
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.open.keys()].map((id) => this.evict(id)));
  }
}

export interface RunningWorker {
  close(): Promise<void>;
  /** resolves when the worker stops taking jobs */
  readonly closed: Promise<void>;
}

/** A worker process's BullMQ worker: runs shard and complete jobs of any plan. */
export async function startWorker(deps: WorkerDeps): Promise<RunningWorker> {
  const redis = connector(deps.redisUrl);
  const control = redis.connect();
  const log = deps.log ?? (() => {});
  const workerId = `${hostname()}:${process.pid}`;
  const concurrency = Math.max(1, deps.concurrency ?? 1);
  // the shards of one plan share its mosaic and one thread pool (threads x concurrency, what separate pools per
  // shard would have used at most): a shard job no longer starts threads and opens the mosaic in each
  const threads = deps.threads === 0 ? 0 : (deps.threads ?? availableParallelism()) * concurrency;
  const plans = new PlanCache(
    async (destination, planId) => {
      const text = await (await deps.sinkFor(destination)).getNote(PLAN_NOTE);
      if (text === undefined) throw new UnrecoverableError(`no plan is saved at ${destination} any more`);
      const plan = parsePlan(text);
      if (plan.id !== planId) throw new UnrecoverableError(`the plan at ${destination} is no longer ${planId}`);
      const engine = deps.engineFor(plan);
      try {
        return { plan, engine, mosaic: await openPlanMosaic(engine, plan) };
      } catch (e) {
        await engine.close().catch(() => {});
        throw e;
      }
    },
    (p) => tileRenderer(p.engine, p.mosaic, p.plan, planLayout(p.mosaic, p.plan), threads),
    deps.planIdleMs ?? PLAN_IDLE_MS,
  );
  sizeWorkerHeaps();
  const worker = new Worker(
    QUEUE_NAME,
    async (job: Job) => {
      const data = job.data as ShardJobData | CompleteJobData;
      const entry = await plans.acquire(data.destination, data.planId);
      const { plan, mosaic, engine } = entry;
      let failed = false;
      const sink = await deps.sinkFor(plan.destination, plan.minPartBytes);
      sink.attach(plan.uploadId!);
      const controller = new AbortController();
      const poll = setInterval(() => {
        control.get(cancelKey(plan.id)).then(
          (v: string | null) => {
            if (v) controller.abort(new UnrecoverableError('cancelled'));
          },
          () => {},
        );
      }, CANCEL_POLL_MS);
      try {
        if (job.name === 'shard') {
          const shard = (data as ShardJobData).shard;
          log({ msg: 'shard start', plan: plan.id, shard, job: job.id });
          let lastProgress = 0;
          let last: MaterializeProgress | undefined;
          const progress = (p: MaterializeProgress, tilesDone = p.tilesDone) =>
            job
              .updateProgress({
                shard,
                tilesDone,
                bytesWritten: p.bytesWritten,
                parts: p.parts,
                retries: p.retries,
                worker: workerId,
              } satisfies ShardProgress)
              .catch(() => {});
          const [r] = await runShardsInProcess(
            engine,
            mosaic,
            plan,
            sink,
            {
              workers: threads,
              maxConcurrentUploads: deps.maxConcurrentUploads,
              only: [shard],
              renderer: entry.renderer(),
            },
            {
              signal: controller.signal,
              onProgress: (p) => {
                last = p;
                const now = performance.now();
                if (now - lastProgress < PROGRESS_EVERY_MS && p.tilesDone < p.tilesTotal) return;
                lastProgress = now;
                progress(p);
              },
              onReport: (rep) => saveReport(sink, rep, controller.signal),
            },
          );
          await progress(
            {
              ...(last ?? { tilesTotal: plan.tileCount, elapsedMs: 0, tilesPerSecond: 0, etaSeconds: 0 }),
              tilesDone: r.tilesRendered,
              bytesWritten: sink.stats.bytes,
              parts: sink.stats.parts,
              retries: sink.stats.retries,
            },
            r.tilesRendered,
          );
          log({ msg: 'shard done', plan: plan.id, shard, tiles: r.tilesRendered });
          return { shard, tilesRendered: r.tilesRendered, parts: r.parts.length } satisfies ShardJobResult;
        }
        if (job.name === 'complete') {
          const reports = await doneReports(sink, plan, controller.signal);
          // the glue tiles on as many threads as the worker's shards use at once
          const done = await completeInProcess(engine, mosaic, plan, sink, reports, {
            workers: threads,
            signal: controller.signal,
          });
          await sink.clearNotes().catch(() => {});
          // the plan is done: its threads and sources go at once, not after the idle time
          plans.finished(plan.id);
          log({ msg: 'complete', plan: plan.id, location: done.location, bytes: done.bytes });
          return {
            location: done.location,
            bytes: done.bytes,
            etag: done.etag ?? null,
            parts: done.parts ?? null,
            tiles: done.tiles,
            levels: done.levels,
            bigTiff: done.bigTiff,
            tilesRendered: done.tilesRendered,
          } satisfies CompleteJobResult;
        }
        throw new UnrecoverableError(`unknown job "${job.name}"`);
      } catch (e) {
        failed = true;
        if (controller.signal.aborted) throw new UnrecoverableError('cancelled');
        if (e instanceof CogmillError && (e.kind === 'bad-request' || e.kind === 'changed'))
          throw new UnrecoverableError(e.message);
        throw e;
      } finally {
        clearInterval(poll);
        // a failed job may have broken the threads: the next job of the plan starts new ones
        entry.release(failed);
      }
    },
    {
      connection: redis.connect(),
      concurrency,
      lockDuration: deps.lockMs ?? 30_000,
      stalledInterval: Math.max(1000, Math.floor((deps.lockMs ?? 30_000) / 2)),
      maxStalledCount: 5,
    },
  );
  let closedResolve = () => {};
  const closed = new Promise<void>((r) => {
    closedResolve = r;
  });
  // the plans' threads and engines are closed before the worker counts as closed
  worker.on('closed', () => {
    plans.close().finally(closedResolve);
  });
  worker.on('failed', (job, err) => log({ msg: 'job failed', job: job?.id, error: err.message }));
  await worker.waitUntilReady();
  return {
    closed,
    close: async () => {
      await worker.close();
      await plans.close();
      await redis.close();
      closedResolve();
    },
  };
}

/**
 * A plain Redis client for small request-time reads and writes (the registered mosaics): unlike the queue's
 * connections, a command fails after a few retries instead of waiting for Redis to come back, so an HTTP request
 * gets an error, not a hang.
 */
export function redisClient(url: string, options: { commandTimeoutMs?: number } = {}): Redis {
  const r = new Redis({
    ...redisConnection(url),
    maxRetriesPerRequest: 2,
    connectTimeout: 5_000,
    commandTimeout: options.commandTimeoutMs ?? 10_000,
  });
  // errors surface through the commands that fail; an unhandled 'error' event would end the process
  r.on('error', () => {});
  return r;
}
