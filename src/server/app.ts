/**
 * The Hono app: middleware (request id, one summary log line per request, metrics, CORS, timeouts), one error
 * handler mapping every error to `{ code, message, requestId }`, and the routers of each view.
 */
import { randomUUID } from 'node:crypto';
import { Hono } from 'hono';
import { cors } from 'hono/cors';
import type { Logger } from 'pino';
import type { AppDeps } from './deps.ts';
import { RequestError, toHttpError } from './errors.ts';
import { appMetrics } from './metrics.ts';
import { mosaicRoutes } from './routes.mosaics.ts';
import { opsRoutes } from './routes.ops.ts';
import { tilesRoutes } from './routes.tiles.ts';
import { virtualRoutes } from './routes.virtual.ts';
import { materializeRoutes } from './routes.materialize.ts';
import { viewerRoutes } from './routes.viewer.ts';

/** Per-request state handlers may add to; it ends up in the request's summary log line. */
export interface RequestInfo {
  readonly id: string;
  readonly log: Logger;
  readonly timers: Record<string, number>;
  readonly fields: Record<string, unknown>;
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

export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const metrics = appMetrics(deps.metrics, deps.engine);
  const { config, log } = deps;

  app.use('*', async (c, next) => {
    const id = c.req.header('x-request-id')?.slice(0, 64) || randomUUID();
    const info: RequestInfo = { id, log: log.child({ requestId: id }), timers: {}, fields: {} };
    c.set('req', info);
    const t0 = performance.now();
    metrics.inflight.inc();
    try {
      await next();
    } finally {
      metrics.inflight.dec();
      const ms = performance.now() - t0;
      const route = c.req.routePath ?? 'unmatched';
      const status = c.res.status;
      metrics.httpDuration.observe({ route, method: c.req.method, status: String(status) }, ms / 1000);
      c.header('x-request-id', id);
      const line = { method: c.req.method, route, path: c.req.path, status, durationMs: Math.round(ms * 10) / 10, ...info.timers, ...info.fields };
      if (status >= 500) info.log.error(line, 'request');
      else info.log.info(line, 'request');
    }
  });

  app.use(
    '*',
    cors({
      origin: config.server.corsOrigins.includes('*') ? '*' : [...config.server.corsOrigins],
      allowMethods: ['GET', 'HEAD', 'POST', 'DELETE', 'OPTIONS'],
      allowHeaders: ['Authorization', 'Content-Type', 'Range', 'If-None-Match', 'If-Range'],
      exposeHeaders: ['ETag', 'Content-Range', 'Content-Length', 'Accept-Ranges', 'Location', 'X-Request-Id'],
      maxAge: 3600,
    }),
  );

  app.onError((err, c) => {
    const info = c.get('req');
    const { status, body, expose } = toHttpError(err);
    if (status >= 500 && !expose) info?.log.error({ err }, 'request failed');
    else if (status >= 500) info?.log.warn({ err: { message: err.message, name: err.name } }, 'request failed');
    if (info) info.fields.error = body.code;
    return c.json({ ...body, requestId: info?.id }, status as 400);
  });

  app.notFound((c) => {
    return c.json({ code: 'not-found', message: `no route for ${c.req.method} ${c.req.path}`, requestId: c.get('req')?.id }, 404);
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
    throw new RequestError('bad-request', `${name} must be an integer between ${min} and ${max} (got "${value ?? ''}")`);
  }
  return n;
}
