/**
 * A tile worker thread (see tile.pipeline.pool.ts): its own engine (headers, blocks, open files; bounded by its
 * settings), the mosaics it has been described opened on first use (the most recently used kept open), and the
 * tile pipeline. Each job's source reads are counted and sent back with its answer; a cancel aborts the job's render.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { parentPort, workerData } from 'node:worker_threads';
import { EngineCounted, type SourceIo } from './engine.counted.ts';
import { RenderError } from './errors.ts';
import type { Mosaic, MosaicSpec } from './mosaic.ts';
import {
  errorToWorker,
  type TileWorkerCommand,
  type TileWorkerInit,
  type TileWorkerReply,
} from './tile.pipeline.pool.ts';
import { TilePipeline, type TileRequest } from './tile.pipeline.ts';

/** Opened mosaics kept per worker (least recently used closed first). */
const MAX_OPEN_MOSAICS = 16;

const port = parentPort!;
const init = workerData as TileWorkerInit;
const ioScope = new AsyncLocalStorage<SourceIo>();
const mosaicScope = new AsyncLocalStorage<Mosaic>();
const engine = new EngineCounted(init.engine, ioScope);

function post(msg: TileWorkerReply, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer);
}

engine.onBlockError = (f) =>
  post({
    type: 'block-error',
    mosaic: f.mosaic,
    source: f.source,
    level: f.level,
    block: f.block,
    error: errorToWorker(f.error),
  });

const pipeline = new TilePipeline({
  engine,
  statistics: {
    get: () => {
      throw new RenderError('internal', 'a tile request reached a worker without its stretch');
    },
  },
  mosaic: (id) => {
    const m = mosaicScope.getStore();
    if (!m || m.id !== id) throw new RenderError('internal', `mosaic ${id} is not open in this worker`);
    return m;
  },
});

/** The latest spec of each mosaic id this worker was given (sent again when the main thread's etag changes). */
const specs = new Map<string, MosaicSpec>();
/** `id|etag` -> the opened mosaic, least recently used first */
const opened = new Map<string, Promise<Mosaic>>();
/** running jobs, to abort on cancel */
const running = new Map<number, AbortController>();

/**
 * The opened mosaic of a request (opened on first use). `signal` (the first request's) aborts the opening: a
 * request left waiting on an opening another request cancelled opens it again (`runJob`).
 */
function mosaicFor(request: Pick<TileRequest, 'mosaicId' | 'mosaicEtag'>, signal: AbortSignal): Promise<Mosaic> {
  const key = `${request.mosaicId}|${request.mosaicEtag}`;
  let p = opened.get(key);
  if (p) {
    opened.delete(key);
    opened.set(key, p);
    return p;
  }
  const spec = specs.get(request.mosaicId);
  if (!spec)
    return Promise.reject(new RenderError('internal', `mosaic ${request.mosaicId} was not described to this worker`));
  // the main thread's mosaic is the one requests are validated and cached against: its etag names this copy too
  // (a source that changed since then shows in the main thread's mosaic, as it would without workers)
  const made = engine.openMosaic(spec, signal).then((m) => {
    m.etag = request.mosaicEtag;
    return m;
  });
  opened.set(key, made);
  // a failed open is tried again by the next request
  made.catch(() => opened.get(key) === made && opened.delete(key));
  while (opened.size > MAX_OPEN_MOSAICS) opened.delete(opened.keys().next().value!);
  p = made;
  return p;
}

async function runJob(job: number, request: TileRequest, signal: AbortSignal): Promise<void> {
  const io: SourceIo = { sourceRequests: 0, sourceBytes: 0 };
  try {
    const image = await ioScope.run(io, async () => {
      if (!request.inside) return pipeline.run(request, signal);
      const m = await openedMosaic(request, signal);
      signal.throwIfAborted();
      return mosaicScope.run(m, () => pipeline.run(request, signal));
    });
    // a buffer of our own to transfer (the pipeline keeps empty images; encoders may hand out pooled memory)
    const body = new Uint8Array(image.body.byteLength);
    body.set(image.body);
    post({ type: 'done', job, image: { ...image, body }, io }, [body.buffer]);
  } catch (e) {
    post({ type: 'error', job, error: errorToWorker(signal.aborted ? signal.reason : e), io });
  }
}

/** The opened mosaic of a request; an opening another request's cancel stopped is tried again. */
async function openedMosaic(request: Pick<TileRequest, 'mosaicId' | 'mosaicEtag'>, signal: AbortSignal) {
  try {
    return await mosaicFor(request, signal);
  } catch (e) {
    if (signal.aborted || (e as Error)?.name !== 'AbortError') throw e;
    return mosaicFor(request, signal);
  }
}

/** A task of another layer (see TileWorkerCommand 'task'): its module's `runTileTask`, its bytes sent back. */
async function runTask(cmd: Extract<TileWorkerCommand, { type: 'task' }>, signal: AbortSignal): Promise<void> {
  const io: SourceIo = { sourceRequests: 0, sourceBytes: 0 };
  try {
    const bytes = await ioScope.run(io, async () => {
      const m = await openedMosaic(cmd, signal);
      signal.throwIfAborted();
      const task = (await import(cmd.module)) as {
        runTileTask(engine: EngineCounted, mosaic: Mosaic, args: unknown, signal: AbortSignal): Promise<Uint8Array>;
      };
      return task.runTileTask(engine, m, cmd.args, signal);
    });
    // a buffer of our own to transfer (the task's may be a view into a larger one)
    const own =
      bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer
        ? bytes
        : bytes.slice();
    post({ type: 'task-done', job: cmd.job, bytes: own, io }, [own.buffer as ArrayBuffer]);
  } catch (e) {
    post({ type: 'error', job: cmd.job, error: errorToWorker(signal.aborted ? signal.reason : e), io });
  }
}

port.on('message', (cmd: TileWorkerCommand) => {
  if (cmd.type === 'cancel') {
    running.get(cmd.job)?.abort();
    return;
  }
  const id = cmd.type === 'run' ? cmd.request.mosaicId : cmd.mosaicId;
  if (cmd.spec) specs.set(id, cmd.spec);
  const controller = new AbortController();
  running.set(cmd.job, controller);
  const done = cmd.type === 'run' ? runJob(cmd.job, cmd.request, controller.signal) : runTask(cmd, controller.signal);
  void done.finally(() => running.delete(cmd.job));
});

post({ type: 'ready' });
