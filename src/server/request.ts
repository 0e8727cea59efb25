/**
 * What every handler knows about its request: the per-request state (id, logger, timers, summary fields, abort
 * signal, source IO counts) the app's middleware makes, and `timed`, which adds a named step to the request's
 * summary line.
 */
import type { Logger } from 'pino';

/** Source IO of one request, counted by the engine's sources and written to the request's summary line. */
export interface RequestIo {
  sourceRequests: number;
  sourceBytes: number;
}

/** Per-request state handlers may add to; it ends up in the request's summary log line. */
export interface RequestInfo {
  readonly id: string;
  readonly log: Logger;
  /** named step durations in ms (see `timed`) */
  readonly timers: Record<string, number>;
  /** extra fields of the summary line; by convention `cache: 'hit' | 'miss' | 'not-modified'` for cached answers */
  readonly fields: Record<string, unknown>;
  /** aborted when the client goes away or the request runs out of time: pass it to renders and source reads */
  readonly signal: AbortSignal;
  /** source reads this request caused (counted by the engine's sources) */
  readonly io: RequestIo;
}

export type AppEnv = { Variables: { req: RequestInfo } };

/** Time an async step into the request's summary line under `name` (milliseconds). */
export async function timed<T>(info: RequestInfo, name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    addTimings(info, { [name]: performance.now() - t0 });
  }
}

/** Add step durations measured elsewhere (milliseconds by name) to the request's summary line. */
export function addTimings(info: RequestInfo, timings: Readonly<Record<string, number>>): void {
  for (const [name, ms] of Object.entries(timings)) {
    info.timers[name] = Math.round(((info.timers[name] ?? 0) + ms) * 100) / 100;
  }
}
