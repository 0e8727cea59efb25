/**
 * Limits that keep one process responsive: a concurrent-render limiter (a semaphore with a bounded queue: 503
 * with Retry-After when full), a per-request deadline (504), and checks for pixel counts (413) and expression
 * length (400) that name the setting to change.
 */
import type { MiddlewareHandler } from 'hono';
import { CogmillError } from '../render/errors.ts';
import { RequestError } from './errors.ts';
import type { AppEnv } from './request.ts';

/** Too many requests already running and waiting: 503 with a Retry-After header. */
export class OverloadedError extends RequestError {
  override readonly code: number = 503;
  /** seconds a client should wait before retrying */
  readonly retryAfterS: number;
  constructor(message: string, retryAfterS: number) {
    super('unreachable', message);
    this.retryAfterS = retryAfterS;
  }
}

export interface RenderLimiterStats {
  readonly active: number;
  readonly queued: number;
  /** requests refused because the queue was full, since start */
  readonly rejected: number;
}

interface Waiter {
  readonly resolve: (release: () => void) => void;
  readonly reject: (e: unknown) => void;
  readonly cleanup: () => void;
}

/**
 * A counting semaphore with a bounded FIFO queue. `acquire` resolves with a release function (idempotent);
 * when `maxQueued` callers already wait it throws OverloadedError at once; an aborted signal takes a waiter
 * out of the queue.
 */
export class RenderLimiter {
  readonly maxConcurrent: number;
  readonly maxQueued: number;
  private active = 0;
  private rejectedCount = 0;
  private readonly waiters: Waiter[] = [];

  constructor(opts: { maxConcurrent: number; maxQueued: number }) {
    if (!(opts.maxConcurrent >= 1)) throw new RangeError('maxConcurrent must be at least 1');
    this.maxConcurrent = opts.maxConcurrent;
    this.maxQueued = Math.max(0, opts.maxQueued);
  }

  get stats(): RenderLimiterStats {
    return { active: this.active, queued: this.waiters.length, rejected: this.rejectedCount };
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiters.shift();
      if (next) {
        next.cleanup();
        next.resolve(this.releaser());
      } else {
        this.active--;
      }
    };
  }

  /** A slot now, if one is free (nobody can be waiting then): its release function; otherwise undefined. */
  tryAcquire(): (() => void) | undefined {
    if (this.active >= this.maxConcurrent) return undefined;
    this.active++;
    return this.releaser();
  }

  acquire(signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    if (this.active < this.maxConcurrent) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiters.length >= this.maxQueued) {
      this.rejectedCount++;
      return Promise.reject(
        new OverloadedError(
          `the server is busy: ${this.active} renders are running and ${this.waiters.length} are waiting ` +
            '(limits.maxConcurrentRenders, limits.maxQueuedRenders); retry in a moment',
          1,
        ),
      );
    }
    return new Promise<() => void>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal?.reason);
      };
      const waiter: Waiter = { resolve, reject, cleanup: () => signal?.removeEventListener('abort', onAbort) };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Run `fn` holding one slot. */
  async run<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(signal);
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/** The error a request gets when it runs out of time. */
export function deadlineError(timeoutMs: number): CogmillError {
  return new CogmillError(
    'timeout',
    `the request did not finish within ${timeoutMs} ms (server.requestTimeoutMs); ask for a smaller area or a coarser zoom, or retry`,
  );
}

/**
 * Middleware for rendering routes: wait for a render slot (503 when the queue is full), and answer 504 when the
 * handler has not produced a response within `timeoutMs` (queue time included). On timeout the request's signal
 * is aborted (`abort`), so the work it started stops; the slot is held until the handler really returns.
 */
export function renderGate(opts: {
  limiter: RenderLimiter;
  timeoutMs: number;
  abort: (c: Parameters<MiddlewareHandler<AppEnv>>[0], reason: unknown) => void;
}): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    // a client already gone is not served (the request's own signal is made only when it is needed)
    c.req.raw.signal.throwIfAborted();
    let expired: CogmillError | undefined;
    let failWaiting: ((e: unknown) => void) | undefined;
    const timer = setTimeout(() => {
      expired = deadlineError(opts.timeoutMs);
      opts.abort(c, expired);
      failWaiting?.(expired);
    }, opts.timeoutMs);
    /** `p`, or the deadline error as soon as the deadline passes. */
    const beforeDeadline = <T>(p: Promise<T>): Promise<T> =>
      new Promise<T>((resolve, reject) => {
        if (expired) reject(expired);
        failWaiting = reject;
        p.then(resolve, reject);
      });
    try {
      let release = opts.limiter.tryAcquire();
      if (!release) {
        const signal = c.get('req').signal;
        const acquiring = opts.limiter.acquire(signal);
        // a slot granted after the deadline is handed straight back
        acquiring.then(
          (r) => {
            if (signal.aborted) r();
          },
          () => {},
        );
        release = await beforeDeadline(acquiring);
      }
      const work = holding(next, release);
      work.catch(() => {});
      await beforeDeadline(work);
    } finally {
      clearTimeout(timer);
    }
  };
}

/** Run `next`, then give the slot back (also when it fails). */
async function holding(next: () => Promise<void>, release: () => void): Promise<void> {
  try {
    await next();
  } finally {
    release();
  }
}

/** 413 when a `width` x `height` window is over `maxPixels`; `what` names the thing, `setting` the key to change. */
export function checkPixels(width: number, height: number, maxPixels: number, what: string, setting: string): void {
  if (!(width > 0 && height > 0) || !Number.isFinite(width * height)) {
    throw new RequestError('bad-request', `${what} must have a positive size (got ${width} x ${height})`);
  }
  if (width * height > maxPixels) {
    throw new RequestError(
      'too-large',
      `${what} of ${width} x ${height} = ${width * height} pixels is over the limit of ${maxPixels} pixels (${setting}); ask for a smaller size`,
    );
  }
}

/** 413 when either side of an image is over `maxSide` pixels. */
export function checkSide(width: number, height: number, maxSide: number, what: string, setting: string): void {
  if (!(width > 0 && height > 0))
    throw new RequestError('bad-request', `${what} must have a positive size (got ${width} x ${height})`);
  if (width > maxSide || height > maxSide) {
    throw new RequestError(
      'too-large',
      `${what} of ${width} x ${height} pixels is over the limit of ${maxSide} pixels per side (${setting}); ask for a smaller size`,
    );
  }
}

/** 400 when a band-math expression is longer than `maxLength` characters. */
export function checkExpressionLength(expression: string, maxLength: number): void {
  if (expression.length > maxLength) {
    throw new RequestError(
      'bad-request',
      `the expression is ${expression.length} characters long, over the limit of ${maxLength} (limits.maxExpressionLength)`,
    );
  }
}
