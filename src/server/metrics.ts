/**
 * Prometheus metrics: created once per registry (the composition root makes one per process and puts it in
 * AppDeps). Every module gets the same objects with `appMetrics(deps.metrics)` and increments what it owns:
 * the app middleware the HTTP metrics, tile routes the tile cache, renderers the render time, the jobs module
 * the materialise counters. Engine caches, source IO and the render limiter are read when scraped.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Catalog } from '../render/catalog.ts';
import type { Engine } from '../render/engine.ts';
import type { RenderLimiter } from './limits.ts';

export interface AppMetrics {
  /** requests by route pattern (e.g. `/mosaics/:id/tiles/...`), method and status */
  readonly httpRequests: Counter<'route' | 'method' | 'status'>;
  readonly httpDuration: Histogram<'route' | 'method' | 'status'>;
  readonly inflight: Gauge;
  /** rendered-tile cache lookups: `result` is `hit` or `miss` */
  readonly tileCache: Counter<'result'>;
  /** bytes answered from the tile cache (`hit`) and freshly rendered (`miss`) */
  readonly tileBytes: Counter<'result'>;
  /** seconds spent rendering, by `kind` (tile, preview, crop, statistics, point, virtual-cog, materialize) */
  readonly renderSeconds: Histogram<'kind'>;
  /** materialisation jobs by final `state` (succeeded, failed, cancelled) */
  readonly jobs: Counter<'state'>;
  readonly jobsRunning: Gauge;
  /** parts uploaded / bytes written / retried operations, by `sink` (s3, azure, file, http) */
  readonly parts: Counter<'sink'>;
  readonly bytesWritten: Counter<'sink'>;
  readonly retries: Counter<'sink'>;
  /** report the size of a cache owned elsewhere (e.g. the tile cache) as cogmill_cache_bytes{cache=name} */
  registerCacheSize(name: string, bytes: () => number): void;
}

const perRegistry = new WeakMap<Registry, AppMetrics>();

/**
 * The metrics of `registry`, created on first use. The first caller (the app, built by the composition root)
 * passes the engine and the render limiter so their gauges are collected at scrape time.
 */
export function appMetrics(registry: Registry, engine?: Engine, limiter?: RenderLimiter): AppMetrics {
  const hit = perRegistry.get(registry);
  if (hit) return hit;
  const registers = [registry];
  const cacheSizes = new Map<string, () => number>();
  if (engine) {
    cacheSizes.set('header', () => engine.caches.header.calculatedSize);
    cacheSizes.set('block', () => engine.caches.tiles.calculatedSize);
  }
  new Gauge({
    name: 'cogmill_cache_bytes',
    help: 'bytes held by each in-memory cache',
    labelNames: ['cache'],
    registers,
    collect() {
      for (const [name, size] of cacheSizes) this.set({ cache: name }, size());
    },
  });
  const m: AppMetrics = {
    httpRequests: new Counter({
      name: 'cogmill_http_requests_total',
      help: 'HTTP requests by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    }),
    httpDuration: new Histogram({
      name: 'cogmill_http_request_duration_seconds',
      help: 'HTTP request duration by route, method and status',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    inflight: new Gauge({ name: 'cogmill_http_inflight_requests', help: 'requests being served', registers }),
    tileCache: new Counter({
      name: 'cogmill_tile_cache_total',
      help: 'rendered tile cache lookups by result (hit, miss)',
      labelNames: ['result'],
      registers,
    }),
    tileBytes: new Counter({
      name: 'cogmill_tile_bytes_total',
      help: 'tile bytes served, from the cache (hit) or freshly rendered (miss)',
      labelNames: ['result'],
      registers,
    }),
    renderSeconds: new Histogram({
      name: 'cogmill_render_seconds',
      help: 'time spent rendering, by kind',
      labelNames: ['kind'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
      registers,
    }),
    jobs: new Counter({
      name: 'cogmill_materialize_jobs_total',
      help: 'materialisation jobs by final state',
      labelNames: ['state'],
      registers,
    }),
    jobsRunning: new Gauge({
      name: 'cogmill_materialize_jobs_running',
      help: 'materialisation jobs running now',
      registers,
    }),
    parts: new Counter({
      name: 'cogmill_materialize_parts_total',
      help: 'parts uploaded',
      labelNames: ['sink'],
      registers,
    }),
    bytesWritten: new Counter({
      name: 'cogmill_materialize_bytes_total',
      help: 'bytes written by materialisation',
      labelNames: ['sink'],
      registers,
    }),
    retries: new Counter({
      name: 'cogmill_materialize_retries_total',
      help: 'retried sink operations',
      labelNames: ['sink'],
      registers,
    }),
    registerCacheSize(name, bytes) {
      cacheSizes.set(name, bytes);
    },
  };
  if (engine) {
    new Counter({
      name: 'cogmill_source_requests_total',
      help: 'read requests made to sources, by kind (file, http, https, s3, az)',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const [kind, s] of Object.entries(engine.sourceStats())) this.inc({ kind }, s.requests);
      },
    });
    new Counter({
      name: 'cogmill_source_retries_total',
      help: 'source requests sent again after a failure, by kind (sources that retry by themselves: az)',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const [kind, s] of Object.entries(engine.sourceStats())) this.inc({ kind }, s.retries ?? 0);
      },
    });
    new Counter({
      name: 'cogmill_source_bytes_total',
      help: 'bytes read from sources, by kind',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const [kind, s] of Object.entries(engine.sourceStats())) this.inc({ kind }, s.bytes);
      },
    });
  }
  if (limiter) {
    new Gauge({
      name: 'cogmill_render_active',
      help: 'rendering requests holding a slot (limits.maxConcurrentRenders)',
      registers,
      collect() {
        this.set(limiter.stats.active);
      },
    });
    new Gauge({
      name: 'cogmill_render_queued',
      help: 'rendering requests waiting for a slot (limits.maxQueuedRenders)',
      registers,
      collect() {
        this.set(limiter.stats.queued);
      },
    });
    new Counter({
      name: 'cogmill_render_rejected_total',
      help: 'rendering requests refused with 503 because the queue was full',
      registers,
      collect() {
        this.reset();
        this.inc(limiter.stats.rejected);
      },
    });
  }
  if (engine) {
    new Counter({
      name: 'cogmill_source_block_errors_total',
      help: 'source blocks that could not be decoded (corrupt, decompression bomb), by mosaic; their pixels are empty',
      labelNames: ['mosaic'],
      registers,
      collect() {
        this.reset();
        for (const [mosaic, n] of engine.blockErrorCounts()) this.inc({ mosaic }, n);
      },
    });
  }
  eventLoopMetrics(registers);
  perRegistry.set(registry, m);
  return m;
}

/** Sources each mosaic is served without (they cannot be read), as cogmill_mosaic_broken_sources{mosaic}. */
export function catalogMetrics(registry: Registry, catalog: Catalog): void {
  if (registry.getSingleMetric('cogmill_mosaic_broken_sources')) return;
  new Gauge({
    name: 'cogmill_mosaic_broken_sources',
    help: 'sources a mosaic is served without because they cannot be read',
    labelNames: ['mosaic'],
    registers: [registry],
    collect() {
      this.reset();
      for (const e of catalog.list()) if (e.mosaic) this.set({ mosaic: e.id }, e.mosaic.broken?.length ?? 0);
    },
  });
}

/** The main thread working this long without a break counts as a stall of the event loop. */
export const EVENT_LOOP_STALL_MS = 100;
const STALL_PROBE_MS = 20;

type ThreadCpu = { threadCpuUsage?: () => { user: number; system: number } };

/** CPU time of this thread (the event loop's), in ms; the process's where the thread's is not available. */
function mainThreadCpuMs(): number {
  const u = (process as unknown as ThreadCpu).threadCpuUsage?.() ?? process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Event-loop stalls: a timer due every 20 ms fires late, and the main thread spent more than 100 ms of CPU time
 * since its previous tick: something held the loop (an inflate, a sort, an encode on the main thread). Counted
 * in cogmill_event_loop_stalls_total. Lateness alone is not counted: on a busy machine the OS may not run the
 * process at all for a while, which is not cogmill's doing. The longest delay seen (wall time, perf_hooks'
 * histogram) is cogmill_event_loop_delay_max_seconds. The timer does not keep the process alive.
 */
function eventLoopMetrics(registers: Registry[]): void {
  let stalls = 0;
  let due = performance.now() + STALL_PROBE_MS;
  let cpu = mainThreadCpuMs();
  const timer = setInterval(() => {
    const now = performance.now();
    const cpuNow = mainThreadCpuMs();
    if (now - due > EVENT_LOOP_STALL_MS && cpuNow - cpu > EVENT_LOOP_STALL_MS) stalls++;
    due = now + STALL_PROBE_MS;
    cpu = cpuNow;
  }, STALL_PROBE_MS);
  timer.unref();
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  new Counter({
    name: 'cogmill_event_loop_stalls_total',
    help: `times the event loop was blocked for more than ${EVENT_LOOP_STALL_MS} ms`,
    registers,
    collect() {
      this.reset();
      this.inc(stalls);
    },
  });
  new Gauge({
    name: 'cogmill_event_loop_delay_max_seconds',
    help: 'longest event-loop delay since the process started',
    registers,
    collect() {
      this.set(delay.max / 1e9);
    },
  });
}
