/** Raster reading: request counts, caching, bad input, and a fuzz run over mutated TIFFs. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { Engine } from '../src/render/engine.ts';
import { CogmillError, RenderError, SourceError } from '../src/render/errors.ts';
import { Raster } from '../src/render/raster.ts';
import { SourceFile } from '../src/render/source.file.ts';
import { SourceHttp } from '../src/render/source.http.ts';
import { fixtureDir, PYTHON, sh, tempDir } from './support/gdal.ts';
import { startStaticServer } from './support/http.server.ts';
import { SourceMemory, SourceRecording } from './support/memory.source.ts';

const run = promisify(execFile);

function freshCaches() {
  return new Engine().caches;
}

/** Find an IFD entry of the first IFD of a classic little-endian TIFF. */
function findEntry(bytes: Uint8Array, tag: number): number {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const ifd = dv.getUint32(4, true);
  const n = dv.getUint16(ifd, true);
  for (let i = 0; i < n; i++) {
    const e = ifd + 2 + i * 12;
    if (dv.getUint16(e, true) === tag) return e;
  }
  throw new Error(`tag ${tag} not found`);
}

describe('raster reading', () => {
  let dir = '';
  // every file source a test opens, closed at the end (no descriptor left to the garbage collector)
  const opened: SourceFile[] = [];
  const fileSource = (p: string) => {
    const s = new SourceFile(p);
    opened.push(s);
    return s;
  };
  before(async () => {
    dir = await fixtureDir();
  });
  after(async () => {
    await Promise.all(opened.map((s) => s.close()));
  });

  test('opening a COG costs at most 2 requests, one tile costs 1, a cached tile 0', async () => {
    const rec = new SourceRecording(fileSource(path.join(dir, 'utm32.tif')));
    const r = await Raster.open(rec, freshCaches());
    assert.ok(rec.reads.length <= 2, `open took ${rec.reads.length} requests`);
    assert.equal(r.info.width, 700);
    assert.equal(r.info.height, 600);
    assert.equal(r.info.dtype, 'uint16');
    assert.equal(r.info.nodata, 0);
    assert.equal(r.info.crs.epsg, 32632);
    assert.deepEqual(
      r.info.levels.map((l) => [l.width, l.height]),
      [
        [700, 600],
        [350, 300],
        [175, 150],
      ],
    );
    rec.reset();
    await r.readWindow(0, 300, 300, 10, 10, [0]);
    assert.equal(rec.reads.length, 1, 'one tile, one request');
    rec.reset();
    await r.readWindow(0, 300, 300, 10, 10, [0]);
    assert.equal(rec.reads.length, 0, 'cached');
    // a window over 4 tiles of the full level: adjacent tiles merged into few requests
    rec.reset();
    await r.readWindow(0, 0, 0, 512, 512, [0]);
    assert.ok(rec.reads.length <= 2, `4 tiles took ${rec.reads.length} requests`);
  });

  test('values read by window equal GDAL', async () => {
    const r = await Raster.open(fileSource(path.join(dir, 'rgb.tif')), freshCaches());
    const win = await r.readWindow(0, 100, 200, 40, 30, [0, 1, 2]);
    const out = await sh(PYTHON, [
      '-c',
      `from osgeo import gdal; ds=gdal.Open('${path.join(dir, 'rgb.tif')}'); import sys; sys.stdout.write(ds.ReadRaster(100,200,40,30).hex())`,
    ]);
    const ref = Buffer.from(out, 'hex');
    for (let b = 0; b < 3; b++) for (let i = 0; i < 1200; i++) assert.equal(win.bands[b][i], ref[b * 1200 + i]);
  });

  test("a window that is one whole block is the decoded block itself (no copy), with GDAL's values", async () => {
    const file = path.join(dir, 'utm32.tif');
    const r = await Raster.open(fileSource(file), freshCaches());
    const { blockWidth: bw, blockHeight: bh } = r.info.levels[0];
    assert.ok(2 * bw <= r.info.width && 2 * bh <= r.info.height, 'the fixture has a whole inner block');
    const a = await r.readWindow(0, bw, bh, bw, bh, [0]);
    const again = await r.readWindow(0, bw, bh, bw, bh, [0]);
    assert.equal(again.bands[0].buffer, a.bands[0].buffer, 'the cached block, not a copy');
    const part = await r.readWindow(0, bw, bh, bw - 1, bh, [0]);
    assert.notEqual(part.bands[0].buffer, a.bands[0].buffer, 'a part of a block is copied');
    const out = await sh(PYTHON, [
      '-c',
      `from osgeo import gdal; import sys; ds=gdal.Open('${file}'); sys.stdout.write(ds.ReadRaster(${bw},${bh},${bw},${bh}).hex())`,
    ]);
    const ref = Buffer.from(out, 'hex');
    const refValues = new Uint16Array(ref.buffer, ref.byteOffset, ref.byteLength / 2);
    assert.equal(a.bands[0].length, bw * bh);
    let nonzero = 0;
    for (let i = 0; i < bw * bh; i++) {
      assert.equal(a.bands[0][i], refValues[i], `pixel ${i}`);
      if (refValues[i] !== 0) nonzero++;
    }
    assert.ok(nonzero > 0, 'the block holds data');
    for (let y = 0; y < bh; y++)
      for (let x = 0; x < bw - 1; x++) assert.equal(part.bands[0][y * (bw - 1) + x], refValues[y * bw + x]);
  });

  test("a whole block read keeps its predictor applied until its samples are read, then has GDAL's values", async () => {
    const file = path.join(dir, 'utm32.tif');
    const r = await Raster.open(fileSource(file), freshCaches());
    const { blockWidth: bw, blockHeight: bh } = r.info.levels[0];
    const out = await sh(PYTHON, [
      '-c',
      `from osgeo import gdal; import sys; ds=gdal.Open('${file}'); sys.stdout.write(ds.ReadRaster(${bw},${bh},${bw},${bh}).hex())`,
    ]);
    const ref = Buffer.from(out, 'hex');
    const refValues = new Uint16Array(ref.buffer, ref.byteOffset, ref.byteLength / 2);
    // the predictor applied to GDAL's values: each sample minus the one before it in its row (16-bit wrap)
    const differenced = new Uint16Array(bw * bh);
    for (let y = 0; y < bh; y++)
      for (let x = 0; x < bw; x++) {
        const i = y * bw + x;
        differenced[i] = x === 0 ? refValues[i] : (refValues[i] - refValues[i - 1]) & 0xffff;
      }
    const asValues = (b: Uint8Array) => new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);

    const block = await r.readBlock(0, 1, 1);
    assert.ok(block, 'an inner block with data');
    assert.equal(block.predictor, 2);
    const predicted = block.predicted;
    assert.ok(predicted, 'the predicted bytes are there before the samples are read');
    assert.deepEqual(asValues(predicted), differenced);
    assert.deepEqual(asValues(block.samples), refValues, "the samples are GDAL's values");
    // undone in place: the predicted bytes are gone (they now hold the samples)
    assert.equal(block.predicted, undefined);
    assert.equal(block.samples.buffer, predicted.buffer, 'no copy was made');

    const kept = await r.readBlock(0, 1, 1);
    assert.ok(kept);
    kept.keepPredicted();
    assert.deepEqual(asValues(kept.samples), refValues);
    assert.ok(kept.predicted, 'kept past the first read of the samples');
    assert.deepEqual(asValues(kept.predicted), differenced);
  });
  test('a source that changed under us is re-opened, never mixed', async () => {
    const tmp = await tempDir();
    const p = path.join(tmp, 'a.tif');
    await writeFile(p, await readFile(path.join(dir, 'utm32.tif')));
    const engine = new Engine({ roots: [tmp] });
    const m = await engine.openMosaic({ id: 'x', sources: [p] });
    const g = { ...m.grid, width: 64, height: 64 };
    const before = await engine.render(m, g);
    const etag0 = m.etag;
    await new Promise((r) => setTimeout(r, 20));
    await writeFile(p, await readFile(path.join(dir, 'utm31.tif')));
    engine.caches.tiles.clear();
    const afterPx = await engine.render(m, { ...m.grid, width: 64, height: 64 });
    assert.notEqual(m.etag, etag0, 'mosaic etag changes with its source');
    assert.notDeepEqual(afterPx.bands[0], before.bands[0]);
    await engine.close();
  });

  describe('bad input gives typed errors', () => {
    test('truncated file', async () => {
      const all = await readFile(path.join(dir, 'utm32.tif'));
      const src = new SourceMemory(
        'mem://trunc.tif',
        new Uint8Array(all.subarray(0, Math.floor(all.byteLength * 0.6))),
      );
      const r = await Raster.open(src, freshCaches());
      await assert.rejects(
        r.readWindow(0, 0, 400, 700, 200, [0]),
        (e: unknown) => e instanceof RenderError && e.kind === 'corrupt' && /truncated|past the end/.test(e.message),
      );
    });

    test('an IFD that claims 10^9 x 10^9 pixels', async () => {
      const bytes = new Uint8Array(await readFile(path.join(dir, 'utm32_striped.tif')));
      const dv = new DataView(bytes.buffer);
      for (const tag of [256, 257]) {
        const e = findEntry(bytes, tag);
        dv.setUint16(e + 2, 4, true);
        dv.setUint32(e + 4, 1, true);
        dv.setUint32(e + 8, 1e9, true);
      }
      await assert.rejects(Raster.open(new SourceMemory('mem://huge.tif', bytes), freshCaches()), (e: unknown) => {
        return (
          e instanceof RenderError && (e.kind === 'too-large' || e.kind === 'corrupt') && /1000000000/.test(e.message)
        );
      });
    });

    test('an unsupported compression', async () => {
      const bytes = new Uint8Array(await readFile(path.join(dir, 'utm32_striped.tif')));
      const e = findEntry(bytes, 259);
      new DataView(bytes.buffer).setUint16(e + 8, 34712, true);
      await assert.rejects(Raster.open(new SourceMemory('mem://j2k.tif', bytes), freshCaches()), (err: unknown) => {
        return err instanceof RenderError && err.kind === 'unsupported' && /compression/.test(err.message);
      });
    });

    test('an unknown (user-defined) CRS', async () => {
      const tmp = await tempDir();
      const p = path.join(tmp, 'custom.tif');
      await sh('gdal_translate', [
        '-q',
        '-a_srs',
        '+proj=tmerc +lat_0=0 +lon_0=7.3 +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m',
        path.join(dir, 'utm32.tif'),
        p,
      ]);
      await assert.rejects(Raster.open(fileSource(p), freshCaches()), (err: unknown) => {
        return err instanceof RenderError && err.kind === 'unsupported' && /EPSG/.test(err.message);
      });
    });

    test('a source that times out', async () => {
      const server = await startStaticServer(dir);
      // the server never answers: only the source's own timeout can end the reads
      server.hold();
      try {
        const src = new SourceHttp(`${server.url}/utm32.tif`, { timeoutMs: 200, retries: 1, retryBaseMs: 10 });
        await assert.rejects(
          Raster.open(src, freshCaches()),
          (err: unknown) => err instanceof SourceError && err.kind === 'timeout',
        );
        // counted where the attempts are made: on a loaded machine the client may give up on an attempt before the
        // server (in this same process) has read it
        assert.equal(src.stats.requests, 2, 'the first attempt and one retry');
        assert.ok(server.requests.length <= 2, `${server.requests.length} requests reached the server`);
        await server.waitForAborts(server.requests.length);
        assert.equal(server.requests.filter((r) => r.answered).length, 0);
      } finally {
        await server.stop();
      }
    });

    test('paths outside the roots and symlinks out are refused', async () => {
      const tmp = await tempDir();
      const engine = new Engine({ roots: [tmp] });
      await assert.rejects(
        engine.openRaster(path.join(tmp, '..', path.basename(dir), 'utm32.tif')),
        (e: unknown) => e instanceof SourceError && e.kind === 'forbidden',
      );
      await sh('ln', ['-s', path.join(dir, 'utm32.tif'), path.join(tmp, 'link.tif')]);
      await assert.rejects(
        engine.openRaster(path.join(tmp, 'link.tif')),
        (e: unknown) => e instanceof SourceError && e.kind === 'forbidden',
      );
      await assert.rejects(
        engine.openRaster('http://169.254.169.254/latest/meta-data'),
        (e: unknown) => e instanceof SourceError && e.kind === 'forbidden',
      );
    });
  });

  test('fuzz: 600 mutated TIFFs each end in success or a typed error, quickly', async () => {
    const seeds = [
      await readFile(path.join(dir, 'utm32.tif')),
      await readFile(path.join(dir, 'planar_mask.tif')),
      await readFile(path.join(dir, 'utm32_striped.tif')),
    ];
    let state = 12345;
    const rand = () => {
      state = (state * 1103515245 + 12345) & 0x7fffffff;
      return state / 0x7fffffff;
    };
    let typed = 0;
    for (let i = 0; i < 600; i++) {
      const base = seeds[i % seeds.length];
      const bytes = new Uint8Array(base.subarray(0, Math.min(base.byteLength, 200_000)));
      const flips = 1 + Math.floor(rand() * 8);
      for (let k = 0; k < flips; k++) {
        // mostly in the header and IFDs, sometimes anywhere
        const at = rand() < 0.8 ? Math.floor(rand() * 2048) : Math.floor(rand() * bytes.byteLength);
        bytes[at] = rand() < 0.5 ? Math.floor(rand() * 256) : bytes[at] ^ (1 << Math.floor(rand() * 8));
      }
      // a hang would hold this test until the runner's timeout fails it
      try {
        const r = await Raster.open(new SourceMemory(`mem://fuzz${i}.tif`, bytes), freshCaches());
        const lvl = r.info.levels[0];
        await r.readWindow(0, 0, 0, Math.min(lvl.width, 300), Math.min(lvl.height, 300), [0]);
      } catch (e) {
        assert.ok(e instanceof CogmillError, `case ${i}: untyped error ${(e as Error)?.stack ?? e}`);
        typed++;
      }
    }
    assert.ok(typed > 50, `only ${typed} mutations were rejected; the fuzzer is not biting`);
  });

  test('fuzz: 600 hostile TIFFs (bombs of every codec, lying byte counts, mutations) stay typed and under 400 MiB RSS', async () => {
    // a separate process, so that its peak RSS is this run's alone; every bomb decodes to 256 MiB (in 1 or 4 tiles)
    const child = path.join(import.meta.dirname, 'support', 'fuzz.child.ts');
    const { stdout } = await run(process.execPath, ['--expose-gc', child, '600'], {
      maxBuffer: 16 * 1024 * 1024,
      timeout: 280_000,
    });
    const r = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as {
      ok: number;
      typed: number;
      kinds: Record<string, number>;
      untyped: string[];
      baselineRss: number;
      peakRss: number;
    };
    assert.deepEqual(r.untyped, [], 'every failure is a typed error');
    assert.equal(r.ok + r.typed, 600);
    for (const codec of ['8', '5', '50000', '32773']) assert.ok(r.kinds[`bomb-${codec}`] >= 30, `bombs of ${codec}`);
    assert.ok(r.kinds['lying-counts'] >= 100);
    // every bomb case fails (its first tile at least is a bomb), so there are at least as many typed errors
    const bombCases = Object.entries(r.kinds).reduce((n, [k, v]) => (k.startsWith('bomb') ? n + v : n), 0);
    assert.ok(r.typed >= bombCases, `${r.typed} typed errors for ${bombCases} bombs`);
    const MiB = 1024 * 1024;
    assert.ok(
      r.peakRss < 400 * MiB,
      `peak RSS ${Math.round(r.peakRss / MiB)} MiB (baseline ${Math.round(r.baselineRss / MiB)} MiB) is over 400 MiB`,
    );
  });
});

describe('local files read on a worker thread (readOnThisThread)', () => {
  test('the same bytes, size and etag as the pool read; a changed file refuses an old etag', async () => {
    const dir = await tempDir('cogmill-readhere-');
    const file = path.join(dir, 'data.bin');
    const data = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7) & 255));
    await writeFile(file, data);
    const url = new URL('../src/render/source.file.ts', import.meta.url).href;
    const run = (script: string) =>
      new Promise<{ bytes: number[]; size: number; etag: string; changed?: string }>((resolve, reject) => {
        const w = new Worker(
          `const { parentPort, workerData } = require('node:worker_threads');
           import(workerData.url).then(async ({ SourceFile, readOnThisThread }) => {
             readOnThisThread(true);
             const s = new SourceFile(workerData.file);
             ${script}
           }).catch((e) => parentPort.postMessage({ error: String(e) }));`,
          { eval: true, workerData: { url, file } },
        );
        w.once('message', (m) => {
          void w.terminate();
          if (m.error) reject(new Error(m.error));
          else resolve(m);
        });
        w.once('error', reject);
      });
    const here = await run(`
      const r = await s.read(99_000, 5_000);
      let changed;
      try { await s.read(0, 10, { ifMatch: '"other"' }); } catch (e) { changed = e.kind; }
      parentPort.postMessage({ bytes: [...r.bytes], size: r.size, etag: r.etag, changed });`);
    const pooled = await new SourceFile(file).read(99_000, 5_000);
    assert.deepEqual(here.bytes, [...data.subarray(99_000)], 'the last 1,000 bytes (the read stops at the end)');
    assert.equal(here.size, pooled.size);
    assert.equal(here.etag, pooled.etag);
    assert.equal(here.changed, 'changed');
  });
});
