/** Operations: liveness, readiness, Prometheus metrics, the OpenAPI document and its docs page. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Hono } from 'hono';
import type { AppEnv } from './app.ts';
import type { AppDeps } from './deps.ts';

const OPENAPI_PATH = path.join(import.meta.dirname, '..', '..', 'openapi.yaml');

export function opsRoutes(deps: AppDeps): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.get('/healthz', (c) => c.json({ status: 'ok' }));
  r.get('/readyz', (c) => {
    const problems = deps.catalog.problems().map((p) => ({ mosaic: p.id, ...p.error }));
    const ready = !deps.state.draining && problems.length === 0;
    return c.json({ status: ready ? 'ready' : deps.state.draining ? 'draining' : 'degraded', mosaics: deps.catalog.list().length, problems }, ready ? 200 : 503);
  });
  r.get('/metrics', async (c) => {
    const body = await deps.metrics.metrics();
    return c.body(body, 200, { 'content-type': deps.metrics.contentType });
  });
  r.get('/openapi.yaml', async (c) => {
    const text = await readFile(OPENAPI_PATH, 'utf8');
    return c.body(text, 200, { 'content-type': 'application/yaml; charset=utf-8' });
  });
  return r;
}
