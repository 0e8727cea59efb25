/**
 * The Hono app: middleware (request id, one summary log line per request, metrics, CORS, authentication of the
 * materialise routes, render limits and deadlines), one error handler mapping every error to
 * `{ code, message, requestId }`, and the routers of each view.
 */
import { randomUUID } from 'node:crypto';
import type { Context } from 'hono';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import { matchedRoutes } from 'hono/route';
import type { Logger } from 'pino';
import { requireToken } from './auth.ts';
import type { AppDeps, RequestIo } from './deps.ts';
import { RequestError, toHttpError } from './errors.ts';
import { OverloadedError, renderGate } from './limits.ts';
import { appMetrics } from './metrics.ts';
import { materializeRoutes } from './routes.materialize.ts';
import { mosaicRoutes } from './routes.mosaics.ts';
import { opsRoutes } from './routes.ops.ts';
import { tilesRoutes } from './routes.tiles.ts';
import { viewerRoutes } from './routes.viewer.ts';
import { virtualRoutes } from './routes.virtual.ts';

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
    info.timers[name] = Math.round((info.timers[name] ?? 0) + (performance.now() - t0) * 100) / 100;
  }
}

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

/** The route that answered (or would have): its pattern, or `unmatched`. Middleware patterns never count. */
function routeLabel(c: Context<AppEnv>): string {
  const routes = matchedRoutes(c);
  const at = routes[c.req.routeIndex];
  const r = at && at.method !== 'ALL' ? at : routes.find((x) => x.method !== 'ALL');
  return r ? routeTemplate(r.path) : 'unmatched';
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;
const PROBE_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

/** Paths whose handlers render pixels: they take a render slot and have a deadline. */
const RENDER_PATH = /^\/mosaics\/[^/]+(\/(tiles|preview|bbox|statistics|point)\b|\.tif$)/;

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const metrics = appMetrics(deps.metrics, deps.engine, deps.renderLimiter);
  const { config, log } = deps;
  const controllers = new WeakMap<RequestInfo, AbortController>();

  app.use('*', async (c, next) => {
    const given = c.req.header('x-request-id');
    const id = given && REQUEST_ID.test(given) ? given : randomUUID();
    const ctl = new AbortController();
    const clientGone = c.req.raw.signal;
    const onClientGone = () => ctl.abort(clientGone.reason);
    clientGone?.addEventListener('abort', onClientGone, { once: true });
    const io: RequestIo = { sourceRequests: 0, sourceBytes: 0 };
    const info: RequestInfo = { id, log: log.child({ requestId: id }), timers: {}, fields: {}, signal: ctl.signal, io };
    controllers.set(info, ctl);
    c.set('req', info);
    const t0 = performance.now();
    metrics.inflight.inc();
    try {
      await deps.requestIo.run(io, next);
    } finally {
      clientGone?.removeEventListener('abort', onClientGone);
      metrics.inflight.dec();
      const ms = performance.now() - t0;
      const route = routeLabel(c);
      const status = c.res.status;
      const labels = { route, method: c.req.method, status: String(status) };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, ms / 1000);
      c.header('x-request-id', id);
      c.header('x-content-type-options', 'nosniff');
      if (deps.state.draining) c.header('connection', 'close');
      const line = {
        method: c.req.method,
        route,
        path: c.req.path,
        status,
        durationMs: Math.round(ms * 10) / 10,
        sourceRequests: io.sourceRequests,
        sourceBytes: io.sourceBytes,
        ...info.timers,
        ...info.fields,
      };
      if (status >= 500) info.log.error(line, 'request');
      else if (PROBE_ROUTES.has(route) && status < 400) info.log.debug(line, 'request');
      else info.log.info(line, 'request');
    }
  });

  app.use(
    '*',
    cors({
      origin: config.server.corsOrigins.includes('*') ? '*' : [...config.server.corsOrigins],
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
      maxAge: 3600,
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
    abort: (c, reason) => controllers.get(c.get('req'))?.abort(reason),
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
    return c.json({ code, message: body.message, requestId: info?.id }, status as 400);
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
  app.route('/', virtualRoutes(deps));
  app.route('/', materializeRoutes(deps));
  app.route('/', viewerRoutes(deps));
  return app;
}

/** Parse an integer path/query parameter or answer 400 naming it. */
export function intParam(value: string | undefined, name: string, min: number, max: number): number {
  const n = Number(value);
  if (value === undefined || value === '' || !Number.isInteger(n) || n < min || n > max) {
    throw new RequestError(
      'bad-request',
      `${name} must be an integer between ${min} and ${max} (got "${value ?? ''}")`,
    );
  }
  return n;
}
