/**
 * Mosaics registered at run time over real HTTP: POST /mosaics (bearer token, sources under the allow-lists), PUT
 * and DELETE /mosaics/{id}, kept in server.mosaicsFile and restored after a restart; a STAC catalogue mosaic served
 * as tiles with ?datetime=; explain without reading pixels. With materialize.redis set they are kept in a real
 * redis-server instead (one hash field per mosaic), restored by new app instances, and removed by DELETE.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crsFromEpsg } from '../src/render/crs.ts';
import { lonLatToTile } from '../src/render/tilematrix.ts';
import { createTransformer } from '../src/render/transform.ts';
import { startTestServer, type TestServer } from './support/app.ts';
import { tempDir } from './support/gdal.ts';
import { type StaticServer, startStaticServer } from './support/http.server.ts';
import { startRedis, type TestRedis } from './support/queue.ts';
import { type Catalogue, SCENE_M, writeCatalogue, ZONES } from './support/stac.catalog.ts';

const TOKEN = 'registry-test-token';

describe('mosaics registered at run time', () => {
  let dir: string;
  let files: StaticServer;
  let cat: Catalogue;
  let app: TestServer;
  let storeFile: string;
  let overrides: Record<string, unknown>;

  before(async () => {
    dir = await tempDir('cogmill-registry-');
    files = await startStaticServer(dir);
    cat = await writeCatalogue(dir, { scenesPerZone: 40, cols: 8, baseUrl: files.url });
    storeFile = path.join(dir, 'registered.json');
    overrides = {
      auth: { token: TOKEN },
      sources: { allowedUrlPrefixes: [`${files.url}/`] },
      server: { mosaicsFile: storeFile },
    };
    app = await startTestServer(overrides);
  });
  after(async () => {
    await app?.stop();
    await files?.stop();
  });

  const call = (method: string, p: string, body?: unknown, token: string | null = TOKEN) =>
    fetch(`${app.url}${p}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  const cogRequests = (from: number) => files.requests.slice(from).filter((r) => r.path.startsWith('/cogs/'));
  const def = {
    id: 'qc',
    stac: { items: '', sortby: 'eo:cloud_cover' },
    assets: ['B04', 'B03', 'B11'],
    crs: 'EPSG:32632',
    resolution: 10,
    composite: 'first',
    period: 'P1M',
  };

  test('POST needs the token and refuses sources outside the allow-lists; a good one opens with no source request', async () => {
    const body = { ...def, stac: { ...def.stac, items: `${files.url}/items.json` } };
    assert.equal((await call('POST', '/mosaics', body, null)).status, 401);
    assert.equal((await call('POST', '/mosaics', body, 'wrong')).status, 403);
    const bad = await call('POST', '/mosaics', { ...body, stac: { items: 'http://127.0.0.1:9/elsewhere/items.json' } });
    assert.equal(bad.status, 403, await bad.text());
    const local = await call('POST', '/mosaics', { id: 'loc', sources: [cat.itemsJson] });
    assert.equal(local.status, 403, 'a local catalogue outside the roots is refused');
    const invalid = await call('POST', '/mosaics', { id: 'x', stac: { items: 'a', search: 'http://b/search' } });
    assert.equal(invalid.status, 400);
    assert.match(((await invalid.json()) as { message: string }).message, /items .* or search/);
    const mark = files.requests.length;
    const res = await call('POST', '/mosaics', body);
    assert.equal(res.status, 201, await res.clone().text());
    const m = (await res.json()) as {
      catalogue: { items: number; periods: { id: string; datetime: string }[] };
      bands: unknown[];
    };
    assert.equal(m.catalogue.items, 320);
    assert.deepEqual(
      m.catalogue.periods.map((p) => p.id),
      ['2024-01', '2024-02'],
    );
    assert.equal(m.bands.length, 3);
    assert.equal(cogRequests(mark).length, 0, 'registering read no COG');
    assert.equal((await call('POST', '/mosaics', body)).status, 409, 'the id is taken');
    const stored = JSON.parse(await readFile(storeFile, 'utf8')) as { mosaics: { id: string }[] };
    assert.deepEqual(
      stored.mosaics.map((x) => x.id),
      ['qc'],
    );
  });

  test('tiles take ?datetime= (a different ETag and different pixels per period); explain reads no pixel', async () => {
    const [epsg, ox, oy] = ZONES[0];
    const [lon, lat] = createTransformer(crsFromEpsg(epsg), crsFromEpsg(4326)).point(
      ox + 3.5 * SCENE_M,
      oy - 2.5 * SCENE_M,
    );
    const [x, y] = lonLatToTile(lon, lat, 14);
    const jan = await fetch(
      `${app.url}/mosaics/qc/tiles/14/${x}/${y}.png?rescale=0,4000&datetime=2024-01-01T00:00:00Z/2024-01-31T23:59:59Z`,
    );
    const feb = await fetch(
      `${app.url}/mosaics/qc/tiles/14/${x}/${y}.png?rescale=0,4000&datetime=2024-02-01T00:00:00Z/..`,
    );
    assert.equal(jan.status, 200);
    assert.equal(feb.status, 200);
    assert.notEqual(jan.headers.get('etag'), feb.headers.get('etag'));
    assert.notDeepEqual(new Uint8Array(await jan.arrayBuffer()), new Uint8Array(await feb.arrayBuffer()));
    assert.equal((await fetch(`${app.url}/mosaics/qc/tiles/14/${x}/${y}.png?datetime=yesterday`)).status, 400);
    // band names are the asset names, in bands= and in expressions
    const tile = (q: string) =>
      fetch(`${app.url}/mosaics/qc/tiles/14/${x}/${y}.png?${q}`).then(async (r) => ({
        status: r.status,
        body: new Uint8Array(await r.arrayBuffer()),
      }));
    const byName = await tile('bands=B11,B03,B04&rescale=0,4000');
    const byIndex = await tile('bands=3,2,1&rescale=0,4000');
    assert.equal(byName.status, 200);
    assert.deepEqual(byName.body, byIndex.body);
    assert.notDeepEqual(byName.body, (await tile('bands=1,2,3&rescale=0,4000')).body);
    const ndi = await tile(`expression=${encodeURIComponent('(B11-B04)/(B11+B04)')}&rescale=0,0.5`);
    assert.equal(ndi.status, 200);
    assert.deepEqual(ndi.body, (await tile(`expression=${encodeURIComponent('(b3-b1)/(b3+b1)')}&rescale=0,0.5`)).body);
    assert.equal((await tile('bands=B99')).status, 400);

    const fresh = `${app.url}/mosaics/qc/explain?tile=13/${x >> 1}/${y >> 1}`;
    const mark = files.requests.length;
    const ex = (await (await fetch(fresh)).json()) as {
      items: { id: string; assets: { asset: string; level: number | null; requests: number }[] }[];
      totals: { items: number; assets: number; requests: number; bytes: number | null };
      emptyFraction: number;
    };
    assert.ok(ex.totals.items > 0);
    assert.equal(ex.totals.assets, ex.totals.items * 3);
    assert.ok(ex.emptyFraction > 0 && ex.emptyFraction < 1, `empty fraction ${ex.emptyFraction}`);
    const withHeaders = (await (await fetch(`${fresh}&headers=true`)).json()) as typeof ex;
    assert.deepEqual(withHeaders.items.map((i) => i.id).sort(), ex.items.map((i) => i.id).sort());
    assert.ok(
      withHeaders.items.every((i) => i.assets.every((a) => a.level === 0)),
      'tiny COGs are read at full resolution',
    );
    assert.equal(withHeaders.totals.bytes !== null, true);
    // headers only: at most one request per asset whose header was not cached yet, and no block read
    const reads = cogRequests(mark);
    assert.ok(
      reads.length <= withHeaders.totals.assets,
      `${reads.length} requests for ${withHeaders.totals.assets} assets`,
    );
    assert.equal(new Set(reads.map((r) => r.path)).size, reads.length, 'one request per file');
    const vrt = await fetch(`${app.url}/mosaics/qc.vrt`);
    assert.equal(vrt.status, 200, 'a catalogue mosaic composited "first" has a VRT');
    assert.equal(((await vrt.text()).match(/\/items\/\d+\/B11\.tif(<|&lt;)/g) ?? []).length, 320, 'B11 of every item');
  });

  test('PUT replaces, DELETE removes; the registered set survives a restart; configured mosaics stay', async () => {
    const body = { ...def, id: undefined, stac: { items: `${files.url}/items.parquet` }, composite: 'median' };
    assert.equal((await call('PUT', '/mosaics/qc', body)).status, 200);
    assert.equal((await call('PUT', '/mosaics/qc2', body)).status, 201);
    assert.equal((await call('PUT', '/mosaics/qc2', { ...body, id: 'other' })).status, 400);
    await app.stop();
    app = await startTestServer({
      ...overrides,
      mosaics: [{ id: 'fixed', stac: { items: cat.itemsJson }, assets: ['B04'] }],
    });
    const list = (await (await fetch(`${app.url}/mosaics`)).json()) as {
      mosaics: { id: string; status: string; origin: string }[];
    };
    assert.deepEqual(list.mosaics.map((m) => `${m.id}:${m.status}:${m.origin}`).sort(), [
      'fixed:ok:config',
      'qc2:ok:registered',
      'qc:ok:registered',
    ]);
    const qc = (await (await fetch(`${app.url}/mosaics/qc`)).json()) as { composite: string };
    assert.equal(qc.composite, 'median', 'the replacement was kept');
    assert.equal((await call('DELETE', '/mosaics/fixed')).status, 409);
    assert.equal((await call('PUT', '/mosaics/fixed', body)).status, 409);
    assert.equal((await call('DELETE', '/mosaics/qc2', undefined, null)).status, 401);
    assert.equal((await call('DELETE', '/mosaics/qc2')).status, 204);
    assert.equal((await fetch(`${app.url}/mosaics/qc2`)).status, 404);
    const stored = JSON.parse(await readFile(storeFile, 'utf8')) as { mosaics: { id: string }[] };
    assert.deepEqual(
      stored.mosaics.map((x) => x.id),
      ['qc'],
    );
  });
});

describe('registered mosaics in Redis (materialize.redis set)', () => {
  let dir: string;
  let files: StaticServer;
  let redis: TestRedis;
  let overrides: Record<string, unknown>;
  const apps: TestServer[] = [];

  before(async () => {
    dir = await tempDir('cogmill-registry-redis-');
    files = await startStaticServer(dir);
    // registering a catalogue mosaic reads only the catalogue: no raster is needed
    await writeCatalogue(dir, { scenesPerZone: 8, cols: 4, baseUrl: files.url, writeRasters: false });
    redis = await startRedis();
    overrides = {
      auth: { token: TOKEN },
      sources: { allowedUrlPrefixes: [`${files.url}/`] },
      materialize: { redis: redis.url },
      // set too: Redis wins, the file is never written
      server: { mosaicsFile: path.join(dir, 'registered.json') },
    };
  });
  after(async () => {
    for (const a of apps) await a.stop();
    redis?.stop();
    await files?.stop();
  });

  // the first test is about what a replica restores at start: no refreshing there (0); the second refreshes every second
  const start = async (refreshSeconds = 0) => {
    const server = { ...(overrides.server as object), mosaicsRefreshSeconds: refreshSeconds };
    const a = await startTestServer({ ...overrides, server });
    apps.push(a);
    return a;
  };
  const call = (app: TestServer, method: string, p: string, body?: unknown) =>
    fetch(`${app.url}${p}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
  const body = (id: string) => ({
    id,
    stac: { items: `${files.url}/items.json`, sortby: 'eo:cloud_cover' },
    assets: ['B04', 'B11'],
    crs: 'EPSG:32632',
    resolution: 10,
    composite: 'median',
  });
  const storedIds = async () => (await redis.cli('HKEYS', 'cogmill:mosaics')).split(/\s+/).filter(Boolean).sort();

  test('POST keeps the definition in Redis; a new app instance restores it; DELETE removes only its own', async () => {
    const a = await start();
    const res = await call(a, 'POST', '/mosaics', body('qc'));
    assert.equal(res.status, 201, await res.clone().text());
    assert.deepEqual(await storedIds(), ['qc']);
    const stored = JSON.parse(await redis.cli('HGET', 'cogmill:mosaics', 'qc')) as {
      composite: string;
      assets: string[];
    };
    assert.equal(stored.composite, 'median');
    assert.deepEqual(stored.assets, ['B04', 'B11']);
    await assert.rejects(readFile(path.join(dir, 'registered.json')), /ENOENT/, 'the file is not used');
    await a.stop();

    // a restart, and a second replica on the same Redis
    const b = await start();
    const c = await start();
    const m = (await (await fetch(`${b.url}/mosaics/qc`)).json()) as { composite: string; bands: { name: string }[] };
    assert.equal(m.composite, 'median', 'restored with its definition');
    assert.deepEqual(
      m.bands.map((x) => x.name),
      ['B04', 'B11'],
    );
    assert.equal((await call(c, 'PUT', '/mosaics/other', { ...body('other'), composite: 'first' })).status, 201);
    assert.deepEqual(await storedIds(), ['other', 'qc']);
    // b does not know "other" (it restored before it existed), and deleting qc on b must not drop it from Redis
    assert.equal((await call(b, 'DELETE', '/mosaics/qc')).status, 204);
    assert.deepEqual(await storedIds(), ['other'], 'one HDEL, not a rewrite of the set b knows');
    assert.equal((await fetch(`${b.url}/mosaics/qc`)).status, 404);

    const d = await start();
    const list = (await (await fetch(`${d.url}/mosaics`)).json()) as { mosaics: { id: string; origin: string }[] };
    assert.deepEqual(
      list.mosaics.map((x) => `${x.id}:${x.origin}`),
      ['other:registered'],
    );
  });

  test('replicas that read the registered mosaics again serve what another registered, replaced or removed', async () => {
    const b = await start(1);
    const c = await start(1);
    const got = async (app: TestServer, id: string) => {
      const r = await fetch(`${app.url}/mosaics/${id}`);
      return r.status === 200 ? ((await r.json()) as { composite: string }) : r.status;
    };
    // within a few refreshes (each 1 s), or fail
    const eventually = async (what: string, ok: () => Promise<boolean>) => {
      const deadline = Date.now() + 15_000;
      while (!(await ok())) {
        if (Date.now() > deadline) assert.fail(`${what}: not seen within 15 s`);
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    assert.equal(await got(b, 'shared'), 404);
    assert.equal((await call(c, 'POST', '/mosaics', body('shared'))).status, 201);
    await eventually('a registration on another replica', async () => (await got(b, 'shared')) !== 404);
    assert.equal(((await got(b, 'shared')) as { composite: string }).composite, 'median');
    assert.equal((await call(c, 'PUT', '/mosaics/shared', { ...body('shared'), composite: 'first' })).status, 200);
    await eventually(
      'a replacement',
      async () => ((await got(b, 'shared')) as { composite?: string }).composite === 'first',
    );
    const list = (await (await fetch(`${b.url}/mosaics`)).json()) as { mosaics: { id: string; origin: string }[] };
    assert.ok(list.mosaics.some((m) => m.id === 'shared' && m.origin === 'registered'));
    assert.equal((await call(c, 'DELETE', '/mosaics/shared')).status, 204);
    await eventually('a removal', async () => (await got(b, 'shared')) === 404);
    assert.ok(!(await storedIds()).includes('shared'));
  });

  test('with Redis gone, a registration is refused with an error and nothing is kept', async () => {
    const a = await start();
    redis.stop();
    const res = await call(a, 'POST', '/mosaics', body('late'));
    assert.equal(res.status, 500, await res.clone().text());
    assert.match(((await res.json()) as { message: string }).message, /mosaic late could not be stored/);
    assert.equal((await fetch(`${a.url}/mosaics/late`)).status, 404, 'not kept in memory either');
  });
});
