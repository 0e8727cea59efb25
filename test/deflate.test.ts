/**
 * Deflate tiles: with the libdeflate addon (native/deflate, built by .ci/setup), a tile cogmill encodes is byte
 * for byte the tile GDAL writes for the same pixels, predictor and ZLEVEL, on imagery made by GDAL's own tools;
 * the node:zlib fallback decodes to the same bytes; inflating never gives more than a block declares.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import zlib from 'node:zlib';
import { encodeTile } from '../src/materialize/tile.encode.ts';
import {
  deflateEngine,
  deflateTile,
  InflateError,
  inflateTile,
  libdeflateLevel,
  useDeflateEngine,
} from '../src/render/deflate.ts';
import { type DType, type TypedArray, typedFromBytes } from '../src/render/types.ts';
import { gdalRead, PYTHON, sh, tempDir } from './support/gdal.ts';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const ADDON = path.join(ROOT, 'native/deflate/build/Release/cogmill_deflate.node');
const SIZE = 512;

const TILE_PY = `
import sys
from osgeo import gdal
ds = gdal.Open(sys.argv[1])
b = ds.GetRasterBand(1)
print(b.GetMetadataItem('BLOCK_OFFSET_0_0', 'TIFF'), b.GetMetadataItem('BLOCK_SIZE_0_0', 'TIFF'))
`;

/** The compressed bytes of GDAL's first tile. */
async function gdalTile(file: string): Promise<Uint8Array> {
  const [offset, size] = (await sh(PYTHON, ['-c', TILE_PY, file])).trim().split(' ').map(Number);
  assert.ok(offset > 0 && size > 0, `${file}: no first tile`);
  return new Uint8Array((await readFile(file)).subarray(offset, offset + size));
}

interface Image {
  readonly name: string;
  readonly file: string;
  readonly dtype: DType;
  readonly predictors: readonly (1 | 2 | 3)[];
}

/** GDAL-made imagery: a linear TIN surface (float32, uint16), its hillshade (uint8), Voronoi classes, RGB. */
async function makeImagery(dir: string): Promise<Image[]> {
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 4294967296;
  };
  const lines = ['x,y,z,c', '-10,-10,500,1', '5130,-10,900,2', '-10,5130,300,3', '5130,5130,1500,4'];
  for (let i = 0; i < 300; i++) {
    lines.push(`${rand() * 5120},${rand() * 5120},${200 + 1800 * rand() ** 2},${1 + Math.floor(rand() * 12)}`);
  }
  const f = (n: string) => path.join(dir, n);
  await writeFile(f('points.csv'), `${lines.join('\n')}\n`);
  await writeFile(
    f('points.vrt'),
    `<OGRVRTDataSource><OGRVRTLayer name="points"><SrcDataSource>${f('points.csv')}</SrcDataSource>` +
      '<GeometryType>wkbPoint</GeometryType><LayerSRS>EPSG:32632</LayerSRS>' +
      '<GeometryField encoding="PointFromColumns" x="x" y="y" z="z"/></OGRVRTLayer></OGRVRTDataSource>',
  );
  const grid = ['-txe', '0', '5120', '-tye', '5120', '0', '-outsize', String(SIZE), String(SIZE), '-l', 'points'];
  await sh('gdal_grid', ['-q', '-a', 'linear', '-ot', 'Float32', ...grid, f('points.vrt'), f('dem.tif')]);
  await sh('gdal_grid', [
    '-q',
    '-a',
    'nearest',
    '-zfield',
    'c',
    '-ot',
    'Byte',
    ...grid,
    f('points.vrt'),
    f('classes.tif'),
  ]);
  await sh('gdal_translate', [
    '-q',
    '-ot',
    'UInt16',
    '-scale',
    '200',
    '2000',
    '0',
    '65535',
    f('dem.tif'),
    f('u16.tif'),
  ]);
  await sh('gdaldem', ['hillshade', '-q', '-compute_edges', f('dem.tif'), f('hillshade.tif')]);
  await sh('gdal_translate', ['-q', '-ot', 'Byte', '-scale', '200', '2000', '0', '255', f('dem.tif'), f('dem8.tif')]);
  await sh('gdalbuildvrt', ['-q', '-separate', f('rgb.vrt'), f('hillshade.tif'), f('classes.tif'), f('dem8.tif')]);
  return [
    { name: 'float32 surface', file: f('dem.tif'), dtype: 'float32', predictors: [1, 3] },
    { name: 'uint16 surface', file: f('u16.tif'), dtype: 'uint16', predictors: [1, 2] },
    { name: 'hillshade', file: f('hillshade.tif'), dtype: 'uint8', predictors: [1, 2] },
    { name: 'classes', file: f('classes.tif'), dtype: 'uint8', predictors: [1] },
    { name: 'rgb', file: f('rgb.vrt'), dtype: 'uint8', predictors: [2] },
  ];
}

function bandArrays(raster: { bands: Buffer[] }, dtype: DType): TypedArray[] {
  return raster.bands.map((b) => typedFromBytes(dtype, new Uint8Array(b)));
}

describe('deflate tiles against GDAL', () => {
  let dir: string;
  let images: Image[];
  before(async () => {
    if (!existsSync(ADDON)) await sh('sh', [path.join(ROOT, 'native/deflate/build.sh')]);
    dir = await tempDir('cogmill-deflate-');
    images = await makeImagery(dir);
  });

  it('uses the libdeflate addon (built by .ci/setup)', () => {
    useDeflateEngine('libdeflate');
    assert.equal(deflateEngine(), 'libdeflate');
  });

  it('maps ZLEVEL to libdeflate levels as libtiff does', () => {
    assert.deepEqual([1, 5, 6, 7, 9, 10, 12].map(libdeflateLevel), [1, 5, 7, 8, 10, 10, 12]);
  });

  it('encodes every tile byte for byte as GDAL does, for each predictor and level', async () => {
    useDeflateEngine('libdeflate');
    let compared = 0;
    for (const image of images) {
      const raster = await gdalRead(image.file);
      for (const predictor of image.predictors) {
        for (const level of [1, 6, 9]) {
          const out = path.join(dir, `${path.basename(image.file)}-p${predictor}-z${level}.tif`);
          await sh('gdal_translate', [
            '-q',
            ...['-co', 'TILED=YES', '-co', 'BLOCKXSIZE=512', '-co', 'BLOCKYSIZE=512', '-co', 'INTERLEAVE=PIXEL'],
            ...['-co', 'COMPRESS=DEFLATE', '-co', `PREDICTOR=${predictor}`, '-co', `ZLEVEL=${level}`],
            image.file,
            out,
          ]);
          const expected = await gdalTile(out);
          const ours = await encodeTile(bandArrays(raster, image.dtype), {
            dtype: image.dtype,
            bands: raster.bands.length,
            blockSize: SIZE,
            compression: 'deflate',
            predictor,
            level,
          });
          assert.equal(ours.length, expected.length, `${image.name}, predictor ${predictor}, level ${level}: size`);
          assert.ok(Buffer.from(ours).equals(Buffer.from(expected)), `${image.name} p${predictor} z${level}: bytes`);
          compared++;
        }
      }
    }
    assert.equal(compared, 24);
  });

  it('a worker thread compresses on its own thread, to the bytes the thread pool makes', async () => {
    useDeflateEngine('libdeflate');
    const raster = await gdalRead(images[1].file);
    const input = new Uint8Array(raster.bytes);
    const pooled = await deflateTile(input, 6);
    const url = pathToFileURL(path.join(ROOT, 'src/render/deflate.ts')).href;
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       import(workerData.url).then(async (d) => parentPort.postMessage(await d.deflateTile(workerData.input, 6)));`,
      { eval: true, workerData: { url, input } },
    );
    try {
      const [inWorker] = (await once(worker, 'message')) as [Uint8Array];
      assert.ok(Buffer.from(inWorker).equals(Buffer.from(pooled)), 'the same bytes');
      // the thread's own call, not the pool's copy: a buffer of the exact size with 4 free bytes either side for
      // the COG framing (not one of the compress bound's size, ~1.6x the bytes of an RGB tile)
      assert.equal(inWorker.byteOffset, 4);
      assert.equal(inWorker.buffer.byteLength, inWorker.byteLength + 8);
      assert.equal(pooled.buffer.byteLength, pooled.byteLength);
    } finally {
      await worker.terminate();
    }
  });

  it('falls back to node:zlib, whose tiles decode to the same bytes', async () => {
    const raster = await gdalRead(images[1].file);
    const bands = bandArrays(raster, 'uint16');
    const options = { dtype: 'uint16', bands: 1, blockSize: SIZE, compression: 'deflate', predictor: 2 } as const;
    useDeflateEngine('libdeflate');
    const native = await encodeTile(bands, options);
    useDeflateEngine('zlib');
    try {
      assert.equal(deflateEngine(), 'zlib');
      const fallback = await encodeTile(bands, options);
      assert.ok(!Buffer.from(fallback).equals(Buffer.from(native)), 'a different encoder makes different bytes');
      assert.ok(zlib.inflateSync(fallback).equals(zlib.inflateSync(native)));
      assert.ok(fallback.length < native.length * 1.05, `zlib ${fallback.length} vs libdeflate ${native.length}`);
      assert.ok(Buffer.from(await inflateTile(native, SIZE * SIZE * 2)).equals(zlib.inflateSync(native)));
    } finally {
      useDeflateEngine('libdeflate');
    }
  });
});

describe('inflateTile', () => {
  const raw = new Uint8Array(65536).map((_, i) => (i * 7) ^ (i >> 5));
  for (const engine of ['libdeflate', 'zlib'] as const) {
    it(`${engine}: never more than declared, truncated streams give what they hold, garbage is refused`, async () => {
      useDeflateEngine(engine);
      try {
        const packed = await deflateTile(raw, 6);
        assert.ok(Buffer.from(await inflateTile(packed, raw.length)).equals(Buffer.from(raw)));
        await assert.rejects(
          inflateTile(packed, raw.length - 1),
          (e) => e instanceof InflateError && e.failure === 'too-large',
        );
        const short = await inflateTile(packed, raw.length + 100);
        assert.equal(short.length, raw.length);
        const truncated = await inflateTile(packed.subarray(0, packed.length >> 1), raw.length);
        assert.ok(truncated.length > 0 && truncated.length < raw.length);
        assert.ok(Buffer.from(truncated).equals(Buffer.from(raw.subarray(0, truncated.length))));
        await assert.rejects(
          inflateTile(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), 100),
          (e) => e instanceof InflateError && e.failure === 'invalid',
        );
      } finally {
        useDeflateEngine('libdeflate');
      }
    });
  }

  it('libdeflate in a worker thread (inflated on the thread itself): the same answers', async () => {
    const url = pathToFileURL(path.join(ROOT, 'src/render/deflate.ts')).href;
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       import(workerData.url).then(async (d) => {
         d.inflateOnThisThread(true);
         const raw = new Uint8Array(65536).map((_, i) => (i * 7) ^ (i >> 5));
         const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
         const failure = (p) => p.then(() => 'resolved', (e) => e.failure);
         const packed = await d.deflateTile(raw, 6);
         const short = await d.inflateTile(packed, raw.length + 100);
         const t = await d.inflateTile(packed.subarray(0, packed.length >> 1), raw.length);
         parentPort.postMessage({
           full: same(await d.inflateTile(packed, raw.length), raw),
           tooLarge: await failure(d.inflateTile(packed, raw.length - 1)),
           short: short.length,
           shortBuffer: short.buffer.byteLength,
           truncated: t.length > 0 && t.length < raw.length && same(t, raw.subarray(0, t.length)),
           garbage: await failure(d.inflateTile(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), 100)),
         });
       });`,
      { eval: true, workerData: { url } },
    );
    try {
      const [r] = await once(worker, 'message');
      assert.deepEqual(r, {
        full: true,
        tooLarge: 'too-large',
        short: raw.length,
        // the declared size, written in place: the thread's own call, not the pool's copy
        shortBuffer: raw.length + 100,
        truncated: true,
        garbage: 'invalid',
      });
    } finally {
      await worker.terminate();
    }
  });

  it('a decoded block handed back is decoded into again on that thread, with the right bytes', async () => {
    const url = pathToFileURL(path.join(ROOT, 'src/render/deflate.ts')).href;
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       import(workerData.url).then(async (d) => {
         d.inflateOnThisThread(true);
         const a = new Uint8Array(65536).map((_, i) => (i * 7) ^ (i >> 5));
         const b = new Uint8Array(65536).map((_, i) => (i * 13) ^ (i >> 3));
         const same = (x, y) => x.length === y.length && x.every((v, i) => v === y[i]);
         const [pa, pb] = [await d.deflateTile(a, 6), await d.deflateTile(b, 6)];
         const first = await d.inflateTile(pa, a.length);
         const firstRight = same(first, a);
         const fresh = await d.inflateTile(pb, b.length);
         d.recycleDecoded(first.buffer);
         const again = await d.inflateTile(pb, b.length);
         // another size is not given that buffer; a moved (detached) buffer is never taken back
         d.recycleDecoded(fresh.buffer);
         const other = await d.inflateTile(await d.deflateTile(a.subarray(0, 1000), 6), 1000);
         const moved = await d.inflateTile(pa, a.length);
         structuredClone(moved.buffer, { transfer: [moved.buffer] });
         d.recycleDecoded(moved.buffer);
         const after = await d.inflateTile(pa, a.length);
         // a block larger than the spares may hold is not kept
         const big = new Uint8Array(17 * 1024 * 1024);
         const hugeOut = await d.inflateTile(await d.deflateTile(big, 1), big.length);
         d.recycleDecoded(hugeOut.buffer);
         const hugeAgain = await d.inflateTile(await d.deflateTile(big, 1), big.length);
         parentPort.postMessage({
           firstRight,
           reused: again.buffer === first.buffer,
           againRight: same(again, b),
           freshNotReused: fresh.buffer !== first.buffer,
           otherNotTheSpare: other.buffer !== fresh.buffer,
           afterRight: same(after, a) && after.buffer.byteLength === a.length,
           hugeNotKept: hugeAgain.buffer !== hugeOut.buffer,
         });
       });`,
      { eval: true, workerData: { url } },
    );
    try {
      const [r] = await once(worker, 'message');
      assert.deepEqual(r, {
        firstRight: true,
        reused: true,
        againRight: true,
        freshNotReused: true,
        otherNotTheSpare: true,
        afterRight: true,
        hugeNotKept: true,
      });
    } finally {
      await worker.terminate();
    }
  });
});
