/**
 * The Hono app: middleware (request id, one summary log line per request, metrics, CORS, authentication of the
 * materialise routes, render limits and deadlines), one error handler mapping every error to
 * `{ code, message, requestId }`, and the routers of each view.
 */
import { randomUUID } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { matchedRoutes } from 'hono/route';
import type { Logger } from 'pino';
import { withoutServerPaths } from '../render/errors.ts';
import { requireToken } from './auth.ts';
import type { AppDeps } from './deps.ts';
import { RequestError, toHttpError } from './errors.ts';
import { OverloadedError, renderGate } from './limits.ts';
import { appMetrics, catalogMetrics } from './metrics.ts';
import type { AppEnv, RequestInfo, RequestIo } from './request.ts';
import { materializeRoutes } from './routes.materialize.ts';
import { mosaicRoutes } from './routes.mosaics.ts';
import { opsRoutes } from './routes.ops.ts';
import { qgisRoutes } from './routes.qgis.ts';
import { tileMatrixSetRoutes } from './routes.tilematrixsets.ts';
import { tilesRoutes } from './routes.tiles.ts';
import { viewerRoutes } from './routes.viewer.ts';
import { virtualRoutes } from './routes.virtual.ts';

/**
 * A route pattern as a metric label / OpenAPI path: `:id{regex}` becomes `{id}` (regexes may nest braces).
 * `/mosaics/:id{[A-Za-z0-9_-]{1,64}}.tif` -> `/mosaics/{id}.tif`.
 */
export function routeTemplate(pattern: string): string {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i];
    if (ch !== ':') {
      out += ch;
      continue;
    }
    let j = i + 1;
    while (j < pattern.length && /[A-Za-z0-9_]/.test(pattern[j])) j++;
    out += `{${pattern.slice(i + 1, j)}}`;
    if (pattern[j] === '{') {
      let depth = 0;
      for (; j < pattern.length; j++) {
        if (pattern[j] === '\\') j++;
        else if (pattern[j] === '{') depth++;
        else if (pattern[j] === '}' && --depth === 0) break;
      }
      j++;
    }
    if (pattern[j] === '?') j++;
    i = j - 1;
  }
  return out;
}

/** Route patterns as labels, converted once per pattern (the set of patterns is fixed by the routers). */
const templates = new Map<string, string>();

/** The route that answered (or would have): its pattern, or `unmatched`. Middleware patterns never count. */
function routeLabel(c: Context<AppEnv>): string {
  const routes = matchedRoutes(c);
  const at = routes[c.req.routeIndex];
  const r = at && at.method !== 'ALL' ? at : routes.find((x) => x.method !== 'ALL');
  if (!r) return 'unmatched';
  let t = templates.get(r.path);
  if (t === undefined) {
    t = routeTemplate(r.path);
    templates.set(r.path, t);
  }
  return t;
}

/** Routes behind the bearer token (see requireToken below). */
const AUTHENTICATED_PATH = /^\/(materialize|jobs)(\/|$)|^\/mosaics\/[^/]+\/export\.tif$/;

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;
const PROBE_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

/** Paths whose handlers render pixels: they take a render slot and have a deadline. */
const RENDER_PATH = /^\/mosaics\/[^/]+(\/(tiles|preview|bbox|statistics|point|qgis\.qgz)\b|\.tif$)/;

/**
 * Top-level key names the process logger redacts (see `createLogger` in main.ts). A summary line whose values
 * are all scalars can only be affected by these (the wildcard paths need a nested object), so such lines are
 * written through a logger that checks just these keys; a line with a nested value goes through the full set.
 */
const SUMMARY_REDACT_KEYS = ['authorization', 'token', 'secretAccessKey', 'accessKeyId'];
const REDACT_CENSOR = '[redacted]';

/**
 * The state of one request. The child logger and the abort controller are made on first use: a request that
 * is answered from a cache and logs only its summary line needs neither.
 */
class RequestState implements RequestInfo {
  readonly id: string;
  readonly timers: Record<string, number> = {};
  readonly fields: Record<string, unknown> = {};
  readonly io: RequestIo = { sourceRequests: 0, sourceBytes: 0 };
  private readonly rootLog: Logger;
  private readonly raw: Request;
  private childLog: Logger | undefined;
  private controller: AbortController | undefined;
  private onClientGone: (() => void) | undefined;

  constructor(id: string, rootLog: Logger, raw: Request) {
    this.id = id;
    this.rootLog = rootLog;
    this.raw = raw;
  }

  get log(): Logger {
    this.childLog ??= this.rootLog.child({ requestId: this.id });
    return this.childLog;
  }

  get signal(): AbortSignal {
    return this.abortController().signal;
  }

  /** Abort the request's work (deadline): its signal fires with `reason`. */
  abort(reason: unknown): void {
    this.abortController().abort(reason);
  }

  /** Stop listening for the client going away (the request is over). */
  finish(): void {
    if (this.onClientGone) this.raw.signal.removeEventListener('abort', this.onClientGone);
  }

  private abortController(): AbortController {
    if (this.controller) return this.controller;
    const ctl = new AbortController();
    this.controller = ctl;
    // aborted when the client goes away (already gone: aborted at once)
    const clientGone = this.raw.signal;
    if (clientGone.aborted) ctl.abort(clientGone.reason);
    else {
      this.onClientGone = () => ctl.abort(clientGone.reason);
      clientGone.addEventListener('abort', this.onClientGone, { once: true });
    }
    return ctl;
  }
}

/** Set a header of the finished response in place (without re-creating the response and copying its body). */
function setResponseHeader(c: Context<AppEnv>, name: string, value: string, append = false): void {
  const headers = c.res.headers;
  try {
    if (append) headers.append(name, value);
    else headers.set(name, value);
  } catch {
    // immutable headers (a Response made by fetch): let Hono copy the response
    c.header(name, value, { append });
  }
}

/**
 * CORS as Hono's `cors` middleware does it (same headers, same preflight answer), but the headers of a normal
 * request are added to the handler's response after it is made: setting them on `c.res` beforehand makes Hono
 * merge two responses, which turns a body held in memory into a stream and copies it.
 */
function corsMiddleware(opts: {
  origins: readonly string[];
  allowMethods: readonly string[];
  allowHeaders: readonly string[];
  exposeHeaders: readonly string[];
  maxAgeS: number;
}): MiddlewareHandler<AppEnv> {
  const anyOrigin = opts.origins.includes('*');
  const expose = opts.exposeHeaders.join(',');
  const methods = opts.allowMethods.join(',');
  const allowHeaders = opts.allowHeaders.join(',');
  const maxAge = String(opts.maxAgeS);
  const allowOrigin = (origin: string | undefined): string | undefined =>
    anyOrigin ? '*' : origin && opts.origins.includes(origin) ? origin : undefined;
  return async (c, next) => {
    const origin = allowOrigin(c.req.header('origin'));
    if (c.req.method === 'OPTIONS') {
      const headers: Record<string, string> = {
        'Access-Control-Expose-Headers': expose,
        'Access-Control-Max-Age': maxAge,
        'Access-Control-Allow-Methods': methods,
        'Access-Control-Allow-Headers': allowHeaders,
        Vary: anyOrigin ? 'Access-Control-Request-Headers' : 'Origin, Access-Control-Request-Headers',
      };
      if (origin) headers['Access-Control-Allow-Origin'] = origin;
      return c.body(null, 204, headers);
    }
    await next();
    if (origin) setResponseHeader(c, 'Access-Control-Allow-Origin', origin);
    setResponseHeader(c, 'Access-Control-Expose-Headers', expose);
    if (!anyOrigin) setResponseHeader(c, 'Vary', 'Origin', true);
    return undefined;
  };
}

/** True when every value of `line` is a scalar (no nested object a wildcard redaction path could reach). */
function flat(line: Record<string, unknown>): boolean {
  for (const k in line) {
    const v = line[k];
    if (typeof v === 'object' && v !== null) return false;
  }
  return true;
}

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const metrics = appMetrics(deps.metrics, deps.engine, deps.renderLimiter);
  catalogMetrics(deps.metrics, deps.catalog);
  const { config, log } = deps;
  const summaryLog = log.child({}, { redact: { paths: SUMMARY_REDACT_KEYS, censor: REDACT_CENSOR } });

  app.use('*', async (c, next) => {
    const given = c.req.header('x-request-id');
    const id = given && REQUEST_ID.test(given) ? given : randomUUID();
    const info = new RequestState(id, log, c.req.raw);
    c.set('req', info);
    const t0 = performance.now();
    metrics.inflight.inc();
    try {
      await deps.requestIo.run(info.io, next);
    } finally {
      info.finish();
      metrics.inflight.dec();
      const ms = performance.now() - t0;
      const route = routeLabel(c);
      const status = c.res.status;
      const method = c.req.method;
      const labels = { route, method, status: String(status) };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, ms / 1000);
      setResponseHeader(c, 'x-request-id', id);
      setResponseHeader(c, 'x-content-type-options', 'nosniff');
      if (deps.state.draining) setResponseHeader(c, 'connection', 'close');
      const line: Record<string, unknown> = {
        requestId: id,
        method,
        route,
        path: c.req.path,
        status,
        durationMs: Math.round(ms * 10) / 10,
        sourceRequests: info.io.sourceRequests,
        sourceBytes: info.io.sourceBytes,
      };
      for (const k in info.timers) line[k] = info.timers[k];
      for (const k in info.fields) line[k] = info.fields[k];
      const out = flat(line) ? summaryLog : log;
      if (status >= 500) out.error(line, 'request');
      else if (PROBE_ROUTES.has(route) && status < 400) out.debug(line, 'request');
      else out.info(line, 'request');
    }
  });

  app.use(
    '*',
    corsMiddleware({
      origins: config.server.corsOrigins,
      allowMethods: ['GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS'],
      allowHeaders: ['Authorization', 'Content-Type', 'Range', 'If-None-Match', 'If-Range', 'X-Request-Id'],
      exposeHeaders: [
        'ETag',
        'Content-Range',
        'Content-Length',
        'Accept-Ranges',
        'Location',
        'X-Request-Id',
        'Retry-After',
      ],
      maxAgeS: 3600,
    }),
  );

  // materialisation: a bearer token (or explicit local opt-in), and a bounded request body
  const auth = requireToken(deps);
  for (const p of ['/materialize', '/jobs', '/jobs/*', '/mosaics/:id/export.tif']) app.use(p, auth);
  app.use(
    '/materialize',
    bodyLimit({
      maxSize: config.server.maxBodyBytes,
      onError: () => {
        throw new RequestError(
          'too-large',
          `the request body is larger than ${config.server.maxBodyBytes} bytes (server.maxBodyBytes)`,
        );
      },
    }),
  );

  // rendering: a slot of the render limiter and a deadline
  const gate = renderGate({
    limiter: deps.renderLimiter,
    timeoutMs: config.server.requestTimeoutMs,
    abort: (c, reason) => (c.get('req') as RequestState).abort(reason),
  });
  app.use('/mosaics/*', (c, next) => {
    if (
      (c.req.method === 'GET' || c.req.method === 'HEAD') &&
      RENDER_PATH.test(c.req.path) &&
      !c.req.path.endsWith('/export.tif')
    ) {
      if (c.req.method === 'HEAD' && c.req.path.endsWith('.tif')) return next();
      return gate(c, next);
    }
    return next();
  });

  app.onError((err, c) => {
    const info = c.get('req');
    const { status, body, expose } = toHttpError(err);
    let code = body.code;
    if (err instanceof OverloadedError) {
      code = 'overloaded';
      c.header('Retry-After', String(err.retryAfterS));
    }
    if (status >= 500 && !expose) info?.log.error({ err }, 'request failed');
    else if (status >= 500) info?.log.warn({ err: { message: err.message, name: err.name } }, 'request failed');
    if (info) info.fields.error = code;
    // answers to clients name sources by file name, never by server path (authenticated routes echo what the
    // client itself sent, e.g. a destination, and keep it)
    const message = AUTHENTICATED_PATH.test(c.req.path) ? body.message : withoutServerPaths(body.message);
    return c.json({ code, message, requestId: info?.id }, status as 400);
  });

  app.notFound((c) => {
    return c.json(
      { code: 'not-found', message: `no route for ${c.req.method} ${c.req.path}`, requestId: c.get('req')?.id },
      404,
    );
  });

  app.route('/', opsRoutes(deps));
  app.route('/', mosaicRoutes(deps));
  app.route('/', tilesRoutes(deps));
  app.route('/', tileMatrixSetRoutes(deps));
  app.route('/', qgisRoutes(deps));
  app.route('/', virtualRoutes(deps));
  app.route('/', materializeRoutes(deps));
  app.route('/', viewerRoutes(deps));
  return app;
}
