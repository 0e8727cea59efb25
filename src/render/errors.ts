/**
 * Errors of the render layer. Each carries an HTTP-like `code` so the server maps it to a status in one table,
 * and a machine-readable `kind`. A message is written for a person: it says what is wrong and what to do.
 */
export type ErrorKind =
  | 'bad-request'
  | 'not-found'
  | 'forbidden'
  | 'too-large'
  | 'unsupported'
  | 'corrupt'
  | 'changed'
  | 'conflict'
  | 'unreachable'
  | 'timeout'
  | 'internal';

const KIND_CODE: Record<ErrorKind, number> = {
  'bad-request': 400,
  forbidden: 403,
  'not-found': 404,
  'too-large': 413,
  unsupported: 422,
  corrupt: 422,
  changed: 409,
  conflict: 409,
  unreachable: 502,
  timeout: 504,
  internal: 500,
};

export class CogmillError extends Error {
  readonly kind: ErrorKind;
  readonly code: number;
  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
    this.code = KIND_CODE[kind];
  }
}

/** A byte source failed: not found, unreachable, timed out, changed under us, forbidden path. */
export class SourceError extends CogmillError {
  override readonly name = 'SourceError';
}

/** A raster could not be understood or rendered: corrupt TIFF, unsupported compression, unknown CRS, too large. */
export class RenderError extends CogmillError {
  override readonly name = 'RenderError';
}

export function isCogmillError(e: unknown): e is CogmillError {
  return e instanceof CogmillError;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
