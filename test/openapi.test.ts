/**
 * openapi.yaml agrees with the app: every documented operation routes to a real handler and every handler is
 * documented (Hono's inspectRoutes and router), the document is complete (parameters, responses, the error body,
 * examples), and real answers of a running app validate against the document's JSON schemas.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { inspectRoutes } from 'hono/dev';
import YAML from 'yaml';
import { loadConfig } from '../src/config.ts';
import { buildServices } from '../src/main.ts';
import { createApp, routeTemplate } from '../src/server/app.ts';
import { escapeHtml } from '../src/server/docs.ts';
import { startTestServer, type TestServer } from './support/app.ts';
import { fixtureDir } from './support/gdal.ts';

type Obj = Record<string, unknown>;
const METHODS = ['get', 'head', 'post', 'put', 'patch', 'delete'] as const;
const TOKEN = 'openapi-test-token-0123456789';

const spec = YAML.parse(await readFile(path.join(import.meta.dirname, '..', 'openapi.yaml'), 'utf8')) as Obj;
const paths = spec.paths as Record<string, Obj>;
const components = spec.components as Record<string, Record<string, Obj>>;

function resolve<T = Obj>(v: unknown): T {
  let cur = v as Obj;
  while (cur && typeof cur.$ref === 'string') {
    const parts = (cur.$ref as string).replace(/^#\//, '').split('/');
    let next: unknown = spec;
    for (const p of parts) next = (next as Obj)[p];
    assert.ok(next, `unresolved ${cur.$ref}`);
    cur = next as Obj;
  }
  return cur as T;
}

interface Operation {
  readonly path: string;
  readonly method: (typeof METHODS)[number];
  readonly op: Obj;
  readonly params: Obj[];
}

const operations: Operation[] = Object.entries(paths).flatMap(([p, item]) =>
  METHODS.filter((m) => item[m]).map((m) => {
    const op = item[m] as Obj;
    const params = [...((item.parameters as unknown[]) ?? []), ...((op.parameters as unknown[]) ?? [])].map((x) =>
      resolve(x),
    );
    return { path: p, method: m, op, params };
  }),
);

function exampleOf(param: Obj): unknown {
  const schema = resolve(param.schema ?? {});
  return (
    param.example ??
    schema.example ??
    (schema.examples as unknown[] | undefined)?.[0] ??
    (schema.enum as unknown[] | undefined)?.[0]
  );
}

/** The URL of an operation filled with its parameters' examples (required query parameters included). */
function exampleUrl(o: Operation, values: Record<string, unknown> = {}): string {
  const value = (p: Obj) => values[p.name as string] ?? exampleOf(p);
  let url = o.path.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const p = o.params.find((x) => x.in === 'path' && x.name === name);
    assert.ok(p, `${o.method.toUpperCase()} ${o.path}: path parameter {${name}} is not declared`);
    const v = value(p);
    assert.ok(v !== undefined, `${o.method.toUpperCase()} ${o.path}: path parameter {${name}} has no example`);
    return encodeURIComponent(String(v));
  });
  const query = o.params
    .filter((p) => p.in === 'query' && (p.required || (p.name as string) in values))
    .map((p) => `${encodeURIComponent(p.name as string)}=${encodeURIComponent(String(value(p)))}`);
  if (query.length) url += `?${query.join('&')}`;
  return url;
}

describe('the document', () => {
  test('is OpenAPI 3.1 with unique operation ids', () => {
    assert.match(String(spec.openapi), /^3\.1\.\d+$/);
    const ids = operations.map((o) => o.op.operationId);
    assert.equal(new Set(ids).size, ids.length);
    assert.ok(ids.every((id) => typeof id === 'string'));
  });

  test('every operation has a summary, a tag, described parameters and responses', () => {
    for (const o of operations) {
      const where = `${o.method.toUpperCase()} ${o.path}`;
      assert.ok(typeof o.op.summary === 'string' && (o.op.summary as string).length > 3, `${where}: summary`);
      assert.ok(Array.isArray(o.op.tags) && (o.op.tags as unknown[]).length > 0, `${where}: tags`);
      for (const p of o.params) {
        const described = typeof p.description === 'string' && (p.description as string).length > 2;
        assert.ok(described, `${where}: ${p.name} description`);
        assert.ok(p.schema, `${where}: ${p.name} schema`);
        if (p.in === 'path') assert.equal(p.required, true, `${where}: path parameter ${p.name} is required`);
      }
      const names = [...o.path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      const declared = o.params.filter((p) => p.in === 'path').map((p) => p.name);
      assert.deepEqual([...declared].sort(), [...names].sort(), `${where}: path parameters`);
      const responses = o.op.responses as Obj;
      assert.ok(Object.keys(responses).length > 0, `${where}: responses`);
      for (const [status, raw] of Object.entries(responses)) {
        const r = resolve(raw);
        assert.ok(typeof r.description === 'string', `${where} ${status}: description`);
        const json = (r.content as Obj | undefined)?.['application/json'] as Obj | undefined;
        // a 503 of /readyz is a readiness report, every other error answer is the error body
        if (Number(status) >= 400 && json && o.path !== '/readyz') {
          assert.equal((json.schema as Obj).$ref, '#/components/schemas/Error', `${where} ${status}: the error body`);
        }
      }
    }
  });

  test('the error body is {code, message, requestId}, with examples', () => {
    const e = components.schemas.Error;
    assert.deepEqual(e.required, ['code', 'message', 'requestId']);
    assert.deepEqual(Object.keys(e.properties as Obj).sort(), ['code', 'message', 'requestId']);
    for (const name of ['BadRequest', 'Unauthorized', 'NotFound', 'TooLarge', 'Overloaded', 'Timeout']) {
      const media = (components.responses[name].content as Obj)['application/json'] as Obj;
      assert.ok(media.example ?? media.examples, `${name} has an example`);
    }
    const withExamples = operations.filter((o) => o.params.some((p) => p.example !== undefined));
    assert.ok(withExamples.length >= 10);
  });

  test('materialisation and mosaic registration require the bearer token, the others none', () => {
    for (const o of operations) {
      const secured = Array.isArray(o.op.security) && (o.op.security as Obj[]).some((s) => 'bearerAuth' in s);
      const registers =
        (o.path === '/mosaics' && o.method === 'post') ||
        (o.path === '/mosaics/{id}' && (o.method === 'put' || o.method === 'delete'));
      const wantSecured =
        o.path === '/materialize' || o.path.startsWith('/jobs') || o.path.endsWith('/export.tif') || registers;
      assert.equal(secured, wantSecured, `${o.method.toUpperCase()} ${o.path}`);
    }
  });
});

describe('routes and document agree', async () => {
  const deps = await buildServices(await loadConfig({ overrides: { log: { level: 'silent' } } }));
  const app = createApp(deps);
  const routes = inspectRoutes(app).filter((r) => !r.isMiddleware);
  after(() => deps.engine.close());

  type Match = [[unknown, { path: string; method: string }], unknown];

  /** The route pattern that answers `method url` (HEAD is served by GET handlers). */
  function routeFor(method: string, url: string): string | undefined {
    const m = method === 'HEAD' ? 'GET' : method;
    const [matches] = app.router.match(m, new URL(url, 'http://x').pathname) as unknown as [Match[]];
    return matches.map(([[, r]]) => r).find((r) => r.method !== 'ALL')?.path;
  }

  test('every documented operation reaches a handler of that pattern', () => {
    for (const o of operations) {
      const url = exampleUrl(o);
      const route = routeFor(o.method.toUpperCase(), url);
      assert.ok(route, `${o.method.toUpperCase()} ${o.path} (${url}) reaches no handler`);
      const a = routeTemplate(route).split('/');
      const b = o.path.split('/');
      assert.equal(a.length, b.length, `${o.path} vs ${routeTemplate(route)}`);
      a.forEach((seg, i) => {
        if (!seg.includes('{')) assert.equal(b[i], seg, `${o.path} vs ${routeTemplate(route)}`);
      });
    }
  });

  test('every handler of the app is documented', () => {
    const reached = new Set(
      operations.map((o) => {
        const method = o.method === 'head' ? 'GET' : o.method.toUpperCase();
        return `${method} ${routeFor(o.method.toUpperCase(), exampleUrl(o))}`;
      }),
    );
    const missing = routes
      .filter((r) => !reached.has(`${r.method} ${r.path}`))
      .map((r) => `${r.method} ${routeTemplate(r.path)}`);
    assert.deepEqual(missing, [], 'routes missing from openapi.yaml');
    assert.ok(routes.length >= 30, `${routes.length} routes`);
  });
});

describe('real answers match the schemas', () => {
  let s: TestServer;
  let dir: string;
  const ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true, validateFormats: false });
  const toAjv = (v: unknown) =>
    JSON.parse(JSON.stringify(v).replaceAll('#/components/schemas/', 'cogmill#/$defs/')) as Obj;
  ajv.addSchema(toAjv({ $id: 'cogmill', $defs: components.schemas }));

  before(async () => {
    const fx = await fixtureDir();
    dir = await mkdtemp(path.join(tmpdir(), 'cogmill-openapi-'));
    await mkdir(path.join(dir, 'data'));
    await mkdir(path.join(dir, 'exports'));
    for (const f of ['utm31.tif', 'utm32.tif']) await copyFile(path.join(fx, f), path.join(dir, 'data', f));
    s = await startTestServer({
      mosaics: [{ id: 'm', sources: [path.join(dir, 'data')] }],
      auth: { token: TOKEN },
      materialize: { allowedDestinations: [`${dir}/exports/`] },
    });
  });
  after(async () => {
    await s.stop();
    await rm(dir, { recursive: true, force: true });
  });

  interface CheckOptions {
    readonly values?: Record<string, unknown>;
    readonly headers?: Record<string, string>;
    readonly body?: unknown;
    readonly want?: number;
  }

  /** Call `o` and check the status is documented and the body validates against its schema. */
  async function check(o: Operation, opts: CheckOptions = {}): Promise<unknown> {
    const url = exampleUrl(o, opts.values);
    const secured = Array.isArray(o.op.security) && (o.op.security as unknown[]).length > 0;
    const res = await fetch(`${s.url}${url}`, {
      method: o.method.toUpperCase(),
      headers: {
        ...(secured ? { authorization: `Bearer ${TOKEN}` } : {}),
        ...(opts.body ? { 'content-type': 'application/json' } : {}),
        ...opts.headers,
      },
      body: opts.body ? JSON.stringify(opts.body) : undefined,
    });
    const where = `${o.method.toUpperCase()} ${url} -> ${res.status}`;
    const responses = o.op.responses as Obj;
    assert.ok(String(res.status) in responses, `${where}: status not documented`);
    if (opts.want !== undefined) assert.equal(res.status, opts.want, where);
    const doc = resolve(responses[String(res.status)]);
    const type = (res.headers.get('content-type') ?? '').split(';')[0].trim();
    if (o.method === 'head') {
      assert.ok(Number(res.headers.get('content-length')) > 0, `${where}: Content-Length`);
      return undefined;
    }
    const text = await res.text();
    const content = doc.content as Record<string, Obj> | undefined;
    if (!content) return undefined;
    const media = Object.entries(content).find(([k]) => k.split(';')[0].trim() === type);
    assert.ok(media, `${where}: content type ${type} not documented (${Object.keys(content).join(', ')})`);
    if (type === 'application/json') {
      const body = JSON.parse(text) as unknown;
      const validate = ajv.compile(toAjv(media[1].schema));
      assert.ok(validate(body), `${where}: ${ajv.errorsText(validate.errors)}\n${text.slice(0, 500)}`);
      return body;
    }
    return text;
  }

  const op = (id: string): Operation => {
    const o = operations.find((x) => x.op.operationId === id);
    assert.ok(o, id);
    return o;
  };

  test('mosaics, tiles and data', async () => {
    await check(op('healthz'), { want: 200 });
    await check(op('readyz'), { want: 200 });
    await check(op('listMosaics'), { want: 200 });
    await check(op('getMosaic'), { want: 200 });
    await check(op('getMosaic'), { values: { id: 'nope' }, want: 404 });
    await check(op('getTile'), { want: 200 });
    await check(op('getTile'), { values: { z: 99 }, want: 400 });
    await check(op('getTile2x'), { want: 200 });
    await check(op('getTileJson'), { want: 200 });
    await check(op('getWmtsCapabilities'), { want: 200 });
    const point = (await check(op('getPoint'), { want: 200 })) as { valid: boolean };
    assert.equal(point.valid, true);
    await check(op('getPoint'), { values: { lon: 100 }, want: 404 });
    await check(op('getStatistics'), { want: 200 });
    await check(op('getStatistics'), { values: { bbox: '5.95,44.98,6.05,45.02' }, want: 200 });
    await check(op('getPreview'), { want: 200 });
    await check(op('getPreview'), { values: { max_size: 100_000 }, want: 400 });
    await check(op('getCrop'), { want: 200 });
    await check(op('getCrop'), { values: { format: 'tif' }, want: 200 });
    await check(op('getViewer'), { want: 200 });
    await check(op('getStatic'), { want: 200 });
    await check(op('index'), { want: 200 });
    await check(op('metrics'), { want: 200 });
  });

  test('virtual views and the probes GDAL makes', async () => {
    await check(op('getVirtualCog'), { headers: { range: 'bytes=0-16383' }, want: 206 });
    await check(op('getVirtualCog'), { headers: { range: 'bytes=999999999999-' }, want: 416 });
    await check(op('headVirtualCog'), { want: 200 });
    await check(op('getVrt'), { want: 200 });
    await check(op('headVrt'), { want: 200 });
    await check(op('getSource'), { headers: { range: 'bytes=0-7' }, want: 206 });
    await check(op('getSource'), { values: { n: 7 }, want: 404 });
    await check(op('headSource'), { want: 200 });
    for (const id of [
      'getSidecar',
      'getSourceSidecar',
      'listMosaicsDirectory',
      'listMosaicDirectory',
      'listSourcesDirectory',
    ]) {
      await check(op(id), { want: 404 });
    }
  });

  test('materialisation', async () => {
    await check(op('listJobs'), { headers: { authorization: '' }, want: 401 });
    await check(op('listJobs'), { headers: { authorization: 'Bearer wrong-token-000000' }, want: 403 });
    await check(op('materializeGet'), { want: 404 });
    await check(op('materializeGet'), { values: { mosaic: 'm' }, want: 403 });
    const explained = (await check(op('materializeGet'), {
      values: { mosaic: 'm', dest: `${dir}/exports/dry.tif`, dryRun: true },
      want: 200,
    })) as { tiles: number; levels: unknown[] };
    assert.ok(explained.tiles >= 1 && explained.levels.length >= 1, 'dryRun=true explains the plan');
    await check(op('materializePost'), { body: { mosaic: 'm', dest: `${dir}/exports/x.tif`, bogus: 1 }, want: 400 });
    const accepted = (await check(op('materializePost'), {
      body: { mosaic: 'm', dest: `${dir}/exports/post.tif`, compress: 'zstd' },
      want: 202,
    })) as { id: string };
    const viaGet = (await check(op('materializeGet'), {
      values: { mosaic: 'm', dest: `${dir}/exports/get.tif` },
      want: 202,
    })) as { id: string };
    await check(op('getJob'), { values: { id: accepted.id }, want: 200 });
    const events = (await check(op('jobEvents'), { values: { id: accepted.id }, want: 200 })) as string;
    assert.match(events, /^event: state$/m);
    assert.match(events, /"state":"succeeded"/, 'the stream ends with the final state');
    await check(op('cancelJob'), { values: { id: viaGet.id } });
    const list = (await check(op('listJobs'), { want: 200 })) as { jobs: { id: string }[] };
    assert.ok(list.jobs.some((j) => j.id === accepted.id));
    await check(op('getJob'), { want: 404 });
  });

  test('the document is served as YAML and as a page naming every path', async () => {
    const yaml = await fetch(`${s.url}/openapi.yaml`);
    assert.equal(yaml.headers.get('content-type'), 'application/yaml; charset=utf-8');
    assert.deepEqual(YAML.parse(await yaml.text()), spec);
    const docs = await fetch(`${s.url}/docs`);
    assert.equal(docs.status, 200);
    const html = await docs.text();
    for (const p of Object.keys(paths)) assert.ok(html.includes(escapeHtml(p)), p);
    for (const name of Object.keys(components.schemas)) {
      assert.ok(html.includes(`id="schema-${name.toLowerCase()}"`), name);
    }
    assert.ok(!/<script/i.test(html), 'no scripts');
  });
});
