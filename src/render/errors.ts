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

/** `file:///a/b/c.tif` or `/a/b/c.tif` in running text (not the path part of an http:// or s3:// URL). */
const SERVER_PATH = /(?:file:\/\/|(?<![\w.:/@%-]))\/(?:[^\s/"'`()<>,;]+\/)+([^\s/"'`()<>,;:]+)/g;

/**
 * A message without absolute server paths: each becomes its file name (`/srv/data/scenes/a.tif` -> `a.tif`).
 * For answers to clients, who have no business knowing the server's folders.
 */
export function withoutServerPaths(message: string): string {
  return message.replace(SERVER_PATH, '$1');
}

/** How a source is named to clients: its file name, or its URL without credentials and query. */
export function sourceName(location: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location) && !/^file:\/\//i.test(location)) {
    try {
      const u = new URL(location);
      return `${u.protocol}//${u.host}${u.pathname}`;
    } catch {
      return withoutServerPaths(location);
    }
  }
  const p = location.replace(/^file:\/\//i, '');
  return p.slice(p.lastIndexOf('/') + 1) || p;
}

/** A source block that could not be decoded, skipped by a render (its pixels are left empty). */
export interface BlockFailure {
  /** the source's URL or path (for logs; never shown to clients) */
  readonly source: string;
  readonly level: number;
  readonly block: number;
  readonly error: CogmillError;
}
