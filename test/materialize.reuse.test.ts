/**
 * Source blocks reused as their file stores them (src/materialize/stored.reuse.ts), on GDAL-written COGs: a tile
 * that is exactly one source block keeps the source's deflate bytes when they measure no larger than re-encoding
 * (a source written at ZLEVEL 9), is re-encoded when they are larger (ZLEVEL 1) or when `recompress` is asked; the
 * pixels GDAL reads back are the source's either way, and the bytes do not depend on the number of threads.
 */
import assert from 'node:assert/strict';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type MaterializeOptions, materialize } from '../src/materialize/pipeline.ts';
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
y, x = np.mgrid[0:768, 0:1024]
# class-like values: GDAL's LEVEL=1 stores them 1.9x larger than level 6, LEVEL=9 19% smaller
a = ((np.sin(x / 50.0) + np.cos(y / 31.0) + (x * y % 7 == 0)) * 10).astype(np.uint16)
gt = (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)
for level in (1, 9):
    gdal_write.write(f'{out}/z{level}.tif', [a], 32632, gt, gdal.GDT_UInt16, blocksize=256,
                     extra=['PREDICTOR=2', f'LEVEL={level}'])
`;

const tiles = storedTiles;

describe('source blocks reused as stored', () => {
  let dir: string;
  let engine: Engine;

  before(async () => {
    dir = await gdalFixtures('cogmill-reuse-', FIXTURES);
    engine = new Engine({ roots: [dir] });
  });

  after(async () => {
    await engine?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function exportOf(source: string, name: string, options: MaterializeOptions) {
    const m = await engine.openMosaic({ id: name, sources: [path.join(dir, source)] });
    const file = path.join(dir, `${name}.tif`);
    await materialize(engine, m, new SinkFile(file), { blockSize: 256, ...options });
    const v = await validateCog(file);
    assert.deepEqual(v.errors, [], `${name}: validator errors`);
    assert.deepEqual(v.warnings, [], `${name}: validator warnings`);
    // the pixels are the source's at full resolution and on the first overview
    for (const overview of [undefined, 0]) {
      const [ours, theirs] = await Promise.all([
        gdalRead(file, { overview }),
        gdalRead(path.join(dir, source), { overview }),
      ]);
      assert.ok(
        ours.bytes.equals(theirs.bytes),
        `${name}: pixels of ${overview === undefined ? 'level 0' : 'overview 1'}`,
      );
    }
    return new Uint8Array(await readFile(file));
  }

  test('bytes at least as small as re-encoding are kept, on every thread count; recompress re-encodes', async () => {
    const source = new Uint8Array(await readFile(path.join(dir, 'z9.tif')));
    const kept = await exportOf('z9.tif', 'z9-kept', { workers: 2 });
    const inline = await exportOf('z9.tif', 'z9-inline', { workers: 0 });
    assert.ok(Buffer.from(kept).equals(Buffer.from(inline)), 'the same bytes on 2 threads and on the calling thread');
    // level 0: 4 x 3 whole blocks; level 1 (512 x 384): the top two tiles are whole blocks, the bottom two are
    // edge tiles (rendered and encoded)
    for (const [ifd, whole] of [
      [0, 12],
      [1, 2],
    ]) {
      const want = tiles(source, ifd);
      const got = tiles(kept, ifd);
      assert.equal(got.length, want.length);
      for (let i = 0; i < whole; i++) assert.ok(got[i].equals(want[i]), `level ${ifd} tile ${i} is the source's block`);
    }
    const recompressed = await exportOf('z9.tif', 'z9-recompressed', { workers: 2, recompress: true });
    const want = tiles(source, 0);
    const got = tiles(recompressed, 0);
    assert.equal(got.filter((t, i) => t.equals(want[i])).length, 0, 'no tile kept');
    // level 6 is larger than GDAL's level 9
    assert.ok(recompressed.length > kept.length, `${recompressed.length} > ${kept.length}`);
  });

  test('uncompressed tiles (the decoded blocks themselves) and a differencing the source lacks, on 2 threads', async () => {
    // the worker threads hand decoded blocks back for the next block to decode into: uncompressed tiles (whose
    // payload is the decoded block itself) and tiles re-encoded from their samples keep the source's pixels
    const none = await exportOf('z9.tif', 'z9-none', { workers: 2, compression: 'none', predictor: 1 });
    const noneInline = await exportOf('z9.tif', 'z9-none-inline', { workers: 0, compression: 'none', predictor: 1 });
    assert.ok(Buffer.from(none).equals(Buffer.from(noneInline)));
    await exportOf('z9.tif', 'z9-no-predictor', { workers: 2, predictor: 1 });
  });

  test('bytes larger than re-encoding (a fast level) are re-encoded', async () => {
    const source = new Uint8Array(await readFile(path.join(dir, 'z1.tif')));
    const out = await exportOf('z1.tif', 'z1', { workers: 2 });
    const want = tiles(source, 0);
    const got = tiles(out, 0);
    assert.equal(got.filter((t, i) => t.equals(want[i])).length, 0, 'no tile kept');
    const sum = (ts: Buffer[]) => ts.reduce((s, t) => s + t.length, 0);
    assert.ok(sum(got) < sum(want) * 0.98, `re-encoded tiles ${sum(got)} B, the source's ${sum(want)} B`);
  });
});
