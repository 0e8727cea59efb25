/** What the HTTP layer is given by the composition root. No module of the server builds these itself. */
import type { AsyncLocalStorage } from 'node:async_hooks';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config.schema.ts';
import type { Catalog } from '../render/catalog.ts';
import type { Engine } from '../render/engine.ts';
import type { StatisticsService } from '../render/statistics.ts';
import type { TilePipelinePool } from '../render/tile.pipeline.pool.ts';
import type { RenderLimiter } from './limits.ts';
import type { RequestIo } from './request.ts';

/**
 * Called once when the process starts draining (SIGTERM), all hooks in parallel, while in-flight requests
 * finish. `signal` aborts when the grace period (server.shutdownGraceMs) is over: a hook must then stop
 * quickly (e.g. abort a multipart upload). Hooks are awaited, bounded, before the engine closes.
 */
export type ShutdownHook = (signal: AbortSignal) => Promise<void>;

export interface AppDeps {
  readonly config: Config;
  readonly engine: Engine;
  readonly catalog: Catalog;
  readonly log: Logger;
  readonly metrics: Registry;
  /** set while the process drains on SIGTERM: readiness fails, new materialisations are refused */
  readonly state: { draining: boolean };
  /** register cleanup for shutdown (running materialisations cancel or finish here) */
  readonly shutdownHooks: ShutdownHook[];
  /** bounds the rendering requests served at once (limits.maxConcurrentRenders / maxQueuedRenders) */
  readonly renderLimiter: RenderLimiter;
  /** the current request's IO counters (undefined outside a request) */
  readonly requestIo: AsyncLocalStorage<RequestIo>;
  /** mosaic statistics (cached): the tiles' default stretch, the QGIS project's, the virtual views' STATISTICS_* */
  readonly statistics: StatisticsService;
  /** worker threads rendering tile images (server.tileWorkers); without it, tiles render on the main thread */
  readonly tilePool?: TilePipelinePool;
}
