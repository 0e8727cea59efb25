/**
 * Composition root: reads nothing from the environment itself (the CLI passes it in), builds the engine, the
 * catalog, the logger and the metrics registry once, and wires them into the HTTP app.
 */
import { serve } from '@hono/node-server';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino, type Logger } from 'pino';
import { Registry, collectDefaultMetrics } from 'prom-client';
import type { Config } from './config.ts';
import { Catalog } from './render/catalog.ts';
import { Engine, type EngineSettings } from './render/engine.ts';
import { createApp } from './server/app.ts';
import type { AppDeps } from './server/deps.ts';

export function engineSettings(config: Config): Partial<EngineSettings> {
  const s = config.sources;
  return {
    roots: s.roots,
    allowedUrlPrefixes: s.allowedUrlPrefixes,
    http: { timeoutMs: s.httpTimeoutMs, retries: s.httpRetries, retryBaseMs: 100 },
    s3: { endpoint: s.s3Endpoint, region: s.s3Region, forcePathStyle: s.s3ForcePathStyle },
    headerCacheBytes: config.cache.headerBytes,
    tileCacheBytes: config.cache.blockBytes,
    maxRenderPixels: config.limits.maxRenderPixels,
  };
}

export function createLogger(config: Config, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level: config.log.level,
      base: { service: 'cogmill' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['*.authorization', '*.headers.authorization', '*.secretAccessKey', '*.token', 'config.auth.token'], censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? process.stdout,
  );
}

export async function buildServices(config: Config, opts: { log?: Logger; engine?: Engine } = {}): Promise<AppDeps> {
  const log = opts.log ?? createLogger(config);
  const engine = opts.engine ?? new Engine(engineSettings(config));
  const catalog = new Catalog(engine);
  await catalog.load(config.mosaics);
  for (const p of catalog.problems()) log.warn({ mosaic: p.id, error: p.error }, 'mosaic could not be opened');
  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics, prefix: 'cogmill_' });
  return { config, engine, catalog, log, metrics, state: { draining: false } };
}

export interface RunningServer {
  readonly url: string;
  readonly server: Server;
  /** stop accepting, let in-flight requests finish (bounded by graceMs), then close */
  close(graceMs?: number): Promise<void>;
}

export async function startServer(deps: AppDeps, host = deps.config.server.host, port = deps.config.server.port): Promise<RunningServer> {
  const app = createApp(deps);
  const server = await new Promise<Server>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port }, () => resolve(s as Server));
    (s as Server).once('error', reject);
  });
  server.requestTimeout = deps.config.server.requestTimeoutMs * 4;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address === '0.0.0.0' ? '127.0.0.1' : addr.address;
  const url = `http://${shownHost}:${addr.port}`;
  let closing: Promise<void> | undefined;
  const close = (graceMs = deps.config.server.shutdownGraceMs) => {
    closing ??= (async () => {
      deps.state.draining = true;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.closeAllConnections();
          resolve();
        }, graceMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      });
      await deps.engine.close();
    })();
    return closing;
  };
  return { url, server, close };
}
