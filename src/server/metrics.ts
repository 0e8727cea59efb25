/** Prometheus metrics: created once per app on the registry the composition root gives. */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Engine } from '../render/engine.ts';

export interface AppMetrics {
  readonly httpDuration: Histogram<'route' | 'method' | 'status'>;
  readonly tileCache: Counter<'result'>;
  readonly renderSeconds: Histogram<'kind'>;
  readonly jobs: Counter<'state'>;
  readonly parts: Counter<'sink'>;
  readonly bytesWritten: Counter<'sink'>;
  readonly retries: Counter<'sink'>;
  readonly inflight: Gauge;
}

const cache = new WeakMap<Registry, AppMetrics>();

export function appMetrics(registry: Registry, engine?: Engine): AppMetrics {
  const hit = cache.get(registry);
  if (hit) return hit;
  const registers = [registry];
  const m: AppMetrics = {
    httpDuration: new Histogram({
      name: 'cogmill_http_request_duration_seconds',
      help: 'HTTP request duration by route, method and status',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    tileCache: new Counter({ name: 'cogmill_tile_cache_total', help: 'rendered tile cache lookups', labelNames: ['result'], registers }),
    renderSeconds: new Histogram({
      name: 'cogmill_render_seconds',
      help: 'time spent rendering windows',
      labelNames: ['kind'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    }),
    jobs: new Counter({ name: 'cogmill_materialize_jobs_total', help: 'materialisation jobs by final state', labelNames: ['state'], registers }),
    parts: new Counter({ name: 'cogmill_materialize_parts_total', help: 'parts uploaded', labelNames: ['sink'], registers }),
    bytesWritten: new Counter({ name: 'cogmill_materialize_bytes_total', help: 'bytes written by materialisation', labelNames: ['sink'], registers }),
    retries: new Counter({ name: 'cogmill_materialize_retries_total', help: 'retried sink operations', labelNames: ['sink'], registers }),
    inflight: new Gauge({ name: 'cogmill_http_inflight_requests', help: 'requests being served', registers }),
  };
  if (engine) {
    new Gauge({
      name: 'cogmill_cache_bytes',
      help: 'bytes held by the engine caches',
      labelNames: ['cache'],
      registers,
      collect() {
        this.set({ cache: 'header' }, engine.caches.header.calculatedSize);
        this.set({ cache: 'block' }, engine.caches.tiles.calculatedSize);
      },
    });
    new Gauge({
      name: 'cogmill_source_requests',
      help: 'requests made to sources (cumulative)',
      labelNames: ['kind'],
      registers,
      collect() {
        const s = engine.sourceStats();
        for (const [k, v] of Object.entries(s)) this.set({ kind: k }, v.requests);
      },
    });
    new Gauge({
      name: 'cogmill_source_bytes',
      help: 'bytes read from sources (cumulative)',
      labelNames: ['kind'],
      registers,
      collect() {
        const s = engine.sourceStats();
        for (const [k, v] of Object.entries(s)) this.set({ kind: k }, v.bytes);
      },
    });
  }
  cache.set(registry, m);
  return m;
}
