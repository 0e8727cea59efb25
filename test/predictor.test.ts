/**
 * Undoing TIFF predictors in place (src/render/predictor.ts) inverts the encoder's predictors (tile.encode.ts,
 * whose tiles test/deflate.test.ts checks byte for byte against GDAL's), and reads GDAL's own predictor tiles.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { applyPredictor } from '../src/materialize/tile.encode.ts';
import { deflateEngine, inflateTile, predictor2Native, useDeflateEngine } from '../src/render/deflate.ts';
import { Engine } from '../src/render/engine.ts';
import { undoPredictorInPlace } from '../src/render/predictor.ts';
import { Raster } from '../src/render/raster.ts';
import { SourceFile } from '../src/render/source.file.ts';
import { allocTyped, bytesPerSample, type DType } from '../src/render/types.ts';
import { gdalRead, PYTHON, sh, tempDir } from './support/gdal.ts';

function pattern(dtype: DType, n: number): ReturnType<typeof allocTyped> {
  const a = allocTyped(dtype, n);
  let s = 7;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const smooth = Math.sin(i / 97) * 1000 + ((s >>> 20) & 63);
    a[i] = dtype.startsWith('float') ? smooth / 7 : dtype === 'uint8' ? (smooth | 0) & 0xff : Math.abs(smooth | 0);
  }
  return a;
}

describe('undoPredictorInPlace', () => {
  const block = 64;
  for (const [dtype, predictor] of [
    ['uint8', 2],
    ['uint16', 2],
    ['int16', 2],
    ['uint32', 2],
    ['float32', 3],
    ['float64', 3],
  ] as const) {
    for (const bands of [1, 3, 4]) {
      it(`${dtype}, predictor ${predictor}, ${bands} band(s): inverts the encoder`, () => {
        const original = pattern(dtype, block * block * bands);
        const encoded = applyPredictor(original.slice(), predictor, bands, block);
        const buf = encoded.slice().buffer;
        assert.ok(!Buffer.from(buf).equals(Buffer.from(original.buffer)), 'the predictor changed the bytes');
        undoPredictorInPlace(buf, predictor, {
          width: block,
          height: block,
          bytesPerSample: bytesPerSample(dtype),
          samplesPerPixel: bands,
        });
        assert.ok(Buffer.from(buf).equals(Buffer.from(original.buffer)));
      });
    }
  }

  it('undoes only the whole rows a short last strip holds', () => {
    const original = pattern('uint16', 16 * 16);
    const encoded = applyPredictor(original.slice(), 2, 1, 16);
    const part = encoded.slice(0, 16 * 5 * 2 + 7).buffer; // 5 rows and a bit
    undoPredictorInPlace(part, 2, { width: 16, height: 16, bytesPerSample: 2, samplesPerPixel: 1 });
    assert.ok(Buffer.from(part, 0, 160).equals(Buffer.from(original.buffer, 0, 160)));
  });

  it("reads GDAL's predictor 2 and 3 strips back to the pixels GDAL reads", async () => {
    const dir = await tempDir('cogmill-predictor-');
    const src = path.join(dir, 'src.tif');
    // a GDAL-made surface: hillshade-like gradients from gdal_create + gdal_translate -scale of a gdaldem output
    await sh('gdal_create', [
      '-q',
      '-of',
      'GTiff',
      '-outsize',
      '97',
      '61',
      '-bands',
      '1',
      '-ot',
      'Float32',
      '-burn',
      '3',
      src,
    ]);
    const dem = path.join(dir, 'dem.tif');
    await sh(PYTHON, [
      '-m',
      'osgeo_utils.gdal_calc',
      '--quiet',
      '-A',
      src,
      '--type',
      'Float32',
      '--outfile',
      dem,
      '--calc',
      'A * 100 + numpy.add.outer(numpy.arange(A.shape[0]) ** 1.5, numpy.sqrt(numpy.arange(A.shape[1])) * 40)',
    ]);
    for (const [type, predictor] of [
      ['UInt16', 2],
      ['Float32', 3],
    ] as const) {
      const out = path.join(dir, `p${predictor}.tif`);
      await sh('gdal_translate', [
        '-q',
        '-ot',
        type,
        '-co',
        'COMPRESS=DEFLATE',
        '-co',
        `PREDICTOR=${predictor}`,
        '-co',
        'BLOCKYSIZE=61',
        dem,
        out,
      ]);
      const expected = (await gdalRead(out)).bytes;
      const [offset, size] = (
        await sh(PYTHON, [
          '-c',
          "import sys\nfrom osgeo import gdal\nds = gdal.Open(sys.argv[1])\nb = ds.GetRasterBand(1)\nprint(b.GetMetadataItem('BLOCK_OFFSET_0_0', 'TIFF'), b.GetMetadataItem('BLOCK_SIZE_0_0', 'TIFF'))",
          out,
        ])
      )
        .trim()
        .split(' ')
        .map(Number);
      const file = await readFile(out);
      const bps = type === 'UInt16' ? 2 : 4;
      const raw = await inflateTile(file.subarray(offset, offset + size), 97 * 61 * bps);
      const buf = raw.slice().buffer;
      undoPredictorInPlace(buf, predictor, { width: 97, height: 61, bytesPerSample: bps, samplesPerPixel: 1 });
      assert.ok(Buffer.from(buf).equals(expected), `${type} predictor ${predictor}`);
    }
  });

  it('the reader gives the pixels GDAL reads from tiled, striped, multi-band and float predictor files', async () => {
    const dir = await tempDir('cogmill-predictor-read-');
    const src = path.join(dir, 'src.tif');
    await sh('gdal_create', [
      '-q',
      '-of',
      'GTiff',
      '-outsize',
      '300',
      '200',
      '-bands',
      '3',
      '-ot',
      'Float32',
      '-a_srs',
      'EPSG:32632',
      '-a_ullr',
      '500000',
      '5000000',
      '503000',
      '4998000',
      src,
    ]);
    const wavy = path.join(dir, 'wavy.tif');
    await sh(PYTHON, [
      ...['-m', 'osgeo_utils.gdal_calc', '--quiet', '-A', src, '--allBands', 'A', '--type', 'Float32'],
      ...[
        '--outfile',
        wavy,
        '--calc',
        'A + numpy.add.outer(numpy.arange(A.shape[0]) * 37.5, numpy.arange(A.shape[1]) ** 1.3)',
      ],
    ]);
    const engine = new Engine();
    try {
      for (const [type, predictor, layout] of [
        ['UInt16', 2, ['-co', 'TILED=YES', '-co', 'BLOCKXSIZE=128', '-co', 'BLOCKYSIZE=64']],
        ['Byte', 2, ['-co', 'BLOCKYSIZE=7', '-scale', '0', '8000', '0', '255']],
        ['UInt16', 2, ['-co', 'INTERLEAVE=BAND', '-co', 'TILED=YES']],
        ['Float32', 3, ['-co', 'BLOCKYSIZE=13']],
        ['Float64', 3, ['-co', 'TILED=YES']],
      ] as const) {
        const out = path.join(dir, `${type}-${predictor}-${layout.join('')}.tif`);
        await sh('gdal_translate', [
          '-q',
          '-ot',
          type,
          '-co',
          'COMPRESS=DEFLATE',
          '-co',
          `PREDICTOR=${predictor}`,
          ...layout,
          wavy,
          out,
        ]);
        const expected = await gdalRead(out);
        const source = new SourceFile(out);
        const raster = await Raster.open(source, engine.caches);
        const win = await raster.readWindow(0, 0, 0, 300, 200, [0, 1, 2]).finally(() => source.close());
        for (let b = 0; b < 3; b++) {
          const got = Buffer.from(win.bands[b].buffer, win.bands[b].byteOffset, win.bands[b].byteLength);
          assert.ok(
            got.equals(expected.bands[b]),
            `${type}, predictor ${predictor}, ${layout.join(' ')}: band ${b + 1}`,
          );
        }
      }
    } finally {
      await engine.close();
    }
  });
});

describe('predictor 2 in C (the addon) and in JavaScript', () => {
  it('give the same bytes both ways for every sample width, pixel stride and a short block', () => {
    assert.equal(deflateEngine(), 'libdeflate', 'the addon is built (.ci/setup builds it)');
    for (const [dtype, bytes] of [
      ['uint8', 1],
      ['uint16', 2],
      ['uint32', 4],
      ['float64', 8],
    ] as const) {
      for (const bands of [1, 3, 4, 5]) {
        const block = 24;
        const original = pattern(dtype, block * block * bands);
        const encoded: Uint8Array[] = [];
        const decoded: Uint8Array[] = [];
        for (const engine of ['libdeflate', 'zlib'] as const) {
          useDeflateEngine(engine);
          try {
            const diff = applyPredictor(original.slice(), 2, bands, block);
            encoded.push(diff.slice());
            // a strip of 9 whole rows and a part row: the part row stays as it is
            const part = diff.slice(0, block * bands * bytes * 9 + 3 * bytes).buffer;
            undoPredictorInPlace(part, 2, {
              width: block,
              height: block,
              bytesPerSample: bytes,
              samplesPerPixel: bands,
            });
            decoded.push(new Uint8Array(part));
          } finally {
            useDeflateEngine('libdeflate');
          }
        }
        const what = `${dtype}, ${bands} band(s)`;
        assert.ok(Buffer.from(encoded[0]).equals(Buffer.from(encoded[1])), `${what}: differenced bytes`);
        assert.ok(!Buffer.from(encoded[0]).equals(Buffer.from(original.buffer)), `${what}: differencing changed them`);
        assert.ok(Buffer.from(decoded[0]).equals(Buffer.from(decoded[1])), `${what}: undone bytes`);
        const rows = block * bands * bytes * 9;
        assert.ok(Buffer.from(decoded[0].subarray(0, rows)).equals(Buffer.from(original.buffer, 0, rows)), what);
      }
    }
  });

  it('refuses a shape that does not fit the bytes (no write past the buffer)', () => {
    const bytes = new Uint8Array(100);
    assert.throws(() => predictor2Native(bytes, 10, 11, 1, 1, true), RangeError);
    assert.throws(() => predictor2Native(bytes, 10, 5, 1, 3, true), RangeError);
    assert.throws(() => predictor2Native(bytes, 10, 5, 0, 1, true), RangeError);
    assert.equal(predictor2Native(bytes, 10, 10, 1, 1, true), true);
  });
});
