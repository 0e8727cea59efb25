/**
 * Hostile sources and requests: decompression bombs, lying byte counts, broken files in a folder, garbage
 * GDAL_NODATA, impossible GeoKey directories, forwarded headers from anyone, unbounded statistics, lax tile
 * coordinates, folder and NUL destinations, temporary files left by a killed writer. Every hostile file is made
 * here, byte by byte (test/support/tiff.hostile.ts).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { Engine } from '../src/render/engine.ts';
import { RenderError } from '../src/render/errors.ts';
import { Raster } from '../src/render/raster.ts';
import { startTestServer, type TestServer } from './support/app.ts';
import { sh } from './support/gdal.ts';
import { SourceMemory } from './support/memory.source.ts';
import {
  COMPRESSION,
  deflateBomb,
  hostileTiff,
  lzwBomb,
  lzwEncode,
  noiseTiff,
  packbitsBomb,
  zstdBomb,
} from './support/tiff.hostile.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;
const TOKEN = 'a-valid-token-0123456789abcdef';
const CLI = path.join(import.meta.dirname, '..', 'src', 'cli.ts');

/** A 256 x 256 uint16 tile: a gradient from `base` (never 0, the nodata value). */
function u16Tile(base: number): Uint8Array {
  const a = new Uint16Array(256 * 256);
  for (let i = 0; i < a.length; i++) a[i] = base + (i % 256) + (i >> 8);
  return new Uint8Array(a.buffer);
}

/** A 512 x 512 uint16 deflate GeoTIFF of four gradient tiles, `tiles` replacing some of them. */
function sceneTiff(origin: [number, number], replace: Record<number, Uint8Array> = {}, extra = {}): Uint8Array {
  const tiles = [0, 1, 2, 3].map((i) => replace[i] ?? new Uint8Array(zlib.deflateSync(u16Tile(1000 + i * 1000))));
  return hostileTiff({
    width: 512,
    height: 512,
    tileSize: 256,
    bitsPerSample: 16,
    compression: COMPRESSION.deflate,
    tiles,
    nodata: '0',
    origin,
    ...extra,
  });
}

const WEST: [number, number] = [300000, 5000000];
const EAST: [number, number] = [305120, 5000000];

function caches() {
  return new Engine().caches;
}

async function isCorrupt(p: Promise<unknown>, ...patterns: RegExp[]): Promise<RenderError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof RenderError, `expected a RenderError, got ${(e as Error)?.stack ?? e}`);
    assert.equal(e.kind, 'corrupt', e.message);
    for (const re of patterns) assert.match(e.message, re);
    return e;
  }
  assert.fail('the read succeeded');
}

let dir = '';
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cogmill-hostile-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('decompression bombs and lying byte counts fail their block with a typed error', () => {
  const bombs: [string, number, () => Promise<Uint8Array> | Uint8Array][] = [
    ['deflate', COMPRESSION.deflate, () => deflateBomb(64 * MiB)],
    ['zstd', COMPRESSION.zstd, () => zstdBomb(64 * MiB)],
    ['lzw', COMPRESSION.lzw, () => lzwBomb(64 * MiB)],
    ['packbits', COMPRESSION.packbits, () => packbitsBomb(64 * MiB)],
  ];
  for (const [name, compression, make] of bombs) {
    test(`a ${name} tile that inflates to 64 MiB (declared: 64 KiB)`, async () => {
      const bomb = await make();
      const honest = (t: Uint8Array) =>
        compression === COMPRESSION.deflate
          ? new Uint8Array(zlib.deflateSync(t))
          : compression === COMPRESSION.zstd
            ? new Uint8Array((zlib as unknown as { zstdCompressSync: (b: Uint8Array) => Buffer }).zstdCompressSync(t))
            : compression === COMPRESSION.lzw
              ? lzwEncode(t)
              : t; // packbits: one literal run per 128 bytes is below; raw bytes are not packbits
      const second = u16Tile(5000);
      const tiles =
        compression === COMPRESSION.packbits
          ? [bomb, packbitsLiteral(second), packbitsLiteral(second), packbitsLiteral(second)]
          : [bomb, honest(second), honest(second), honest(second)];
      const bytes = hostileTiff({ width: 512, height: 512, tileSize: 256, bitsPerSample: 16, compression, tiles });
      const r = await Raster.open(new SourceMemory(`mem://bomb-${name}.tif`, bytes), caches());
      await isCorrupt(r.readWindow(0, 0, 0, 10, 10, [0]), new RegExp(`bomb-${name}\\.tif`), /block 0\b/, /131072/);
      // the neighbouring block still reads, with its real values
      const w = await r.readWindow(0, 256, 0, 4, 1, [0]);
      assert.deepEqual([...w.bands[0]], [5000, 5001, 5002, 5003]);
    });
  }

  test('a TileByteCounts entry of 0xFFFFFFFF fails that block only', async () => {
    const bytes = sceneTiff(WEST, {}, { byteCounts: { 1: 0xffffffff } });
    const r = await Raster.open(new SourceMemory('mem://liar.tif', bytes), caches());
    await isCorrupt(r.readWindow(0, 300, 10, 5, 5, [0]), /liar\.tif/, /block 1\b/);
    const w = await r.readWindow(0, 0, 0, 3, 1, [0]);
    assert.deepEqual([...w.bands[0]], [1000, 1001, 1002]);
  });

  test('a tile offset past the end of the file fails that block only', async () => {
    const bytes = sceneTiff(WEST, {}, { offsets: { 2: 0x7fff0000 } });
    const r = await Raster.open(new SourceMemory('mem://far.tif', bytes), caches());
    await isCorrupt(r.readWindow(0, 0, 300, 5, 5, [0]), /far\.tif/, /block 2\b/);
    const w = await r.readWindow(0, 256, 256, 2, 1, [0]);
    assert.deepEqual([...w.bands[0]], [4000, 4001]);
  });

  test('honest LZW and PackBits tiles decode to what GDAL reads', async () => {
    const t = u16Tile(300);
    for (const [name, compression, payload] of [
      ['lzw', COMPRESSION.lzw, lzwEncode(t)],
      ['packbits', COMPRESSION.packbits, packbitsLiteral(t)],
    ] as const) {
      const bytes = hostileTiff({
        width: 256,
        height: 256,
        tileSize: 256,
        bitsPerSample: 16,
        compression,
        tiles: [payload],
      });
      const p = path.join(dir, `honest-${name}.tif`);
      await writeFile(p, bytes);
      const stats = await sh('gdalinfo', ['-stats', '-json', p]);
      const band = JSON.parse(stats).bands[0];
      const r = await Raster.open(new SourceMemory(`mem://${name}.tif`, bytes), caches());
      const w = await r.readWindow(0, 0, 0, 256, 256, [0]);
      let min = Infinity;
      let max = -Infinity;
      let sum = 0;
      for (const v of w.bands[0]) {
        min = Math.min(min, v);
        max = Math.max(max, v);
        sum += v;
      }
      assert.equal(min, band.minimum, name);
      assert.equal(max, band.maximum, name);
      assert.ok(Math.abs(sum / w.bands[0].length - band.mean) < 1e-6, name);
    }
  });
});

/** PackBits literal runs of 128 bytes: an honest, uncompressed-size encoding. */
function packbitsLiteral(t: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < t.length; i += 128) {
    const run = t.subarray(i, Math.min(t.length, i + 128));
    out.push(run.length - 1, ...run);
  }
  return new Uint8Array(out);
}

describe('metadata read as GDAL reads it', () => {
  test('a garbage GDAL_NODATA is read as GDAL reads it, and `cogmill info` says so', async () => {
    for (const text of ['garbage', '12abc', ' 7 ', '-3.5e1xyz', '0x10', '1,5', '- 3']) {
      const p = path.join(dir, `nodata-${text.trim().replace(/[^a-z0-9.-]/gi, '_')}.tif`);
      await writeFile(p, sceneTiff(WEST, {}, { nodata: text }));
      const gdal = JSON.parse(await sh('gdalinfo', ['-json', p])).bands[0].noDataValue;
      const r = await Raster.open(new SourceMemory(`mem://${path.basename(p)}`, await readBytes(p)), caches());
      assert.equal(r.info.nodata, gdal, `GDAL_NODATA "${text}": GDAL reads ${gdal}`);
    }
    const p = path.join(dir, 'nodata-garbage.tif');
    const { stdout } = await run(process.execPath, [CLI, 'info', p]);
    const info = JSON.parse(stdout);
    assert.equal(info.nodata, 0);
    assert.match((info.warnings ?? []).join('\n'), /GDAL_NODATA "garbage".*read as 0.*as GDAL/);
  });

  test('a GeoKey directory that claims 65,535 keys gets a clear error', async () => {
    const keys = [1, 1, 0, 65535];
    for (let i = 0; i < 65535; i++) keys.push(40000 + (i % 1000), 34737, 1, 0);
    const bytes = sceneTiff(WEST, {}, { geoKeys: keys });
    await isCorrupt(
      Raster.open(new SourceMemory('mem://geokeys.tif', bytes), caches()),
      /geokeys\.tif/,
      /GeoKey directory/,
      /65535/,
    );
    const short = sceneTiff(WEST, {}, { geoKeys: [1, 1, 0, 65535, 1024, 0, 1, 1] });
    const e = await isCorrupt(Raster.open(new SourceMemory('mem://short.tif', short), caches()), /GeoKey directory/);
    assert.doesNotMatch(e.message, /undefined/);
  });
});

async function readBytes(p: string): Promise<Uint8Array> {
  const { readFile } = await import('node:fs/promises');
  return new Uint8Array(await readFile(p));
}

function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels}`) && !l.startsWith('#'));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

describe('one bad block or file costs its own pixels, not the mosaic', () => {
  let s: TestServer;
  let data = '';
  let folder = '';
  before(async () => {
    data = path.join(dir, 'mixed');
    folder = path.join(dir, 'folder');
    await mkdir(data);
    await mkdir(folder);
    await writeFile(path.join(data, 'a-good.tif'), sceneTiff(WEST));
    await writeFile(path.join(data, 'b-liar.tif'), sceneTiff(EAST, {}, { byteCounts: { 0: 0xffffffff } }));
    await writeFile(path.join(data, 'c-bomb.tif'), sceneTiff([305120, 4994880], { 1: await deflateBomb(32 * MiB) }));
    await writeFile(path.join(folder, 'a-good.tif'), sceneTiff(WEST));
    await writeFile(path.join(folder, 'b-text.tif'), 'this is not a TIFF\n');
    await writeFile(path.join(folder, 'c-truncated.tif'), sceneTiff(EAST).subarray(0, 100));
    s = await startTestServer({
      sources: { roots: [dir] },
      mosaics: [
        { id: 'mixed', sources: [data] },
        { id: 'folder', sources: [folder] },
      ],
    });
  });
  after(async () => {
    await s.stop();
  });

  test('the automatic stretch and the statistics skip a bad block; its pixels are empty; the error is counted', async () => {
    const preview = await fetch(`${s.url}/mosaics/mixed/preview.png?max_size=256`);
    assert.equal(preview.status, 200, await preview.clone().text());
    const stats = await fetch(`${s.url}/mosaics/mixed/statistics`);
    assert.equal(stats.status, 200);
    const body = (await stats.json()) as { bands: { min: number; max: number; count: number }[] };
    assert.equal(body.bands[0].min, 1000);
    assert.ok(body.bands[0].max > 4000);
    // a point in the bad block of b-liar.tif is empty, one in its good block has its value
    const m = (await (await fetch(`${s.url}/mosaics/mixed`)).json()) as { transform: number[] };
    const [lon, lat] = await lonLat(m.transform, 512 + 10, 10);
    const bad = (await (await fetch(`${s.url}/mosaics/mixed/point?lon=${lon}&lat=${lat}`)).json()) as {
      valid: boolean;
    };
    assert.equal(bad.valid, false);
    const [lon2, lat2] = await lonLat(m.transform, 512 + 256 + 3, 5);
    const good = (await (await fetch(`${s.url}/mosaics/mixed/point?lon=${lon2}&lat=${lat2}`)).json()) as {
      values: { value: number }[];
    };
    assert.equal(good.values[0].value, 2000 + 3 + 5);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert.ok(metric(metrics, 'cogmill_source_block_errors_total', '{mosaic="mixed"}') >= 2, metrics);
    const logged = s.logs.filter((l) => l.msg === 'source block unreadable');
    assert.ok(logged.some((l) => /b-liar\.tif/.test(String(l.source)) && l.block === 0));
    assert.ok(logged.some((l) => /c-bomb\.tif/.test(String(l.source)) && l.block === 1));
  });

  test('a folder with broken files serves the rest and lists every broken file', async () => {
    const r = await fetch(`${s.url}/mosaics/folder`);
    assert.equal(r.status, 200);
    const m = (await r.json()) as {
      sources: unknown[];
      brokenSources: { index: number; name: string; reason: string }[];
    };
    assert.equal(m.sources.length, 1);
    assert.deepEqual(
      m.brokenSources.map((b) => b.name),
      ['b-text.tif', 'c-truncated.tif'],
    );
    for (const b of m.brokenSources) assert.ok(b.reason.length > 10, b.reason);
    assert.doesNotMatch(JSON.stringify(m.brokenSources), new RegExp(dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    const ready = await fetch(`${s.url}/readyz`);
    assert.equal(ready.status, 200);
    const rb = (await ready.json()) as { status: string; mosaics: { id: string; status: string }[] };
    assert.equal(rb.status, 'degraded');
    assert.equal(rb.mosaics.find((x) => x.id === 'folder')?.status, 'degraded');
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    assert.equal(metric(metrics, 'cogmill_mosaic_broken_sources', '{mosaic="folder"}'), 2);
    const warned = s.logs.filter((l) => l.msg === 'source could not be opened' && l.mosaic === 'folder');
    assert.equal(warned.length, 2);
  });

  test('onSourceError: fail keeps the strict behaviour, and the error names the file without its folder', async () => {
    const strict = await startTestServer({
      sources: { roots: [dir], onSourceError: 'fail' },
      mosaics: [{ id: 'folder', sources: [folder] }],
    });
    try {
      const r = await fetch(`${strict.url}/mosaics/folder`);
      assert.equal(r.status, 422);
      const text = await r.text();
      // the files are opened in parallel: whichever broken one fails first is the one named, with its own reason
      const body = JSON.parse(text) as { code: string; message: string };
      assert.equal(body.code, 'corrupt');
      assert.match(
        body.message,
        /^mosaic folder could not be opened: (b-text\.tif is not a TIFF \(bad byte-order mark\)|c-truncated\.tif: truncated IFD)$/,
      );
      assert.ok(!text.includes(folder), `the answer shows a server path: ${text}`);
      assert.equal((await fetch(`${strict.url}/readyz`)).status, 503);
      const ready = await (await fetch(`${strict.url}/readyz`)).text();
      assert.ok(!ready.includes(folder), `readyz shows a server path: ${ready}`);
    } finally {
      await strict.stop();
    }
  });
});

/** lon/lat of the centre of pixel (col, row) of a UTM 32N grid. */
async function lonLat(gt: number[], col: number, row: number): Promise<[number, number]> {
  const { createTransformer } = await import('../src/render/transform.ts');
  const { crsFromEpsg } = await import('../src/render/crs.ts');
  const x = gt[0] + (col + 0.5) * gt[1];
  const y = gt[3] + (row + 0.5) * gt[5];
  const [lon, lat] = createTransformer(crsFromEpsg(32632), crsFromEpsg(4326)).point(x, y);
  return [lon, lat];
}

describe('requests', () => {
  let s: TestServer;
  let out = '';
  before(async () => {
    const data = path.join(dir, 'plain');
    out = path.join(dir, 'out');
    await mkdir(data, { recursive: true });
    await mkdir(path.join(out, 'existing.tif'), { recursive: true });
    await writeFile(path.join(data, 'a.tif'), sceneTiff(WEST));
    s = await startTestServer({
      sources: { roots: [dir] },
      mosaics: [{ id: 'm', sources: [path.join(data, 'a.tif')] }],
      auth: { token: TOKEN },
      materialize: { allowedDestinations: [out] },
    });
  });
  after(async () => {
    await s.stop();
  });

  test('forwarded headers are ignored unless server.trustProxy; answers that depend on headers say Vary', async () => {
    const r = await fetch(`${s.url}/mosaics/m/tilejson.json`, {
      headers: { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https' },
    });
    const text = await r.text();
    assert.ok(!text.includes('evil.example'), text);
    assert.match(r.headers.get('vary') ?? '', /\bHost\b/i);
    const proxied = await startTestServer({
      server: { trustProxy: true },
      sources: { roots: [dir] },
      mosaics: [{ id: 'm', sources: [path.join(dir, 'plain', 'a.tif')] }],
    });
    try {
      const p = await fetch(`${proxied.url}/mosaics/m/tilejson.json`, {
        headers: { 'x-forwarded-host': 'maps.example.org', 'x-forwarded-proto': 'https' },
      });
      assert.match(await p.text(), /https:\/\/maps\.example\.org\/mosaics\/m\/tiles\//);
      assert.match(p.headers.get('vary') ?? '', /X-Forwarded-Host/i);
      for (const doc of ['WMTSCapabilities.xml', '', '.vrt'].map((d) =>
        d === '' ? '/mosaics/m' : d.startsWith('.') ? `/mosaics/m${d}` : `/mosaics/m/${d}`,
      )) {
        const d = await fetch(`${proxied.url}${doc}`, { headers: { 'x-forwarded-host': 'maps.example.org' } });
        assert.match(d.headers.get('vary') ?? '', /X-Forwarded-Host/i, doc);
      }
    } finally {
      await proxied.stop();
    }
  });

  test('tile coordinates are decimal integers only', async () => {
    const ok = await fetch(`${s.url}/mosaics/m/tiles/1/1/0.png`);
    assert.notEqual(ok.status, 400);
    for (const [z, x, y] of [
      ['1e0', '1', '0'],
      ['0x1', '1', '0'],
      ['+1', '1', '0'],
      ['%201', '1', '0'],
      ['1', '1.0', '0'],
      ['1', '1', '00x0'],
      ['1', ' 1', '0'],
    ]) {
      const r = await fetch(`${s.url}/mosaics/m/tiles/${z}/${x}/${y}.png`);
      assert.equal(r.status, 400, `${z}/${x}/${y} answered ${r.status}`);
    }
  });

  test('a folder as destination is refused before a job starts; a NUL gets the right message', async () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const dest = path.join(out, 'existing.tif');
    const r = await fetch(`${s.url}/materialize?mosaic=m&dest=${encodeURIComponent(dest)}`, { headers: auth });
    assert.equal(r.status, 400, await r.clone().text());
    assert.match(await r.text(), /folder/);
    const jobs = (await (await fetch(`${s.url}/jobs`, { headers: auth })).json()) as { jobs: unknown[] };
    assert.equal(jobs.jobs.length, 0);
    const nul = await fetch(`${s.url}/materialize?mosaic=m&dest=${encodeURIComponent(`${out}/a\0b.tif`)}`, {
      headers: auth,
    });
    assert.equal(nul.status, 400);
    const msg = await nul.text();
    assert.match(msg, /control character/);
    assert.doesNotMatch(msg, /"\."/);
  });

  test('statistics: bands x bins are capped', async () => {
    const samples = 65535;
    const many = path.join(dir, 'many');
    await mkdir(many, { recursive: true });
    const tile = new Uint8Array(16 * 16 * samples);
    for (let i = 0; i < tile.length; i++) tile[i] = 1 + (i % 200);
    await writeFile(
      path.join(many, 'bands.tif'),
      hostileTiff({
        width: 16,
        height: 16,
        tileSize: 16,
        samples,
        compression: COMPRESSION.deflate,
        tiles: [new Uint8Array(zlib.deflateSync(tile))],
      }),
    );
    const m = await startTestServer({ sources: { roots: [dir] }, mosaics: [{ id: 'b', sources: [many] }] });
    try {
      for (const q of ['bins=1000', '', 'bins=300']) {
        const r = await fetch(`${m.url}/mosaics/b/statistics?${q}`);
        assert.equal(r.status, 413, `${q}: ${r.status}`);
        assert.match(await r.text(), /bands/);
      }
      const one = await fetch(`${m.url}/mosaics/b/statistics?bins=1000&bands=7`);
      assert.equal(one.status, 200);
      const body = (await one.json()) as { bands: { histogram: { counts: number[] } }[] };
      assert.equal(body.bands[0].histogram.counts.length, 1000);
    } finally {
      await m.stop();
    }
  });
});

describe('command line', () => {
  test('--help of every command prints its usage', async () => {
    for (const cmd of ['info', 'serve', 'config', 'materialize']) {
      const { stdout, stderr } = await run(process.execPath, [CLI, cmd, '--help']);
      assert.match(stdout, /usage/i, cmd);
      assert.doesNotMatch(stderr, /TypeError|at /, cmd);
    }
  });

  test('a materialisation over a decompression bomb fails naming the source and block, and writes nothing', async () => {
    const src = path.join(dir, 'bombed');
    const dst = path.join(dir, 'bombed-out');
    await mkdir(src, { recursive: true });
    await mkdir(dst, { recursive: true });
    await writeFile(path.join(src, 'bombed.tif'), sceneTiff(WEST, { 3: await deflateBomb(64 * MiB) }));
    const out = path.join(dst, 'bombed.tif');
    const r = await run(process.execPath, [CLI, 'materialize', path.join(src, 'bombed.tif'), '--out', out], {
      timeout: 240_000,
    }).then(
      () => ({ ok: true, stderr: '' }),
      (e: { stderr: string }) => ({ ok: false, stderr: e.stderr }),
    );
    assert.equal(r.ok, false, 'the export succeeded over a bomb');
    assert.match(r.stderr, /bombed\.tif/);
    assert.match(r.stderr, /block 3\b/);
    assert.match(r.stderr, /131072 bytes the block declares/);
    assert.deepEqual(await readdir(dst), [], 'nothing is left at the destination');
  });

  test('a partial file left by a killed writer is removed by the next run', async () => {
    const src = path.join(dir, 'big');
    const dst = path.join(dir, 'dest');
    await mkdir(src, { recursive: true });
    await mkdir(dst, { recursive: true });
    // 8192 x 4096 uint16 of noise: slow enough to be killed while it writes
    await writeFile(path.join(src, 'noise.tif'), noiseTiff(8192, 4096, 7));
    const out = path.join(dst, 'noise.tif');
    const partials = async () => (await readdir(dst)).filter((f) => f.endsWith('.partial'));
    const child: ChildProcess = spawn(
      process.execPath,
      [CLI, 'materialize', path.join(src, 'noise.tif'), '--out', out, '--workers', '1'],
      { stdio: 'ignore' },
    );
    const exited = once(child, 'exit');
    let killed = false;
    // poll the folder until the partial file has bytes, for as long as the writer runs
    while (!killed && child.exitCode === null && child.signalCode === null) {
      const p = await partials();
      // (the writer may rename it away between the listing and the stat)
      const bytes = p.length > 0 ? ((await stat(path.join(dst, p[0])).catch(() => undefined))?.size ?? 0) : 0;
      if (bytes > 0) {
        child.kill('SIGKILL');
        killed = true;
      } else await new Promise((r) => setTimeout(r, 10));
    }
    await exited;
    assert.ok(killed, 'the writer finished before it could be killed; make the source larger');
    assert.equal((await partials()).length, 1, 'the killed writer left its partial file');
    await run(process.execPath, [CLI, 'materialize', path.join(src, 'noise.tif'), '--out', out, '--workers', '1'], {
      timeout: 240_000,
    });
    assert.deepEqual(await partials(), [], 'the next run removed the stale partial');
    assert.ok((await stat(out)).size > 0);
  });
});
