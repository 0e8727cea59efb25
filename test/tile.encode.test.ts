import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import sharp from 'sharp';
import { assembleCog, type CogLayout, CogLayoutError, type CogSpec, layoutCog } from '../src/materialize/cog.layout.ts';
import {
  applyPredictor,
  edgePad,
  encodeTile,
  interleaveTile,
  lzwEncode,
  undoPredictor,
  zstdAvailable,
} from '../src/materialize/tile.encode.ts';
import { allocTyped, bytesPerSample, type DType, type TypedArray } from '../src/render/types.ts';

const PYTHON = '/usr/bin/python3';
const TIMEOUT_MS = 120_000;

/** Independent TIFF LZW decoder (early change, MSB-first), used to check the encoder without GDAL. */
function lzwDecode(data: Uint8Array): Uint8Array {
  const out: number[] = [];
  let bitPos = 0;
  const read = (n: number): number => {
    let v = 0;
    for (let i = 0; i < n; i++) {
      const byte = data[(bitPos + i) >> 3] ?? 0;
      v = (v << 1) | ((byte >> (7 - ((bitPos + i) & 7))) & 1);
    }
    bitPos += n;
    return v;
  };
  let table: number[][] = [];
  let nbits = 9;
  let prev: number[] | undefined;
  const reset = () => {
    table = Array.from({ length: 258 }, (_, i) => [i]);
    nbits = 9;
    prev = undefined;
  };
  reset();
  while (bitPos + nbits <= data.length * 8) {
    const code = read(nbits);
    if (code === 257) return Uint8Array.from(out);
    if (code === 256) {
      reset();
      continue;
    }
    let entry: number[];
    if (prev === undefined) {
      entry = table[code];
    } else {
      entry = code < table.length ? table[code] : [...prev, prev[0]];
      assert.ok(entry, `LZW code ${code} out of table (${table.length})`);
      table.push([...prev, entry[0]]);
    }
    out.push(...entry);
    prev = entry;
    if (table.length >= (1 << nbits) - 1 && nbits < 12) nbits++;
  }
  throw new Error('LZW stream ended without EOI');
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

describe('lzwEncode', () => {
  it('round-trips random, repetitive and tiny inputs through an independent decoder', () => {
    const rnd = lcg(7);
    const random = Uint8Array.from({ length: 300_000 }, () => rnd() >>> 24);
    const zeros = new Uint8Array(200_000);
    const ramp = Uint8Array.from({ length: 65_536 }, (_, i) => (i * 7 + (i >> 9)) & 255);
    for (const input of [random, zeros, ramp, new Uint8Array(0), Uint8Array.of(42), Uint8Array.of(1, 1, 1, 1)]) {
      const coded = lzwEncode(input);
      assert.deepEqual(lzwDecode(coded), input);
    }
    assert.ok(lzwEncode(zeros).length < 2000, 'long runs compress');
  });

  it('round-trips every length around the 9->10 bit switch and the end-of-stream widening', () => {
    const rnd = lcg(11);
    const base = Uint8Array.from({ length: 1200 }, () => rnd() >>> 26);
    for (let n = 240; n < 1200; n += 1) {
      const input = base.subarray(0, n);
      assert.deepEqual(lzwDecode(lzwEncode(input)), input, `length ${n}`);
    }
  });

  it('writes the same bytes as libtiff for a tile that walks through 9..12 bit codes and a table reset', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cogmill-lzw-'));
    try {
      const rnd = lcg(3);
      // 96 x 96 bytes: under libtiff's 10,000-byte ratio checkpoint, over 4,094 codes.
      const tile = Uint8Array.from({ length: 96 * 96 }, (_, i) => ((rnd() >>> 28) + (i % 96 < 48 ? 0 : i & 7)) & 255);
      const raw = join(dir, 'tile.raw');
      writeFileSync(raw, tile);
      const script = `
import sys
from osgeo import gdal
import numpy as np
a = np.fromfile(sys.argv[1], dtype=np.uint8).reshape(96, 96)
ds = gdal.GetDriverByName('GTiff').Create(sys.argv[2], 96, 96, 1, gdal.GDT_Byte,
     ['TILED=YES', 'BLOCKXSIZE=96', 'BLOCKYSIZE=96', 'COMPRESS=LZW'])
ds.GetRasterBand(1).WriteArray(a)
ds = None
ds = gdal.Open(sys.argv[2])
b = ds.GetRasterBand(1)
off = int(b.GetMetadataItem('BLOCK_OFFSET_0_0', 'TIFF'))
size = int(b.GetMetadataItem('BLOCK_SIZE_0_0', 'TIFF'))
with open(sys.argv[2], 'rb') as f:
    f.seek(off)
    sys.stdout.buffer.write(f.read(size))
`;
      const libtiff = execFileSync(PYTHON, ['-c', script, raw, join(dir, 'lzw.tif')], { timeout: TIMEOUT_MS });
      const ours = lzwEncode(tile);
      assert.ok(ours.length > 4000, 'the tile needs more than 4094 codes');
      assert.deepEqual(Buffer.from(ours), libtiff);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('predictors', () => {
  const dtypes: DType[] = ['uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'float32', 'float64'];
  const blockSize = 32;

  function randomBands(dtype: DType, bands: number, seed: number): TypedArray[] {
    const rnd = lcg(seed);
    return Array.from({ length: bands }, () => {
      const a = allocTyped(dtype, blockSize * blockSize);
      const bytes = new Uint8Array(a.buffer);
      for (let i = 0; i < bytes.length; i++) bytes[i] = rnd() >>> 24;
      if (dtype === 'float32' || dtype === 'float64') {
        for (let i = 0; i < a.length; i++) if (Number.isNaN(a[i])) a[i] = i;
      }
      return a;
    });
  }

  for (const dtype of dtypes) {
    for (const predictor of dtype.startsWith('float') ? ([2, 3] as const) : ([2] as const)) {
      it(`predictor ${predictor} round-trips ${dtype} x 3 bands`, () => {
        const bands = randomBands(dtype, 3, dtype.length * 31 + predictor);
        const interleaved = interleaveTile(bands, dtype, 3, blockSize);
        const original = new Uint8Array(interleaved.buffer).slice();
        const coded = applyPredictor(interleaved, predictor, 3, blockSize).slice();
        assert.notDeepEqual(coded, original);
        assert.deepEqual(undoPredictor(coded, predictor, dtype, 3, blockSize), original);
      });
    }
  }

  it('predictor 2 differences each sample against the same band one pixel left, modulo 2^16', () => {
    const a = new Uint16Array(16 * 16);
    const b = new Uint16Array(16 * 16);
    for (let x = 0; x < 16; x++) {
      a[x] = 10 + 3 * x;
      b[x] = 65535 - x;
    }
    const coded = new Uint16Array(applyPredictor(interleaveTile([a, b], 'uint16', 2, 16), 2, 2, 16).buffer);
    assert.deepEqual([...coded.subarray(0, 8)], [10, 65535, 3, 65535, 3, 65535, 3, 65535]);
  });

  it('predictor 3 regroups bytes most significant first, then differences them (TIFF TN3)', () => {
    const ones = new Float32Array(16 * 16).fill(1); // 0x3f800000 -> LE bytes 00 00 80 3f
    const row = applyPredictor(interleaveTile([ones], 'float32', 1, 16), 3, 1, 16).subarray(0, 64);
    const expected = new Uint8Array(64);
    expected[0] = 0x3f;
    expected[16] = 0x80 - 0x3f;
    expected[32] = (0x00 - 0x80) & 255;
    assert.deepEqual(row, expected);
  });
});

describe('edgePad and interleave', () => {
  it('pads a window with the fill value and keeps its rows', () => {
    const src = Int16Array.from({ length: 3 * 2 }, (_, i) => i + 1);
    const out = edgePad(src, 3, 2, 16, -5);
    assert.ok(out instanceof Int16Array);
    assert.deepEqual([...out.subarray(0, 4)], [1, 2, 3, -5]);
    assert.deepEqual([...out.subarray(16, 20)], [4, 5, 6, -5]);
    assert.equal(out[32], -5);
  });

  it('encodes a single band given up (consume) in place, to the same bytes, and leaves it alone otherwise', async () => {
    const n = 64 * 64;
    const band = Uint16Array.from({ length: n }, (_, i) => (i * 37) % 1000);
    const copy = band.slice();
    const opts = {
      dtype: 'uint16' as const,
      bands: 1,
      blockSize: 64,
      compression: 'deflate' as const,
      predictor: 2 as const,
    };
    const kept = await encodeTile([band], opts);
    assert.deepEqual(band, copy, 'not modified without consume');
    const consumed = await encodeTile([band], { ...opts, consume: true });
    assert.deepEqual(consumed, kept);
    // the predictor ran on the band itself: its samples are now row differences
    assert.equal(band[0], copy[0]);
    assert.equal(band[1], (copy[1] - copy[0]) & 0xffff);
    assert.equal(interleaveTile([copy], 'uint16', 1, 64, true), copy, 'a single band given up is not copied');
    assert.notEqual(interleaveTile([copy], 'uint16', 1, 64), copy);
  });

  it('rejects band arrays of the wrong type or size with a clear error', () => {
    assert.throws(
      () => interleaveTile([new Float32Array(256)], 'uint16', 1, 16),
      (e: unknown) => e instanceof CogLayoutError && /Uint16Array/.test(e.message),
    );
    assert.throws(() => interleaveTile([new Uint8Array(10)], 'uint8', 1, 16), /expected 16 x 16/);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Whole COGs written with our layout + encoder, read back by GDAL.

const W = 1300;
const H = 900;
const BS = 256;

interface EncodeCase {
  name: string;
  spec: CogSpec;
  /** lossy codecs: maximum mean absolute error per band */
  maxMeanAbsError?: number;
  quality?: number;
  lossless?: boolean;
  smooth?: boolean;
}

const UTM: Pick<CogSpec, 'transform' | 'epsg' | 'geographic'> = {
  transform: [500000, 10, 0, 4000000, 0, -10],
  epsg: 32633,
  geographic: false,
};
const ROTATED: Pick<CogSpec, 'transform' | 'epsg' | 'geographic'> = {
  transform: [500000, 10, 2, 4000000, 1.5, -10],
  epsg: 32633,
  geographic: false,
};
const WGS84: Pick<CogSpec, 'transform' | 'epsg' | 'geographic'> = {
  transform: [10, 0.001, 0, 50, 0, -0.001],
  epsg: 4326,
  geographic: true,
};
const STATS_XML =
  '<GDALMetadata>\n  <Item name="STATISTICS_MAXIMUM" sample="0">32767</Item>\n' +
  '  <Item name="STATISTICS_MINIMUM" sample="0">-32767</Item>\n</GDALMetadata>\n';

function spec(
  dtype: DType,
  bands: number,
  compression: CogSpec['compression'],
  predictor: CogSpec['predictor'],
  extra: Partial<CogSpec> = {},
): CogSpec {
  return {
    width: W,
    height: H,
    bands,
    dtype,
    blockSize: BS,
    compression,
    predictor,
    ...UTM,
    ghost: { leaderTrailer: true },
    ...extra,
  };
}

const CASES: EncodeCase[] = [
  { name: 'uint8 1 band deflate p2', spec: spec('uint8', 1, 'deflate', 2) },
  { name: 'uint8 3 bands lzw p2 minisblack', spec: spec('uint8', 3, 'lzw', 2, { photometric: 'minisblack' }) },
  {
    name: 'uint8 3 bands deflate rgb, no leader/trailer',
    spec: spec('uint8', 3, 'deflate', 1, { ghost: { leaderTrailer: false } }),
  },
  { name: 'int8 1 band deflate p2', spec: spec('int8', 1, 'deflate', 2) },
  { name: 'uint16 1 band lzw p2 nodata', spec: spec('uint16', 1, 'lzw', 2, { nodata: 65535 }) },
  { name: 'uint16 1 band none', spec: spec('uint16', 1, 'none', 1) },
  {
    name: 'int16 2 bands deflate p2 rotated + statistics',
    spec: spec('int16', 2, 'deflate', 2, { ...ROTATED, nodata: -32768, gdalMetadata: STATS_XML }),
  },
  { name: 'uint32 1 band deflate p2', spec: spec('uint32', 1, 'deflate', 2) },
  { name: 'int32 1 band lzw p1', spec: spec('int32', 1, 'lzw', 1) },
  {
    name: 'float32 1 band deflate p3 nodata geographic',
    spec: spec('float32', 1, 'deflate', 3, { ...WGS84, nodata: -9999 }),
  },
  { name: 'float32 2 bands lzw p3 nodata nan', spec: spec('float32', 2, 'lzw', 3, { nodata: Number.NaN }) },
  { name: 'float64 1 band deflate p3', spec: spec('float64', 1, 'deflate', 3, { nodata: -1e30 }) },
  { name: 'float64 1 band lzw p2', spec: spec('float64', 1, 'lzw', 2) },
  { name: 'uint8 3 bands jpeg', spec: spec('uint8', 3, 'jpeg', 1), maxMeanAbsError: 3, quality: 90, smooth: true },
  {
    name: 'uint8 3 bands webp lossy',
    spec: spec('uint8', 3, 'webp', 1),
    maxMeanAbsError: 3,
    quality: 90,
    smooth: true,
  },
  { name: 'uint8 3 bands webp lossless', spec: spec('uint8', 3, 'webp', 1), lossless: true },
];
if (zstdAvailable()) {
  CASES.push(
    { name: 'uint16 1 band zstd p2 BigTIFF', spec: spec('uint16', 1, 'zstd', 2, { bigTiff: true, nodata: 0 }) },
    { name: 'float32 1 band zstd p3', spec: spec('float32', 1, 'zstd', 3) },
    { name: 'uint8 3 bands zstd rgb', spec: spec('uint8', 3, 'zstd', 2) },
  );
}

/** The known value of every pixel of every level (overviews get their own pattern, shifted by the level). */
function sampleValue(c: EncodeCase, level: number, band: number, x: number, y: number): number {
  const s = c.spec;
  if (s.nodata !== undefined && ((x * 7 + y * 3 + level) & 127) === 0) return s.nodata;
  const k = x * 131 + y * 17 + band * 1000 + level * 5000;
  switch (s.dtype) {
    case 'uint8':
      if (c.smooth)
        return Math.round(128 + 90 * Math.sin((x + band * 30) / 41 + level) * Math.cos((y - band * 20) / 33));
      return (x * 3 + y * 5 + band * 40 + level * 60) & 255;
    case 'int8':
      return ((x * 3 + y * 5 + band * 40 + level * 60) & 255) - 128;
    case 'uint16':
      return k % 65535;
    case 'int16':
      return (k % 65535) - 32767;
    case 'uint32':
      return (x * 100003 + y * 7919 + band + level * 1e6) % 4294967296;
    case 'int32':
      return ((x * 100003 + y * 7919 + band + level * 1e6) % 4294967296) - 2147483648;
    case 'float32':
      return Math.fround(Math.sin(x / 17) * 1000 + y * 0.25 + band * 0.5 - level * 3);
    case 'float64':
      return Math.sin(x / 17) * 1e6 + y * 1e-7 + band - level * 3;
  }
}

function levelArray(c: EncodeCase, level: number, band: number, width: number, height: number): TypedArray {
  const a = allocTyped(c.spec.dtype, width * height);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) a[y * width + x] = sampleValue(c, level, band, x, y);
  return a;
}

async function buildCog(c: EncodeCase): Promise<{ layout: CogLayout; bytes: Uint8Array }> {
  const layout = layoutCog(c.spec);
  const fill = c.spec.nodata ?? 0;
  const payloads: Uint8Array[] = [];
  for (let i = 0; i < layout.tileCount; i++) {
    const { level, tx, ty } = layout.tileAtFileIndex(i);
    const l = layout.levels[level];
    const w = Math.min(BS, l.width - tx * BS);
    const h = Math.min(BS, l.height - ty * BS);
    const bands = Array.from({ length: c.spec.bands }, (_, b) => {
      const win = allocTyped(c.spec.dtype, w * h);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) win[y * w + x] = sampleValue(c, level, b, tx * BS + x, ty * BS + y);
      }
      return edgePad(win, w, h, BS, fill);
    });
    payloads.push(await encodeTile(bands, { ...c.spec, quality: c.quality, lossless: c.lossless }));
  }
  return { layout, bytes: assembleCog(layout, payloads) };
}

/** One Python process validates, describes and reads back every file (GDAL start-up is the slow part). */
const READ_BACK_SCRIPT = `
import json, math, sys
from osgeo import gdal
from osgeo_utils.samples import validate_cloud_optimized_geotiff as cogval

def clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [clean(x) for x in v]
    return v

out = {}
for item in json.load(open(sys.argv[1])):
    path = item['path']
    warnings, errors, details = cogval.validate(path, full_check=True)
    info = gdal.Info(path, format='json')
    ds = gdal.Open(path)
    with open(item['out'], 'wb') as f:
        for level in range(-1, ds.GetRasterBand(1).GetOverviewCount()):
            for b in range(1, ds.RasterCount + 1):
                band = ds.GetRasterBand(b)
                if level >= 0:
                    band = band.GetOverview(level)
                f.write(band.ReadAsArray().tobytes())
    out[path] = clean({'warnings': warnings, 'errors': errors, 'info': info})
print(json.dumps(out))
`;

interface GdalReport {
  warnings: string[];
  errors: string[];
  info: {
    size: [number, number];
    geoTransform: number[];
    stac: { 'proj:epsg': number };
    metadata: Record<string, Record<string, string>>;
    bands: {
      block: [number, number];
      type: string;
      noDataValue?: number | string;
      overviews?: { size: [number, number] }[];
      metadata: Record<string, Record<string, string>>;
    }[];
  };
}

describe('COGs written by encodeTile + assembleCog, read back by GDAL', { timeout: 600_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cogmill-tiles-'));
  const built = new Map<string, { path: string; out: string; layout: CogLayout }>();
  let reports: Record<string, GdalReport> = {};

  before(async () => {
    const items: { path: string; out: string }[] = [];
    for (const [i, c] of CASES.entries()) {
      const { layout, bytes } = await buildCog(c);
      const path = join(dir, `case${i}.tif`);
      writeFileSync(path, bytes);
      const item = { path, out: join(dir, `case${i}.bin`) };
      items.push(item);
      built.set(c.name, { ...item, layout });
    }
    const list = join(dir, 'files.json');
    writeFileSync(list, JSON.stringify(items));
    const stdout = execFileSync(PYTHON, ['-c', READ_BACK_SCRIPT, list], {
      timeout: TIMEOUT_MS,
      maxBuffer: 64 * 1024 * 1024,
    });
    reports = JSON.parse(stdout.toString());
  });

  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const c of CASES) {
    it(c.name, () => {
      const file = built.get(c.name)!;
      const report = reports[file.path];
      assert.deepEqual(report.errors, [], 'validator errors');
      assert.deepEqual(report.warnings, [], 'validator warnings');
      const info = report.info;
      assert.deepEqual(info.size, [W, H]);
      assert.deepEqual(info.geoTransform, [...c.spec.transform]);
      assert.equal(info.stac['proj:epsg'], c.spec.epsg);
      assert.equal(info.bands.length, c.spec.bands);
      const levels = file.layout.levels;
      assert.equal(levels.length, 4, '1300 x 900 at 256 has 3 overviews (650, 325, 162)');
      for (const band of info.bands) {
        assert.deepEqual(band.block, [BS, BS]);
        assert.deepEqual(
          band.overviews?.map((o) => o.size),
          levels.slice(1).map((l) => [l.width, l.height]),
        );
        if (c.spec.nodata === undefined) assert.equal(band.noDataValue, undefined);
        else if (Number.isNaN(c.spec.nodata)) assert.equal(band.noDataValue, 'NaN');
        else assert.equal(band.noDataValue, c.spec.nodata);
      }
      if (c.spec.gdalMetadata) assert.equal(info.bands[0].metadata['']?.STATISTICS_MAXIMUM, '32767');
      const expectedCompression = { deflate: 'DEFLATE', lzw: 'LZW', zstd: 'ZSTD', jpeg: 'YCbCr JPEG', webp: 'WEBP' };
      if (c.spec.compression !== 'none') {
        assert.equal(info.metadata.IMAGE_STRUCTURE?.COMPRESSION, expectedCompression[c.spec.compression]);
      }

      // Pixels: every band of every level, as GDAL decodes them.
      const got = readFileSync(file.out);
      const sampleBytes = bytesPerSample(c.spec.dtype);
      let pos = 0;
      for (const l of levels) {
        for (let b = 0; b < c.spec.bands; b++) {
          const n = l.width * l.height * sampleBytes;
          const gotBand = got.subarray(pos, pos + n);
          pos += n;
          const want = levelArray(c, l.level, b, l.width, l.height);
          const wantBytes = Buffer.from(want.buffer, want.byteOffset, want.byteLength);
          if (c.maxMeanAbsError === undefined) {
            if (!gotBand.equals(wantBytes)) {
              const i = gotBand.findIndex((v, k) => v !== wantBytes[k]);
              const px = Math.floor(i / sampleBytes);
              assert.fail(
                `level ${l.level} band ${b + 1}: first difference at pixel (${px % l.width}, ${Math.floor(px / l.width)})`,
              );
            }
          } else {
            let sum = 0;
            for (let i = 0; i < n; i++) sum += Math.abs(gotBand[i] - wantBytes[i]);
            const mean = sum / n;
            assert.ok(mean <= c.maxMeanAbsError, `level ${l.level} band ${b + 1}: mean abs error ${mean.toFixed(2)}`);
          }
        }
      }
      assert.equal(pos, got.length);
    });
  }
});

describe('JPEG tiles', () => {
  it('a 1-band JPEG tile is a 1-component (grayscale) JPEG of the tile size that decodes to the samples', async () => {
    const gray = new Uint8Array(256 * 256).map((_, i) => (i >> 8) ^ (i & 255));
    const jpeg = await encodeTile([gray], {
      dtype: 'uint8',
      bands: 1,
      blockSize: 256,
      compression: 'jpeg',
      predictor: 1,
    });
    // the frame header (SOF0..SOF2): height, width, component count
    const sof = jpeg.findIndex((v, i) => v === 0xff && jpeg[i + 1] >= 0xc0 && jpeg[i + 1] <= 0xc2);
    assert.ok(sof > 0, 'a frame header');
    assert.equal((jpeg[sof + 5] << 8) | jpeg[sof + 6], 256, 'height');
    assert.equal((jpeg[sof + 7] << 8) | jpeg[sof + 8], 256, 'width');
    assert.equal(jpeg[sof + 9], 1, 'one component');
    const { data, info } = await sharp(jpeg).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height, info.channels], [256, 256, 1]);
    let sum = 0;
    for (let i = 0; i < gray.length; i++) sum += Math.abs(data[i] - gray[i]);
    assert.ok(sum / gray.length < 4, `mean abs error ${(sum / gray.length).toFixed(2)}`);
  });

  it('refuses JPEG for non-uint8 data', async () => {
    await assert.rejects(
      encodeTile([new Uint16Array(256 * 256)], {
        dtype: 'uint16',
        bands: 1,
        blockSize: 256,
        compression: 'jpeg',
        predictor: 1,
      }),
      /jpeg needs uint8/,
    );
  });
});
