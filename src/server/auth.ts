/**
 * Authentication and destination policy of the materialise and job routes.
 *
 * - `requireToken`: `Authorization: Bearer <auth.token>` compared in constant time. A missing token gives 401,
 *   a wrong one 403. Without a configured token the routes are disabled (403) unless `auth.allowUnauthenticated`.
 * - `checkDestination`: an export destination must lie under one of `materialize.allowedDestinations`
 *   (s3://bucket/prefix/, az://container/prefix/ or a local folder, symlinks resolved); anything else is refused before work starts.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import type { MiddlewareHandler } from 'hono';
import type { Config } from '../config.schema.ts';
import { parseAzureDestination } from '../materialize/destination.ts';
import { errorMessage } from '../render/errors.ts';
import { RequestError, UnauthorizedError } from './errors.ts';
import type { AppEnv } from './request.ts';

/** Compare two secrets in time independent of where they differ (and of their lengths). */
export function tokenMatches(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b) && given.length === expected.length;
}

/** The bearer token of an Authorization header, or undefined when there is none. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^\s*Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1] : undefined;
}

/** Middleware guarding /materialize, /jobs and export downloads. */
export function requireToken(deps: { readonly config: Config }): MiddlewareHandler<AppEnv> {
  const { token, allowUnauthenticated } = deps.config.auth;
  return async (c, next) => {
    if (c.req.method === 'OPTIONS') return next();
    if (token === undefined) {
      if (allowUnauthenticated) return next();
      throw new RequestError(
        'forbidden',
        'materialisation is disabled: configure auth.token (COGMILL_AUTH_TOKEN), or set auth.allowUnauthenticated for local use',
      );
    }
    const header = c.req.header('authorization');
    const given = bearerToken(header);
    if (given === undefined) {
      c.header('WWW-Authenticate', 'Bearer realm="cogmill"');
      throw new UnauthorizedError(
        header
          ? 'the Authorization header must be "Bearer <token>"'
          : 'this route needs an "Authorization: Bearer <token>" header',
      );
    }
    if (!tokenMatches(given, token)) {
      c.header('WWW-Authenticate', 'Bearer realm="cogmill", error="invalid_token"');
      throw new RequestError('forbidden', 'the bearer token is not valid');
    }
    return next();
  };
}

export type Destination =
  | { readonly kind: 's3'; readonly url: string; readonly bucket: string; readonly key: string }
  | { readonly kind: 'azure'; readonly url: string; readonly container: string; readonly blob: string }
  | { readonly kind: 'file'; readonly path: string };

function forbidden(dest: string, allowed: readonly string[]): RequestError {
  return new RequestError(
    'forbidden',
    allowed.length === 0
      ? `destination ${dest} refused: no destinations are allowed (set materialize.allowedDestinations)`
      : `destination ${dest} is not under an allowed destination (materialize.allowedDestinations: ${allowed.join(', ')})`,
  );
}

/** Path segments that could change meaning once a URL or path is normalised downstream. */
function badSegments(p: string): boolean {
  return p.split('/').some((s) => s === '.' || s === '..') || p.includes('\\');
}

/** A NUL or another control character: refused with its own message (it is not a "." segment). */
function refuseControlCharacters(dest: string): void {
  const at = [...dest].findIndex((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f);
  if (at >= 0) {
    const code = dest.codePointAt(at) ?? 0;
    const name = code === 0 ? 'NUL' : `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
    throw new RequestError(
      'bad-request',
      `destination may not contain control characters (found ${name} at character ${at + 1})`,
    );
  }
}

/** The real path of `p`, resolving symlinks of the deepest part that exists (the rest is created later). */
function realpathOfFuture(p: string): string {
  const missing: string[] = [];
  let cur = p;
  for (;;) {
    try {
      return path.join(realpathSync.native(cur), ...missing.reverse());
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      const parent = path.dirname(cur);
      if (parent === cur) return p;
      missing.push(path.basename(cur));
      cur = parent;
    }
  }
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false; // not there yet (or not reachable: the sink says why when it opens)
  }
}

function isInside(child: string, folder: string): boolean {
  const rel = path.relative(folder, child);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/**
 * Check an export destination against `materialize.allowedDestinations` and normalise it. Throws a 400
 * RequestError for a malformed destination and a 403 one for a destination outside the allow-list.
 */
export function checkDestination(dest: string, config: Config): Destination {
  const allowed = config.materialize.allowedDestinations;
  if (typeof dest !== 'string' || dest.trim() === '') {
    throw new RequestError(
      'bad-request',
      'dest is required: s3://bucket/key.tif, az://container/blob.tif or an absolute file path',
    );
  }
  refuseControlCharacters(dest);
  if (/^s3:\/\//i.test(dest)) {
    const m = /^s3:\/\/([^/]+)\/(.+)$/s.exec(dest);
    if (!m || m[2].endsWith('/'))
      throw new RequestError('bad-request', `destination ${dest} must be s3://bucket/key (a key, not a prefix)`);
    const [, bucket, key] = m;
    if (badSegments(key) || key.includes('//')) {
      throw new RequestError('bad-request', `destination ${dest} may not contain ".", ".." or empty path segments`);
    }
    const ok = allowed.some((a) => /^s3:\/\//i.test(a) && dest.startsWith(a.endsWith('/') ? a : `${a}/`));
    if (!ok) throw forbidden(dest, allowed);
    return { kind: 's3', url: dest, bucket, key };
  }
  if (/^az:\/\//i.test(dest)) {
    let parsed: { container: string; blob: string };
    try {
      parsed = parseAzureDestination(dest);
    } catch (e) {
      throw new RequestError('bad-request', errorMessage(e));
    }
    if (parsed.blob.includes('//') || badSegments(parsed.blob)) {
      throw new RequestError('bad-request', `destination ${dest} may not contain ".", ".." or empty path segments`);
    }
    const ok = allowed.some((a) => /^az:\/\//.test(a) && dest.startsWith(a.endsWith('/') ? a : `${a}/`));
    if (!ok) throw forbidden(dest, allowed);
    return { kind: 'azure', url: dest, container: parsed.container, blob: parsed.blob };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(dest) && !/^file:\/\//i.test(dest)) {
    throw new RequestError(
      'bad-request',
      `destination ${dest}: only s3://bucket/key, az://container/blob and local file paths are supported`,
    );
  }
  const file = dest.replace(/^file:\/\//i, '');
  if (!path.isAbsolute(file)) throw new RequestError('bad-request', `destination ${dest} must be an absolute path`);
  if (badSegments(file))
    throw new RequestError('bad-request', `destination ${dest} may not contain "." or ".." path segments`);
  if (file.endsWith('/')) throw new RequestError('bad-request', `destination ${dest} names a folder; give a file name`);
  const real = realpathOfFuture(path.resolve(file));
  const ok = allowed.some((a) => {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(a) && !/^file:\/\//i.test(a)) return false;
    return isInside(real, realpathOfFuture(path.resolve(a.replace(/^file:\/\//i, ''))));
  });
  if (!ok) throw forbidden(dest, allowed);
  if (isDirectory(real)) {
    throw new RequestError('bad-request', `destination ${dest} is a folder; give the name of a file in it`);
  }
  return { kind: 'file', path: real };
}
