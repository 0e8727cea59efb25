/**
 * Operations: liveness and readiness, Prometheus metrics, one JSON summary line per request with no secrets in
 * it, and graceful shutdown of the real CLI process on SIGTERM.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/main.ts';
import { ReadinessProbe } from '../src/server/routes.ops.ts';
import { startTestServer, type TestServer } from './support/app.ts';
import { spawnServe } from './support/cli.ts';
import { fixtureDir } from './support/gdal.ts';
import { type StaticServer, startStaticServer } from './support/http.server.ts';

const TOKEN = 'tok-SECRET-0123456789-abcdef';
const S3_SECRET = 'S3SECRET/abcdefghijklmnopqrstuvwxyz0123';

let dir: string;
let data: string;
before(async () => {
  const fx = await fixtureDir();
  dir = await mkdtemp(path.join(tmpdir(), 'cogmill-ops-'));
  data = path.join(dir, 'data');
  await mkdir(data);
  for (const f of ['utm31.tif', 'utm32.tif']) await copyFile(path.join(fx, f), path.join(data, f));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The XYZ tile holding a point (Web Mercator). */
function tileAt(lon: number, lat: number, z: number): { z: number; x: number; y: number } {
  const n = 2 ** z;
  const r = (lat * Math.PI) / 180;
  return {
    z,
    x: Math.floor(((lon + 180) / 360) * n),
    y: Math.floor(((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2) * n),
  };
}

async function centerTile(base: string, id: string, z: number): Promise<string> {
  const m = (await (await fetch(`${base}/mosaics/${id}`)).json()) as { boundsWgs84: number[] };
  const [w, s, e, n] = m.boundsWgs84;
  const t = tileAt((w + e) / 2, (s + n) / 2, z);
  return `${base}/mosaics/${id}/tiles/${t.z}/${t.x}/${t.y}.png?rescale=0,3000`;
}

/** Parse Prometheus text: `name{labels}` -> value. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

function requestLines(s: TestServer): Record<string, unknown>[] {
  return s.logs.filter((l) => l.msg === 'request');
}

describe('health, readiness, metrics and logs', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ mosaics: [{ id: 'm', sources: [data] }] });
  });
  after(async () => {
    await s.stop();
  });

  test('/healthz answers ok and /readyz reports every mosaic', async () => {
    const h = await fetch(`${s.url}/healthz`);
    assert.equal(h.status, 200);
    assert.deepEqual(await h.json(), { status: 'ok' });
    const r = await fetch(`${s.url}/readyz`);
    assert.equal(r.status, 200);
    const body = (await r.json()) as { status: string; mosaics: unknown[] };
    assert.equal(body.status, 'ready');
    assert.deepEqual(body.mosaics, [{ id: 'm', status: 'ok' }]);
  });

  test('one summary line per request, with the route pattern, status, duration and a usable request id', async () => {
    const before = requestLines(s).length;
    const res = await fetch(`${s.url}/mosaics/m`, { headers: { 'x-request-id': 'qc-run-42.1' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-request-id'), 'qc-run-42.1');
    await res.arrayBuffer();
    const bad = await fetch(`${s.url}/mosaics/m`, { headers: { 'x-request-id': 'no spaces <script>' } });
    const badId = bad.headers.get('x-request-id') ?? '';
    assert.match(badId, /^[0-9a-f-]{36}$/);
    await bad.arrayBuffer();
    const lines = requestLines(s).slice(before);
    assert.equal(lines.length, 2);
    const [a, b] = lines;
    assert.equal(a.requestId, 'qc-run-42.1');
    assert.equal(a.route, '/mosaics/{id}');
    assert.equal(a.path, '/mosaics/m');
    assert.equal(a.method, 'GET');
    assert.equal(a.status, 200);
    assert.equal(a.level, 'info');
    assert.equal(typeof a.durationMs, 'number');
    assert.equal(a.sourceRequests, 0);
    assert.equal(b.requestId, badId);
  });

  test('a tile request reports its source reads and cache result; the cached repeat reads nothing', async () => {
    const url = await centerTile(s.url, 'm', 10);
    const before = requestLines(s).length;
    const first = await fetch(url);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('content-type'), 'image/png');
    await first.arrayBuffer();
    const second = await fetch(url);
    assert.equal(second.status, 200);
    await second.arrayBuffer();
    const tiles = requestLines(s)
      .slice(before)
      .filter((l) => l.route === '/mosaics/{id}/tiles/{z}/{x}/{file}');
    assert.equal(tiles.length, 2);
    assert.equal(tiles[0].cache, 'miss');
    assert.ok((tiles[0].sourceRequests as number) > 0, 'the first render read the sources');
    assert.ok((tiles[0].sourceBytes as number) > 1000);
    assert.equal(tiles[1].cache, 'hit');
    assert.equal(tiles[1].sourceRequests, 0);
    assert.equal(tiles[1].sourceBytes, 0);
  });

  test('/metrics counts requests per route and status, and reports caches, sources and jobs', async () => {
    // a server of its own: the counts below are this test's requests only, whatever ran before
    const s = await startTestServer({ mosaics: [{ id: 'm', sources: [data] }] });
    try {
      for (let i = 0; i < 3; i++) await (await fetch(`${s.url}/healthz`)).arrayBuffer();
      await (await fetch(`${s.url}/no/such/route`)).arrayBuffer();
      const tile = await centerTile(s.url, 'm', 10);
      for (let i = 0; i < 2; i++) assert.equal((await fetch(tile)).status, 200);
      const res = await fetch(`${s.url}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const text = await res.text();
      const m = parseMetrics(text);
      assert.equal(m.get('cogmill_http_requests_total{route="/healthz",method="GET",status="200"}'), 3);
      assert.equal(m.get('cogmill_http_requests_total{route="unmatched",method="GET",status="404"}'), 1);
      assert.equal(m.get('cogmill_http_request_duration_seconds_count{route="/healthz",method="GET",status="200"}'), 3);
      assert.equal(m.get('cogmill_tile_cache_total{result="hit"}'), 1);
      assert.equal(m.get('cogmill_tile_cache_total{result="miss"}'), 1);
      assert.ok((m.get('cogmill_cache_bytes{cache="header"}') ?? 0) > 0, 'header cache holds the parsed headers');
      assert.ok((m.get('cogmill_source_requests_total{kind="file"}') ?? 0) > 0);
      assert.ok((m.get('cogmill_source_bytes_total{kind="file"}') ?? 0) > 0);
      assert.ok((m.get('cogmill_render_seconds_count{kind="tile"}') ?? 0) >= 1);
      assert.equal(m.get('cogmill_render_active'), 0);
      assert.equal(m.get('cogmill_render_queued'), 0);
      assert.equal(m.get('cogmill_http_inflight_requests'), 1, 'the scrape itself');
      for (const name of [
        'cogmill_materialize_jobs_total',
        'cogmill_materialize_parts_total',
        'cogmill_materialize_bytes_total',
        'cogmill_materialize_retries_total',
        'cogmill_process_resident_memory_bytes',
      ]) {
        assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
      }
    } finally {
      await s.stop();
    }
  });
});

describe('readiness', () => {
  test('a mosaic whose files are not there yet is not ready, then opens on a later check', async () => {
    const late = path.join(dir, 'late');
    await mkdir(late);
    const s = await startTestServer({ mosaics: [{ id: 'late', sources: [late] }] });
    try {
      const r = await fetch(`${s.url}/readyz`);
      assert.equal(r.status, 503);
      const body = (await r.json()) as { status: string; mosaics: { id: string; status: string; message: string }[] };
      assert.equal(body.status, 'not-ready');
      assert.equal(body.mosaics[0].status, 'error');
      assert.match(body.mosaics[0].message, /no GeoTIFF matches/);
      assert.equal((await fetch(`${s.url}/mosaics/late`)).status, 400);
      await copyFile(path.join(data, 'utm32.tif'), path.join(late, 'utm32.tif'));
      const probe = new ReadinessProbe(s.deps, { cacheMs: 0 });
      const report = await probe.check();
      assert.equal(report.ready, true);
      const m = await fetch(`${s.url}/mosaics/late`);
      assert.equal(m.status, 200);
      assert.equal(((await m.json()) as { width: number }).width, 700);
    } finally {
      await s.stop();
    }
  });

  test('the check stats the first source, is cached, and fails when the source goes away', async () => {
    const web: StaticServer = await startStaticServer(data);
    const s = await startTestServer({ mosaics: [{ id: 'h', sources: [`${web.url}/utm32.tif`] }] });
    try {
      const heads = () => web.requests.filter((r) => r.method === 'HEAD').length;
      const h0 = heads();
      assert.equal((await fetch(`${s.url}/readyz`)).status, 200);
      assert.equal((await fetch(`${s.url}/readyz`)).status, 200);
      assert.equal(heads() - h0, 1, 'two probes within the cache time cost one HEAD');
      await web.stop();
      const report = await new ReadinessProbe(s.deps, { cacheMs: 0, timeoutMs: 3000 }).check();
      assert.equal(report.ready, false);
      assert.equal(report.mosaics[0].status, 'error');
      assert.match(report.mosaics[0].message ?? '', /unreachable|no answer/);
    } finally {
      await s.stop();
      await web.stop();
    }
  });
});

describe('shutdown with a running materialisation', () => {
  test('close() runs the shutdown hooks: the job is cancelled and leaves nothing at the destination', async () => {
    const web = await startStaticServer(data);
    const exports = path.join(dir, 'exports');
    await mkdir(exports, { recursive: true });
    const s = await startTestServer({
      mosaics: [{ id: 'slow', sources: [`${web.url}/utm32.tif`, `${web.url}/utm31.tif`] }],
      auth: { allowUnauthenticated: true },
      materialize: { allowedDestinations: [`${exports}/`] },
    });
    try {
      // every source read from now on waits: the job starts, then hangs on its first read until the shutdown
      const readsBefore = web.requests.length;
      web.hold();
      const res = await fetch(`${s.url}/materialize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ mosaic: 'slow', dest: path.join(exports, 'slow.tif'), compress: 'deflate' }),
      });
      assert.equal(res.status, 202);
      const { id } = (await res.json()) as { id: string };
      await web.waitForRequests(readsBefore + 1);
      const j = (await (await fetch(`${s.url}/jobs/${id}`)).json()) as { state: string };
      assert.equal(j.state, 'running', 'the job is running, held on a source read');
      assert.ok(s.deps.shutdownHooks.length >= 1, 'the jobs module registered a shutdown hook');
      // close() runs the hooks at once (the job's cancel is requested before this line returns); only then do the
      // held reads get their answers, so the job can only end as cancelled, never as finished
      const closing = s.running.close(120_000);
      assert.ok(web.held >= 1, 'a source read was still held when the shutdown began');
      web.release();
      assert.equal(await closing, true, 'hooks and requests finished within the grace period');
      const line = s.logs.find((l) => l.job === id && typeof l.state === 'string' && l.msg !== 'request');
      assert.equal(line?.state, 'cancelled', JSON.stringify(line));
      assert.deepEqual(await readdir(exports), [], 'no file and no partial file at the destination');
    } finally {
      web.release();
      await s.stop();
      await web.stop();
    }
  });
});

describe('credentials are never logged', () => {
  test('bearer tokens and S3 keys appear in no log line', async () => {
    const s = await startTestServer({
      mosaics: [{ id: 'm', sources: [data] }],
      auth: { token: TOKEN },
      s3: { accessKeyId: 'AKIAEXAMPLEKEYID', secretAccessKey: S3_SECRET },
      log: { level: 'trace' },
    });
    try {
      const auth = { authorization: `Bearer ${TOKEN}` };
      for (const p of ['/jobs/nope', '/materialize?mosaic=m&dest=s3://b/k.tif', '/mosaics/m', '/metrics']) {
        await (await fetch(`${s.url}${p}`, { headers: auth })).arrayBuffer();
      }
      await (
        await fetch(`${s.url}/jobs/x`, { headers: { authorization: 'Bearer WRONG-SECRET-TOKEN-999' } })
      ).arrayBuffer();
      await (
        await fetch(`${s.url}/jobs/x`, { headers: { authorization: `Basic ${btoa(`u:${TOKEN}`)}` } })
      ).arrayBuffer();
      // whatever a module logs, the logger blanks secret-named fields
      s.deps.log.info({ config: s.deps.config, headers: { authorization: `Bearer ${TOKEN}` } }, 'careless');
      const text = JSON.stringify(s.logs);
      assert.equal(s.logs.filter((l) => l.msg === 'request').length, 6);
      for (const secret of [TOKEN, S3_SECRET, 'WRONG-SECRET-TOKEN-999', 'AKIAEXAMPLEKEYID', btoa(`u:${TOKEN}`)]) {
        assert.ok(!text.includes(secret), `the log must not contain ${secret}`);
      }
      assert.match(text, /\[redacted\]/);
    } finally {
      await s.stop();
    }
  });

  test('createLogger redacts nested secrets', async () => {
    const chunks: string[] = [];
    const sink = new Writable({
      write(c, _e, cb) {
        chunks.push(String(c));
        cb();
      },
    });
    const log = createLogger(await loadConfig({}), sink);
    log.info({
      s3: { secretAccessKey: S3_SECRET },
      req: { headers: { authorization: 'Bearer x-secret' } },
      token: TOKEN,
    });
    const line = chunks.join('');
    assert.ok(!line.includes(S3_SECRET) && !line.includes('x-secret') && !line.includes(TOKEN), line);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// the real CLI process

function connectError(url: string): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const sock = connect(Number(u.port), u.hostname);
    sock.once('connect', () => {
      sock.destroy();
      resolve('connected');
    });
    sock.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

describe('the cogmill process', () => {
  test('`cogmill serve` with no config in a folder of GeoTIFFs serves them', async () => {
    const child = await spawnServe([], { cwd: data });
    try {
      const res = await fetch(`${child.url}/mosaics/default`);
      assert.equal(res.status, 200);
      const m = (await res.json()) as { sources: { location: string }[] };
      assert.deepEqual(m.sources.map((x) => path.basename(x.location)).sort(), ['utm31.tif', 'utm32.tif']);
      assert.equal((await fetch(`${child.url}/readyz`)).status, 200);
    } finally {
      child.proc.kill('SIGTERM');
      assert.equal(await child.exit, 0);
    }
  });

  test('SIGTERM: new connections are refused, the in-flight request completes, the process exits 0', async () => {
    const web = await startStaticServer(data);
    const child = await spawnServe([`${web.url}/utm32.tif`], {
      cwd: dir,
      env: {
        COGMILL_SERVER_SHUTDOWN_GRACE_MS: '120000',
        COGMILL_AUTH_TOKEN: TOKEN,
        COGMILL_S3_ACCESS_KEY_ID: 'AKIAEXAMPLEKEYID',
        COGMILL_S3_SECRET_ACCESS_KEY: S3_SECRET,
      },
    });
    try {
      const tile = await centerTile(child.url, 'default', 9);
      // the tile's source reads are held: it is in flight for as long as the test wants
      const readsBefore = web.requests.length;
      web.hold();
      const inflight = fetch(tile).then(async (r) => ({
        status: r.status,
        type: r.headers.get('content-type'),
        bytes: (await r.arrayBuffer()).byteLength,
      }));
      await web.waitForRequests(readsBefore + 1);
      child.proc.kill('SIGTERM');
      await child.waitForLine((l) => l.msg === 'draining: no new connections, finishing in-flight requests');
      // the listening socket closes right after that line is written; a connection racing in between is reset, not
      // served; once closed, every new connection is refused while the held tile keeps the process alive
      while ((await connectError(child.url)) !== 'ECONNREFUSED') await new Promise((r) => setTimeout(r, 20));
      assert.equal(child.proc.exitCode, null, 'still running: the tile holds it');
      web.release();
      const done = await inflight;
      assert.equal(done.status, 200);
      assert.equal(done.type, 'image/png');
      assert.ok(done.bytes > 100);
      assert.equal(await child.exit, 0);
      const lines = child.lines();
      const msgs = lines.map((l) => l.msg);
      const draining = msgs.indexOf('draining: no new connections, finishing in-flight requests');
      const tileAt = lines.findIndex((l) => l.msg === 'request' && String(l.route).includes('/tiles/'));
      assert.ok(draining >= 0 && tileAt >= 0);
      assert.equal(lines[tileAt].status, 200);
      assert.ok(tileAt > draining, 'the tile finished after the drain began');
      assert.ok(msgs.lastIndexOf('stopped') > tileAt, 'stopped after the in-flight request');
      const all = child.stdout.join('') + child.stderr.join('');
      assert.ok(
        !all.includes(TOKEN) && !all.includes(S3_SECRET) && !all.includes('AKIAEXAMPLEKEYID'),
        'no secret in the output',
      );
      assert.match(all, /"token":"\[redacted\]"/);
    } finally {
      web.release();
      child.kill();
      await web.stop();
    }
  });
});
