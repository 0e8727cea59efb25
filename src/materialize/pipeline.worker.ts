/** Worker thread of the materialisation pipeline: opens the mosaic once, then renders + encodes tiles on request. */
import { isMarkedAsUntransferable, parentPort, workerData } from 'node:worker_threads';
import { inflateOnThisThread } from '../render/deflate.ts';
import { Engine, type EngineSettings } from '../render/engine.ts';
import { CogmillError } from '../render/errors.ts';
import type { MosaicSpec } from '../render/mosaic.ts';
import { readOnThisThread } from '../render/source.file.ts';
import { cogLevels, framedPayload } from './cog.layout.ts';
import type { ReduceWindow } from './overview.reduce.ts';
import { type SampleMeasure, shareVerdicts } from './stored.reuse.ts';
import { reduceShapeOf, runReduceJob, runTileJob, type TileJobSettings } from './tile.job.ts';
import { pixelBuffers } from './tile.pool.ts';

interface Init {
  readonly engine: Partial<EngineSettings>;
  readonly spec: MosaicSpec;
  readonly settings: TileJobSettings;
}

interface Job {
  readonly id: number;
  readonly level: number;
  readonly tx: number;
  readonly ty: number;
  readonly keep?: boolean;
  /** a reduce job: the finer level's pixels the tile needs */
  readonly window?: ReduceWindow;
}

/** A thread started ahead of its pool (tile.pool.start.ts) gets its Init as its first message. */
const deferred = (workerData as { deferred?: boolean } | null)?.deferred === true;
inflateOnThisThread(true);
readOnThisThread(true);

function open(init: Init) {
  const engine = new Engine(init.engine);
  return engine.openMosaic(init.spec).then((mosaic) => ({
    init,
    engine,
    mosaic,
    shape: reduceShapeOf(mosaic, init.settings),
    levels: cogLevels(mosaic.grid.width, mosaic.grid.height, init.settings.blockSize),
  }));
}

let initialised: (init: Init) => void = () => {};
const ready: ReturnType<typeof open> = deferred
  ? new Promise<Init>((resolve) => {
      initialised = resolve;
    }).then(open)
  : open(workerData as Init);
ready.catch(() => {});

/**
 * Verdicts on reusing stored source bytes, shared through the pool (tile.pool.ts SharedVerdicts): the pool answers
 * with the verdict, or with a sample for this thread to measure (then the next answer, until the verdict).
 */
type Answer = { verdictAnswer: string } & ({ reuse: boolean } | { measure: number });
const answers = new Map<string, (answer: Answer) => void>();
const nextAnswer = (key: string, message: object) =>
  new Promise<Answer>((resolve) => {
    answers.set(key, resolve);
    parentPort!.postMessage(message);
  }).finally(() => answers.delete(key));
shareVerdicts(async (key, count, measure) => {
  let answer = await nextAnswer(key, { verdictAsk: key, count });
  while ('measure' in answer) {
    const k = answer.measure;
    let measured: SampleMeasure;
    try {
      measured = await measure(k);
    } catch (e) {
      // another thread measures it
      parentPort!.postMessage({ verdictSample: key, k, failed: true });
      throw e;
    }
    answer = await nextAnswer(key, { verdictSample: key, k, measured });
  }
  return answer.reuse;
});

parentPort!.on('message', async (msg: Job | { init: Init } | Answer) => {
  if ('init' in msg) {
    initialised(msg.init);
    return;
  }
  if ('verdictAnswer' in msg) {
    answers.get(msg.verdictAnswer)?.(msg);
    return;
  }
  try {
    const { init, engine, mosaic, shape, levels } = await ready;
    const r = msg.window
      ? await runReduceJob(shape, levels, init.settings, msg.level, msg.tx, msg.ty, msg.window, msg.keep)
      : await runTileJob(engine, mosaic, levels, init.settings, msg.level, msg.tx, msg.ty, undefined, msg.keep);
    // framed here (one copy, off the calling thread) when the file frames its tiles
    const framed = init.settings.frame === true && r.payload.length > 0;
    const payload = framed ? framedPayload(r.payload) : ownedBytes(r.payload);
    parentPort!.postMessage(
      { id: msg.id, payload, framed, stats: r.stats, validCount: r.validCount, pixels: r.pixels },
      [payload.buffer as ArrayBuffer, ...pixelBuffers(r.pixels)],
    );
  } catch (e) {
    const err = e as Error;
    parentPort!.postMessage({
      id: msg.id,
      error: {
        message: err?.message ?? String(e),
        kind: e instanceof CogmillError ? e.kind : 'internal',
        name: err?.name,
      },
    });
  }
});

/**
 * Bytes whose whole ArrayBuffer can be transferred: the encoder's own output when it fills a buffer of its own
 * (libdeflate's, zstd's), else a copy (pooled Buffers, views into larger buffers and untransferable memory).
 */
function ownedBytes(bytes: Uint8Array): Uint8Array {
  const buf = bytes.buffer;
  if (
    buf instanceof ArrayBuffer &&
    bytes.byteOffset === 0 &&
    bytes.byteLength === buf.byteLength &&
    !isMarkedAsUntransferable(buf)
  )
    return bytes;
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy;
}
