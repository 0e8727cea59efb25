/**
 * Tile images rendered in worker threads (server.tileWorkers) against the same images rendered on the main thread
 * (server.tileWorkers: 0), both over HTTP from the real app: the same bytes for every format and style; a hostile
 * source (decompression bomb, lying byte count) gives the same error in a worker and leaves the worker serving;
 * a cancelled request aborts the worker's render (its source reads are aborted).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as zlib from 'node:zlib';
import { warmUpTiles } from '../src/cli.main.ts';
import { tilesForBounds } from '../src/render/tilematrix.ts';
import { startTestServer, type TestServer } from './support/app.ts';
import { fixtureDir } from './support/gdal.ts';
import { startStaticServer } from './support/http.server.ts';
import { COMPRESSION, deflateBomb, hostileTiff } from './support/tiff.hostile.ts';

const MiB = 1024 * 1024;

interface Reply {
  readonly status: number;
  readonly type: string | null;
  readonly body: Buffer;
}

async function get(url: string): Promise<Reply> {
  const r = await fetch(url);
  return { status: r.status, type: r.headers.get('content-type'), body: Buffer.from(await r.arrayBuffer()) };
}

/** Tiles over a mosaic at zooms `zooms`, up to `perZoom` per zoom spread over its tile range. */
async function tileUrls(base: string, id: string, zooms: readonly number[], perZoom: number): Promise<string[]> {
  const m = (await (await fetch(`${base}/mosaics/${id}`)).json()) as {
    boundsWgs84: [number, number, number, number];
  };
  const out: string[] = [];
  for (const z of zooms) {
    const r = tilesForBounds(m.boundsWgs84, z);
    const all: string[] = [];
    for (let y = r.minY; y <= r.maxY; y++) for (let x = r.minX; x <= r.maxX; x++) all.push(`${z}/${x}/${y}`);
    const step = Math.max(1, Math.floor(all.length / perZoom));
    for (let i = 0; i < all.length && out.length < perZoom * (zooms.indexOf(z) + 1); i += step) out.push(all[i]);
  }
  return out;
}

/** A 256 x 256 uint16 gradient from `base` (never 0, the nodata value). */
function u16Tile(base: number): Uint8Array {
  const a = new Uint16Array(256 * 256);
  for (let i = 0; i < a.length; i++) a[i] = base + (i % 256) + (i >> 8);
  return new Uint8Array(a.buffer);
}

function metric(text: string, name: string, labels: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

let fixtures = '';
let dir = '';
before(async () => {
  fixtures = await fixtureDir();
  dir = await mkdtemp(path.join(tmpdir(), 'cogmill-tile-pool-'));
  // a 512 x 512 uint16 scene whose block 0 is a deflate bomb (64 MiB for 128 KiB declared) and whose block 1 claims
  // 4 GiB of bytes; blocks 2 and 3 are honest
  const honest = (base: number) => new Uint8Array(zlib.deflateSync(u16Tile(base)));
  await writeFile(
    path.join(dir, 'bomb.tif'),
    hostileTiff({
      width: 512,
      height: 512,
      tileSize: 256,
      bitsPerSample: 16,
      compression: COMPRESSION.deflate,
      tiles: [await deflateBomb(64 * MiB), honest(2000), honest(3000), honest(4000)],
      byteCounts: { 1: 0xffffffff },
      nodata: '0',
      origin: [300000, 5000000],
    }),
  );
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('tiles from worker threads', () => {
  let inThread: TestServer;
  let pooled: TestServer;
  const mosaics = () => [
    { id: 'utm', sources: [path.join(fixtures, 'utm32.tif'), path.join(fixtures, 'utm31.tif')] },
    { id: 'rgb', sources: [path.join(fixtures, 'rgb.tif')] },
  ];
  before(async () => {
    inThread = await startTestServer({
      sources: { roots: [fixtures] },
      server: { tileWorkers: 0 },
      mosaics: mosaics(),
    });
    pooled = await startTestServer({ sources: { roots: [fixtures] }, server: { tileWorkers: 2 }, mosaics: mosaics() });
  });
  after(async () => {
    await inThread?.stop();
    await pooled?.stop();
  });

  test('warm() starts every worker and waits for it to load (cogmill serve does so before it listens)', async () => {
    const pool = pooled.deps.tilePool!;
    assert.equal(pool.stats.workersStarted, 0, 'workers start on first use');
    await pool.warm();
    assert.equal(pool.stats.workersStarted, 2);
    await pool.warm();
    assert.equal(pool.stats.workersStarted, 2, 'started once');
    assert.deepEqual(pool.inFlight(), [0, 0]);
  });

  test('warm-up before listening: four tiles of each mosaic drawn on every worker', async () => {
    const pool = pooled.deps.tilePool!;
    const mosaicsNow = pooled.deps.catalog.list().flatMap((e) => (e.mosaic ? [e.mosaic] : []));
    const requests = warmUpTiles(mosaicsNow);
    assert.equal(requests.length, 4 * mosaicsNow.length);
    // at the mosaic's finest zoom and the one above, over the mosaic
    for (const r of requests) assert.ok(r.inside && r.grid.width === 256 && r.ranges, JSON.stringify(r.grid));
    const before = { ...pool.stats };
    await pool.warmUp(requests, 60_000);
    assert.equal(pool.stats.completed - before.completed, requests.length * pool.size);
    assert.equal(pool.stats.failed - before.failed, 0);
    assert.deepEqual(pool.inFlight(), [0, 0]);
  });

  test('the request summary line counts the worker’s source reads', async () => {
    const [t] = await tileUrls(pooled.url, 'utm', [11], 1);
    const before = pooled.logs.length;
    const r = await get(`${pooled.url}/mosaics/utm/tiles/${t}.png?rescale=1,4001`);
    assert.equal(r.status, 200);
    const line = pooled.logs.slice(before).find((l) => l.msg === 'request' && String(l.path).includes('/tiles/'));
    assert.ok(line, 'a summary line');
    assert.equal(line.cache, 'miss');
    assert.ok((line.sourceRequests as number) > 0, JSON.stringify(line));
    assert.ok((line.sourceBytes as number) > 1000, JSON.stringify(line));
    assert.equal(typeof line.render, 'number', 'the worker’s render time is on the line');
  });

  test('every format and style: the same bytes as the main thread renders, and the workers rendered them', async () => {
    assert.equal(inThread.deps.tilePool, undefined, 'tileWorkers: 0 renders on the main thread');
    const pool = pooled.deps.tilePool!;
    assert.equal(pool.size, 2);
    const cases: string[] = [];
    for (const t of await tileUrls(inThread.url, 'utm', [8, 10, 12, 13], 4)) {
      cases.push(
        `/mosaics/utm/tiles/${t}.png`, // the mosaic's percentile stretch (resolved on the main thread)
        `/mosaics/utm/tiles/${t}.webp?rescale=0,4000&colormap=viridis`,
        `/mosaics/utm/tiles/${t}.jpg?rescale=0,4000`,
        `/mosaics/utm/tiles/${t}.png?expression=b1*2-100&rescale=0,8000&resampling=bilinear`,
      );
    }
    for (const t of await tileUrls(inThread.url, 'rgb', [11, 13], 3)) cases.push(`/mosaics/rgb/tiles/${t}.png`);
    cases.push('/mosaics/utm/tiles/3/0/0.png', '/mosaics/utm/tiles/WorldCRS84Quad/9/530/130.png?rescale=0,4000');
    cases.push('/mosaics/utm/preview.png?max_size=300&rescale=0,4000');
    const before = { ...pool.stats };
    let drawn = 0;
    for (const u of cases) {
      const [a, b] = await Promise.all([get(`${inThread.url}${u}`), get(`${pooled.url}${u}`)]);
      assert.equal(b.status, a.status, u);
      assert.equal(a.status, 200, `${u}: ${a.body.toString().slice(0, 200)}`);
      assert.equal(b.type, a.type, u);
      assert.ok(a.body.equals(b.body), `${u}: ${a.body.length} bytes in-thread, ${b.body.length} from a worker`);
      if (a.body.length > 1000) drawn++;
    }
    assert.ok(drawn >= cases.length / 2, `most of the images have content (${drawn} of ${cases.length})`);
    assert.equal(pool.stats.started - before.started, cases.length, 'every image went to a worker');
    assert.equal(pool.stats.completed - before.completed, cases.length);
    assert.equal(pool.stats.failed - before.failed, 0);
    assert.equal(pool.stats.workersStarted, 2, 'both workers took work');
    assert.equal(pool.stats.workersLost, 0);
  });

  test('the virtual COG: tiles rendered on the workers, the same file as the main thread renders', async () => {
    const pool = pooled.deps.tilePool!;
    for (const id of ['utm', 'rgb']) {
      const before = { ...pool.stats };
      const [a, b] = await Promise.all([
        get(`${inThread.url}/mosaics/${id}.tif`),
        get(`${pooled.url}/mosaics/${id}.tif`),
      ]);
      assert.equal(a.status, 200);
      assert.equal(b.status, 200);
      assert.ok(a.body.length > 100_000, `${id}: ${a.body.length} bytes`);
      assert.ok(a.body.equals(b.body), `${id}: the virtual COG differs when its tiles come from the workers`);
      const tiles = pool.stats.completed - before.completed;
      assert.ok(tiles > 0, `${id}: ${tiles} tiles rendered on the workers`);
      assert.equal(pool.stats.failed - before.failed, 0);
    }
  });
});

describe('requests beyond what the workers hold', () => {
  test('a worker holds two renders; the rest wait their turn in order, a cancelled one leaves the queue', async () => {
    const server = await startTestServer({
      sources: { roots: [fixtures] },
      server: { tileWorkers: 1 },
      cache: { tileBytes: 1 },
      mosaics: [{ id: 'utm', sources: [path.join(fixtures, 'utm32.tif'), path.join(fixtures, 'utm31.tif')] }],
    });
    try {
      const pool = server.deps.tilePool!;
      await pool.warm();
      const urls = (await tileUrls(server.url, 'utm', [11, 12, 13], 3)).map(
        (t) => `${server.url}/mosaics/utm/tiles/${t}.png?rescale=0,4000`,
      );
      assert.ok(urls.length >= 8, `${urls.length} tiles`);
      let most = 0;
      let watching = true;
      const watch = (async () => {
        while (watching) {
          most = Math.max(most, pool.inFlight()[0]);
          await new Promise((r) => setImmediate(r));
        }
      })();
      // one request given up while it waits: it must not hold a place in the queue or on the worker
      const gone = new AbortController();
      const abandoned = fetch(urls[0], { signal: gone.signal }).catch((e: Error) => e.name);
      const replies = Promise.all(urls.slice(1).map((u) => get(u)));
      gone.abort();
      const all = await replies;
      watching = false;
      await watch;
      assert.equal(await abandoned, 'AbortError');
      assert.deepEqual(
        all.map((r) => r.status),
        all.map(() => 200),
      );
      assert.ok(most >= 1 && most <= 2, `the worker held ${most} renders at once`);
      assert.equal(pool.stats.failed, 0);
      assert.deepEqual(pool.inFlight(), [0]);
    } finally {
      await server.stop();
    }
  });
});

describe('a hostile source in a worker', () => {
  test('a decompression bomb and a lying byte count: the same error status and message as in-thread; the worker keeps serving', async () => {
    const servers: TestServer[] = [];
    try {
      for (const tileWorkers of [0, 1]) {
        servers.push(
          await startTestServer({
            sources: { roots: [dir, fixtures], onSourceError: 'fail' },
            server: { tileWorkers },
            mosaics: [
              { id: 'bomb', sources: [path.join(dir, 'bomb.tif')] },
              { id: 'utm', sources: [path.join(fixtures, 'utm32.tif')] },
            ],
          }),
        );
      }
      const [inThread, pooled] = servers;
      // the scene's four blocks: the bomb (0), the liar (1), two honest ones
      const w = (x0: number, y0: number) =>
        `/mosaics/bomb/bbox/${300000 + x0 * 10},${5000000 - (y0 + 256) * 10},${300000 + (x0 + 256) * 10},${5000000 - y0 * 10}.png?crs=EPSG:32632&width=64&height=64&rescale=0,5000`;
      for (const [u, re] of [
        [w(0, 0), /bomb\.tif.*block 0|block 0.*bomb\.tif/],
        [w(256, 0), /bomb\.tif.*block 1|block 1.*bomb\.tif/],
      ] as const) {
        const [a, b] = await Promise.all([get(`${inThread.url}${u}`), get(`${pooled.url}${u}`)]);
        assert.equal(a.status, 422, `${u}: ${a.body.toString()}`);
        assert.equal(b.status, a.status, b.body.toString());
        const ea = JSON.parse(a.body.toString()) as { code: string; message: string };
        const eb = JSON.parse(b.body.toString()) as { code: string; message: string };
        assert.equal(eb.code, ea.code);
        assert.equal(eb.message, ea.message);
        assert.match(eb.message, re);
        assert.doesNotMatch(eb.message, new RegExp(dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 'no server path');
      }
      // the same worker goes on: an honest block of the same file and another mosaic
      const good = [w(0, 256), `/mosaics/utm/preview.png?max_size=128&rescale=0,4000`];
      for (const u of good) {
        const [a, b] = await Promise.all([get(`${inThread.url}${u}`), get(`${pooled.url}${u}`)]);
        assert.equal(b.status, 200, b.body.toString());
        assert.ok(a.body.equals(b.body), u);
      }
      const stats = pooled.deps.tilePool!.stats;
      assert.equal(stats.workersStarted, 1);
      assert.equal(stats.workersLost, 0);
      assert.equal(stats.failed, 2);
      assert.equal(stats.completed, 2);
    } finally {
      for (const s of servers) await s.stop();
    }
  });

  test('with onSourceError: skip the bad blocks are counted and logged in the main process', async () => {
    const s = await startTestServer({
      sources: { roots: [dir] },
      server: { tileWorkers: 1 },
      mosaics: [{ id: 'bomb', sources: [path.join(dir, 'bomb.tif')] }],
    });
    try {
      const r = await get(
        `${s.url}/mosaics/bomb/bbox/300000,4994880,305120,5000000.png?crs=EPSG:32632&width=64&height=64&rescale=0,5000`,
      );
      assert.equal(r.status, 200, r.body.toString());
      const metrics = await (await fetch(`${s.url}/metrics`)).text();
      assert.equal(metric(metrics, 'cogmill_source_block_errors_total', '{mosaic="bomb"}'), 2, metrics);
      const logged = s.logs.filter((l) => l.msg === 'source block unreadable');
      assert.deepEqual(logged.map((l) => l.block).sort(), [0, 1]);
      assert.equal(s.deps.tilePool!.stats.completed, 1);
    } finally {
      await s.stop();
    }
  });
});

describe('cancelling a tile rendered in a worker', () => {
  test('the client goes away: the worker aborts the render (its source reads are aborted) and nothing completes', async () => {
    const web = await startStaticServer(fixtures);
    const s = await startTestServer({
      server: { tileWorkers: 1 },
      mosaics: [{ id: 'w', sources: [`${web.url}/utm32.tif`] }],
    });
    try {
      const pool = s.deps.tilePool!;
      // a first tile opens the mosaic in the worker
      const [first, second] = await tileUrls(s.url, 'w', [12], 2);
      assert.equal((await get(`${s.url}/mosaics/w/tiles/${first}.png?rescale=0,4000`)).status, 200);
      assert.equal(pool.stats.completed, 1);
      // from now on every source read waits: the next tile's render hangs in the worker on its first read
      const reads = web.requests.length;
      web.hold();
      const client = new AbortController();
      const pending = fetch(`${s.url}/mosaics/w/tiles/${second}.png?rescale=0,3000`, { signal: client.signal }).catch(
        (e: Error) => e,
      );
      await web.waitForRequests(reads + 1);
      assert.equal(pool.inFlight()[0], 1, 'the worker is rendering it');
      client.abort();
      assert.equal(((await pending) as Error).name, 'AbortError');
      const held = web.requests.length - reads;
      // the worker's render is cancelled, not left running: its reads are aborted by cogmill itself
      await web.waitForAborts(held);
      while (pool.inFlight()[0] !== 0) await new Promise((r) => setTimeout(r, 20));
      assert.equal(pool.stats.aborted, 1, JSON.stringify(pool.stats));
      assert.equal(pool.stats.completed, 1, 'the cancelled render did not complete');
      web.release();
      assert.equal(web.requests.length - reads, held, 'no source read after the cancel');
      // the worker serves the next request
      assert.equal((await get(`${s.url}/mosaics/w/tiles/${second}.png?rescale=0,3000`)).status, 200);
      assert.equal(pool.stats.completed, 2);
      assert.equal(pool.stats.workersLost, 0);
    } finally {
      web.release();
      await s.stop();
      await web.stop();
    }
  });
});
