/** What the tests of the object-store sinks (S3, Azure) share: the noise source, the options, the COG check. */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { MaterializeOptions } from '../../src/materialize/pipeline.ts';
import { PYTHON, sh, validateCog } from './gdal.ts';

const MiB = 1024 * 1024;

/** A float32 noise raster (incompressible) with nodata -9999, written by GDAL, with overviews. */
export async function writeNoise(file: string, size: number): Promise<void> {
  const code = `
import sys
import numpy as np
from osgeo import gdal, osr
gdal.UseExceptions()
path, n = sys.argv[1], int(sys.argv[2])
a = np.random.default_rng(7).uniform(0, 1000, (n, n)).astype('float32')
ds = gdal.GetDriverByName('GTiff').Create(path, n, n, 1, gdal.GDT_Float32, ['TILED=YES', 'BLOCKXSIZE=256', 'BLOCKYSIZE=256'])
ds.SetGeoTransform([500000, 10, 0, 5000000, 0, -10])
srs = osr.SpatialReference(); srs.ImportFromEPSG(32632); ds.SetProjection(srs.ExportToWkt())
b = ds.GetRasterBand(1); b.SetNoDataValue(-9999); b.WriteArray(a)
ds.BuildOverviews('AVERAGE', [2, 4, 8])
ds = None
`;
  await sh(PYTHON, ['-c', code, file, String(size)]);
}

/** Write `bytes` as `folder`/NAME.download.tif and assert GDAL's validator finds no error and no warning. */
export async function assertValidCog(folder: string, bytes: Uint8Array, name: string): Promise<void> {
  const file = path.join(folder, `${name}.download.tif`);
  await writeFile(file, bytes);
  const v = await validateCog(file);
  assert.deepEqual(v.errors, [], `validator errors for ${name}`);
  assert.deepEqual(v.warnings, [], `validator warnings for ${name}`);
}

/**
 * Several runs and parts of the real minimum size, uncompressed. Statistics are left out where outputs are
 * compared byte for byte: for float data their last digits depend on the order in which tiles finish (the pixels
 * never do).
 */
export const BIG: MaterializeOptions = {
  compression: 'none',
  workers: 2,
  runs: 4,
  minPartSizeBytes: 5 * MiB,
  statistics: false,
};
