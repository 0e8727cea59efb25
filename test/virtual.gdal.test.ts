/**
 * The virtual COG and the VRT as GDAL sees them through /vsicurl/: gdalinfo, the COG validator, window reads at
 * every level bit-identical to the shared tile renderer, the VRT against gdalwarp, multi-range reads, request counts,
 * and a 100,000 x 100,000 x 10-band mosaic that opens without rendering a pixel.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { type CogLevel, cogLevels } from '../src/materialize/cog.layout.ts';
import { renderCogTile } from '../src/materialize/cog.tiles.ts';
import { materialize } from '../src/materialize/pipeline.ts';
import { SinkFile } from '../src/materialize/sink.file.ts';
import { virtualCogFile } from '../src/materialize/virtual.cog.ts';
import type { Mosaic } from '../src/render/mosaic.ts';
import { allocTyped, bytesPerSample, type Pixels, type TypedArray, typedFromBytes } from '../src/render/types.ts';
import { startTestServerOpen, type TestServer } from './support/app.ts';
import {
  agreement,
  fixtureDir,
  gdalwarp,
  gdalRead as readWithGdal,
  tempDir,
  validateCog,
  writeTenBandSource,
} from './support/gdal.ts';

const exec = promisify(execFile);
const TIMEOUT_MS = 180_000;
/** What a QGIS user sets for /vsicurl/ */
const QGIS_ENV = { GDAL_DISABLE_READDIR_ON_OPEN: 'EMPTY_DIR', CPL_VSIL_CURL_ALLOWED_EXTENSIONS: '.tif,.vrt' };

async function run(cmd: string, args: string[], env: Record<string, string> = {}) {
  const { stdout, stderr } = await exec(cmd, args, {
    timeout: TIMEOUT_MS,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, ...env },
  });
  return { stdout, stderr };
}

describe('virtual COG and VRT through GDAL /vsicurl/', () => {
  let server: TestServer;
  let dir = '';
  let tmp = '';
  let url = '';
  const mosaic = (id: string): Mosaic => server.deps.catalog.get(id);
  const vsi = (p: string) => `/vsicurl/${url}${p}`;
  const rendered = async () =>
    (await server.deps.metrics.getSingleMetric('cogmill_virtual_cog_tiles_rendered_total')!.get()).values[0]?.value ??
    0;
  const requestLines = () =>
    server.logs.filter((l) => l.msg === 'request') as {
      method: string;
      path: string;
      status: number;
      range?: string;
    }[];

  /** What GDAL reads from `src` after the gdal_translate options `args`: every band, raw, native order. */
  const gdalRead = (src: string, args: string[], env: Record<string, string> = QGIS_ENV) =>
    readWithGdal(src, { args, env });

  /** The window (x0, y0, w, h) of `level`, band after band, from the shared tile renderer. */
  async function expectedWindow(
    m: Mosaic,
    level: number,
    x0: number,
    y0: number,
    w: number,
    h: number,
  ): Promise<Uint8Array> {
    const plan = virtualCogFile(m);
    const bs = plan.tileOptions.blockSize;
    const bands: TypedArray[] = Array.from({ length: m.bandCount }, () => allocTyped(m.dtype, w * h));
    for (let ty = Math.floor(y0 / bs); ty <= Math.floor((y0 + h - 1) / bs); ty++) {
      for (let tx = Math.floor(x0 / bs); tx <= Math.floor((x0 + w - 1) / bs); tx++) {
        // the general render: tiles the virtual COG takes as one source block must equal it too
        const tile = await renderCogTile(server.deps.engine, m, plan.levels, level, tx, ty, {
          ...plan.tileOptions,
          blockTiles: false,
        });
        for (let y = Math.max(y0, ty * bs); y < Math.min(y0 + h, (ty + 1) * bs); y++) {
          const c0 = Math.max(x0, tx * bs);
          const c1 = Math.min(x0 + w, (tx + 1) * bs);
          for (let b = 0; b < m.bandCount; b++) {
            const row = (y - ty * bs) * bs;
            bands[b].set(
              tile.bands[b].subarray(row + c0 - tx * bs, row + c1 - tx * bs) as never,
              (y - y0) * w + (c0 - x0),
            );
          }
        }
      }
    }
    const out = new Uint8Array(w * h * m.bandCount * bytesPerSample(m.dtype));
    let pos = 0;
    for (const b of bands) {
      out.set(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), pos);
      pos += b.byteLength;
    }
    return out;
  }

  function firstDifference(a: Uint8Array, b: Uint8Array): number {
    if (a.length !== b.length) return -2;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
    return -1;
  }

  before(async () => {
    dir = await fixtureDir();
    tmp = await tempDir('cogmill-virtual-gdal-');
    await writeTenBandSource(path.join(tmp, 'ten.tif'));
    const f = (name: string) => path.join(dir, name);
    // utm32's native grid, grown east and south so some tiles touch no source (sparse)
    const { stdout } = await run('gdalinfo', ['-json', f('utm32.tif')]);
    const info = JSON.parse(stdout) as { geoTransform: number[]; size: number[] };
    const gt = info.geoTransform;
    const sparseBounds = [gt[0], gt[3] + (info.size[1] + 700) * gt[5], gt[0] + (info.size[0] + 700) * gt[1], gt[3]];
    server = await startTestServerOpen({
      sources: { roots: [dir, tmp] },
      mosaics: [
        { id: 'utm', sources: [f('utm32.tif'), f('utm31.tif')], blockSize: 256 },
        { id: 'rgb', sources: [f('rgb.tif')] },
        { id: 'float', sources: [f('float.tif')], blockSize: 256 },
        { id: 'sparse', sources: [f('utm32.tif')], bounds: sparseBounds, blockSize: 256 },
        {
          id: 'big',
          sources: [path.join(tmp, 'ten.tif')],
          bounds: [500000, 4000000, 1500000, 5000000],
          resolution: 10,
        },
        { id: 'cold', sources: [f('utm32.tif'), f('utm31.tif')], resolution: 10 },
        { id: 'mixed', sources: [f('utm32.tif'), f('float.tif')], bands: [1], dtype: 'float32', nodata: -9999 },
        { id: 'masked', sources: [f('planar_mask.tif')], crs: 3857 },
      ],
    });
    url = server.url;
  });
  after(async () => {
    // stop() closes the engine; tmp goes with the process (support/gdal.ts tempDir)
    await server?.stop();
  });

  test('gdalinfo on the 100,000 x 100,000 x 10-band BigTIFF virtual COG: header bytes only, no pixel rendered', async (t) => {
    const before = await rendered();
    const mark = requestLines().length;
    const { stdout } = await run('gdalinfo', ['-json', vsi('/mosaics/big.tif')], QGIS_ENV);
    // the cost of opening, counted: GDAL reads the header (IFDs of the first 16 KiB, then the tile arrays it needs);
    // a layout that made it read tile data, or many ranges, would show here
    const lines = requestLines()
      .slice(mark)
      .filter((l) => l.path === '/mosaics/big.tif');
    t.diagnostic(`gdalinfo of the 100k x 100k x 10 virtual COG: ${lines.map((l) => `${l.method} ${l.range ?? ''}`)}`);
    assert.deepEqual(
      lines.map((l) => `${l.method} ${l.range ?? ''}`),
      ['HEAD ', 'GET bytes=0-16383'],
      'a HEAD and one 16 KiB header read',
    );
    const info = JSON.parse(stdout);
    assert.deepEqual(info.size, [100_000, 100_000]);
    assert.equal(info.bands.length, 10);
    assert.equal(info.bands[9].type, 'UInt16');
    assert.equal(info.bands[0].noDataValue, 0);
    assert.deepEqual(info.bands[0].block, [512, 512]);
    assert.deepEqual(
      info.bands[0].overviews.map((o: { size: number[] }) => o.size),
      cogLevels(100_000, 100_000, 512)
        .slice(1)
        .map((l) => [l.width, l.height]),
    );
    assert.deepEqual(info.geoTransform, [500000, 10, 0, 5000000, 0, -10]);
    assert.equal(await rendered(), before, 'opening renders nothing');
    const head = new Uint8Array(
      await (await fetch(`${url}/mosaics/big.tif`, { headers: { range: 'bytes=0-3' } })).arrayBuffer(),
    );
    assert.deepEqual([...head], [0x49, 0x49, 43, 0], 'BigTIFF');

    // the COG validator walks every IFD and tile array; reading the header sequentially, GDAL's read-ahead may run
    // one chunk (up to 32 KiB) past its end into the first payloads (the smallest overview's), never further
    const v = await validateCog(vsi('/mosaics/big.tif'), QGIS_ENV);
    assert.deepEqual(v.errors, [], v.output);
    assert.deepEqual(v.warnings, [], v.output);
    const validated = await rendered();
    assert.ok(validated - before <= 2, `the validator rendered ${validated - before} tiles`);

    // a window read renders exactly the tiles under it: columns and rows 1..3 of 512-pixel tiles
    const m = mosaic('big');
    const got = await gdalRead(vsi('/mosaics/big.tif'), ['-srcwin', '1000', '1000', '600', '600']);
    assert.equal((await rendered()) - validated, 9);
    assert.equal(firstDifference(got.bytes, await expectedWindow(m, 0, 1000, 1000, 600, 600)), -1);
  });

  test('gdalinfo and the COG validator agree with the mosaic: size, CRS, geotransform, bands, overviews, blocks', async () => {
    const cases = [
      { id: 'utm', epsg: 32632, type: 'UInt16', nodata: 0, block: 256, bands: 1 },
      { id: 'rgb', epsg: 3857, type: 'Byte', nodata: undefined, block: 512, bands: 3 },
      { id: 'float', epsg: 4326, type: 'Float32', nodata: -9999, block: 256, bands: 1 },
      { id: 'sparse', epsg: 32632, type: 'UInt16', nodata: 0, block: 256, bands: 1 },
    ];
    for (const c of cases) {
      const m = mosaic(c.id);
      const { stdout } = await run('gdalinfo', ['-json', vsi(`/mosaics/${c.id}.tif`)], QGIS_ENV);
      const info = JSON.parse(stdout);
      assert.deepEqual(info.size, [m.grid.width, m.grid.height], c.id);
      assert.equal(info.stac['proj:epsg'], c.epsg, c.id);
      assert.deepEqual(info.geoTransform, [...m.grid.transform], c.id);
      assert.equal(info.bands.length, c.bands, c.id);
      for (const b of info.bands) {
        assert.equal(b.type, c.type, c.id);
        assert.equal(b.noDataValue, c.nodata, c.id);
        assert.deepEqual(b.block, [c.block, c.block], c.id);
        assert.deepEqual(
          b.overviews.map((o: { size: number[] }) => o.size),
          cogLevels(m.grid.width, m.grid.height, c.block)
            .slice(1)
            .map((l) => [l.width, l.height]),
          c.id,
        );
      }
      const v = await validateCog(vsi(`/mosaics/${c.id}.tif`), QGIS_ENV);
      assert.deepEqual(v.errors, [], `${c.id}: ${v.output}`);
      assert.deepEqual(v.warnings, [], `${c.id}: ${v.output}`);
    }
  });

  test('gdalinfo on the VRT: the native grid, CRS, bands and nodata', async () => {
    for (const [id, epsg, bands, type] of [
      ['utm', 32632, 1, 'UInt16'],
      ['rgb', 3857, 3, 'Byte'],
      ['float', 4326, 1, 'Float32'],
    ] as const) {
      const m = mosaic(id);
      const { stdout } = await run('gdalinfo', ['-json', vsi(`/mosaics/${id}.vrt`)], QGIS_ENV);
      const info = JSON.parse(stdout);
      assert.equal(info.driverShortName, 'VRT');
      assert.deepEqual(info.size, [m.grid.width, m.grid.height]);
      assert.deepEqual(info.geoTransform, [...m.grid.transform]);
      assert.equal(info.stac['proj:epsg'], epsg);
      assert.equal(info.bands.length, bands);
      assert.equal(info.bands[0].type, type);
      assert.equal(info.bands[0].noDataValue, m.nodata);
    }
  });

  test('windows at full resolution and at every overview are bit-identical to the shared tile renderer', async () => {
    let checked = 0;
    for (const id of ['utm', 'rgb', 'float', 'sparse']) {
      const m = mosaic(id);
      const levels: CogLevel[] = cogLevels(m.grid.width, m.grid.height, virtualCogFile(m).tileOptions.blockSize);
      for (const l of levels) {
        // full resolution: a window crossing tile edges; overviews: the whole level (with -ovr, GDAL reads -srcwin
        // in full-resolution pixels, so a window would not map exactly onto overview pixels)
        const x0 = l.level === 0 ? 37 : 0;
        const y0 = l.level === 0 ? 29 : 0;
        const w = l.level === 0 ? Math.min(l.width - x0, 333) : l.width;
        const h = l.level === 0 ? Math.min(l.height - y0, 301) : l.height;
        const args =
          l.level === 0 ? ['-srcwin', String(x0), String(y0), String(w), String(h)] : ['-ovr', String(l.level - 1)];
        const got = await gdalRead(vsi(`/mosaics/${id}.tif`), args);
        const want = await expectedWindow(m, l.level, x0, y0, w, h);
        assert.equal(firstDifference(got.bytes, want), -1, `${id} level ${l.level} window ${args.join(' ')}`);
        checked++;
      }
    }
    assert.equal(checked, 11, 'levels checked: utm 3, rgb 2, float 2, sparse 4');
    // the sparse corner reads as nodata
    const m = mosaic('sparse');
    const got = await gdalRead(vsi('/mosaics/sparse.tif'), [
      '-srcwin',
      String(m.grid.width - 300),
      String(m.grid.height - 300),
      '300',
      '300',
    ]);
    assert.ok(got.bytes.every((b) => b === 0));
  });

  test('the materialised COG decodes to exactly the virtual COG pixels: full resolution always, every level with overviews from the sources (both read by GDAL)', async (t) => {
    // the same mosaic both ways: materialised (compressed, written by the pipeline) to a file, and the virtual COG
    // over /vsicurl/; GDAL decodes every band of every level of each, and the bytes must be equal. The default
    // materialisation builds overviews from the finer level (GDAL's way; materialize.file.test.ts compares them with
    // GDAL's own), so its full resolution equals the virtual COG's and its overviews differ from the virtual COG's
    // (which are rendered from the sources); with `overviews: 'sources'` every level is equal.
    let levels = 0;
    let finerDiffer = 0;
    for (const id of ['utm', 'rgb', 'float', 'sparse', 'masked']) {
      const m = mosaic(id);
      const blockSize = virtualCogFile(m).tileOptions.blockSize;
      const count = cogLevels(m.grid.width, m.grid.height, blockSize).length;
      for (const overviews of ['sources', 'finer'] as const) {
        const file = path.join(tmp, `materialised-${id}-${overviews}.tif`);
        await materialize(server.deps.engine, m, new SinkFile(file), {
          blockSize,
          workers: 1,
          statistics: false,
          overviews,
        });
        for (let l = 0; l < count; l++) {
          const virtual = await gdalRead(vsi(`/mosaics/${id}.tif`), l === 0 ? [] : ['-ovr', String(l - 1)]);
          const real = await readWithGdal(file, { overview: l - 1 });
          assert.ok(virtual.bytes.length > 0);
          assert.equal(real.bytes.length, virtual.bytes.length, `${id} level ${l}: size`);
          if (overviews === 'finer' && l > 0) {
            if (firstDifference(real.bytes, virtual.bytes) !== -1) finerDiffer++;
            continue;
          }
          assert.equal(
            firstDifference(real.bytes, virtual.bytes),
            -1,
            `${id} ${overviews} level ${l}: first differing byte`,
          );
          levels++;
        }
      }
    }
    t.diagnostic(
      `levels compared byte for byte: ${levels}; overview levels built from the finer level that differ: ${finerDiffer}`,
    );
    // the two ways of making overviews are really different (else the comparison above would prove nothing)
    assert.ok(finerDiffer > 0, 'overviews from the finer level differ from overviews rendered from the sources');
    assert.ok(
      levels >= 17,
      'overviews too (sources): utm 3, rgb 2, float 2, sparse 4, masked at least 1; full resolution (finer): 5',
    );
  });

  test('multi-range reads (GDAL_HTTP_MULTIRANGE=SINGLE_GET) get multipart/byteranges GDAL parses', async () => {
    const mark = requestLines().length;
    // tile column 0 of rows 0 and 1: two ranges that are not adjacent in the file
    const multi = await gdalRead(vsi('/mosaics/utm.tif'), ['-srcwin', '0', '0', '200', '500'], {
      ...QGIS_ENV,
      GDAL_HTTP_MULTIRANGE: 'SINGLE_GET',
    });
    assert.doesNotMatch(multi.stderr, /ERROR/);
    const lines = requestLines().slice(mark);
    assert.ok(
      lines.some((l) => l.path === '/mosaics/utm.tif' && l.status === 206 && (l.range ?? '').includes(',')),
      `a multi-range request was made: ${JSON.stringify(lines.map((l) => l.range))}`,
    );
    assert.ok(!lines.some((l) => l.status >= 400));
    const single = await gdalRead(vsi('/mosaics/utm.tif'), ['-srcwin', '0', '0', '200', '500']);
    assert.equal(firstDifference(multi.bytes, single.bytes), -1);
    assert.equal(firstDifference(multi.bytes, await expectedWindow(mosaic('utm'), 0, 0, 0, 200, 500)), -1);
  });

  test('gdalinfo makes 2 requests to the virtual COG (HEAD, then one GET of the first 16 KiB), and no others', async (t) => {
    const count = async (env: Record<string, string>) => {
      const mark = requestLines().length;
      await run('gdalinfo', [vsi('/mosaics/float.tif')], env);
      const lines = requestLines().slice(mark);
      const cog = lines.filter((l) => l.path === '/mosaics/float.tif');
      return {
        cog: cog.length,
        cogRequests: cog.map((l) => `${l.method} ${l.status} ${l.range ?? ''}`),
        all: lines.length,
        paths: lines.map((l) => `${l.method} ${l.path} ${l.status}`),
      };
    };
    // as README and bench/RESULTS.md say: with QGIS's settings, gdalinfo costs 2 requests
    const qgis = await count(QGIS_ENV);
    assert.deepEqual(qgis.cogRequests, ['HEAD 200 ', 'GET 206 bytes=0-16383'], JSON.stringify(qgis.paths));
    assert.equal(qgis.all, 2);
    // with GDAL's defaults the same 2 to the COG, and the rest only the sidecar probes, each a 404
    const bare = await count({});
    assert.equal(bare.cog, 2, JSON.stringify(bare.paths));
    assert.ok(
      bare.paths.every(
        (p) => p.endsWith(' 404') || p.startsWith('HEAD /mosaics/float.tif') || p.startsWith('GET /mosaics/float.tif'),
      ),
    );
    t.diagnostic(`gdalinfo requests with EMPTY_DIR + allowed extensions: ${qgis.cog} to the COG, ${qgis.all} in all`);
    t.diagnostic(
      `gdalinfo requests without them: ${bare.cog} to the COG, ${bare.all} in all: ${bare.paths.join(', ')}`,
    );
  });

  test('the VRT read through GDAL matches gdalwarp of the sources and the virtual COG (nearest, >= 99.5%)', async (t) => {
    const cases = [
      { id: 'utm', names: ['utm32.tif', 'utm31.tif'], fill: 0 },
      { id: 'float', names: ['float.tif'], fill: -9999 },
      { id: 'mixed', names: ['utm32.tif', 'float.tif'], fill: -9999 },
      { id: 'masked', names: ['planar_mask.tif'], fill: 0 },
    ];
    for (const c of cases) {
      const m = mosaic(c.id);
      const n = m.grid.width * m.grid.height;
      const asPixels = (bytes: Uint8Array): Pixels => {
        const all = typedFromBytes(m.dtype, bytes);
        assert.equal(all.length, n * m.bandCount);
        const bands = Array.from({ length: m.bandCount }, (_, b) => all.subarray(b * n, (b + 1) * n) as TypedArray);
        const mask = new Uint8Array(n);
        for (let i = 0; i < n; i++) mask[i] = bands.some((band) => band[i] !== c.fill) ? 255 : 0;
        return { width: m.grid.width, height: m.grid.height, dtype: m.dtype, bands, mask };
      };
      const vrt = asPixels((await gdalRead(vsi(`/mosaics/${c.id}.vrt`), [])).bytes);
      const cog = asPixels((await gdalRead(vsi(`/mosaics/${c.id}.tif`), [])).bytes);
      // gdalwarp: later inputs win, so the reverse order gives "first valid wins"; -et 0 as in the engine's tests
      const ref = await gdalwarp(c.names.map((x) => path.join(dir, x)).reverse(), m.grid, {
        resampling: 'near',
        dtype: m.dtype,
        bands: m.bandCount,
        dstNodata: c.fill,
        extra: ['-et', '0'],
      });
      const a = agreement(vrt, ref);
      const b = agreement(vrt, { bands: cog.bands, valid: cog.mask });
      t.diagnostic(
        `${c.id}: VRT vs gdalwarp ${(a.fraction * 100).toFixed(3)}%, VRT vs virtual COG ${(b.fraction * 100).toFixed(3)}%`,
      );
      assert.ok(a.compared > n * 0.1, `${c.id}: compared ${a.compared}`);
      assert.ok(
        a.fraction >= 0.995,
        `${c.id}: ${(a.fraction * 100).toFixed(3)}% agree (validity mismatches ${a.validityMismatch})`,
      );
      assert.ok(b.fraction >= 0.995, `${c.id}: VRT and virtual COG agree on ${(b.fraction * 100).toFixed(3)}%`);
    }
  });

  test('a plain GET streams the whole small virtual COG; gdal_translate throughput', async (t) => {
    const size = virtualCogFile(mosaic('utm')).size;
    const all = new Uint8Array(await (await fetch(`${url}/mosaics/utm.tif`)).arrayBuffer());
    assert.equal(all.length, size);
    const file = path.join(tmp, 'downloaded.tif');
    await writeFile(file, all);
    const v = await validateCog(file);
    assert.deepEqual(v.errors, [], v.output);
    assert.deepEqual(v.warnings, [], v.output);
    const local = await gdalRead(file, []);
    const remote = await gdalRead(vsi('/mosaics/utm.tif'), []);
    assert.equal(firstDifference(remote.bytes, local.bytes), -1);

    // throughput: a mosaic no other test touched (cold: every tile rendered), then the same again (cached tiles)
    const coldSize = virtualCogFile(mosaic('cold')).size;
    const out = path.join(tmp, 'cold.tif');
    const timeTranslate = async () => {
      const t0 = performance.now();
      await run('gdal_translate', ['-q', vsi('/mosaics/cold.tif'), out], QGIS_ENV);
      return performance.now() - t0;
    };
    const before = await rendered();
    const coldMs = await timeTranslate();
    const tiles = (await rendered()) - before;
    const warmMs = await timeTranslate();
    assert.equal((await rendered()) - before, tiles, 'the second read renders nothing');
    const mibps = (ms: number) => (coldSize / 2 ** 20 / (ms / 1000)).toFixed(1);
    t.diagnostic(
      `gdal_translate of a whole ${coldSize}-byte virtual COG: cold ${coldMs.toFixed(0)} ms (${tiles} tiles rendered, ${mibps(coldMs)} MiB/s), cached ${warmMs.toFixed(0)} ms (${mibps(warmMs)} MiB/s)`,
    );
  });
});
