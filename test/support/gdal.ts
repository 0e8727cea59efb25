/** Thin helpers around the GDAL command-line tools, the reference reader/writer of the tests. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
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

export async function sh(cmd: string, args: readonly string[], timeoutMs = 120_000): Promise<string> {
  const { stdout } = await run(cmd, args as string[], { timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024 });
  return stdout;
}

export async function tempDir(prefix = 'cogmill-test-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
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
  opts: { resampling: string; dtype: DType; bands: number; dstNodata: number; extra?: string[] },
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
    await rm(dir, { recursive: true, force: true });
  }
}

export interface Agreement {
  /** pixels valid in either */
  readonly compared: number;
  /** fraction of compared pixels with the same validity and values within tolerance */
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
  return { compared, fraction: compared ? good / compared : 1, validityMismatch };
}

/** GDAL's COG validator with --full-check=yes: its errors and warnings (none for a good COG). */
export async function validateCog(file: string): Promise<{ errors: string[]; warnings: string[] }> {
  let out = '';
  try {
    out = await sh(PYTHON, ['-m', 'osgeo_utils.samples.validate_cloud_optimized_geotiff', '--full-check=yes', file]);
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? '') + String((e as { stderr?: string }).stderr ?? '');
  }
  const errors = [...out.matchAll(/^ - (.*)$/gm)].map((m) => m[1]);
  const warnings = /warning/i.test(out) ? [out] : [];
  if (!/is a valid cloud optimized GeoTIFF/.test(out)) errors.push(out.trim());
  return { errors, warnings };
}

/** Every band of an overview level (-1 = full resolution) as GDAL reads it, raw little-endian bytes. */
export async function gdalReadLevel(file: string, ovr: number): Promise<Buffer> {
  const code = `
import sys
from osgeo import gdal
ds = gdal.Open(sys.argv[1])
ovr = int(sys.argv[2])
out = b''
for b in range(ds.RasterCount):
    band = ds.GetRasterBand(b + 1)
    if ovr >= 0: band = band.GetOverview(ovr)
    out += band.ReadRaster()
sys.stdout.buffer.write(out)
`;
  return new Promise((resolve, reject) =>
    execFile(PYTHON, ['-c', code, file, String(ovr)], { encoding: 'buffer', maxBuffer: 1 << 30 }, (err, stdout) =>
      err ? reject(err) : resolve(stdout),
    ),
  );
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
