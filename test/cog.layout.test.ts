import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  assembleCog,
  buildHeader,
  CogLayoutError,
  type CogSpec,
  cogLevels,
  fileSize,
  frameTile,
  ghostArea,
  layoutCog,
  needsBigTiff,
  tileDataOffsets,
} from '../src/materialize/cog.layout.ts';
import {
  accumulate,
  accumulateInterleaved,
  accumulatePredicted8,
  newAccumulators,
} from '../src/materialize/statistics.xml.ts';
import { formatGdalNodata } from '../src/materialize/tiff.geo.ts';
import { encodeTile } from '../src/materialize/tile.encode.ts';
import { crsFromEpsg, geoKeysForCrs } from '../src/render/crs.ts';
import { useDeflateEngine } from '../src/render/deflate.ts';
import { GiB } from '../src/render/types.ts';
import { validateCog } from './support/gdal.ts';
import { parseTiff, type TiffIfd, tiffEntry } from './support/tiff.read.ts';

const PYTHON = '/usr/bin/python3';
const TIMEOUT_MS = 120_000;
const run = (cmd: string, args: string[]) =>
  execFileSync(cmd, args, { timeout: TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 }).toString();

const BASE: CogSpec = {
  width: 1300,
  height: 900,
  bands: 1,
  dtype: 'uint16',
  blockSize: 256,
  compression: 'deflate',
  predictor: 2,
  transform: [500000, 10, 0, 4000000, 0, -10],
  epsg: 32633,
  geographic: false,
  nodata: 0,
  ghost: { leaderTrailer: true },
};

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0);
}

describe('cogLevels', () => {
  it('halves (floor) until both sides fit in one block, like GDAL', () => {
    assert.deepEqual(
      cogLevels(1300, 900, 256).map((l) => [l.width, l.height, l.tilesX, l.tilesY, l.tileCount]),
      [
        [1300, 900, 6, 4, 24],
        [650, 450, 3, 2, 6],
        [325, 225, 2, 1, 2],
        [162, 112, 1, 1, 1],
      ],
    );
    assert.equal(cogLevels(512, 512, 512).length, 1);
    assert.deepEqual(
      cogLevels(513, 10, 512).map((l) => [l.width, l.height]),
      [
        [513, 10],
        [256, 5],
      ],
    );
    assert.deepEqual(
      cogLevels(100_000, 1, 512).map((l) => l.height),
      Array(9).fill(1),
    );
    assert.deepEqual(
      cogLevels(100_000, 100_000, 512).map((l) => l.width),
      [100000, 50000, 25000, 12500, 6250, 3125, 1562, 781, 390],
    );
  });
});

describe('layoutCog / buildHeader', () => {
  it('header size depends on the spec only, never on the tile sizes', () => {
    const layout = layoutCog(BASE);
    const rnd = lcg(5);
    const samples = [
      new Array(layout.tileCount).fill(0),
      Array.from({ length: layout.tileCount }, () => 1 + (rnd() % 100_000)),
      Array.from({ length: layout.tileCount }, (_, i) => (i % 3 === 0 ? 0 : 2_000_000)),
    ];
    for (const counts of samples) assert.equal(buildHeader(layout, counts).length, layout.headerBytes);
    assert.equal(layoutCog({ ...BASE }).headerBytes, layout.headerBytes);
  });

  it('orders tiles smallest overview first, full resolution last, row-major within a level', () => {
    const layout = layoutCog(BASE);
    assert.equal(layout.tileCount, 33);
    assert.deepEqual(
      layout.levels.map((l) => l.fileIndexStart),
      [9, 3, 1, 0],
    );
    assert.deepEqual(layout.tileAtFileIndex(0), { level: 3, tx: 0, ty: 0 });
    assert.deepEqual(layout.tileAtFileIndex(2), { level: 2, tx: 1, ty: 0 });
    assert.deepEqual(layout.tileAtFileIndex(10), { level: 0, tx: 1, ty: 0 });
    assert.equal(layout.tileIndexInFile(0, 5, 3), 32);
    for (let i = 0; i < layout.tileCount; i++) {
      const t = layout.tileAtFileIndex(i);
      assert.equal(layout.tileIndexInFile(t.level, t.tx, t.ty), i);
    }
    assert.throws(() => layout.tileIndexInFile(0, 6, 0), CogLayoutError);
    assert.throws(() => layout.tileAtFileIndex(33), CogLayoutError);
  });

  it('places payloads after their 4-byte leader, skips sparse tiles, and frames tiles like GDAL', () => {
    const layout = layoutCog(BASE);
    const counts = Array.from({ length: layout.tileCount }, (_, i) => (i === 1 ? 0 : 100 + i));
    const offsets = tileDataOffsets(layout, counts);
    assert.equal(offsets[0], layout.headerBytes + 4);
    assert.equal(offsets[1], 0);
    assert.equal(offsets[2], layout.headerBytes + 4 + 100 + 8);
    let expectedSize = layout.headerBytes;
    for (const n of counts) if (n > 0) expectedSize += n + 8;
    assert.equal(fileSize(layout, counts), expectedSize);

    const framed = frameTile(layout, Uint8Array.of(9, 8, 7, 6, 5, 4));
    assert.deepEqual([...framed], [6, 0, 0, 0, 9, 8, 7, 6, 5, 4, 7, 6, 5, 4]);
    const plain = layoutCog({ ...BASE, ghost: { leaderTrailer: false } });
    assert.equal(tileDataOffsets(plain, counts)[2], plain.headerBytes + 100);
    assert.throws(() => tileDataOffsets(layout, [1, 2, 3]), /expected 33 tile byte counts/);
  });

  it('writes the ghost area GDAL writes, declaring leader/trailer only when used', () => {
    assert.equal(
      ghostArea(true),
      'GDAL_STRUCTURAL_METADATA_SIZE=000140 bytes\nLAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\n' +
        'BLOCK_LEADER=SIZE_AS_UINT4\nBLOCK_TRAILER=LAST_4_BYTES_REPEATED\nKNOWN_INCOMPATIBLE_EDITION=NO\n ',
    );
    assert.equal(
      ghostArea(false),
      'GDAL_STRUCTURAL_METADATA_SIZE=000077 bytes\nLAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\n' +
        'KNOWN_INCOMPATIBLE_EDITION=NO\n ',
    );
    const header = buildHeader(layoutCog(BASE), new Array(33).fill(0));
    assert.equal(parseTiff(header).ifds[0].offset, 192);
    assert.equal(Buffer.from(header.subarray(8, 191)).toString('latin1'), ghostArea(true));
    const big = layoutCog({ ...BASE, bigTiff: true });
    assert.equal(big.ifds[0].offset, 200);
  });

  it('builds the 100,000 x 100,000 x 10 band uint16 header (BigTIFF, 51,285 tiles) from the sizes alone', () => {
    const spec: CogSpec = {
      ...BASE,
      width: 100_000,
      height: 100_000,
      bands: 10,
      blockSize: 512,
      gdalMetadata: '<GDALMetadata>\n  <Item name="STATISTICS_MEAN" sample="0">1</Item>\n</GDALMetadata>\n',
    };
    const layout = layoutCog(spec);
    const header = buildHeader(layout, new Uint32Array(layout.tileCount));
    assert.equal(layout.bigTiff, true, '200 GB of raw tiles needs BigTIFF');
    assert.equal(layout.tileCount, 51_285);
    assert.equal(header.length, layout.headerBytes);
    // 8-byte offsets + 4-byte counts per tile, plus a few KiB of IFDs.
    assert.ok(layout.headerBytes < 51_285 * 12 + 8 * 1024, `header ${layout.headerBytes} bytes`);
    assert.ok(layout.ifdBytesEnd <= 16 * 1024, 'every IFD and GeoTIFF/GDAL tag in the first 16 KiB');

    const tiff = parseTiff(header);
    assert.equal(tiff.bigTiff, true);
    assert.equal(tiff.ifds.length, 9);
    const offsets = tiffEntry(tiff.ifds[0], 324)!;
    assert.equal(offsets.type, 16);
    assert.equal(offsets.count, 196 * 196);
    assert.equal(tiffEntry(tiff.ifds[0], 256)!.type, 4, 'width 100000 needs LONG');
    assert.deepEqual(tiffEntry(tiff.ifds[0], 258)!.values, Array(10).fill(16));
    assert.deepEqual(tiffEntry(tiff.ifds[0], 338)!.values, Array(9).fill(0), '9 extra samples after the gray one');
  });

  it('chooses BigTIFF only past 4 GiB', () => {
    const classic = layoutCog({ ...BASE, bigTiff: false });
    const room = 2 ** 32 - 1 - classic.headerBytes - classic.tileCount * 8;
    assert.equal(needsBigTiff(BASE, room), false);
    assert.equal(needsBigTiff(BASE, room + 1), true);
    assert.equal(layoutCog(BASE).bigTiff, false);
    assert.equal(
      layoutCog({ ...BASE, width: 40_000, height: 40_000, compression: 'none', predictor: 1 }).bigTiff,
      true,
    );
    assert.equal(layoutCog({ ...BASE, width: 40_000, height: 40_000, bigTiff: false }).bigTiff, false);
    const counts = new Array(classic.tileCount).fill(Math.ceil((5 * GiB) / classic.tileCount));
    assert.throws(
      () => buildHeader(classic, counts),
      (e: unknown) => e instanceof CogLayoutError && e.kind === 'too-large' && /bigTiff: true/.test(e.message),
    );
  });

  it('refuses specs GDAL could not read, with actionable messages', () => {
    const bad: [Partial<CogSpec>, RegExp][] = [
      [{ compression: 'jpeg', predictor: 1 }, /jpeg compression needs uint8/],
      [
        { dtype: 'uint8', bands: 1, compression: 'webp', predictor: 1 },
        /webp compression needs uint8 data with 3 bands/,
      ],
      [{ predictor: 3 }, /predictor 3 is the floating point predictor/],
      [{ compression: 'none' }, /predictor 2 only works with deflate, lzw or zstd/],
      [{ blockSize: 250 }, /multiple of 16/],
      [{ width: 0 }, /positive integers/],
      [{ transform: [0, 0, 0, 0, 0, 0] }, /not invertible/],
      [{ photometric: 'rgb' }, /needs at least 3 bands/],
    ];
    for (const [patch, message] of bad) {
      assert.throws(
        () => layoutCog({ ...BASE, ...patch }),
        (e: unknown) => e instanceof CogLayoutError && e.kind === 'bad-request' && message.test(e.message),
      );
    }
  });
});

describe('tags', () => {
  it('formats GDAL_NODATA like C printf %.18g', () => {
    const values = [
      0,
      -0,
      1,
      -1,
      255,
      65535,
      -32768,
      4294967295,
      -9999.5,
      0.1,
      1e-5,
      1.5e-4,
      3.4028234663852886e38,
      1e17,
      1e18,
      123456789012345680,
      -1e30,
      5e-324,
      2.5,
      1 / 3,
      -3.4028234663852886e38,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
    ];
    const script = `import json,sys\nprint(json.dumps(['%.18g' % float(v) for v in json.loads(sys.argv[1])]))`;
    // Shortest round-trip spellings; Python's float() reads them (and "-0", "Infinity") exactly.
    const asJson = JSON.stringify(values.map((v) => (Object.is(v, -0) ? '-0' : String(v))));
    const expected = JSON.parse(run(PYTHON, ['-c', script, asJson]));
    assert.deepEqual(
      values.map((v) => formatGdalNodata(v)),
      expected,
    );
    assert.equal(formatGdalNodata(Number.NaN), 'nan');
  });

  it('writes scale + tiepoint for north-up grids, a transformation matrix otherwise, and the GeoKeys GDAL writes', () => {
    const north = parseTiff(buildHeader(layoutCog(BASE), new Array(33).fill(1))).ifds;
    assert.deepEqual(tiffEntry(north[0], 33550)!.values, [10, 10, 0]);
    assert.deepEqual(tiffEntry(north[0], 33922)!.values, [0, 0, 0, 500000, 4000000, 0]);
    const utm = geoKeysForCrs(crsFromEpsg(32633));
    assert.deepEqual(tiffEntry(north[0], 34735)!.values, utm.directory);
    assert.equal(tiffEntry(north[0], 34737)!.text, `${utm.ascii}\0`);
    assert.equal(tiffEntry(north[0], 42113)!.text, '0\0');
    assert.equal(tiffEntry(north[0], 254), undefined);
    for (const ovr of north.slice(1)) {
      assert.deepEqual(tiffEntry(ovr, 254)!.values, [1]);
      assert.equal(tiffEntry(ovr, 42113)!.text, '0\0', 'GDAL repeats nodata on overviews');
      assert.equal(tiffEntry(ovr, 34735), undefined);
    }
    const rotated = parseTiff(
      buildHeader(
        layoutCog({ ...BASE, transform: [10, 0.5, 0.1, 50, 0.2, -0.5], epsg: 4326, geographic: true }),
        new Array(33).fill(1),
      ),
    ).ifds[0];
    assert.equal(tiffEntry(rotated, 33550), undefined);
    assert.deepEqual(tiffEntry(rotated, 34264)!.values, [0.5, 0.1, 0, 10, 0.2, -0.5, 0, 50, 0, 0, 0, 0, 0, 0, 0, 1]);
    const wgs84 = geoKeysForCrs(crsFromEpsg(4326));
    assert.deepEqual(tiffEntry(rotated, 34735)!.values, wgs84.directory);
    assert.deepEqual(tiffEntry(rotated, 34736)!.values, wgs84.doubles);
  });
});

describe('against GDAL', { timeout: 600_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'cogmill-layout-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  async function writeCog(spec: CogSpec, name: string, sparse: (level: number, tx: number, ty: number) => boolean) {
    const layout = layoutCog(spec);
    const bs = layout.blockSize;
    const payloads: (Uint8Array | undefined)[] = [];
    for (let i = 0; i < layout.tileCount; i++) {
      const { level, tx, ty } = layout.tileAtFileIndex(i);
      if (sparse(level, tx, ty)) {
        payloads.push(undefined);
        continue;
      }
      const bands = Array.from({ length: spec.bands }, (_, b) =>
        Uint16Array.from({ length: bs * bs }, (_, k) => {
          const x = tx * bs + (k % bs);
          const y = ty * bs + Math.floor(k / bs);
          return (x * 7 + y * 13 + b * 1000 + level * 20000) % 9000;
        }),
      );
      payloads.push(await encodeTile(bands, spec));
    }
    const path = join(dir, name);
    const bytes = assembleCog(layout, payloads);
    writeFileSync(path, bytes);
    return { layout, path, bytes, payloads };
  }

  it('has the IFD structure and ghost area of a COG written by gdal_translate -of COG', async () => {
    const { path, bytes } = await writeCog(BASE, 'ours.tif', () => false);
    const gdalPath = join(dir, 'gdal.tif');
    run('gdal_translate', [
      '-q',
      '-of',
      'COG',
      '-co',
      'BLOCKSIZE=256',
      '-co',
      'COMPRESS=DEFLATE',
      '-co',
      'PREDICTOR=YES',
      path,
      gdalPath,
    ]);
    const theirs = new Uint8Array(readFileSync(gdalPath));
    const a = parseTiff(bytes);
    const b = parseTiff(theirs);
    assert.equal(a.ifds[0].offset, b.ifds[0].offset);
    assert.deepEqual(bytes.subarray(0, a.ifds[0].offset), theirs.subarray(0, b.ifds[0].offset), 'header + ghost bytes');
    // GDAL adds citation GeoKeys (GeoAsciiParams and more keys); everything else is the same tag for tag.
    const shape = (ifd: TiffIfd) =>
      ifd.entries
        .filter((e) => e.tag !== 34737 && e.tag !== 34735)
        .map((e) => [e.tag, e.type, e.count, e.tag === 324 || e.tag === 325 ? 0 : e.values]);
    assert.equal(a.ifds.length, b.ifds.length);
    for (let i = 0; i < a.ifds.length; i++) assert.deepEqual(shape(a.ifds[i]), shape(b.ifds[i]), `IFD ${i}`);
    const keys = (ifd: TiffIfd) => {
      const v = tiffEntry(ifd, 34735)!.values;
      return new Map(Array.from({ length: v[3] }, (_, k) => [v[4 + 4 * k], v[7 + 4 * k]]));
    };
    const gdalKeys = keys(b.ifds[0]);
    for (const [id, value] of keys(a.ifds[0])) assert.equal(gdalKeys.get(id), value, `GeoKey ${id}`);
    // Same tile order: sorted offsets of GDAL's file walk the levels smallest first like ours.
    const firstOffset = (t: typeof a, i: number) => tiffEntry(t.ifds[i], 324)!.values[0];
    for (const t of [a, b]) assert.ok(firstOffset(t, 3) < firstOffset(t, 2) && firstOffset(t, 1) < firstOffset(t, 0));
  });

  it('serves a virtual-COG style file (uncompressed, no leader/trailer, sparse tiles) that GDAL reads as nodata', async () => {
    const spec: CogSpec = {
      ...BASE,
      bands: 3,
      compression: 'none',
      predictor: 1,
      nodata: 9999,
      ghost: { leaderTrailer: false },
    };
    const isSparse = (level: number, tx: number, ty: number) =>
      level === 3 || (level === 0 && (tx + ty) % 3 === 0) || (level === 1 && tx === 2);
    const { layout, path, payloads } = await writeCog(spec, 'virtual.tif', isSparse);

    // Every offset follows from the sparse pattern and the fixed tile size alone.
    const counts = payloads.map((p) => p?.length ?? 0);
    const offsets = tileDataOffsets(layout, counts);
    let present = 0;
    for (let i = 0; i < layout.tileCount; i++) {
      if (counts[i] === 0) {
        assert.equal(offsets[i], 0);
      } else {
        assert.equal(counts[i], layout.rawTileBytes);
        assert.equal(offsets[i], layout.headerBytes + present * layout.rawTileBytes);
        present++;
      }
    }
    assert.equal(fileSize(layout, counts), layout.headerBytes + present * 256 * 256 * 3 * 2);

    const validation = await validateCog(path);
    assert.deepEqual([validation.errors, validation.warnings], [[], []], validation.output);

    const info = JSON.parse(run('gdalinfo', ['-json', path]));
    assert.deepEqual(info.size, [1300, 900]);
    assert.deepEqual(info.geoTransform, [500000, 10, 0, 4000000, 0, -10]);
    assert.equal(info.stac['proj:epsg'], 32633);
    assert.equal(info.bands[2].noDataValue, 9999);
    assert.deepEqual(info.bands[0].block, [256, 256]);
    assert.equal(info.bands[0].overviews.length, 3);

    // Read every level and check sparse tiles come back as nodata and the rest as written.
    const script = `
import sys
from osgeo import gdal
ds = gdal.Open(sys.argv[1])
for level in range(-1, 3):
    for b in range(1, 4):
        band = ds.GetRasterBand(b) if level < 0 else ds.GetRasterBand(b).GetOverview(level)
        sys.stdout.buffer.write(band.ReadAsArray().tobytes())
`;
    const raw = execFileSync(PYTHON, ['-c', script, path], { timeout: TIMEOUT_MS, maxBuffer: 64 * 1024 * 1024 });
    const got = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
    let pos = 0;
    let sparseSeen = 0;
    for (const l of layout.levels) {
      for (let b = 0; b < 3; b++) {
        for (let y = 0; y < l.height; y++) {
          for (let x = 0; x < l.width; x++) {
            const sparse = isSparse(l.level, Math.floor(x / 256), Math.floor(y / 256));
            const want = sparse ? 9999 : (x * 7 + y * 13 + b * 1000 + l.level * 20000) % 9000;
            if (got[pos] !== want) assert.fail(`level ${l.level} band ${b + 1} (${x}, ${y}): ${got[pos]} != ${want}`);
            if (sparse) sparseSeen++;
            pos++;
          }
        }
      }
    }
    assert.equal(pos, got.length);
    assert.ok(sparseSeen > 100_000);
  });

  it('writes a BigTIFF COG GDAL validates and reads', async () => {
    const spec: CogSpec = { ...BASE, bigTiff: true, compression: 'zstd' };
    const { path, bytes } = await writeCog(spec, 'big.tif', (level, tx) => level === 0 && tx === 5);
    assert.deepEqual([...bytes.subarray(0, 4)], [0x49, 0x49, 43, 0]);
    const validation = await validateCog(path);
    assert.deepEqual([validation.errors, validation.warnings], [[], []], validation.output);
    const stats = run('gdalinfo', ['-json', '-mm', path]);
    const band = JSON.parse(stats).bands[0];
    assert.equal(band.noDataValue, 0);
    assert.equal(band.computedMin, 1, 'pattern minimum (0 is nodata)');
    assert.equal(band.computedMax, 8999);
  });
});

describe('band statistics accumulated tile by tile', () => {
  it('equal sums, squares, extremes and counts taken pixel by pixel, for every type and with or without a mask', () => {
    const n = 64 * 64;
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const arrays = [
      Uint8Array.from({ length: n }, () => Math.floor(rnd() * 256)),
      Int8Array.from({ length: n }, () => Math.floor(rnd() * 256) - 128),
      Uint16Array.from({ length: n }, () => Math.floor(rnd() * 65536)),
      Int16Array.from({ length: n }, () => Math.floor(rnd() * 65536) - 32768),
      Float32Array.from({ length: n }, (_, i) => (i % 97 === 0 ? Number.NaN : rnd() * 1000 - 500)),
    ];
    const full = new Uint8Array(n).fill(255);
    const part = Uint8Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 0 : 255));
    for (const data of arrays) {
      for (const mask of [full, part]) {
        const acc = newAccumulators(1);
        // two tiles into one accumulator, as a materialisation adds them
        const valid = (m: Uint8Array) => m.reduce((k, v) => k + (v === 0 ? 0 : 1), 0);
        accumulate(acc, [data], mask, valid(mask));
        accumulate(
          acc,
          [data.subarray(0, n / 2).map((v) => v)],
          mask.subarray(0, n / 2),
          valid(mask.subarray(0, n / 2)),
        );
        let count = 0;
        let sum = 0;
        let sumSq = 0;
        let min = Number.POSITIVE_INFINITY;
        let max = Number.NEGATIVE_INFINITY;
        for (const [d, m] of [
          [data, mask],
          [data.subarray(0, n / 2), mask.subarray(0, n / 2)],
        ] as const)
          for (let i = 0; i < m.length; i++) {
            const v = d[i];
            if (m[i] === 0 || Number.isNaN(v)) continue;
            count++;
            sum += v;
            sumSq += v * v;
            min = Math.min(min, v);
            max = Math.max(max, v);
          }
        const what = `${data.constructor.name}, ${mask === full ? 'all valid' : 'masked'}`;
        assert.equal(acc[0].count, count, what);
        assert.equal(acc[0].min, min, what);
        assert.equal(acc[0].max, max, what);
        assert.ok(Math.abs(acc[0].sum - sum) <= 1e-9 * Math.abs(sumSq), what);
        assert.ok(Math.abs(acc[0].sumSq - sumSq) <= 1e-12 * sumSq, what);
      }
    }
  });

  it('a tile given pixel-interleaved adds what its bands given one by one add', () => {
    const n = 64 * 64;
    let seed = 11;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const full = new Uint8Array(n).fill(255);
    const part = Uint8Array.from({ length: n }, (_, i) => (i % 5 === 0 ? 0 : 255));
    for (const make of [
      (k: number) => Uint8Array.from({ length: k }, () => Math.floor(rnd() * 256)),
      (k: number) => Uint16Array.from({ length: k }, () => Math.floor(rnd() * 65536)),
      (k: number) => Int16Array.from({ length: k }, () => Math.floor(rnd() * 65536) - 32768),
      (k: number) => Float32Array.from({ length: k }, () => rnd() * 100),
    ]) {
      for (const bands of [1, 2, 3, 4, 5]) {
        for (const mask of [full, part]) {
          const samples = make(n * bands);
          const planes = Array.from({ length: bands }, (_, b) => samples.filter((_, i) => i % bands === b));
          const valid = mask.reduce((k, v) => k + (v === 0 ? 0 : 1), 0);
          const one = newAccumulators(bands);
          const each = newAccumulators(bands);
          accumulateInterleaved(one, samples, bands, mask, valid);
          accumulate(each, planes, mask, valid);
          // and the same with the counting loops in JavaScript (no addon): the C counts equal them
          const js = newAccumulators(bands);
          useDeflateEngine('zlib');
          try {
            accumulateInterleaved(js, samples, bands, mask, valid);
          } finally {
            useDeflateEngine('libdeflate');
          }
          // every band's random values differ: a band's counts taken for another's would show here
          const what = `${samples.constructor.name} x ${bands}, ${mask === full ? 'all valid' : 'masked'}`;
          assert.deepEqual(one, each, what);
          assert.deepEqual(one, js, `${what}, C and JavaScript`);
        }
      }
    }
  });

  it('8-bit samples still differenced count as their values, and are left differenced', () => {
    let seed = 5;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const width = 48;
    const rows = 20;
    for (const bands of [1, 2, 3, 4]) {
      // smooth rows (small differences) with jumps, every band its own
      const samples = new Uint8Array(width * rows * bands);
      for (let i = 0; i < samples.length; i++) samples[i] = (i % 7 === 0 ? rnd() * 256 : (i / bands) % 200) | 0;
      // predictor 2 applied: each sample minus the same band's sample before it in its row, 8-bit wrap
      const predicted = samples.slice();
      for (let y = 0; y < rows; y++)
        for (let x = width - 1; x > 0; x--)
          for (let b = 0; b < bands; b++) {
            const i = (y * width + x) * bands + b;
            predicted[i] = (samples[i] - samples[i - bands]) & 0xff;
          }
      const before = predicted.slice();
      const want = newAccumulators(bands);
      accumulateInterleaved(want, samples, bands, new Uint8Array(width * rows).fill(255), width * rows);
      const got = newAccumulators(bands);
      assert.ok(accumulatePredicted8(got, predicted, bands, width), 'counted in C');
      assert.deepEqual(got, want, `${bands} bands`);
      assert.deepEqual(predicted, before, 'the bytes are not undone');
    }
    // without the addon the caller is told to read the samples
    useDeflateEngine('zlib');
    try {
      assert.equal(accumulatePredicted8(newAccumulators(1), new Uint8Array(16), 1, 4), false);
    } finally {
      useDeflateEngine('libdeflate');
    }
  });
});
