/** Operations: liveness, readiness, Prometheus metrics, the OpenAPI document and its docs page. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Hono } from 'hono';
import YAML from 'yaml';
import { errorMessage, withoutServerPaths } from '../render/errors.ts';
import type { Mosaic } from '../render/mosaic.ts';
import type { AppDeps } from './deps.ts';
import { renderDocsHtml } from './docs.ts';
import type { AppEnv } from './request.ts';

export const OPENAPI_PATH = path.join(import.meta.dirname, '..', '..', 'openapi.yaml');

/** A readiness answer is reused this long, so frequent probes cost no source requests. */
const READY_CACHE_MS = 5_000;
/** One mosaic's check (re-open or source stat) may take this long before it counts as failed. */
const READY_CHECK_TIMEOUT_MS = 5_000;

export interface ReadyMosaic {
  readonly id: string;
  /** `degraded`: served, but some sources could not be read (listed in GET /mosaics/{id}) */
  readonly status: 'ok' | 'degraded' | 'error';
  readonly message?: string;
}

export interface ReadyReport {
  readonly ready: boolean;
  readonly checkedAt: string;
  readonly mosaics: readonly ReadyMosaic[];
}

/**
 * Readiness: the configuration is loaded, every mosaic is open, and the first source of each answers a cheap
 * stat (HEAD / stat(2)). A mosaic that failed to open (e.g. its files are not there yet, as when cogmill starts
 * next to the job that writes them) is re-opened here. Results are cached for a few seconds and concurrent
 * probes share one check.
 */
export class ReadinessProbe {
  private readonly deps: AppDeps;
  private readonly cacheMs: number;
  private readonly timeoutMs: number;
  private last: { at: number; report: ReadyReport } | undefined;
  private pending: Promise<ReadyReport> | undefined;

  constructor(deps: AppDeps, opts: { cacheMs?: number; timeoutMs?: number } = {}) {
    this.deps = deps;
    this.cacheMs = opts.cacheMs ?? READY_CACHE_MS;
    this.timeoutMs = opts.timeoutMs ?? READY_CHECK_TIMEOUT_MS;
  }

  check(): Promise<ReadyReport> {
    if (this.last && performance.now() - this.last.at < this.cacheMs) return Promise.resolve(this.last.report);
    this.pending ??= this.run().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async run(): Promise<ReadyReport> {
    const { catalog, engine } = this.deps;
    const mosaics = await Promise.all(
      catalog.list().map(async (entry): Promise<ReadyMosaic> => {
        const signal = AbortSignal.timeout(this.timeoutMs);
        try {
          let mosaic = entry.mosaic;
          if (!mosaic) {
            mosaic = await catalog.open(entry.definition, signal, { trusted: entry.origin === 'config' });
            catalog.add(mosaic, entry.definition);
            this.deps.log.info({ mosaic: entry.id }, 'mosaic opened on retry');
            return degradedOrOk(entry.id, mosaic);
          }
          const first = mosaic.sources[0];
          if (first) await (await engine.source(first.location)).stat({ signal });
          return degradedOrOk(entry.id, mosaic);
        } catch (e) {
          const message = signal.aborted
            ? `no answer within ${this.timeoutMs} ms`
            : withoutServerPaths(errorMessage(e));
          return { id: entry.id, status: 'error', message };
        }
      }),
    );
    const report: ReadyReport = {
      ready: mosaics.every((m) => m.status !== 'error'),
      checkedAt: new Date().toISOString(),
      mosaics,
    };
    this.last = { at: performance.now(), report };
    return report;
  }
}

function degradedOrOk(id: string, mosaic: Mosaic): ReadyMosaic {
  const broken = mosaic.broken?.length ?? 0;
  return broken === 0
    ? { id, status: 'ok' }
    : { id, status: 'degraded', message: `${broken} source(s) cannot be read; GET /mosaics/${id} lists them` };
}

export function opsRoutes(deps: AppDeps): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  const probe = new ReadinessProbe(deps);
  let spec: Promise<{ text: string; docs: string }> | undefined;
  const loadSpec = () => {
    spec ??= readFile(OPENAPI_PATH, 'utf8').then((text) => ({ text, docs: renderDocsHtml(YAML.parse(text)) }));
    spec.catch(() => {
      spec = undefined;
    });
    return spec;
  };

  r.get('/healthz', (c) => c.json({ status: 'ok' }));

  r.get('/readyz', async (c) => {
    if (deps.state.draining)
      return c.json({ status: 'draining', checkedAt: new Date().toISOString(), mosaics: [] }, 503);
    const report = await probe.check();
    // a probe that was running when the drain began still answers "draining"
    const degraded = report.mosaics.some((m) => m.status === 'degraded');
    const status = deps.state.draining ? 'draining' : !report.ready ? 'not-ready' : degraded ? 'degraded' : 'ready';
    return c.json(
      { status, checkedAt: report.checkedAt, mosaics: report.mosaics },
      status === 'ready' || status === 'degraded' ? 200 : 503,
    );
  });

  r.get('/metrics', async (c) => {
    const body = await deps.metrics.metrics();
    return c.body(body, 200, { 'content-type': deps.metrics.contentType, 'cache-control': 'no-store' });
  });

  r.get('/openapi.yaml', async (c) => {
    const { text } = await loadSpec();
    return c.body(text, 200, { 'content-type': 'application/yaml; charset=utf-8' });
  });

  r.get('/docs', async (c) => {
    const { docs } = await loadSpec();
    return c.html(docs);
  });
  return r;
}
