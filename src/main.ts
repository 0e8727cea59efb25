/**
 * Composition root: reads nothing from the environment itself (the CLI passes the config in), builds the
 * engine, the catalog, the logger, the metrics registry and the limiter once, and wires them into the HTTP app.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { serve } from '@hono/node-server';
import { type Logger, pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Config } from './config.schema.ts';
import { Catalog, CatalogStoreFile } from './render/catalog.ts';
import { EngineCounted } from './render/engine.counted.ts';
import type { Engine } from './render/engine.ts';
import { errorMessage } from './render/errors.ts';
import { StatisticsService } from './render/statistics.ts';
import { TilePipelinePool } from './render/tile.pipeline.pool.ts';
import { TilePipeline } from './render/tile.pipeline.ts';
import { createApp } from './server/app.ts';
import type { AppDeps } from './server/deps.ts';
import { RenderLimiter } from './server/limits.ts';
import type { RequestIo } from './server/request.ts';

/** Smallest block cache of one tile worker, whatever the share of cache.blockBytes. */
const MIN_WORKER_BLOCK_BYTES = 16 * 1024 * 1024;

/** How long shutdown hooks may take after the grace period before the engine is closed anyway. */
const HOOK_OVERRUN_MS = 5_000;

import { engineSettings } from './settings.ts';

export { engineSettings, s3Settings } from './settings.ts';

/** Paths pino blanks in any log line, whatever logs them (belt and braces: secrets are never logged on purpose). */
const REDACT_PATHS = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'req.headers.authorization',
  'token',
  '*.token',
  '*.*.token',
  'secretAccessKey',
  '*.secretAccessKey',
  '*.*.secretAccessKey',
  'accessKeyId',
  '*.accessKeyId',
  '*.*.accessKeyId',
  ...['accountKey', 'sasToken', 'connectionString'].flatMap((k) => [k, `*.${k}`, `*.*.${k}`]),
];

/**
 * The process logger: JSON lines to `destination`, by default stdout written asynchronously (lines that arrive
 * while a write is in flight go out together in the next one, so a busy server makes one write per batch, not
 * one blocking write per request; a quiet one writes each line at once). What is still buffered is written
 * synchronously when the process exits.
 */
export function createLogger(config: Config, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level: config.log.level,
      base: { service: 'cogmill' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}

export async function buildServices(config: Config, opts: { log?: Logger; engine?: Engine } = {}): Promise<AppDeps> {
  const log = opts.log ?? createLogger(config);
  const requestIo = new AsyncLocalStorage<RequestIo>();
  const engine = opts.engine ?? new EngineCounted(engineSettings(config), requestIo);
  // registered mosaics: in Redis when the queue is configured (every replica sharing it sees them), else in a file
  // (bullmq's Redis client is loaded only then)
  const store = config.materialize.redis
    ? new (await import('./materialize/catalog.store.redis.ts')).CatalogStoreRedis(config.materialize.redis)
    : config.server.mosaicsFile
      ? new CatalogStoreFile(config.server.mosaicsFile)
      : undefined;
  if (config.materialize.redis && config.server.mosaicsFile)
    log.warn(
      { mosaicsFile: config.server.mosaicsFile, store: store?.where },
      'registered mosaics are kept in Redis, not in server.mosaicsFile',
    );
  const catalog = new Catalog(engine, { store });
  await catalog.load(config.mosaics);
  try {
    await catalog.restore();
  } catch (e) {
    await catalog.close();
    throw e;
  }
  for (const p of catalog.problems()) log.warn({ mosaic: p.id, error: p.error }, 'mosaic could not be opened');
  // replicas sharing the Redis see each other's registrations, replacements and removals
  if (config.materialize.redis)
    catalog.refreshEvery(config.server.mosaicsRefreshSeconds * 1000, (e) =>
      log.warn({ store: store?.where, error: errorMessage(e) }, 'registered mosaics could not be read again'),
    );
  engine.onBlockError = (f) =>
    log.warn(
      { mosaic: f.mosaic, source: f.source, level: f.level, block: f.block, reason: f.error.message },
      'source block unreadable',
    );
  for (const e of catalog.list()) {
    for (const b of e.mosaic?.broken ?? []) {
      log.warn(
        { mosaic: e.id, source: b.location, index: b.index, kind: b.kind, reason: b.reason },
        'source could not be opened',
      );
    }
  }
  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics, prefix: 'cogmill_' });
  const renderLimiter = new RenderLimiter({
    maxConcurrent: config.limits.maxConcurrentRenders,
    maxQueued: config.limits.maxQueuedRenders,
  });
  const statistics = new StatisticsService(engine, { maxPixels: config.limits.maxStatisticsPixels });
  // an engine handed in (tests, embedders) may read through sources a worker cannot have: render in-thread then
  const tileWorkers = config.server.tileWorkers ?? (opts.engine ? 0 : availableParallelism());
  const tilePool =
    tileWorkers > 0
      ? new TilePipelinePool({
          size: tileWorkers,
          engine: {
            ...engineSettings(config),
            // the block cache budget is shared by the workers
            tileCacheBytes: Math.max(MIN_WORKER_BLOCK_BYTES, Math.floor(config.cache.blockBytes / tileWorkers)),
          },
          pipeline: new TilePipeline({ engine, statistics, mosaic: (id) => catalog.get(id) }),
          mosaic: (id) => catalog.get(id),
          onBlockError: (mosaic, f) => engine.reportBlockError(mosaic, f),
          io: () => requestIo.getStore(),
        })
      : undefined;
  return {
    config,
    engine,
    catalog,
    log,
    metrics,
    state: { draining: false },
    shutdownHooks: [],
    renderLimiter,
    requestIo,
    statistics,
    tilePool,
  };
}

export interface RunningServer {
  readonly url: string;
  readonly server: Server;
  /**
   * Stop accepting connections, run the shutdown hooks, let in-flight requests finish (bounded by graceMs; then
   * the remaining connections are closed), then close the engine. Idempotent. Resolves true when everything
   * finished within the grace period.
   */
  close(graceMs?: number): Promise<boolean>;
}

function settleWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    p.then(
      () => {
        clearTimeout(t);
        resolve(true);
      },
      () => {
        clearTimeout(t);
        resolve(true);
      },
    );
  });
}

export async function startServer(
  deps: AppDeps,
  host = deps.config.server.host,
  port = deps.config.server.port,
): Promise<RunningServer> {
  const app = createApp(deps);
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port }, () => resolve(s as Server)) as Server;
    s.once('error', reject);
  });
  // a client must send its request (headers and body) in this time; answers may take longer
  server.requestTimeout = Math.max(60_000, deps.config.server.requestTimeoutMs);
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  const addr = server.address() as AddressInfo;
  const shownHost =
    addr.family === 'IPv6'
      ? addr.address === '::'
        ? '127.0.0.1'
        : `[${addr.address}]`
      : addr.address === '0.0.0.0'
        ? '127.0.0.1'
        : addr.address;
  const url = `http://${shownHost}:${addr.port}`;
  let closing: Promise<boolean> | undefined;
  const close = (graceMs = deps.config.server.shutdownGraceMs) => {
    closing ??= (async () => {
      deps.state.draining = true;
      const grace = new AbortController();
      const graceTimer = setTimeout(() => grace.abort(new Error('shutdown grace period is over')), graceMs);
      const drained = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const hooks = Promise.allSettled(
        deps.shutdownHooks.map(async (hook) => {
          try {
            await hook(grace.signal);
          } catch (e) {
            deps.log.error({ err: e }, 'shutdown hook failed');
          }
        }),
      );
      const inTime = await settleWithin(Promise.all([drained, hooks]), graceMs);
      clearTimeout(graceTimer);
      if (!inTime) {
        grace.abort(new Error('shutdown grace period is over'));
        deps.log.warn({ graceMs }, 'grace period over: closing the remaining connections');
        server.closeAllConnections();
        if (!(await settleWithin(hooks, HOOK_OVERRUN_MS))) deps.log.error('shutdown hooks did not finish');
      }
      await deps.tilePool?.close();
      await deps.engine.close();
      await deps.catalog.close();
      return inTime;
    })();
    return closing;
  };
  return { url, server, close };
}
