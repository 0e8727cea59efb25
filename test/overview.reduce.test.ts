/**
 * Overviews from the finer level: the per-pixel rules (GDAL's spans and weights, valid pixels only) and the pass
 * that builds every level from one rendering of the full-resolution tiles.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cogLevels } from '../src/materialize/cog.layout.ts';
import { OverviewPyramid } from '../src/materialize/overview.pyramid.ts';
import { reduceToTile, spanOf } from '../src/materialize/overview.reduce.ts';
import { materialize } from '../src/materialize/pipeline.ts';
import { clusterOptions, planOptions } from '../src/materialize/plan.ts';
import { SinkFile } from '../src/materialize/sink.file.ts';
import { reduceShapeOf, runReduceJob, runTileJob, type TileJobSettings } from '../src/materialize/tile.job.ts';
import type { TileJobRequest } from '../src/materialize/tile.pool.ts';
import { Engine } from '../src/render/engine.ts';
import { CogmillError } from '../src/render/errors.ts';
import { fixtureDir, gdalRead, PYTHON, sh, tempDir } from './support/gdal.ts';

const win = (width: number, height: number, values: number[], valid?: number[]) => ({
  x0: 0,
  y0: 0,
  width,
  height,
  bands: [Float32Array.from(values)],
  mask: Uint8Array.from(valid ?? values.map(() => 1), (v) => (v ? 255 : 0)),
});

describe('overview pixels from the finer level', () => {
  test('average leaves out pixels without data and rounds integers half up', () => {
    // 4 x 4 finer -> 2 x 2 coarser (block 2): upper left block has one pixel without data
    const w = win(
      4,
      4,
      [10, 99, 1, 2, 20, 30, 3, 4, 0, 0, 5, 5, 0, 0, 5, 6],
      [1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1],
    );
    const f = reduceToTile(w, { width: 4, height: 4 }, { width: 2, height: 2 }, 0, 0, 2, 'float32', 'average', -1);
    assert.deepEqual([...f.bands[0]], [20, 2.5, -1, 5.25]);
    assert.deepEqual([...f.mask], [255, 255, 0, 255]);
    assert.equal(f.validCount, 3);
    const u = reduceToTile(
      { ...w, bands: [Uint16Array.from(w.bands[0])] },
      { width: 4, height: 4 },
      { width: 2, height: 2 },
      0,
      0,
      2,
      'uint16',
      'average',
      0,
    );
    assert.deepEqual([...u.bands[0]], [20, 3, 0, 5]);
  });

  test('the 2 x 2 average (sizes halving exactly) gives the values of the general loop, bit for bit', () => {
    let seed = 7;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    for (const dtype of ['uint16', 'float32', 'int16'] as const) {
      // a 2 x 2 tile window of a 64 x 48 level (block 16): tile (1, 1) of the 32 x 24 coarser level
      const width = 32;
      const height = 32;
      const values = Array.from(
        { length: width * height },
        () => Math.round(rand() * 60000) - (dtype === 'int16' ? 30000 : 0),
      );
      const w = {
        x0: 32,
        y0: 16,
        width,
        height,
        bands: [
          dtype === 'uint16'
            ? Uint16Array.from(values)
            : dtype === 'int16'
              ? Int16Array.from(values)
              : Float32Array.from(values, (v) => v / 7),
        ],
        mask: Uint8Array.from(values, () => (rand() < 0.2 ? 0 : 255)),
      };
      const args = [w, { width: 64, height: 48 }, { width: 32, height: 24 }, 1, 1, 16, dtype, 'average', 0] as const;
      for (const nodata of [undefined, 0]) {
        const fast = reduceToTile(...args, nodata);
        const general = reduceToTile(...args, nodata, true);
        assert.deepEqual([...fast.mask], [...general.mask]);
        assert.deepEqual([...fast.bands[0]], [...general.bands[0]], `${dtype} nodata ${nodata}`);
        assert.ok(fast.validCount > 0 && fast.validCount === general.validCount);
      }
    }
  });

  test('odd sizes: fractional weights at the seams, as GDAL (5 -> 2 pixels: ratio 2.5)', () => {
    assert.deepEqual(spanOf(0, 5, 2, 'average'), [0, 3]);
    assert.deepEqual(spanOf(1, 5, 2, 'average'), [2, 5]);
    // one row, values = column index: [0, 2.5) -> (0 + 1 + 0.5 * 2) / 2.5 = 0.8, [2.5, 5) -> (0.5 * 2 + 3 + 4) / 2.5 = 3.2
    const w = win(5, 2, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    const t = reduceToTile(w, { width: 5, height: 2 }, { width: 2, height: 1 }, 0, 0, 2, 'float32', 'average', 0);
    assert.ok(Math.abs(t.bands[0][0] - 0.8) < 1e-6 && Math.abs(t.bands[0][1] - 3.2) < 1e-6, String([...t.bands[0]]));
  });

  test('mode keeps classes (on a tie, the value counted there first), nearest takes the upper left pixel', () => {
    const w = win(4, 2, [3, 7, 1, 2, 7, 3, 2, 1]);
    // counted in row order 3, 7, 7, 3 and 1, 2, 2, 1: 7 and 2 get to two first
    const m = reduceToTile(w, { width: 4, height: 2 }, { width: 2, height: 1 }, 0, 0, 2, 'float32', 'mode', 0);
    assert.deepEqual([...m.bands[0]].slice(0, 2), [7, 2]);
    const n = reduceToTile(w, { width: 4, height: 2 }, { width: 2, height: 1 }, 0, 0, 2, 'float32', 'nearest', 0);
    assert.deepEqual([...n.bands[0]].slice(0, 2), [3, 1]);
    const v = win(4, 2, [3, 7, 1, 2, 7, 3, 2, 1], [0, 1, 1, 1, 1, 1, 1, 1]);
    const n2 = reduceToTile(v, { width: 4, height: 2 }, { width: 2, height: 1 }, 0, 0, 2, 'float32', 'nearest', 0);
    assert.deepEqual([...n2.mask].slice(0, 2), [0, 255]);
  });
});

describe('mode and nearest overviews against GDAL', () => {
  let dir = '';
  let out = '';
  let engine: Engine;
  before(async () => {
    dir = await fixtureDir();
    out = await tempDir('cogmill-ovr-');
    engine = new Engine({ roots: [dir, out] });
  });
  after(() => engine.close());

  test('classes of odd size (699 x 599): every overview level equals the one the GDAL COG driver computes from the same full resolution', async () => {
    // categorical uint8 with nodata 0 and 5% noise, from a GDAL-made fixture
    const classes = path.join(out, 'classes.tif');
    await sh(PYTHON, [
      '-c',
      `
import numpy as np
from osgeo import gdal
gdal.UseExceptions()
src = gdal.Open(${JSON.stringify(path.join(dir, 'utm32.tif'))})
a = src.GetRasterBand(1).ReadAsArray()[:599, :699].astype(np.int32)
cls = ((a // 300) % 7 + 1).astype(np.uint8)
cls[a == 0] = 0
cls[np.random.default_rng(1).random(cls.shape) < 0.05] = 3
d = gdal.GetDriverByName('GTiff').Create(${JSON.stringify(classes)}, 699, 599, 1, gdal.GDT_Byte, ['TILED=YES'])
d.SetGeoTransform(src.GetGeoTransform()); d.SetProjection(src.GetProjection())
d.GetRasterBand(1).SetNoDataValue(0); d.GetRasterBand(1).WriteArray(cls); d = None
`,
    ]);
    for (const resampling of ['mode', 'nearest'] as const) {
      const m = await engine.openMosaic({
        id: `classes-${resampling}`,
        sources: [classes],
        blockSize: 128,
        resampling,
      });
      const file = path.join(out, `classes-${resampling}.tif`);
      await materialize(engine, m, new SinkFile(file), {
        workers: 0,
        overviewResampling: resampling,
        statistics: false,
      });
      const gdal = path.join(out, `classes-${resampling}.gdal.tif`);
      await sh('gdal_translate', [
        '-q',
        '-of',
        'COG',
        '-co',
        // GDAL computes its own levels from the full resolution (by default it would copy ours)
        'OVERVIEWS=IGNORE_EXISTING',
        '-co',
        'BLOCKSIZE=128',
        '-co',
        `RESAMPLING=${resampling.toUpperCase()}`,
        file,
        gdal,
      ]);
      const levels = cogLevels(m.grid.width, m.grid.height, 128).length;
      assert.ok(levels >= 4);
      for (let l = 1; l < levels; l++) {
        const ours = await gdalRead(file, { overview: l - 1 });
        const theirs = await gdalRead(gdal, { overview: l - 1 });
        assert.equal(ours.bytes.length, theirs.bytes.length);
        let same = 0;
        for (let i = 0; i < ours.bytes.length; i++) if (ours.bytes[i] === theirs.bytes[i]) same++;
        // the same pixels chosen, ties decided the same way: equal (a pixel or two of slack for another GDAL)
        assert.ok(same >= ours.bytes.length - 2, `${resampling} level ${l}: ${ours.bytes.length - same} pixels differ`);
      }
    }
  });
});

describe('the overview pass', () => {
  let dir = '';
  let engine: Engine;
  before(async () => {
    dir = await fixtureDir();
    engine = new Engine({ roots: [dir] });
  });
  after(() => engine.close());

  test('renders each full-resolution tile once and every overview tile from the finer level; any tile on request', async () => {
    const m = await engine.openMosaic({
      id: 'pass',
      sources: ['utm32', 'utm31'].map((n) => path.join(dir, `${n}.tif`)),
      blockSize: 128,
    });
    const settings: TileJobSettings = { blockSize: 128, compression: 'deflate', predictor: 2 };
    const levels = cogLevels(m.grid.width, m.grid.height, 128);
    assert.ok(levels.length >= 3, 'the fixture has overview levels');
    const shape = reduceShapeOf(m, settings);
    const rendered = new Map<string, number>();
    let reduced = 0;
    const run = (j: TileJobRequest) => {
      if (j.window) {
        reduced++;
        return runReduceJob(shape, levels, settings, j.level, j.tx, j.ty, j.window, j.keep);
      }
      const k = `${j.level}/${j.tx}/${j.ty}`;
      rendered.set(k, (rendered.get(k) ?? 0) + 1);
      return runTileJob(engine, m, levels, settings, j.level, j.tx, j.ty, undefined, j.keep);
    };
    const pyramid = new OverviewPyramid(levels, 128, shape.overviewResampling, run);
    const count = (l: number) => Math.ceil(levels[l].width / 128) * Math.ceil(levels[l].height / 128);
    try {
      const top = await pyramid.render({ level: levels.length - 1, tx: 0, ty: 0 });
      assert.ok(top.payload.byteLength > 0);
      // every tile again, in any order, from the pass: no more rendering from the sources
      for (let l = 0; l < levels.length; l++)
        for (let i = count(l) - 1; i >= 0; i--) {
          const nx = Math.ceil(levels[l].width / 128);
          const r = await pyramid.render({ level: l, tx: i % nx, ty: Math.floor(i / nx) });
          assert.ok(r.payload.byteLength > 0);
          if (l === 0) assert.ok(r.stats, 'full-resolution tiles keep their statistics');
        }
      assert.equal(rendered.size, count(0));
      assert.ok(
        [...rendered.keys()].every((k) => k.startsWith('0/')),
        'only full-resolution tiles from the sources',
      );
      assert.ok(
        [...rendered.values()].every((n) => n === 1),
        'each rendered once',
      );
      let overviewTiles = 0;
      for (let l = 1; l < levels.length; l++) overviewTiles += count(l);
      assert.equal(reduced, overviewTiles);
      assert.equal(pyramid.passTiles, count(0) + overviewTiles);
    } finally {
      await pyramid.close();
    }
  });

  test('plans: finer by default for average, mode and nearest when a source lacks overviews; else sources; finer + cubic refused', async () => {
    // utm32_striped has no overviews, utm32 has two
    const m = await engine.openMosaic({
      id: 'opts',
      sources: ['utm32_striped', 'utm32'].map((n) => path.join(dir, `${n}.tif`)),
    });
    assert.equal(m.sources[0].raster.info.levels.length, 1);
    assert.equal(planOptions(m, {}).overviews, 'finer');
    assert.equal(planOptions(m, { overviewResampling: 'mode' }).overviews, 'finer');
    assert.equal(planOptions(m, { overviewResampling: 'cubic' }).overviews, 'sources');
    assert.equal(planOptions(m, { overviews: 'sources' }).overviews, 'sources');
    const cogs = await engine.openMosaic({ id: 'cogs', sources: [path.join(dir, 'utm32.tif')] });
    assert.ok(cogs.sources[0].raster.info.levels.length > 1);
    assert.equal(planOptions(cogs, {}).overviews, 'sources');
    assert.equal(planOptions(cogs, { overviews: 'finer' }).overviews, 'finer');
    // a plan many processes run (queue, static shards) renders overviews from the sources unless asked otherwise
    assert.equal(planOptions(m, clusterOptions({})).overviews, 'sources');
    assert.equal(planOptions(m, clusterOptions({ overviews: 'finer' })).overviews, 'finer');
    assert.throws(
      () => planOptions(m, { overviewResampling: 'bilinear', overviews: 'finer' }),
      (e: unknown) => e instanceof CogmillError && e.code === 400 && /average, mode, nearest/.test(e.message),
    );
  });
});
