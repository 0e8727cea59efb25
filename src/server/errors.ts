/**
 * HTTP errors: every error of every layer carries an HTTP-like `code`; this module turns any thrown value into
 * a status and a JSON body `{ code, message, requestId }` (`code` in the body is a short machine-readable string).
 */
import { CogmillError } from '../render/errors.ts';

/** A request that cannot be served as asked: bad parameter, over a limit, not allowed. */
export class RequestError extends CogmillError {
  override readonly name = 'RequestError';
}

/** Missing or wrong credentials: 401. */
export class UnauthorizedError extends RequestError {
  override readonly code: number = 401;
  constructor(message: string) {
    super('forbidden', message);
  }
}

export interface ErrorBody {
  readonly code: string;
  readonly message: string;
  readonly requestId?: string;
}

/** Map any thrown value to a status and a body a person can act on; `expose` false hides internals (5xx). */
export function toHttpError(e: unknown): { status: number; body: Omit<ErrorBody, 'requestId'>; expose: boolean } {
  if (e instanceof CogmillError) {
    const status = e.code;
    const code = e instanceof UnauthorizedError ? 'unauthorized' : e.kind;
    return { status, body: { code, message: e.message }, expose: status !== 500 };
  }
  if (e && typeof e === 'object' && (e as Error).name === 'AbortError') {
    return { status: 499, body: { code: 'cancelled', message: 'the request was cancelled' }, expose: true };
  }
  return { status: 500, body: { code: 'internal', message: 'internal error; see the server log' }, expose: false };
}
