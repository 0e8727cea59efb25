/**
 * The V8 heap of the worker threads that render and encode tiles. Their JavaScript heap is small (~25 MB) but
 * they allocate several MB of typed arrays per tile (decoded blocks, rendered bands, encoded payloads, all outside
 * the heap); with V8's default start-up sizing of a small heap each of them ran a full mark-compact every 5-10
 * tiles (measured: 110 per single-scene materialisation, a quarter of its CPU). Letting the old generation start
 * at 128 MB takes that to ~17 and the CPU of the whole job down by a quarter, for ~100 MB more peak RSS
 * (bench/RESULTS.md). The flag is read when an isolate is created, so it reaches the threads started after this
 * call; the main thread keeps its own sizing. COGMILL_WORKER_OLD_SPACE_MB overrides the size (0 keeps V8's).
 */
import v8 from 'node:v8';

const DEFAULT_WORKER_OLD_SPACE_MB = 128;
let applied = false;

/** Call before creating worker threads. */
export function sizeWorkerHeaps(env: NodeJS.ProcessEnv = process.env): void {
  if (applied) return;
  applied = true;
  const asked = env.COGMILL_WORKER_OLD_SPACE_MB;
  const mb = asked !== undefined && asked !== '' ? Number(asked) : DEFAULT_WORKER_OLD_SPACE_MB;
  if (!Number.isInteger(mb) || mb <= 0 || mb > 4096) return;
  v8.setFlagsFromString(`--initial-old-space-size=${mb}`);
}
