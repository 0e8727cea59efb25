/**
 * The virtual views over HTTP with a plain client (fetch): range and conditional semantics, sidecar 404s, bad
 * input, the source proxy, the VRT text, and the virtual COG's layout, rendering and cache.
 */
import assert from 'node:assert/strict';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cogLevels } from '../src/materialize/cog.layout.ts';
import { renderCogTile } from '../src/materialize/cog.tiles.ts';
import { gdalMetadataDocument, mosaicBandSummaries } from '../src/materialize/statistics.xml.ts';
import { interleaveTile } from '../src/materialize/tile.encode.ts';
import {
  TILE_DATA_ALIGNMENT_BYTES,
  VirtualCogStore,
  virtualCogFile,
  virtualCogSegments,
} from '../src/materialize/virtual.cog.ts';
import { Engine } from '../src/render/engine.ts';
import type { Mosaic } from '../src/render/mosaic.ts';
import { MiB } from '../src/render/types.ts';
import { startTestServerOpen, type TestServer } from './support/app.ts';
import { fixtureDir, tempDir, writeTenBandSource } from './support/gdal.ts';
import { parseTiff, tiffEntry } from './support/tiff.read.ts';

/** Per IFD of a TIFF/BigTIFF: the tile offsets, byte counts, size and whether it is an overview. */
function readTiff(bytes: Uint8Array) {
  const { bigTiff, ifds } = parseTiff(bytes);
  return {
    big: bigTiff,
    ifds: ifds.map((ifd) => {
      const num = (t: number) => tiffEntry(ifd, t)?.values ?? [];
      const nodata = tiffEntry(ifd, 42113)?.text;
      return {
        width: num(256)[0],
        height: num(257)[0],
        offsets: num(324),
        counts: num(325),
        subfile: num(254)[0] ?? 0,
        nodata: nodata?.replace(/\0$/, ''),
      };
    }),
  };
}

/** Split a multipart/byteranges body into its parts. */
function parseMultipart(body: Uint8Array, contentType: string) {
  const boundary = /boundary=([^;]+)/.exec(contentType)?.[1];
  assert.ok(boundary, contentType);
  const text = Buffer.from(body).toString('latin1');
  const parts: { range: string; type: string; bytes: Uint8Array }[] = [];
  let pos = 0;
  for (;;) {
    const start = text.indexOf(`--${boundary}`, pos);
    assert.ok(start >= 0, 'boundary line');
    const after = start + boundary.length + 2;
    if (text.startsWith('--', after)) break;
    const headEnd = text.indexOf('\r\n\r\n', after);
    const head = text.slice(after + 2, headEnd);
    const range = /Content-Range: bytes (\d+)-(\d+)\/(\d+)/i.exec(head)!;
    const len = Number(range[2]) - Number(range[1]) + 1;
    parts.push({
      range: range[0].slice('Content-Range: '.length),
      type: /Content-Type: (.*)/i.exec(head)![1],
      bytes: body.subarray(headEnd + 4, headEnd + 4 + len),
    });
    pos = headEnd + 4 + len;
    assert.equal(text.slice(pos, pos + 2), '\r\n');
  }
  return parts;
}

const BIG_BOUNDS = [500000, 4000000, 1500000, 5000000] as const;

describe('virtual views over HTTP', () => {
  let server: TestServer;
  let dir = '';
  let tmp = '';
  let url = '';
  const mosaic = (id: string): Mosaic => server.deps.catalog.get(id);
  /** The options the server opens a mosaic's virtual COG with: its band statistics in GDAL_METADATA. */
  const served = async (id: string) => ({
    gdalMetadata: gdalMetadataDocument(await mosaicBandSummaries(server.deps.statistics, mosaic(id))),
  });
  const get = (p: string, headers: Record<string, string> = {}, method = 'GET') =>
    fetch(`${url}${p}`, { method, headers });
  const bytesOf = async (r: Response) => new Uint8Array(await r.arrayBuffer());

  before(async () => {
    dir = await fixtureDir();
    tmp = await tempDir('cogmill-virtual-');
    await copyFile(path.join(dir, 'utm32.tif'), path.join(tmp, 'changing.tif'));
    await writeTenBandSource(path.join(tmp, 'ten.tif'));
    // utm32's grid, grown by 1100 pixels east and south: tiles there touch no source and are sparse
    const probe = new Engine({ roots: [dir] });
    const g = (await probe.openMosaic({ id: 'p', sources: [path.join(dir, 'utm32.tif')] })).grid;
    await probe.close();
    const t = g.transform;
    const sparseBounds = [t[0], t[3] + (g.height + 1100) * t[5], t[0] + (g.width + 1100) * t[1], t[3]];
    const f = (n: string) => path.join(dir, n);
    server = await startTestServerOpen({
      sources: { roots: [dir, tmp] },
      mosaics: [
        { id: 'utm', sources: [f('utm32.tif'), f('utm31.tif')], blockSize: 256 },
        { id: 'utm-mean', sources: [f('utm32.tif'), f('utm31.tif')], composite: 'mean' },
        { id: 'sparse', sources: [f('utm32.tif')], bounds: sparseBounds, blockSize: 256 },
        { id: 'changing', sources: [path.join(tmp, 'changing.tif')] },
        { id: 'big', sources: [path.join(tmp, 'ten.tif')], bounds: [...BIG_BOUNDS], resolution: 10 },
      ],
    });
    url = server.url;
  });
  after(async () => {
    // stop() closes the engine; tmp goes with the process (support/gdal.ts tempDir)
    await server?.stop();
  });

  test('HEAD gives the exact size, Accept-Ranges, a strong ETag and Last-Modified, and renders nothing', async () => {
    const plan = virtualCogFile(mosaic('utm'), await served('utm'));
    const counter = server.deps.metrics.getSingleMetric('cogmill_virtual_cog_tiles_rendered_total');
    const renderedNow = async () => (await counter!.get()).values[0]?.value ?? 0;
    const before = await renderedNow();
    const r = await get('/mosaics/utm.tif', {}, 'HEAD');
    assert.equal(r.status, 200);
    assert.equal(Number(r.headers.get('content-length')), plan.size);
    assert.equal(r.headers.get('accept-ranges'), 'bytes');
    assert.equal(r.headers.get('etag'), plan.etag);
    assert.match(r.headers.get('etag')!, /^"[^"]+"$/);
    assert.equal(r.headers.get('last-modified'), mosaic('utm').lastModified.toUTCString());
    assert.equal(r.headers.get('content-type'), 'image/tiff');
    const big = await get('/mosaics/big.tif', {}, 'HEAD');
    assert.equal(big.status, 200);
    const bigSize = Number(big.headers.get('content-length'));
    assert.ok(bigSize > 4 * 2 ** 30, `the 100,000 x 100,000 x 10 uint16 virtual COG is ${bigSize} bytes`);
    assert.equal(bigSize, virtualCogFile(mosaic('big'), await served('big')).size);
    assert.equal(await renderedNow(), before);
  });

  test('the virtual COG layout: BigTIFF only past 4 GiB, aligned tiles, sparse tiles outside every source', async () => {
    const small = virtualCogFile(mosaic('sparse'), await served('sparse'));
    assert.equal(small.layout.bigTiff, false);
    const header = await bytesOf(await get('/mosaics/sparse.tif', { range: `bytes=0-${small.dataStart - 1}` }));
    assert.equal(header.length, small.dataStart);
    assert.deepEqual([...header.subarray(0, 4)], [0x49, 0x49, 42, 0]);
    assert.match(
      Buffer.from(header.subarray(8, 8 + 43 + 77)).toString('latin1'),
      /^GDAL_STRUCTURAL_METADATA_SIZE=\d{6} bytes\nLAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\nKNOWN_INCOMPATIBLE_EDITION=NO\n /,
    );
    const tiff = readTiff(header);
    const m = mosaic('sparse');
    const levels = cogLevels(m.grid.width, m.grid.height, 256);
    assert.equal(tiff.ifds.length, levels.length);
    assert.equal(tiff.ifds[0].nodata, '0');
    let sparse = 0;
    let present = 0;
    for (const [i, ifd] of tiff.ifds.entries()) {
      assert.equal(ifd.width, levels[i].width);
      assert.equal(ifd.subfile, i === 0 ? 0 : 1);
      for (let k = 0; k < ifd.offsets.length; k++) {
        if (ifd.counts[k] === 0) {
          assert.equal(ifd.offsets[k], 0);
          sparse++;
        } else {
          assert.equal(ifd.counts[k], 256 * 256 * 2);
          assert.equal(ifd.offsets[k] % TILE_DATA_ALIGNMENT_BYTES, 0, 'tile data aligned on 16 KiB');
          present++;
        }
      }
    }
    // level 0: the 700 x 600 source covers tiles 0..2 (x) and 0..2 (y) of 8 x 7; the rest is sparse
    assert.deepEqual(
      tiff.ifds[0].counts.map((c) => (c ? 1 : 0)),
      Array.from({ length: levels[0].tileCount }, (_, k) =>
        k % levels[0].tilesX < 3 && Math.floor(k / levels[0].tilesX) < 3 ? 1 : 0,
      ),
    );
    assert.ok(sparse > 30, `sparse tiles: ${sparse}`);
    assert.equal(small.size, small.dataStart + present * 256 * 256 * 2);
    // the smallest overview comes first in the file, full resolution last
    const first = (i: number) => Math.min(...tiff.ifds[i].offsets.filter((o) => o > 0));
    assert.ok(first(levels.length - 1) < first(1) && first(1) < first(0));
    assert.equal(first(levels.length - 1), small.dataStart);

    const big = virtualCogFile(mosaic('big'), await served('big'));
    assert.equal(big.layout.bigTiff, true);
    assert.equal(mosaic('big').grid.width, 100_000);
    assert.equal(big.present.length, big.layout.tileCount, 'the source covers the whole grid: no sparse tile');
  });

  test('the quick footprint classification marks exactly the tiles the exact per-tile test does', async () => {
    const engine = new Engine({ roots: [dir] });
    try {
      const f = (n: string) => path.join(dir, n);
      const mosaics = [
        mosaic('utm'),
        mosaic('sparse'),
        await engine.openMosaic({
          id: 'merc',
          sources: [f('utm32.tif'), f('float.tif'), f('rgb.tif')],
          bands: [1],
          dtype: 'float32',
          crs: 3857,
          blockSize: 256,
        }),
        await engine.openMosaic({
          id: 'geo',
          sources: [f('utm31.tif'), f('utm32.tif')],
          crs: 4326,
          blockSize: 256,
          resampling: 'cubic',
        }),
      ];
      for (const m of mosaics) {
        const quick = virtualCogFile(m);
        const exact = virtualCogFile(m, {}, { exhaustive: true });
        assert.deepEqual(quick.byteCounts, exact.byteCounts, m.id);
        assert.equal(quick.etag, exact.etag);
      }
    } finally {
      await engine.close();
    }
  });

  test('planning a two-zone mosaic decides almost every edge tile on the footprint outlines, as the exact test would', async () => {
    const engine = new Engine({ roots: [dir] });
    try {
      const f = (n: string) => path.join(dir, n);
      for (const blockSize of [64, 128]) {
        // utm31 is reprojected into zone 32: its outline is a tilted quadrilateral, and the band between its inner
        // and outer boxes holds tiles with and without data
        const m = await engine.openMosaic({
          id: `two-${blockSize}`,
          sources: [f('utm32.tif'), f('utm31.tif')],
          blockSize,
        });
        const quick = virtualCogFile(m);
        const exact = virtualCogFile(m, {}, { exhaustive: true });
        assert.deepEqual(quick.byteCounts, exact.byteCounts);
        assert.equal(exact.exactTileTests, quick.layout.tileCount);
        assert.ok(quick.present.length < quick.layout.tileCount, 'some tiles are sparse');
        assert.ok(
          quick.exactTileTests * 50 < quick.layout.tileCount,
          `${quick.exactTileTests} of ${quick.layout.tileCount} tiles needed the exact test`,
        );
      }
    } finally {
      await engine.close();
    }
  });

  test('Range: single, suffix, open-ended and multi-range answers agree with the full body', async () => {
    const plan = virtualCogFile(mosaic('utm'), await served('utm'));
    const full = await get('/mosaics/utm.tif');
    assert.equal(full.status, 200);
    const all = await bytesOf(full);
    assert.equal(all.length, plan.size);

    const r1 = await get('/mosaics/utm.tif', { range: 'bytes=100-299' });
    assert.equal(r1.status, 206);
    assert.equal(r1.headers.get('content-range'), `bytes 100-299/${plan.size}`);
    assert.equal(r1.headers.get('content-length'), '200');
    assert.deepEqual(await bytesOf(r1), all.subarray(100, 300));

    const r2 = await get('/mosaics/utm.tif', { range: 'bytes=-1000' });
    assert.equal(r2.headers.get('content-range'), `bytes ${plan.size - 1000}-${plan.size - 1}/${plan.size}`);
    assert.deepEqual(await bytesOf(r2), all.subarray(plan.size - 1000));

    const r3 = await get('/mosaics/utm.tif', { range: `bytes=${plan.size - 10}-` });
    assert.deepEqual(await bytesOf(r3), all.subarray(plan.size - 10));

    const a = plan.dataStart + 5;
    const r4 = await get('/mosaics/utm.tif', { range: `bytes=0-15, ${a}-${a + 99}` });
    assert.equal(r4.status, 206);
    const ct = r4.headers.get('content-type')!;
    assert.match(ct, /^multipart\/byteranges; boundary=/);
    const body = await bytesOf(r4);
    assert.equal(Number(r4.headers.get('content-length')), body.length);
    const parts = parseMultipart(body, ct);
    assert.deepEqual(
      parts.map((p) => [p.range, p.type]),
      [
        [`bytes 0-15/${plan.size}`, 'image/tiff'],
        [`bytes ${a}-${a + 99}/${plan.size}`, 'image/tiff'],
      ],
    );
    assert.deepEqual(parts[0].bytes, all.subarray(0, 16));
    assert.deepEqual(parts[1].bytes, all.subarray(a, a + 100));

    const r5 = await get('/mosaics/utm.tif', { range: 'bytes=0-99,50-149' });
    assert.equal(r5.status, 206, 'overlapping ranges are coalesced into one part');
    assert.equal(r5.headers.get('content-range'), `bytes 0-149/${plan.size}`);
    assert.deepEqual(await bytesOf(r5), all.subarray(0, 150));
  });

  test('a bulk read renders the tiles that follow it into the cache; a small read does not', async () => {
    const engine = new Engine({ roots: [dir] });
    try {
      const m = await engine.openMosaic({ id: 'u', sources: [path.join(dir, 'utm32.tif')], blockSize: 256 });
      const store = new VirtualCogStore(engine, { cacheBytes: 64 * 1024 * 1024 });
      const cog = store.open(m);
      const raw = cog.file.layout.rawTileBytes;
      const tiles = cog.file.present.length;
      assert.ok(tiles >= 12, `${tiles} tiles`);
      // one tile's bytes: nothing ahead
      await cog.read(cog.file.dataStart, raw);
      assert.equal(store.stats.prefetched, 0);
      // four tiles' bytes (tiles 1-4): the next four are rendered ahead (readConcurrency 2 -> max(2, 4) tiles)
      const start = cog.file.dataStart + raw;
      await cog.read(start, 4 * raw);
      assert.equal(store.stats.prefetched, 4);
      const rendered = store.stats.tilesRendered;
      const hits = store.stats.cacheHits;
      await new Promise((r) => setTimeout(r, 50));
      const next = await cog.read(start + 4 * raw, 4 * raw);
      assert.equal(store.stats.tilesRendered - rendered, 4, 'the four tiles ahead, and no render for the read');
      assert.ok(store.stats.cacheHits - hits + store.stats.sharedRenders >= 4, 'the read found them ready');
      // the bytes are the tiles' own
      const freshStore = new VirtualCogStore(engine, { cacheBytes: 64 * 1024 * 1024 });
      assert.deepEqual(next, await freshStore.open(m).read(start + 4 * raw, 4 * raw));
      // workers busy (requests waiting): no read-ahead
      const busy = new VirtualCogStore(engine, { cacheBytes: 64 * 1024 * 1024, idle: () => false });
      await busy.open(m).read(start, 4 * raw);
      assert.equal(busy.stats.prefetched, 0);
      assert.equal(busy.stats.tilesRendered, 4);
      await store.settled();
      await freshStore.settled();
    } finally {
      await engine.close();
    }
  });

  test('a range renders only the tiles it touches; concurrent reads of a tile render it once', async () => {
    const engine = new Engine({ roots: [dir] });
    try {
      const m = await engine.openMosaic({ id: 'u', sources: [path.join(dir, 'utm32.tif')], blockSize: 256 });
      const store = new VirtualCogStore(engine, { cacheBytes: 300 * 1024 });
      const cog = store.open(m);
      assert.equal(store.open(m), cog, 'one plan per mosaic version');
      const raw = cog.file.layout.rawTileBytes;
      assert.equal(raw, 128 * 1024);
      await cog.read(0, cog.file.dataStart);
      assert.equal(store.stats.tilesRendered, 0, 'the header renders nothing');
      const start = cog.file.dataStart + 3 * raw + 10;
      const [x, y] = await Promise.all([cog.read(start, 100), cog.read(start, 100)]);
      assert.deepEqual(x, y);
      assert.equal(store.stats.tilesRendered, 1);
      assert.equal(store.stats.sharedRenders, 1);
      // the bytes are the shared tile renderer's pixels, interleaved
      const seg = virtualCogSegments(cog.file, start, 100);
      assert.equal(seg.length, 1);
      const s0 = seg[0];
      assert.ok(s0.kind === 'tile');
      const px = await renderCogTile(engine, m, cog.file.levels, s0.level, s0.tx, s0.ty, {
        ...cog.file.tileOptions,
        blockTiles: false,
      });
      const expected = interleaveTile(px.bands, m.dtype, m.bandCount, 256);
      assert.deepEqual(x, new Uint8Array(expected.buffer, expected.byteOffset, expected.byteLength).subarray(10, 110));
      await cog.read(start, 100);
      assert.equal(store.stats.cacheHits, 1);
      // a range over the end of one tile and the start of the next renders both, and nothing else
      await cog.read(cog.file.dataStart + 5 * raw - 8, 16);
      assert.equal(store.stats.tilesRendered, 3);
      await cog.read(cog.file.dataStart + 7 * raw, raw);
      assert.equal(store.stats.tilesRendered, 4);
      assert.ok(store.cachedBytes <= 300 * 1024, `cache holds ${store.cachedBytes} bytes`);
      // a stream of the whole file equals the reads
      const chunks: Uint8Array[] = [];
      for await (const c of cog.stream(0, cog.size)) chunks.push(c);
      const streamed = Buffer.concat(chunks);
      assert.equal(streamed.length, cog.size);
      assert.deepEqual(new Uint8Array(streamed.subarray(start, start + 100)), x);
    } finally {
      await engine.close();
    }
  });

  test('large bodies stream with the same bytes; a full GET of a huge virtual COG is refused with 413', async () => {
    const plan = virtualCogFile(mosaic('big'), await served('big'));
    const start = plan.dataStart + 20 * plan.layout.rawTileBytes + 123;
    const len = 40 * MiB;
    const r = await get('/mosaics/big.tif', { range: `bytes=${start}-${start + len - 1}` });
    assert.equal(r.status, 206);
    const body = await bytesOf(r);
    assert.equal(body.length, len);
    const again = await bytesOf(
      await get('/mosaics/big.tif', { range: `bytes=${start + len - 1000}-${start + len - 1}` }),
    );
    assert.deepEqual(again, body.subarray(len - 1000));

    for (const headers of [{}, { range: 'bytes=nonsense' }, { range: 'bytes=0-' }] as Record<string, string>[]) {
      const refused = await get('/mosaics/big.tif', headers);
      assert.equal(refused.status, 413, JSON.stringify(headers));
      const json = (await refused.json()) as { code: string; message: string };
      assert.equal(json.code, 'too-large');
      assert.match(json.message, /byte ranges/);
    }
  });

  test('conditional requests: If-None-Match, If-Range, If-Match', async () => {
    const etag = (await get('/mosaics/utm.tif', {}, 'HEAD')).headers.get('etag')!;
    const size = virtualCogFile(mosaic('utm'), await served('utm')).size;
    const nm = await get('/mosaics/utm.tif', { 'if-none-match': etag, range: 'bytes=0-9' });
    assert.equal(nm.status, 304);
    assert.equal((await nm.arrayBuffer()).byteLength, 0);
    assert.equal(nm.headers.get('etag'), etag);
    assert.equal((await get('/mosaics/utm.tif', { 'if-none-match': '"other"', range: 'bytes=0-9' })).status, 206);
    const ir = await get('/mosaics/utm.tif', { 'if-range': etag, range: 'bytes=0-9' });
    assert.equal(ir.status, 206);
    const stale = await get('/mosaics/utm.tif', { 'if-range': '"stale"', range: 'bytes=0-9' });
    assert.equal(stale.status, 200, 'a failed If-Range means the full representation');
    assert.equal((await stale.arrayBuffer()).byteLength, size);
    assert.equal((await get('/mosaics/utm.tif', { 'if-match': '"stale"', range: 'bytes=0-9' })).status, 412);
    const vrtTag = (await get('/mosaics/utm.vrt', {}, 'HEAD')).headers.get('etag')!;
    assert.equal((await get('/mosaics/utm.vrt', { 'if-none-match': vrtTag })).status, 304);
  });

  test('bad input gets the right 4xx, never a 500', async () => {
    const size = virtualCogFile(mosaic('utm'), await served('utm')).size;
    for (const range of [
      `bytes=${size}-`,
      `bytes=${size + 10}-${size + 20}`,
      'bytes=-0',
      `bytes=${Array.from({ length: 300 }, (_, i) => `${i * 2}-${i * 2}`).join(',')}`,
    ]) {
      const r = await get('/mosaics/utm.tif', { range });
      assert.equal(r.status, 416, range.slice(0, 30));
      assert.equal(r.headers.get('content-range'), `bytes */${size}`);
      assert.equal(((await r.json()) as { code: string }).code, 'range-not-satisfiable');
    }
    for (const range of ['bytes=abc', 'bytes=9-1', 'pages=1-2', 'bytes 0-1']) {
      const r = await get('/mosaics/utm.tif', { range });
      assert.equal(r.status, 200, `malformed Range "${range}" is ignored`);
      assert.equal((await r.arrayBuffer()).byteLength, size);
    }
    const cases: [string, number][] = [
      ['/mosaics/nope.tif', 404],
      ['/mosaics/nope.vrt', 404],
      ['/mosaics/nope/sources/0.tif', 404],
      ['/mosaics/utm/sources/2.tif', 404],
      ['/mosaics/utm/sources/999999999.tif', 404],
      ['/mosaics/utm/sources/01.tif', 404],
      ['/mosaics/utm/sources/-1.tif', 404],
      ['/mosaics/utm/sources/x.tif', 404],
      ['/mosaics/utm.vrt?sources=elsewhere', 400],
      ['/mosaics/a.b.tif', 404],
    ];
    for (const [p, status] of cases) {
      for (const method of ['GET', 'HEAD']) {
        const r = await get(p, { range: 'bytes=0-10' }, method);
        assert.equal(r.status, status, `${method} ${p}`);
        if (method === 'GET') assert.match(await r.text(), /"code"/);
      }
    }
    const idx = (await (await get('/mosaics/utm/sources/2.tif')).json()) as { message: string };
    assert.match(idx.message, /2 source\(s\), numbered 0 to 1/);
  });

  test('GDAL sidecar probes and directory listings get a fast 404 without touching a mosaic', async () => {
    const probes = [
      '/mosaics/utm.tif.ovr',
      '/mosaics/utm.tif.aux.xml',
      '/mosaics/utm.aux.xml',
      '/mosaics/utm.tif.msk',
      '/mosaics/utm.TIF.OVR',
      '/mosaics/utm.vrt.aux.xml',
      '/mosaics/utm.vrt.ovr',
      '/mosaics/utm.tfw',
      '/mosaics/unknown.tif.aux.xml',
      '/mosaics/utm/sources/0.tif.aux.xml',
      '/mosaics/utm/sources/0.tif.ovr',
      '/mosaics/',
      '/mosaics/utm/',
      '/mosaics/utm/sources/',
    ];
    // "fast" as work not done: no source read and no tile rendered for any of them
    const counter = server.deps.metrics.getSingleMetric('cogmill_virtual_cog_tiles_rendered_total');
    const renderedNow = async () => (await counter!.get()).values[0]?.value ?? 0;
    const reads = () => JSON.stringify(server.deps.engine.sourceStats());
    const readsBefore = reads();
    const renderedBefore = await renderedNow();
    const mark = server.logs.length;
    for (const p of probes) {
      for (const method of ['HEAD', 'GET']) {
        const r = await get(p, {}, method);
        assert.equal(r.status, 404, `${method} ${p}`);
        if (method === 'GET') assert.match(await r.text(), /sidecar|not listable/);
        else await r.arrayBuffer();
      }
    }
    assert.equal(reads(), readsBefore, 'no source was read');
    assert.equal(await renderedNow(), renderedBefore, 'nothing was rendered');
    const lines = server.logs.slice(mark).filter((l) => l.msg === 'request');
    assert.equal(lines.length, probes.length * 2);
    for (const l of lines) assert.equal(l.sourceRequests, 0, `${l.method} ${l.path}`);
  });

  test('the source proxy serves each source byte for byte, with its own ETag', async () => {
    const file = new Uint8Array(await readFile(path.join(dir, 'utm31.tif')));
    const head = await get('/mosaics/utm/sources/1.tif', {}, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers.get('content-length')), file.length);
    assert.equal(head.headers.get('etag'), mosaic('utm').sources[1].raster.info.etag);
    assert.equal(head.headers.get('accept-ranges'), 'bytes');
    const r = await get('/mosaics/utm/sources/1.tif', { range: 'bytes=1000-1999' });
    assert.equal(r.status, 206);
    assert.equal(r.headers.get('content-range'), `bytes 1000-1999/${file.length}`);
    assert.deepEqual(await bytesOf(r), file.subarray(1000, 2000));
    const m = await get('/mosaics/utm/sources/1.tif', { range: 'bytes=0-3,-4' });
    const parts = parseMultipart(await bytesOf(m), m.headers.get('content-type')!);
    assert.deepEqual(parts[0].bytes, file.subarray(0, 4));
    assert.deepEqual(parts[1].bytes, file.subarray(file.length - 4));
    assert.deepEqual(await bytesOf(await get('/mosaics/utm/sources/1.tif')), file);
    assert.equal((await get('/mosaics/utm/sources/1.tif', { range: `bytes=${file.length}-` })).status, 416);
  });

  test('the ETag changes when a source changes or the definition differs', async () => {
    // the mosaic was opened at start-up; change its file before its first request (which re-checks the sources)
    const before = virtualCogFile(mosaic('changing'), await served('changing')).etag;
    const beforeSource = mosaic('changing').sources[0].raster.info.etag;
    const file = path.join(tmp, 'changing.tif');
    const bytes = await readFile(file);
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(file, bytes);
    const head = await get('/mosaics/changing.tif', {}, 'HEAD');
    assert.notEqual(head.headers.get('etag'), before);
    assert.equal(head.headers.get('etag'), virtualCogFile(mosaic('changing'), await served('changing')).etag);
    const src = await get('/mosaics/changing/sources/0.tif', { range: 'bytes=0-3' });
    assert.equal(src.status, 206);
    assert.notEqual(src.headers.get('etag'), beforeSource);
    // a different definition over the same sources: another ETag
    assert.notEqual(virtualCogFile(mosaic('utm'), await served('utm')).etag, virtualCogFile(mosaic('utm-mean')).etag);
    assert.notEqual(
      virtualCogFile(mosaic('utm'), await served('utm')).etag,
      virtualCogFile(mosaic('utm'), { overviewResampling: 'nearest' }).etag,
    );
  });

  test('the VRT: native grid, proxy or direct sources, compositing order and its documented limits', async () => {
    const m = mosaic('utm');
    const r = await get('/mosaics/utm.vrt');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type')!, /xml/);
    const xml = await r.text();
    assert.equal(Number(r.headers.get('content-length')), Buffer.byteLength(xml));
    assert.match(xml, new RegExp(`^<VRTDataset rasterXSize="${m.grid.width}" rasterYSize="${m.grid.height}">`));
    assert.match(xml, /<SRS>EPSG:32632<\/SRS>/);
    assert.ok(xml.includes(`<GeoTransform>${m.grid.transform.join(',')}</GeoTransform>`));
    // first valid wins: source 1 (utm31, warped) is listed before source 0 so source 0 is painted last
    const i0 = xml.indexOf(`/vsicurl/${url}/mosaics/utm/sources/0.tif`);
    const i1 = xml.indexOf(`/vsicurl/${url}/mosaics/utm/sources/1.tif`);
    assert.ok(i0 > 0 && i1 > 0 && i1 < i0, 'first valid wins: source 0 painted last');
    assert.match(xml, /VRTWarpedDataset/);
    assert.match(xml, /<NODATA>0<\/NODATA>/);
    assert.match(xml, /<UseMaskBand>true<\/UseMaskBand>/);
    assert.match(xml, /later sources on top/);

    const direct = await (await get('/mosaics/utm.vrt?sources=direct')).text();
    assert.ok(direct.includes(`<SourceFilename relativeToVRT="0">${path.join(dir, 'utm32.tif')}</SourceFilename>`));
    assert.ok(!direct.includes('/sources/0.tif'));
    const dtag = (await get('/mosaics/utm.vrt?sources=direct', {}, 'HEAD')).headers.get('etag');
    assert.notEqual(dtag, r.headers.get('etag'));

    const mean = await (await get('/mosaics/utm-mean.vrt')).text();
    assert.match(mean, /Compositing "mean" cannot be expressed in a VRT; this VRT shows the first valid pixel/);

    const part = await get('/mosaics/utm.vrt', { range: 'bytes=0-10' });
    assert.equal(part.status, 206);
    assert.equal(await part.text(), xml.slice(0, 11));
  });
});
