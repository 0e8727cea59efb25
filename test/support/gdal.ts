/** Thin helpers around the GDAL command-line tools, the reference reader/writer of the tests. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  allocTyped,
  type DType,
  type Grid,
  type Pixels,
  type TypedArray,
  typedFromBytes,
} from '../../src/render/types.ts';

const run = promisify(execFile);

export const PYTHON = '/usr/bin/python3';

export async function sh(
  cmd: string,
  args: readonly string[],
  timeoutMs = 120_000,
  env: Record<string, string> = {},
): Promise<string> {
  const { stdout } = await run(cmd, args as string[], {
    timeout: timeoutMs,
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, ...env },
  });
  return stdout;
}

const madeDirs = new Set<string>();
let cleanupInstalled = false;

/**
 * A fresh folder of its own (mkdtemp) under the OS temp folder, removed when the test process exits (each test file
 * runs in its own process), so no run sees another run's files and nothing is left behind.
 */
export async function tempDir(prefix = 'cogmill-test-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  madeDirs.add(dir);
  if (!cleanupInstalled) {
    cleanupInstalled = true;
    process.once('exit', () => {
      for (const d of madeDirs) rmSync(d, { recursive: true, force: true });
    });
  }
  return dir;
}

/**
 * A `tempDir` holding what a Python script wrote with GDAL: `script` runs with the folder as argv[1] and this
 * support folder (gdal_write.py) as argv[2].
 */
export async function gdalFixtures(prefix: string, script: string): Promise<string> {
  const dir = await tempDir(prefix);
  await writeFile(path.join(dir, 'fixtures.py'), script);
  await sh(PYTHON, [path.join(dir, 'fixtures.py'), dir, import.meta.dirname]);
  return dir;
}

/** Remove a folder made by `tempDir` now (it is otherwise removed at exit). */
export async function removeTempDir(dir: string): Promise<void> {
  madeDirs.delete(dir);
  await rm(dir, { recursive: true, force: true });
}

let fixtures: Promise<string> | undefined;
/** The GDAL-written fixtures, made once per test process. */
export function fixtureDir(): Promise<string> {
  fixtures ??= (async () => {
    const dir = await tempDir('cogmill-fixtures-');
    await sh(PYTHON, [path.join(import.meta.dirname, 'make_fixtures.py'), dir]);
    return dir;
  })();
  return fixtures;
}

const GDAL_TYPE: Record<DType, string> = {
  uint8: 'Byte',
  int8: 'Int8',
  uint16: 'UInt16',
  int16: 'Int16',
  uint32: 'UInt32',
  int32: 'Int32',
  float32: 'Float32',
  float64: 'Float64',
};

export interface Reference {
  readonly bands: TypedArray[];
  readonly valid: Uint8Array;
}

/** gdalwarp the sources onto `grid`; `dstNodata` marks invalid pixels. Later sources win, like gdalwarp. */
export async function gdalwarp(
  sources: readonly string[],
  grid: Grid,
  opts: { resampling: string; dtype: DType; bands: number; dstNodata: number; extra?: readonly string[] },
): Promise<Reference> {
  const dir = await tempDir('cogmill-warp-');
  try {
    const gt = grid.transform;
    const te = [gt[0], gt[3] + grid.height * gt[5], gt[0] + grid.width * gt[1], gt[3]];
    const out = path.join(dir, 'out.img');
    await sh('gdalwarp', [
      '-q',
      '-of',
      'ENVI',
      '-t_srs',
      `EPSG:${grid.crs.epsg}`,
      '-te',
      ...te.map(String),
      '-ts',
      String(grid.width),
      String(grid.height),
      '-r',
      opts.resampling,
      '-ot',
      GDAL_TYPE[opts.dtype],
      '-dstnodata',
      String(opts.dstNodata),
      ...(opts.extra ?? []),
      ...sources,
      out,
    ]);
    const raw = new Uint8Array(await readFile(out));
    const all = typedFromBytes(opts.dtype, raw);
    const n = grid.width * grid.height;
    const bands: TypedArray[] = [];
    for (let b = 0; b < opts.bands; b++) {
      const a = allocTyped(opts.dtype, n);
      a.set(all.subarray(b * n, (b + 1) * n));
      bands.push(a);
    }
    const valid = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (let b = 0; b < bands.length; b++) if (bands[b][i] !== opts.dstNodata) v = 1;
      valid[i] = v;
    }
    return { bands, valid };
  } finally {
    await removeTempDir(dir);
  }
}

/**
 * gdalwarp `sources` given in mosaic order (the first valid source wins; gdalwarp lets the last win, so they are
 * reversed) onto `grid`, with an exact transform (-et 0): the independent reference for what a mosaic shows.
 */
export function gdalwarpMosaic(
  sources: readonly string[],
  grid: Grid,
  opts: { dtype: DType; bands: number; dstNodata: number; resampling?: string },
): Promise<Reference> {
  return gdalwarp([...sources].reverse(), grid, {
    resampling: opts.resampling ?? 'near',
    dtype: opts.dtype,
    bands: opts.bands,
    dstNodata: opts.dstNodata,
    extra: ['-et', '0'],
  });
}

/** The q-th percentile (0..100) of `values` as numpy computes it by default (linear between order statistics). */
export function percentile(values: ArrayLike<number>, q: number): number {
  const a = Float64Array.from(values).sort();
  if (a.length === 0) return Number.NaN;
  const p = ((a.length - 1) * q) / 100;
  const lo = Math.floor(p);
  const hi = Math.min(lo + 1, a.length - 1);
  return a[lo] + (a[hi] - a[lo]) * (p - lo);
}

/** A linear stretch of [lo, hi] to 0..255, rounded and clamped, as a map viewer draws a value. */
export function stretchToByte(lo: number, hi: number): (v: number) => number {
  return (v) => Math.min(255, Math.max(0, Math.round(((v - lo) * 255) / (hi - lo))));
}

export interface ImageAgreement {
  /** pixels valid in both the image (alpha > 0) and the reference */
  readonly compared: number;
  /** of those, the pixels whose every channel is within the tolerance */
  readonly within: number;
  /** pixels opaque in one and transparent (invalid) in the other */
  readonly alphaMismatch: number;
  readonly pixels: number;
}

/**
 * Compare an 8-bit image as a client decoded it (channels and alpha, one array each) with a reference: where both
 * are valid, every channel must be within `tol` of `expectedAt(i)` (the reference's value at pixel i drawn the way
 * the image claims to draw it: a stretch, a colormap, ...).
 */
export function compareImage(
  got: { readonly channels: readonly ArrayLike<number>[]; readonly alpha: ArrayLike<number> },
  refValid: Uint8Array,
  expectedAt: (i: number) => readonly number[],
  tol: number,
): ImageAgreement {
  let compared = 0;
  let within = 0;
  let alphaMismatch = 0;
  for (let i = 0; i < got.alpha.length; i++) {
    const a = got.alpha[i] !== 0;
    const b = refValid[i] !== 0;
    if (a !== b) alphaMismatch++;
    if (!(a && b)) continue;
    compared++;
    const want = expectedAt(i);
    let ok = true;
    for (let k = 0; k < got.channels.length && ok; k++) ok = Math.abs(got.channels[k][i] - want[k]) <= tol;
    if (ok) within++;
  }
  return { compared, within, alphaMismatch, pixels: got.alpha.length };
}

/** ImageAgreement as one line for a test's diagnostics and failure messages. */
export function describeAgreement(c: ImageAgreement, tol: number): string {
  const pct = c.compared ? ((100 * c.within) / c.compared).toFixed(3) : '0';
  return `within ${tol}: ${c.within} of ${c.compared} (${pct}%), transparency mismatches ${c.alphaMismatch} of ${c.pixels}`;
}

/**
 * The image agrees with its reference: at least `minCompared` of its pixels compared, `minWithin` of those within
 * the tolerance, fewer than `maxAlphaMismatch` of all pixels differing in transparency (edge pixels of a
 * reprojection may fall either way).
 */
export function assertImageAgrees(
  c: ImageAgreement,
  what: string,
  opts: { tol: number; minCompared?: number; minWithin?: number; maxAlphaMismatch?: number },
): void {
  const line = `${what}: ${describeAgreement(c, opts.tol)}`;
  assert.ok(c.compared >= c.pixels * (opts.minCompared ?? 0.2), `too few pixels compared: ${line}`);
  assert.ok(c.within >= c.compared * (opts.minWithin ?? 0.99), line);
  assert.ok(c.alphaMismatch <= c.pixels * (opts.maxAlphaMismatch ?? 0.005), line);
}

export interface Agreement {
  /** pixels valid in either */
  readonly compared: number;
  /** fraction of compared pixels with the same validity and values within tolerance; 0 when none was compared */
  readonly fraction: number;
  readonly validityMismatch: number;
}

/** Compare our pixels with a reference: same validity and |a - b| <= tol (absolute) or rel*|b| (relative). */
export function agreement(ours: Pixels, ref: Reference, tol = 0, rel = 0): Agreement {
  const n = ours.width * ours.height;
  let compared = 0;
  let good = 0;
  let validityMismatch = 0;
  for (let i = 0; i < n; i++) {
    const a = ours.mask[i] !== 0;
    const b = ref.valid[i] !== 0;
    if (!a && !b) continue;
    compared++;
    if (a !== b) {
      validityMismatch++;
      continue;
    }
    let ok = true;
    for (let k = 0; k < ours.bands.length && ok; k++) {
      const x = ours.bands[k][i];
      const y = ref.bands[k][i];
      const d = Math.abs(x - y);
      ok = d <= tol || d <= rel * Math.abs(y);
    }
    if (ok) good++;
  }
  return { compared, fraction: compared ? good / compared : 0, validityMismatch };
}

/**
 * GDAL's COG validator with --full-check=yes on a file or a /vsicurl/ URL (`env`: GDAL configuration such as
 * GDAL_DISABLE_READDIR_ON_OPEN). Its errors and its warnings, each a list of the lines it printed under them; a run
 * that does not end in "is a valid cloud optimized GeoTIFF" is an error even when it printed no list.
 */
export async function validateCog(
  file: string,
  env: Record<string, string> = {},
): Promise<{ errors: string[]; warnings: string[]; output: string }> {
  let out = '';
  try {
    out = await sh(
      PYTHON,
      ['-m', 'osgeo_utils.samples.validate_cloud_optimized_geotiff', '--full-check=yes', file],
      120_000,
      env,
    );
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? '') + String((e as { stderr?: string }).stderr ?? '');
  }
  const section = (title: string): string[] => {
    const at = out.indexOf(title);
    if (at < 0) return [];
    const lines: string[] = [];
    for (const line of out
      .slice(at + title.length)
      .split('\n')
      .slice(1)) {
      const m = /^ - (.*)$/.exec(line);
      if (!m) break;
      lines.push(m[1]);
    }
    return lines;
  };
  const errors = section('The following errors were found:');
  const warnings = section('The following warnings were found:');
  if (!/ is a valid cloud optimized GeoTIFF/.test(out) && errors.length === 0) errors.push(out.trim() || 'no output');
  return { errors, warnings, output: out };
}

export interface GdalRaster {
  readonly width: number;
  readonly height: number;
  /** GDAL's name of the data type: Byte, UInt16, Int16, Float32, ... */
  readonly type: string;
  /** the dataset's geotransform */
  readonly gt: number[];
  /** every band's samples as GDAL decodes them, band after band, little-endian */
  readonly bands: Buffer[];
  /** all bands in one buffer (the bands above are views of it) */
  readonly bytes: Buffer;
  /** what GDAL printed on stderr (warnings, errors it recovered from) */
  readonly stderr: string;
}

const READ_PY = `
import sys, json
from osgeo import gdal
gdal.UseExceptions()
src, ovr, args = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
ds = gdal.Open(src)
if args:
    ds = gdal.Translate('', ds, options=gdal.TranslateOptions(options=['-of', 'MEM'] + args))
bands = [ds.GetRasterBand(b + 1) for b in range(ds.RasterCount)]
if ovr >= 0:
    bands = [b.GetOverview(ovr) for b in bands]
head = dict(width=bands[0].XSize, height=bands[0].YSize, type=gdal.GetDataTypeName(bands[0].DataType),
            gt=list(ds.GetGeoTransform()))
sys.stdout.buffer.write((json.dumps(head) + '\\n').encode())
for b in bands:
    sys.stdout.buffer.write(b.ReadRaster())
`;

/**
 * What GDAL reads from `src` (a file, a /vsicurl/ URL, a WMS/WMTS description): every band as GDAL decodes it.
 * `args`: gdal_translate options applied first (-srcwin, -projwin, -ot, -outsize, ...); `overview`: read that
 * overview (0 = the first) instead of full resolution; `env`: GDAL configuration options.
 */
export async function gdalRead(
  src: string,
  opts: { args?: readonly string[]; overview?: number; env?: Record<string, string> } = {},
): Promise<GdalRaster> {
  const [stdout, stderr] = await new Promise<[Buffer, string]>((resolve, reject) =>
    execFile(
      PYTHON,
      ['-c', READ_PY, src, String(opts.overview ?? -1), JSON.stringify(opts.args ?? [])],
      { encoding: 'buffer', maxBuffer: 1 << 30, env: { ...process.env, ...opts.env } },
      (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve([out, String(errOut)])),
    ),
  );
  const nl = stdout.indexOf(10);
  const head = JSON.parse(stdout.subarray(0, nl).toString()) as {
    width: number;
    height: number;
    type: string;
    gt: number[];
  };
  // a buffer of its own (offset 0), so typed arrays can view it whatever the sample size
  const bytes = Buffer.alloc(stdout.length - nl - 1);
  stdout.copy(bytes, 0, nl + 1);
  const bandBytes = head.width * head.height * GDAL_TYPE_BYTES[head.type];
  const bands: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += bandBytes) bands.push(bytes.subarray(at, at + bandBytes));
  return { ...head, bands, bytes, stderr };
}

const GDAL_TYPE_BYTES: Record<string, number> = {
  Byte: 1,
  Int8: 1,
  UInt16: 2,
  Int16: 2,
  UInt32: 4,
  Int32: 4,
  Float32: 4,
  Float64: 8,
};

/** The bands of a Byte or UInt16 read as typed arrays (views of its bytes). */
export function bandArrays(r: GdalRaster): (Uint8Array | Uint16Array)[] {
  if (r.type !== 'Byte' && r.type !== 'UInt16') throw new Error(`bandArrays: ${r.type} is not Byte or UInt16`);
  return r.bands.map((b) =>
    r.type === 'Byte'
      ? new Uint8Array(b.buffer, b.byteOffset, b.length)
      : new Uint16Array(b.buffer, b.byteOffset, b.length / 2),
  );
}

/** gdalwarp options of an exact nearest-neighbour reference of one uint16 band with nodata 0 (no approximation). */
export const WARP_NEAREST_EXACT_UINT16 = {
  resampling: 'near',
  dtype: 'uint16',
  bands: 1,
  dstNodata: 0,
  extra: ['-et', '0'],
} as const;

/** Every band of an overview level (-1 = full resolution) as GDAL reads it, raw little-endian bytes. */
export async function gdalReadLevel(file: string, ovr: number): Promise<Buffer> {
  return (await gdalRead(file, { overview: ovr })).bytes;
}

/** A 10-band uint16 source of 200 x 200 pixels of 5 km: a mosaic at 10 m over it is 100,000 pixels square. */
export async function writeTenBandSource(file: string): Promise<void> {
  await sh(PYTHON, [
    '-c',
    `
import sys, numpy as np
from osgeo import gdal, osr
gdal.UseExceptions()
w = h = 200
ds = gdal.GetDriverByName('MEM').Create('', w, h, 10, gdal.GDT_UInt16)
ds.SetGeoTransform((500000, 5000, 0, 5000000, 0, -5000))
s = osr.SpatialReference(); s.ImportFromEPSG(32632); ds.SetProjection(s.ExportToWkt())
yy, xx = np.mgrid[0:h, 0:w]
for b in range(10):
    ds.GetRasterBand(b + 1).SetNoDataValue(0)
    ds.GetRasterBand(b + 1).WriteArray(((xx * 7 + yy * 13 + b * 1000) % 9000 + 1).astype(np.uint16))
gdal.Translate(sys.argv[1], ds, format='COG', creationOptions=['COMPRESS=DEFLATE', 'BLOCKSIZE=256'])
`,
    file,
  ]);
}

/**
 * A tiled float32 GeoTIFF of uniform noise (0..1000, seeded), nodata -9999, UTM 32N at 10 m, with AVERAGE
 * overviews at `overviews` (GDAL writes it): a source that compresses badly, for part-size and shard tests.
 */
export async function noiseWithOverviews(file: string, size: number, seed: number, overviews: readonly number[]) {
  await sh(PYTHON, [
    '-c',
    `
import sys
import numpy as np
from osgeo import gdal, osr
gdal.UseExceptions()
n = int(sys.argv[2])
a = np.random.default_rng(int(sys.argv[3])).uniform(0, 1000, (n, n)).astype('float32')
ds = gdal.GetDriverByName('GTiff').Create(sys.argv[1], n, n, 1, gdal.GDT_Float32, ['TILED=YES', 'BLOCKXSIZE=256', 'BLOCKYSIZE=256'])
ds.SetGeoTransform([500000, 10, 0, 5000000, 0, -10])
srs = osr.SpatialReference(); srs.ImportFromEPSG(32632); ds.SetProjection(srs.ExportToWkt())
b = ds.GetRasterBand(1); b.SetNoDataValue(-9999); b.WriteArray(a)
ds.BuildOverviews('AVERAGE', [int(v) for v in sys.argv[4].split(',')])
ds = None
`,
    file,
    String(size),
    String(seed),
    overviews.join(','),
  ]);
}
