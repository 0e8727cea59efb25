/**
 * What every remote source and sink retries with: an abortable wait, and the socket error codes that mean "the
 * connection failed, sending again may work" (one list, so S3, HTTP and Azure agree on what is transient).
 */

/** Socket and HTTP client codes of a connection that failed or was cut: transient, worth a retry. */
export const NETWORK_CODES: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ETIMEDOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'REQUEST_SEND_ERROR',
]);

/** Wait `ms`; rejects with the signal's reason as soon as it is aborted (and at once when it already is). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Exponential backoff with full jitter: a wait in [0, min(maxMs, baseMs * 2^(attempt-1))). */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.random() * Math.min(maxMs, baseMs * 2 ** (attempt - 1));
}

export interface RetryPolicy {
  /** attempts, the first included */
  readonly attempts: number;
  /** first backoff; doubles per attempt, full jitter, at most maxMs */
  readonly baseMs: number;
  readonly maxMs: number;
  /** cancels: its reason is thrown as it is, at once, whatever an attempt threw */
  readonly signal?: AbortSignal;
  /** what a failed attempt counts as (e.g. a timeout error for an attempt cut by its own deadline) */
  readonly failure?: (e: unknown) => unknown;
  /** whether sending again may cure this failure */
  readonly retryable: (failure: unknown) => boolean;
  /** told of each failure that is retried, before the wait */
  readonly onRetry?: (failure: unknown, attempt: number) => void;
  /** the error thrown for the last failure (no attempt left, or not retryable) */
  readonly fail: (failure: unknown, attempts: number) => unknown;
}

/**
 * Run `attempt(1)`, `attempt(2)`, ... until one succeeds, a failure is not retryable or the attempts are spent,
 * waiting an exponential backoff with full jitter between attempts: the one retry loop of the S3 and Azure
 * clients, sources and sinks alike.
 */
export async function retrying<T>(attempt: (n: number) => Promise<T>, policy: RetryPolicy): Promise<T> {
  const { signal } = policy;
  for (let n = 1; ; n++) {
    signal?.throwIfAborted();
    try {
      return await attempt(n);
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      const failure = policy.failure ? policy.failure(e) : e;
      if (n >= policy.attempts || !policy.retryable(failure)) throw policy.fail(failure, n);
      policy.onRetry?.(failure, n);
      await sleep(backoffMs(n, policy.baseMs, policy.maxMs), signal);
    }
  }
}
