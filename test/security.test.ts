/**
 * Security: no request makes cogmill fetch an arbitrary URL (SSRF) or read outside its roots (path traversal),
 * materialisation needs a valid bearer token and an allow-listed destination, and requests over a limit get a
 * clear 4xx (or 503/504 when the server is busy or slow) instead of hurting the process.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig } from '../src/config.ts';
import { Engine } from '../src/render/engine.ts';
import { CogmillError } from '../src/render/errors.ts';
import { bearerToken, checkDestination, tokenMatches } from '../src/server/auth.ts';
import { checkExpressionLength, checkPixels, checkSide, OverloadedError, RenderLimiter } from '../src/server/limits.ts';
import { startTestServer, type TestServer } from './support/app.ts';
import { fixtureDir } from './support/gdal.ts';
import { type StaticServer, startStaticServer } from './support/http.server.ts';

const TOKEN = 'a-valid-token-0123456789abcdef';

let dir: string;
let data: string;
let outside: string;
before(async () => {
  const fx = await fixtureDir();
  dir = await mkdtemp(path.join(tmpdir(), 'cogmill-sec-'));
  data = path.join(dir, 'data');
  outside = path.join(dir, 'outside');
  await mkdir(data);
  await mkdir(outside);
  await copyFile(path.join(fx, 'utm32.tif'), path.join(data, 'utm32.tif'));
  await copyFile(path.join(fx, 'utm31.tif'), path.join(outside, 'secret.tif'));
  await writeFile(path.join(outside, 'passwd'), 'root:x:0:0:root:/root:/bin/bash\n');
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Send a raw request path (no client-side normalisation of `..` or `%2F`). */
function rawGet(
  base: string,
  rawPath: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path: rawPath, method: 'GET', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}

async function errorOf(p: Promise<unknown>): Promise<CogmillError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof CogmillError, `expected a CogmillError, got ${e}`);
    return e;
  }
  assert.fail('no error');
}

describe('SSRF: sources come only from configuration', () => {
  let web: StaticServer;
  let metadata: StaticServer;
  let s: TestServer;
  before(async () => {
    web = await startStaticServer(dir);
    metadata = await startStaticServer(outside);
    s = await startTestServer({
      sources: { allowedUrlPrefixes: [`${web.url}/data/`] },
      mosaics: [{ id: 'm', sources: [`${web.url}/data/utm32.tif`] }],
      auth: { token: TOKEN },
      materialize: { allowedDestinations: [`${dir}/exports/`] },
    });
  });
  after(async () => {
    await s.stop();
    await web.stop();
    await metadata.stop();
  });

  test('the engine refuses URLs outside the allowed prefixes without contacting them', async () => {
    const engine = new Engine({ allowedUrlPrefixes: [`${web.url}/data/`] });
    try {
      for (const url of [
        'http://169.254.169.254/latest/meta-data/iam/security-credentials/x.tif',
        `${metadata.url}/secret.tif`,
        `${web.url}/data-private/x.tif`,
        's3://other-bucket/x.tif',
      ]) {
        const e = await errorOf(engine.openRaster(url));
        assert.equal(e.code, 403, url);
        assert.match(e.message, /not under an allowed URL prefix/);
      }
      await assert.rejects(engine.expand([`${metadata.url}/secret.tif`]), /not under an allowed URL prefix/);
      assert.equal(metadata.requests.length, 0);
    } finally {
      await engine.close();
    }
  });

  test('a prefix cannot be escaped with ".." or "%2e%2e" segments', async () => {
    const engine = new Engine({ allowedUrlPrefixes: [`${web.url}/data/`] });
    const before = web.requests.length;
    try {
      for (const url of [`${web.url}/data/../outside/secret.tif`, `${web.url}/data/%2e%2e/outside/secret.tif`]) {
        const e = await errorOf(engine.openRaster(url));
        assert.equal(e.code, 403, url);
      }
      assert.equal(web.requests.length, before, 'nothing outside the prefix was fetched');
    } finally {
      await engine.close();
    }
  });

  test('URLs in query strings, paths and headers of requests are never fetched', async () => {
    const target = `${metadata.url}/secret.tif`;
    const q = encodeURIComponent(target);
    const auth = { authorization: `Bearer ${TOKEN}` };
    const attempts = [
      `/mosaics/m/tiles/0/0/0.png?url=${q}`,
      `/mosaics/m/tilejson.json?url=${q}&source=${q}`,
      `/mosaics/m/preview.png?url=${q}&max_size=64`,
      `/mosaics/${q}`,
      `/mosaics/${q}.tif`,
      `/mosaics/${q}.vrt`,
      `/mosaics/m/sources/${q}`,
      `/mosaics/m.vrt?sources=${q}`,
      `/materialize?mosaic=m&dest=${q}`,
      `/materialize?mosaic=${q}&dest=s3://bucket/x.tif`,
    ];
    for (const p of attempts) {
      const r = await fetch(`${s.url}${p}`, { headers: { ...auth, 'x-forwarded-host': new URL(metadata.url).host } });
      assert.ok(r.status < 500, `${p} answered ${r.status}`);
      await r.arrayBuffer();
    }
    for (const body of [
      { mosaic: 'm', dest: target },
      { mosaic: 'm', sources: [target], dest: `${dir}/exports/x.tif` },
    ]) {
      const r = await fetch(`${s.url}/materialize`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      assert.ok(r.status < 500, `POST /materialize answered ${r.status}`);
      await r.arrayBuffer();
    }
    assert.equal(metadata.requests.length, 0, 'the other server was never contacted');
  });
});

describe('path traversal: local sources stay inside the roots', () => {
  let s: TestServer;
  before(async () => {
    await symlink(path.join(outside, 'secret.tif'), path.join(data, 'link-out.tif'));
    s = await startTestServer({
      sources: { roots: [data] },
      mosaics: [{ id: 'm', sources: [path.join(data, 'utm32.tif')] }],
    });
  });
  after(async () => {
    await rm(path.join(data, 'link-out.tif'), { force: true });
    await s.stop();
  });

  test('"..", absolute paths and symlinks out of a root are refused', async () => {
    const engine = new Engine({ roots: [data] });
    try {
      for (const p of [
        path.join(data, '..', 'outside', 'secret.tif'),
        `${data}/../outside/secret.tif`,
        path.join(outside, 'secret.tif'),
        '/etc/passwd',
        path.join(data, 'link-out.tif'),
        `file://${path.join(outside, 'secret.tif')}`,
      ]) {
        const e = await errorOf(engine.openRaster(p));
        assert.equal(e.code, 403, p);
        assert.match(e.message, /outside the configured source roots/);
      }
      // a folder holding a symlink out refuses the symlink rather than following it
      const e = await errorOf(engine.expand([data]));
      assert.equal(e.code, 403);
      assert.match(e.message, /link-out\.tif .*outside/);
      // without any root, no local file at all
      const none = new Engine({});
      assert.equal((await errorOf(none.openRaster(path.join(data, 'utm32.tif')))).code, 403);
      await none.close();
    } finally {
      await engine.close();
    }
  });

  test('traversal in request paths gives 404 (or 400), never a file', async () => {
    for (const p of [
      '/mosaics/..%2F..%2Fetc%2Fpasswd.tif',
      '/mosaics/..%2F..%2Fetc%2Fpasswd.vrt',
      '/mosaics/%2e%2e%2f%2e%2e%2fetc%2fpasswd',
      '/mosaics/m/sources/..%2F..%2Fetc%2Fpasswd.tif',
      '/mosaics/m/sources/-1.tif',
      '/mosaics/m/sources/1.tif',
      '/mosaics/m/sources/0.tif%00.png',
      '/mosaics/m/../../etc/passwd',
      '/static/..%2F..%2F..%2Fpackage.json',
      '/static/../../package.json',
      `/mosaics/${encodeURIComponent(path.join(outside, 'passwd'))}`,
    ]) {
      const r = await rawGet(s.url, p);
      assert.ok(r.status === 404 || r.status === 400, `${p} answered ${r.status}`);
      assert.ok(!r.body.includes('root:x:0:0') && !r.body.includes('"name": "cogmill"'), `${p} leaked a file`);
      assert.doesNotThrow(() => JSON.parse(r.body), `${p}: the error body is JSON`);
    }
    const ok = await rawGet(s.url, '/mosaics/m/sources/0.tif', { range: 'bytes=0-3' });
    assert.equal(ok.status, 206, 'the legitimate source is served');
  });
});

describe('materialisation needs a token and an allowed destination', () => {
  // local destinations only: a test must not start uploads to a real cloud
  const exportFile = () => path.join(dir, 'exports', 'token-test.tif');
  const routes = (): [string, string][] => [
    ['GET', `/materialize?mosaic=m&dest=${encodeURIComponent(exportFile())}`],
    ['POST', '/materialize'],
    ['GET', '/jobs/00000000-0000-0000-0000-000000000000'],
    ['GET', '/jobs/00000000-0000-0000-0000-000000000000/events'],
    ['DELETE', '/jobs/00000000-0000-0000-0000-000000000000'],
    ['GET', '/mosaics/m/export.tif'],
  ];

  /** Status, JSON error body (when JSON) and headers; other bodies are not downloaded. */
  async function call(s: TestServer, method: string, p: string, headers: Record<string, string> = {}) {
    const r = await fetch(`${s.url}${p}`, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      body: method === 'POST' ? JSON.stringify({ mosaic: 'm', dest: exportFile() }) : undefined,
    });
    const json = /json/.test(r.headers.get('content-type') ?? '');
    const body = json ? ((await r.json()) as { code: string; message: string }) : undefined;
    if (!json) await r.body?.cancel();
    return { status: r.status, body, headers: r.headers };
  }

  test('without a configured token the routes are disabled (403)', async () => {
    const s = await startTestServer({ mosaics: [{ id: 'm', sources: [path.join(data, 'utm32.tif')] }] });
    try {
      for (const [method, p] of routes()) {
        const r = await call(s, method, p, { authorization: `Bearer ${TOKEN}` });
        assert.equal(r.status, 403, `${method} ${p}`);
        assert.equal(r.body?.code, 'forbidden');
        assert.match(r.body?.message ?? '', /disabled: configure auth\.token/);
      }
      const pre = await fetch(`${s.url}/materialize`, {
        method: 'OPTIONS',
        headers: { origin: 'https://qgis.example.org', 'access-control-request-method': 'POST' },
      });
      assert.equal(pre.status, 204, 'CORS preflight is not blocked');
    } finally {
      await s.stop();
    }
  });

  test('a missing token gives 401, a wrong one 403, the right one passes', async () => {
    const s = await startTestServer({
      mosaics: [{ id: 'm', sources: [path.join(data, 'utm32.tif')] }],
      auth: { token: TOKEN },
      materialize: { allowedDestinations: [`${dir}/exports/`] },
    });
    try {
      for (const [method, p] of routes()) {
        const missing = await call(s, method, p);
        assert.equal(missing.status, 401, `${method} ${p} without a token`);
        assert.equal(missing.body?.code, 'unauthorized');
        assert.match(missing.headers.get('www-authenticate') ?? '', /^Bearer /);
        const basic = await call(s, method, p, { authorization: `Basic ${btoa(`x:${TOKEN}`)}` });
        assert.equal(basic.status, 401, `${method} ${p} with Basic auth`);
        const wrong = await call(s, method, p, { authorization: `Bearer ${TOKEN.slice(0, -1)}X` });
        assert.equal(wrong.status, 403, `${method} ${p} with a wrong token`);
        assert.match(wrong.body?.message ?? '', /not valid/);
        const longer = await call(s, method, p, { authorization: `Bearer ${TOKEN}0` });
        assert.equal(longer.status, 403, `${method} ${p} with a longer token`);
        const prefix = await call(s, method, p, { authorization: `Bearer ${TOKEN.slice(0, 8)}` });
        assert.equal(prefix.status, 403, `${method} ${p} with a prefix of the token`);
        const right = await call(s, method, p, { authorization: `Bearer ${TOKEN}` });
        assert.ok(
          right.status !== 401 && right.status !== 403,
          `${method} ${p} with the token answered ${right.status}`,
        );
      }
      // the right token, a destination outside the allow-list: 403, and no job
      for (const dest of ['s3://bucket/out/x.tif', path.join(outside, 'x.tif'), `${dir}/exports-evil/x.tif`]) {
        const r = await fetch(`${s.url}/materialize`, {
          method: 'POST',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ mosaic: 'm', dest }),
        });
        assert.equal(r.status, 403, dest);
        assert.match(((await r.json()) as { message: string }).message, /not under an allowed destination/);
        const q = await fetch(`${s.url}/materialize?mosaic=m&dest=${encodeURIComponent(dest)}`, {
          headers: { authorization: `Bearer ${TOKEN}` },
        });
        assert.equal(q.status, 403, dest);
        await q.arrayBuffer();
      }
    } finally {
      await s.stop();
    }
  });

  test('allowUnauthenticated opens the routes when no token is configured', async () => {
    const s = await startTestServer({
      mosaics: [{ id: 'm', sources: [path.join(data, 'utm32.tif')] }],
      auth: { allowUnauthenticated: true },
    });
    try {
      const r = await call(s, 'GET', '/jobs/00000000-0000-0000-0000-000000000000');
      assert.ok(r.status !== 401 && r.status !== 403, `answered ${r.status}`);
    } finally {
      await s.stop();
    }
  });

  test('token comparison: one constant-time comparison of equal-length digests, whatever the length or prefix', (t) => {
    // every comparison goes through crypto.timingSafeEqual, on two 32-byte digests: the time taken cannot depend on
    // the given token's length nor on how long a prefix it shares with the real one
    const calls: [number, number][] = [];
    const real = crypto.timingSafeEqual;
    t.mock.method(crypto, 'timingSafeEqual', (a: NodeJS.ArrayBufferView, b: NodeJS.ArrayBufferView) => {
      calls.push([a.byteLength, b.byteLength]);
      return real(a, b);
    });
    syncBuiltinESMExports();
    try {
      const cases: [string, boolean][] = [
        [TOKEN, true],
        [`${TOKEN}x`, false], // the real token is a prefix of it
        [TOKEN.slice(0, -1), false], // a prefix of the real token
        [`${TOKEN.slice(0, -1)}X`, false], // same length, differs in the last character
        [`X${TOKEN.slice(1)}`, false], // same length, differs in the first character
        ['', false],
        ['x'.repeat(4096), false],
        [TOKEN.toUpperCase(), false],
      ];
      for (const [given, want] of cases) {
        const before = calls.length;
        assert.equal(tokenMatches(given, TOKEN), want, JSON.stringify(given.slice(0, 40)));
        assert.deepEqual(
          calls.slice(before),
          [[32, 32]],
          `one timingSafeEqual of two digests for ${given.length} chars`,
        );
      }
    } finally {
      t.mock.restoreAll();
      syncBuiltinESMExports();
    }
    assert.equal(bearerToken(`Bearer ${TOKEN}`), TOKEN);
    assert.equal(bearerToken(`bearer   ${TOKEN} `), TOKEN);
    assert.equal(bearerToken(`Bearer ${TOKEN} extra`), undefined);
    assert.equal(bearerToken(`Basic ${TOKEN}`), undefined);
    assert.equal(bearerToken(undefined), undefined);
  });

  test('destinations must lie under materialize.allowedDestinations', async () => {
    const exports = path.join(dir, 'exports');
    await mkdir(path.join(exports, 'sub'), { recursive: true });
    await symlink(outside, path.join(exports, 'escape'));
    const config = await loadConfig({
      overrides: { materialize: { allowedDestinations: ['s3://bucket/out/', `${exports}/`] } },
    });
    const ok = (d: string) => checkDestination(d, config);
    const status = (d: string) => {
      try {
        checkDestination(d, config);
        return 200;
      } catch (e) {
        assert.ok(e instanceof CogmillError);
        return e.code;
      }
    };
    assert.deepEqual(ok('s3://bucket/out/a/b.tif'), {
      kind: 's3',
      url: 's3://bucket/out/a/b.tif',
      bucket: 'bucket',
      key: 'out/a/b.tif',
    });
    assert.deepEqual(ok(path.join(exports, 'sub', 'x.tif')), {
      kind: 'file',
      path: path.join(exports, 'sub', 'x.tif'),
    });
    assert.deepEqual(ok(`file://${exports}/new/deeper/x.tif`), {
      kind: 'file',
      path: path.join(exports, 'new', 'deeper', 'x.tif'),
    });
    // outside the allow-list: 403
    for (const d of [
      's3://bucket/other/x.tif',
      's3://bucket/out-evil/x.tif',
      's3://bucket2/out/x.tif',
      path.join(outside, 'x.tif'),
      '/etc/cron.d/x',
      path.join(exports, 'escape', 'x.tif'),
      `${exports}-sibling/x.tif`,
    ]) {
      assert.equal(status(d), 403, d);
    }
    // malformed: 400
    for (const d of [
      '',
      's3://bucket/out/',
      's3://bucket/out/../secret/x.tif',
      's3://bucket/out//x.tif',
      's3://bucket/out/./x.tif',
      `${exports}/../outside/x.tif`,
      'relative/x.tif',
      'https://example.com/x.tif',
      `${exports}/`,
    ]) {
      assert.equal(status(d), 400, d);
    }
    const none = await loadConfig({});
    assert.throws(() => checkDestination('s3://bucket/out/x.tif', none), /no destinations are allowed/);
  });
});

describe('limits', () => {
  test('the render limiter queues up to its bound, then refuses with OverloadedError', async () => {
    const l = new RenderLimiter({ maxConcurrent: 2, maxQueued: 1 });
    const r1 = await l.acquire();
    const r2 = await l.acquire();
    const order: number[] = [];
    const third = l.acquire().then((r) => {
      order.push(3);
      return r;
    });
    await assert.rejects(
      l.acquire(),
      (e: unknown) => e instanceof OverloadedError && e.code === 503 && e.retryAfterS === 1,
    );
    assert.deepEqual(l.stats, { active: 2, queued: 1, rejected: 1 });
    r1();
    r1();
    const r3 = await third;
    assert.deepEqual(order, [3]);
    assert.deepEqual(l.stats, { active: 2, queued: 0, rejected: 1 });
    const ctl = new AbortController();
    const waiting = l.acquire(ctl.signal);
    ctl.abort(new Error('client gone'));
    await assert.rejects(waiting, /client gone/);
    assert.equal(l.stats.queued, 0);
    r2();
    r3();
    assert.equal(l.stats.active, 0);
    assert.equal(await l.run(async () => 7), 7);
    assert.equal(l.stats.active, 0);
  });

  test('pixel and expression checks name the setting', () => {
    assert.doesNotThrow(() => checkPixels(100, 100, 10_000, 'a crop', 'limits.maxCropPixels'));
    assert.throws(
      () => checkPixels(101, 100, 10_000, 'a crop', 'limits.maxCropPixels'),
      (e: unknown) =>
        e instanceof CogmillError &&
        e.code === 413 &&
        /10100 pixels .* 10000 pixels \(limits\.maxCropPixels\)/.test(e.message),
    );
    assert.throws(
      () => checkPixels(0, 10, 100, 'a crop', 'x'),
      (e: unknown) => e instanceof CogmillError && e.code === 400,
    );
    assert.throws(
      () => checkSide(4096, 10, 2048, 'a preview', 'limits.maxPreviewSize'),
      (e: unknown) => e instanceof CogmillError && e.code === 413,
    );
    assert.throws(
      () => checkExpressionLength('b1+'.repeat(200), 512),
      (e: unknown) => e instanceof CogmillError && e.code === 400,
    );
  });

  test('oversized requests get 400 or 413 with a JSON error', async () => {
    const s = await startTestServer({
      mosaics: [{ id: 'm', sources: [path.join(data, 'utm32.tif')] }],
      auth: { token: TOKEN },
      server: { maxBodyBytes: 1024 },
      limits: { maxPreviewSize: 256, maxCropPixels: 10_000, maxExpressionLength: 32 },
    });
    try {
      const body = await fetch(`${s.url}/materialize`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ mosaic: 'm', dest: 's3://bucket/x.tif', pad: 'x'.repeat(5000) }),
      });
      assert.equal(body.status, 413);
      const b = (await body.json()) as { code: string; message: string };
      assert.equal(b.code, 'too-large');
      assert.match(b.message, /server\.maxBodyBytes/);
      const m = (await (await fetch(`${s.url}/mosaics/m`)).json()) as { boundsWgs84: number[] };
      const [w, so, e, n] = m.boundsWgs84;
      const checks: [string, number[]][] = [
        ['/mosaics/m/preview.png?max_size=4096', [400, 413]],
        [`/mosaics/m/bbox/${w},${so},${e},${n}.png?width=1000&height=1000`, [400, 413]],
        [`/mosaics/m/tiles/0/0/0.png?expression=${encodeURIComponent('b1+'.repeat(40))}b1`, [400]],
        [`/mosaics/m/statistics?expression=${encodeURIComponent('b1*'.repeat(40))}b1`, [400]],
        ['/mosaics/m/tiles/99/0/0.png', [400]],
        [`/mosaics/m/${'x'.repeat(10_000)}`, [404, 414, 431]],
      ];
      for (const [p, want] of checks) {
        const r = await fetch(`${s.url}${p}`);
        assert.ok(want.includes(r.status), `${p.slice(0, 80)} answered ${r.status}`);
        if (r.status < 414) {
          const j = (await r.json()) as { code: string; message: string; requestId: string };
          assert.ok(j.message.length > 10 && typeof j.requestId === 'string', p.slice(0, 80));
        } else await r.arrayBuffer();
      }
    } finally {
      await s.stop();
    }
  });

  test('a full render queue answers 503 with Retry-After', async () => {
    const web = await startStaticServer(data);
    const s = await startTestServer({
      mosaics: [{ id: 'w', sources: [`${web.url}/utm32.tif`] }],
      limits: { maxConcurrentRenders: 1, maxQueuedRenders: 0 },
    });
    try {
      const m = (await (await fetch(`${s.url}/mosaics/w`)).json()) as { boundsWgs84: number[] };
      const lon = (m.boundsWgs84[0] + m.boundsWgs84[2]) / 2;
      const lat = (m.boundsWgs84[1] + m.boundsWgs84[3]) / 2;
      // the point request takes the only render slot and waits on its source read until the test lets it go
      const reads = web.requests.length;
      web.hold();
      const slow = fetch(`${s.url}/mosaics/w/point?lon=${lon}&lat=${lat}`);
      await web.waitForRequests(reads + 1);
      const busy = await fetch(`${s.url}/mosaics/w/preview.png?max_size=64&rescale=0,3000`);
      assert.equal(busy.status, 503);
      assert.equal(busy.headers.get('retry-after'), '1');
      assert.equal(((await busy.json()) as { code: string }).code, 'overloaded');
      web.release();
      const first = await slow;
      assert.equal(first.status, 200, 'the request holding the slot completes');
      await first.arrayBuffer();
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      assert.match(metrics, /^cogmill_render_rejected_total 1$/m);
    } finally {
      web.release();
      await s.stop();
      await web.stop();
    }
  });

  test('a render past the request deadline answers 504 and is cancelled: its source reads aborted, none after', async () => {
    const web = await startStaticServer(data);
    const s = await startTestServer({
      mosaics: [{ id: 'w', sources: [`${web.url}/utm32.tif`] }],
      // long enough for the render to reach its first source read on a loaded machine
      server: { requestTimeoutMs: 5000 },
    });
    const gauge = async (name: string) =>
      Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${s.url}/metrics`)).text())?.[1]);
    try {
      const m = (await (await fetch(`${s.url}/mosaics/w`)).json()) as { boundsWgs84: number[] };
      // the source never answers: only the deadline can end this request
      const reads = web.requests.length;
      web.hold();
      const late = await fetch(
        `${s.url}/mosaics/w/bbox/${m.boundsWgs84.join(',')}.png?width=64&height=64&rescale=0,3000`,
      );
      assert.equal(late.status, 504);
      const body = (await late.json()) as { code: string; message: string };
      assert.equal(body.code, 'timeout');
      assert.match(body.message, /server\.requestTimeoutMs/);
      const held = web.requests.length - reads;
      assert.ok(held >= 1, 'the render had asked its source for pixels');
      // the render is cancelled, not left running: every read it had in flight is aborted by cogmill itself
      await web.waitForAborts(held);
      assert.equal(web.requests.slice(reads).filter((r) => !r.aborted).length, 0, 'every held read was aborted');
      assert.equal(await gauge('cogmill_render_active'), 0, 'no render is running');
      // answers to the aborted reads would have nowhere to go; the render asks for nothing more
      web.release();
      assert.equal((await fetch(`${s.url}/healthz`)).status, 200);
      assert.equal(web.requests.length - reads, held, 'no source read after the deadline');
    } finally {
      web.release();
      await s.stop();
      await web.stop();
    }
  });
});
