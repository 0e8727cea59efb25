/**
 * Materialise to a file: GDAL's validator accepts it; its full resolution GDAL decodes equals gdalwarp -et 0 of the
 * sources onto the same grid, and its overviews (built from the finer level) agree with the overviews GDAL's COG
 * driver computes from the same full-resolution pixels, within rounding. (That the full resolution, and every level
 * with `overviews: 'sources'`, equal the virtual COG byte for byte is in virtual.gdal.test.ts.)
 */
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { levelGrid, mosaicCogLevels } from '../src/materialize/cog.tiles.ts';
import { type MaterializeOptions, materialize } from '../src/materialize/pipeline.ts';
import { SinkFile } from '../src/materialize/sink.file.ts';
import { SinkError } from '../src/materialize/sink.ts';
import { Engine } from '../src/render/engine.ts';
import { RenderError } from '../src/render/errors.ts';
import type { Mosaic, MosaicSpec } from '../src/render/mosaic.ts';
import { bytesPerSample, type Pixels, typedFromBytes } from '../src/render/types.ts';
import {
  agreement,
  fixtureDir,
  gdalRead,
  gdalwarpMosaic,
  PYTHON,
  type Reference,
  sh,
  tempDir,
  validateCog,
} from './support/gdal.ts';

describe('materialise to a file', () => {
  let dir = '';
  let out = '';
  let engine: Engine;
  before(async () => {
    dir = await fixtureDir();
    out = await tempDir('cogmill-mat-');
    engine = new Engine({ roots: [dir] });
  });
  after(() => engine.close());

  const open = (id: string, names: string[], extra: Partial<MosaicSpec> = {}): Promise<Mosaic> =>
    engine.openMosaic({ id, sources: names.map((n) => path.join(dir, `${n}.tif`)), blockSize: 256, ...extra });

  async function run(m: Mosaic, name: string, opts: MaterializeOptions) {
    const file = path.join(out, `${name}.tif`);
    // overviews from the finer level (the default only when a source lacks overviews; these fixtures have them)
    const res = await materialize(engine, m, new SinkFile(file), { overviews: 'finer', ...opts });
    assert.equal(res.bytes, (await stat(file)).size);
    const v = await validateCog(file);
    assert.deepEqual(v.errors, [], `validator errors for ${name}`);
    assert.deepEqual(v.warnings, [], `validator warnings for ${name}`);
    return { file, res };
  }

  /**
   * Every band of each level of `file` as GDAL decodes it. Full resolution against gdalwarp -et 0 of the sources
   * (`names`, mosaic order) onto the level's grid, nearest (>= 99.5% equal). Overviews, built from the finer level:
   * against the overviews GDAL's COG driver computes itself from the same full-resolution pixels
   * (`gdal_translate -of COG -co OVERVIEWS=IGNORE_EXISTING -co RESAMPLING=AVERAGE`), >= 99.9% within `tol` (+ `rel` x value) and no validity
   * mismatch: GDAL and cogmill may round a weighted average differently, nothing more.
   * `nodata`: the value that marks no data in both.
   */
  async function assertAgreesWithGdal(
    m: Mosaic,
    names: string[],
    file: string,
    levels: number[],
    opts: { nodata: number; tol?: number; rel?: number; maskedSource?: string },
  ) {
    const all = mosaicCogLevels(m, 256);
    // GDAL's own overviews of the same full-resolution level
    const gdalCog = `${file}.gdal-overviews.tif`;
    await sh('gdal_translate', [
      '-q',
      '-of',
      'COG',
      '-co',
      'OVERVIEWS=IGNORE_EXISTING',
      '-co',
      'BLOCKSIZE=256',
      '-co',
      'RESAMPLING=AVERAGE',
      '-co',
      'COMPRESS=NONE',
      // a mosaic without nodata marks its pixels with a mask: GDAL gets the same mask from the source itself
      // (a one-source mosaic on the source's grid); with nodata, GDAL leaves each band's nodata out, as cogmill
      ...(opts.maskedSource ? [opts.maskedSource] : ['-a_nodata', String(opts.nodata), file]),
      gdalCog,
    ]);
    for (const l of levels) {
      const grid = levelGrid(m, all[l]);
      const raw = await gdalRead(file, { overview: l - 1 });
      assert.deepEqual([raw.width, raw.height], [grid.width, grid.height], `level ${l} size`);
      const n = grid.width * grid.height;
      const decode = (r: typeof raw) =>
        r.bands.map((b) => typedFromBytes(m.dtype, new Uint8Array(b.buffer, b.byteOffset, b.byteLength)));
      const bands = decode(raw);
      const mask = new Uint8Array(n);
      for (let i = 0; i < n; i++) mask[i] = bands.some((b) => b[i] !== opts.nodata) ? 255 : 0;
      const ours: Pixels = { width: grid.width, height: grid.height, dtype: m.dtype, bands, mask };
      let ref: Reference;
      if (l === 0) {
        ref = await gdalwarpMosaic(
          names.map((n) => path.join(dir, `${n}.tif`)),
          grid,
          { dtype: m.dtype, bands: m.bandCount, dstNodata: opts.nodata, resampling: 'near' },
        );
      } else {
        const g = await gdalRead(gdalCog, { overview: l - 1 });
        assert.deepEqual([g.width, g.height], [grid.width, grid.height], `GDAL's level ${l} size`);
        const gb = decode(g);
        const valid = new Uint8Array(n);
        for (let i = 0; i < n; i++) valid[i] = gb.some((b) => b[i] !== opts.nodata) ? 255 : 0;
        ref = { bands: gb, valid };
      }
      const a = agreement(ours, ref, l === 0 ? 0 : (opts.tol ?? 1), l === 0 ? 0 : (opts.rel ?? 0));
      const line = `level ${l}: ${(a.fraction * 100).toFixed(3)}% of ${a.compared} agree, validity mismatches ${a.validityMismatch}`;
      assert.ok(a.compared > n * 0.3, line);
      assert.ok(a.fraction >= (l === 0 ? 0.995 : 0.999), line);
      if (l > 0) assert.equal(a.validityMismatch, 0, line);
    }
  }

  for (const compression of ['deflate', 'lzw', 'zstd', 'none'] as const) {
    test(`two UTM zones, uint16, ${compression}: valid COG, pixels equal at every level`, async () => {
      const m = await open(`two-${compression}`, ['utm32', 'utm31']);
      const { file, res } = await run(m, `two-${compression}`, { compression, workers: 2 });
      assert.ok(res.levels >= 3);
      await assertAgreesWithGdal(m, ['utm32', 'utm31'], file, [0, 1, 2], { nodata: 0 });
      const info = JSON.parse(await sh('gdalinfo', ['-json', '-stats', file]));
      assert.equal(info.size[0], m.grid.width);
      assert.deepEqual(info.geoTransform, [...m.grid.transform]);
      assert.match(info.coordinateSystem.wkt, /UTM zone 32N/);
      assert.equal(info.bands[0].noDataValue, 0);
      assert.equal(info.bands[0].overviews.length, res.levels - 1);
      assert.deepEqual(info.bands[0].block, [256, 256]);
    });
  }

  test('statistics in GDAL_METADATA equal what GDAL computes', async () => {
    const m = await open('stats', ['utm32']);
    const { file } = await run(m, 'stats', { workers: 0 });
    const info = JSON.parse(await sh('gdalinfo', ['-json', file]));
    const md = info.bands[0].metadata[''];
    const ref = JSON.parse(
      await sh(PYTHON, [
        '-c',
        `import json,sys; from osgeo import gdal; ds=gdal.Open(sys.argv[1]); b=ds.GetRasterBand(1); print(json.dumps(b.ComputeStatistics(False)))`,
        file,
      ]),
    );
    assert.equal(Number(md.STATISTICS_MINIMUM), ref[0]);
    assert.equal(Number(md.STATISTICS_MAXIMUM), ref[1]);
    assert.ok(Math.abs(Number(md.STATISTICS_MEAN) - ref[2]) < 1e-6 * Math.abs(ref[2]));
    assert.ok(Math.abs(Number(md.STATISTICS_STDDEV) - ref[3]) < 1e-3 * ref[3]);
  });

  test('RGB uint8: jpeg and webp are valid COGs; deflate is lossless', async () => {
    const m = await open('rgb', ['rgb']);
    for (const compression of ['jpeg', 'webp'] as const) {
      const { file } = await run(m, `rgb-${compression}`, { compression, workers: 1 });
      const info = JSON.parse(await sh('gdalinfo', ['-json', file]));
      assert.equal(info.bands.length, 3);
    }
    const { file } = await run(m, 'rgb-deflate', { workers: 2 });
    // rgb.tif holds 1..255: 0 is outside
    await assertAgreesWithGdal(m, ['rgb'], file, [0, 1, 2], { nodata: 0 });
  });

  test('float32 with nodata, predictor 3', async () => {
    const m = await open('f', ['float']);
    const { file } = await run(m, 'float', { workers: 2 });
    await assertAgreesWithGdal(m, ['float'], file, [0, 1], { nodata: -9999, tol: 1e-3, rel: 1e-5 });
    const info = JSON.parse(await sh('gdalinfo', ['-json', file]));
    assert.equal(info.bands[0].noDataValue, -9999);
    assert.equal(info.bands[0].type, 'Float32');
  });

  test('four-band int16 (band-interleaved source with mask) and the same file with 0 or 2 workers', async () => {
    const m = await open('pm', ['planar_mask']);
    const a = await run(m, 'pm0', { workers: 0 });
    const b = await run(m, 'pm2', { workers: 2 });
    assert.ok(
      (await readFile(a.file)).equals(await readFile(b.file)),
      'output does not depend on the number of workers',
    );
    // the source's mask becomes 0 in every band
    assert.equal(m.nodata, undefined);
    await assertAgreesWithGdal(m, ['planar_mask'], a.file, [0, 1], {
      nodata: 0,
      maskedSource: path.join(dir, 'planar_mask.tif'),
    });
    assert.equal(bytesPerSample(m.dtype), 2);
  });

  /** the sink's temporary files for `file` in its folder: `.NAME.HEX.partial` (and `.big` while growing) */
  async function partials(file: string): Promise<string[]> {
    const names = await readdir(path.dirname(file));
    const base = path.basename(file);
    return names.filter((n) => n.startsWith(`.${base}.`) && /\.partial(\.big)?$/.test(n));
  }

  test('a failing sink leaves nothing at the destination', async () => {
    const m = await open('fail', ['utm32']);
    const file = path.join(out, 'nope', 'fail.tif');
    const sink = new SinkFile(file);
    const orig = sink.write.bind(sink);
    let n = 0;
    let whileWriting: string[] = [];
    sink.write = async (c: Uint8Array) => {
      if (++n === 3) {
        whileWriting = await partials(file);
        throw new Error('disk full');
      }
      return orig(c);
    };
    await assert.rejects(materialize(engine, m, sink, { workers: 1 }), /disk full/);
    assert.equal(whileWriting.length, 1, 'the temporary file existed while tiles were written');
    assert.match(whileWriting[0], /^\.fail\.tif\..+\.partial$/);
    assert.deepEqual(await readdir(path.dirname(file)), [], 'no file and no temporary file left');
  });

  test('a destination under a file (not a folder): a SinkError (bad destination), nothing written', async () => {
    const m = await open('under-file', ['utm32']);
    const blocker = path.join(out, 'blocker.txt');
    await writeFile(blocker, 'a file, not a folder');
    const sink = new SinkFile(path.join(blocker, 'sub', 'x.tif'));
    await assert.rejects(materialize(engine, m, sink, { workers: 1 }), (e: unknown) => {
      assert.ok(e instanceof SinkError, String(e));
      assert.equal(e.sinkKind, 'bad-destination');
      assert.equal(e.code, 400);
      assert.match(e.message, /cannot write .*blocker\.txt\/sub\/x\.tif: ENOTDIR/);
      return true;
    });
    assert.equal(await readFile(blocker, 'utf8'), 'a file, not a folder');
  });

  test('a file sink written past its background flushes holds every byte in order (header last)', async () => {
    const file = path.join(out, 'flushed.bin');
    const sink = new SinkFile(file);
    const header = new Uint8Array(4096).fill(7);
    await sink.open(header.byteLength);
    // 80 chunks of 1 MiB: flushes to disk start every 8 MiB while the writes go on
    const chunk = (i: number) => new Uint8Array(1 << 20).map((_, j) => (i * 31 + j) & 255);
    for (let i = 0; i < 80; i++) await sink.write(chunk(i));
    const done = await sink.complete(header);
    assert.equal(done.bytes, 4096 + 80 * (1 << 20));
    const bytes = await readFile(file);
    assert.equal(bytes.length, done.bytes);
    assert.ok(
      bytes.subarray(0, 4096).every((b) => b === 7),
      'the header at offset 0',
    );
    for (const i of [0, 31, 32, 63, 64, 79])
      assert.ok(
        Buffer.from(chunk(i)).equals(bytes.subarray(4096 + i * (1 << 20), 4096 + (i + 1) * (1 << 20))),
        `chunk ${i}`,
      );
    assert.deepEqual(
      (await readdir(out)).filter((f) => f.includes('flushed') && f !== 'flushed.bin'),
      [],
      'no temporary file left',
    );
  });

  test('cancel stops the pipeline and removes the temporary file', async () => {
    const m = await open('cancel', ['utm32', 'utm31']);
    const folder = path.join(out, 'cancel');
    const file = path.join(folder, 'cancel.tif');
    const ac = new AbortController();
    const sink = new SinkFile(file);
    const orig = sink.write.bind(sink);
    let writes = 0;
    let whileWriting: string[] = [];
    let completed = false;
    const complete = sink.complete.bind(sink);
    sink.complete = (header: Uint8Array) => {
      completed = true;
      return complete(header);
    };
    // cancel as soon as the first tile is in the temporary file: the pipeline is mid-way
    sink.write = async (c: Uint8Array) => {
      await orig(c);
      if (++writes === 1) {
        whileWriting = await partials(file);
        ac.abort(new Error('stop'));
      }
    };
    await assert.rejects(
      materialize(engine, m, sink, { workers: 1 }, { signal: ac.signal }),
      (e: unknown) => e instanceof RenderError && e.message === 'materialisation cancelled',
    );
    assert.equal(whileWriting.length, 1, 'the temporary file existed when the cancel came');
    assert.equal(completed, false, 'the header was never written');
    assert.deepEqual(await readdir(folder), [], 'no file and no temporary file left');
  });
});
