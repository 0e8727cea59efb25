/**
 * The 'auto' predictor chosen on the mosaic's pixels (src/materialize/predictor.choice.ts), on GDAL-written COGs:
 * class data (nearest-neighbour patches of a few values) takes none, continuous 16-bit data takes differencing,
 * float surfaces the floating-point predictor; a named predictor and encodings without one are left alone. The
 * choice is checked against what it claims: the file with the chosen predictor is the smaller of the two, and for
 * class tiles GDAL wrote without a predictor the export keeps the source's own bytes (same pixels, no re-encoding).
 */
import assert from 'node:assert/strict';
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type MaterializeOptions, materialize } from '../src/materialize/pipeline.ts';
import { choosePredictor } from '../src/materialize/predictor.choice.ts';
import { SinkFile } from '../src/materialize/sink.file.ts';
import { Engine } from '../src/render/engine.ts';
import { gdalFixtures, gdalRead, validateCog } from './support/gdal.ts';
import { storedTiles } from './support/tiff.read.ts';

const FIXTURES = `
import sys
import numpy as np
from osgeo import gdal
gdal.UseExceptions()
out = sys.argv[1]
sys.path.insert(0, sys.argv[2])
import gdal_write
rng = np.random.default_rng(3)
gt = (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)
# classes: each pixel takes the class of its nearest of 60 random seeds (Voronoi cells), 8 classes
n = 1024
sy, sx = rng.uniform(0, n, 60), rng.uniform(0, n, 60)
cls = rng.integers(1, 9, 60)
y, x = np.mgrid[0:n, 0:n]
d = (y[..., None] - sy) ** 2 + (x[..., None] - sx) ** 2
classes = cls[np.argmin(d, axis=2)].astype(np.uint8)
gdal_write.write(f'{out}/classes.tif', [classes], 32632, gt, gdal.GDT_Byte, blocksize=256)
# continuous: a smooth surface with a little sensor noise, 16-bit
surface = 3000 + 800 * np.sin(x / 90.0) * np.cos(y / 70.0) + rng.normal(0, 6, (n, n))
gdal_write.write(f'{out}/surface.tif', [surface.astype(np.uint16)], 32632, gt, gdal.GDT_UInt16, blocksize=256,
                 extra=['PREDICTOR=2'])
# a float elevation-like surface
gdal_write.write(f'{out}/dem.tif', [(surface / 7.0).astype(np.float32)], 32632, gt, gdal.GDT_Float32, blocksize=256,
                 extra=['PREDICTOR=3'])
`;

const tiles = storedTiles;

describe("the 'auto' predictor", () => {
  let dir: string;
  let engine: Engine;

  before(async () => {
    dir = await gdalFixtures('cogmill-predictor-', FIXTURES);
    engine = new Engine({ roots: [dir] });
  });

  after(async () => {
    await engine?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const open = (name: string) => engine.openMosaic({ id: name, sources: [path.join(dir, `${name}.tif`)] });

  test('is none for classes, differencing for a 16-bit surface, floating point for a float one', async () => {
    const chosen = async (name: string, options: MaterializeOptions = {}) =>
      (await choosePredictor(engine, await open(name), { blockSize: 256, ...options })).predictor;
    assert.equal(await chosen('classes'), 1);
    assert.equal(await chosen('surface'), 2);
    assert.equal(await chosen('dem'), 3);
    assert.equal(await chosen('classes', { predictor: 'auto' }), 1);
    // asked for, or meaningless for the encoding: as given or resolved without reading pixels
    assert.equal(await chosen('classes', { predictor: 2 }), 2);
    assert.equal(await chosen('surface', { compression: 'none' }), 1);
    assert.equal(await chosen('surface', { compression: 'zstd' }), 2);
  });

  test('writes the smaller file, and class tiles GDAL stored without a predictor are kept as they are', async () => {
    const sizes = new Map<string, number>();
    let auto = new Uint8Array();
    for (const predictor of ['auto', 1, 2] as const) {
      const file = path.join(dir, `classes-${predictor}.tif`);
      await materialize(engine, await open('classes'), new SinkFile(file), { blockSize: 256, predictor, workers: 2 });
      sizes.set(String(predictor), (await stat(file)).size);
      if (predictor === 'auto') {
        auto = new Uint8Array(await readFile(file));
        const v = await validateCog(file);
        assert.deepEqual([...v.errors, ...v.warnings], []);
        const [ours, theirs] = await Promise.all([gdalRead(file), gdalRead(path.join(dir, 'classes.tif'))]);
        assert.ok(ours.bytes.equals(theirs.bytes), 'the pixels are the source');
      }
    }
    assert.equal(sizes.get('auto'), sizes.get('1'));
    assert.ok(sizes.get('1')! < sizes.get('2')!, `no predictor ${sizes.get('1')} B, differencing ${sizes.get('2')} B`);
    const source = tiles(new Uint8Array(await readFile(path.join(dir, 'classes.tif'))), 0);
    const got = tiles(auto, 0);
    assert.equal(got.length, 16);
    for (let i = 0; i < got.length; i++) assert.ok(got[i].equals(source[i]), `tile ${i} is the source's block`);
  });
});
