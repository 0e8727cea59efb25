/**
 * Imagery the project did not shape: every raster here is made by GDAL's own tools from random points (fixed
 * seed), so its texture is GDAL's interpolation, terrain analysis and noise, not cogmill's generator:
 *
 * - `dem`: float32 surface, `gdal_grid -a linear` of random points (piecewise planar, like a TIN-derived DEM);
 * - `smooth-u16`: `dem` scaled to uint16 (`gdal_translate -scale`), smooth gradients over the whole range;
 * - `noisy-u16`: `dem` scaled to 0..4000 plus Gaussian noise (sd 40) through `gdal_calc.py` (a noisy sensor);
 * - `hillshade`: `gdaldem hillshade` of `dem` (uint8);
 * - `slope`: `gdaldem slope` of `dem` (float32, predictor 3 territory);
 * - `classes`: `gdal_grid -a nearest` of random points with 12 class values (uint8 Voronoi land cover);
 * - `rgb`: hillshade, scaled slope and scaled dem as three uint8 bands, pixel-interleaved.
 *
 * Each is written as a striped GeoTIFF (no compression, GDAL's default layout), so consumers choose their own
 * tiling, compression and overviews. Cached under bench/data/imagery-<size>/.
 */
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BENCH_DIR, note, PYTHON, run } from './support.ts';

export interface Imagery {
  readonly name: string;
  readonly file: string;
  readonly dtype: 'uint8' | 'uint16' | 'float32';
  readonly bands: number;
  /** categorical: overviews by mode / nearest, never averaged */
  readonly categorical: boolean;
}

const IMAGERY_VERSION = 2;

/** A tiny deterministic PRNG (mulberry32), so that the random points are the same on every machine. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function gdal(cmd: string, args: string[]): Promise<void> {
  await run(cmd, args, { timeoutMs: 1_800_000 });
}

/** Generate (once) and list the imagery at `size` x `size` pixels. */
export async function ensureImagery(size: number): Promise<Imagery[]> {
  const dir = path.join(BENCH_DIR, 'data', `imagery-${size}-v${IMAGERY_VERSION}`);
  const f = (name: string) => path.join(dir, `${name}.tif`);
  const list: Imagery[] = [
    { name: 'smooth-u16', file: f('smooth-u16'), dtype: 'uint16', bands: 1, categorical: false },
    { name: 'noisy-u16', file: f('noisy-u16'), dtype: 'uint16', bands: 1, categorical: false },
    { name: 'hillshade', file: f('hillshade'), dtype: 'uint8', bands: 1, categorical: false },
    { name: 'slope', file: f('slope'), dtype: 'float32', bands: 1, categorical: false },
    { name: 'classes', file: f('classes'), dtype: 'uint8', bands: 1, categorical: true },
    { name: 'rgb', file: f('rgb'), dtype: 'uint8', bands: 3, categorical: false },
  ];
  if (list.every((i) => existsSync(i.file))) return list;
  note(`generating GDAL-made imagery ${size} x ${size} in ${dir}`);
  const tmp = `${dir}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  const t = (name: string) => path.join(tmp, name);
  const rand = prng(20261204);
  const extent = size * 10; // 10 m pixels
  const points: string[] = ['x,y,z,c'];
  const point = (x: number, y: number) =>
    points.push(
      `${(400000 + x).toFixed(2)},${(5000000 + y).toFixed(2)},${(200 + 1800 * rand() ** 2).toFixed(2)},${1 + Math.floor(rand() * 12)}`,
    );
  // the corners (just outside) first, so that linear interpolation covers every pixel
  for (const [x, y] of [
    [-20, -20],
    [extent + 20, -20],
    [-20, extent + 20],
    [extent + 20, extent + 20],
  ])
    point(x, y);
  for (let i = 0; i < Math.max(400, Math.round(size / 4)); i++) point(rand() * extent, rand() * extent);
  await writeFile(t('points.csv'), `${points.join('\n')}\n`);
  await writeFile(
    t('points.vrt'),
    `<OGRVRTDataSource><OGRVRTLayer name="points"><SrcDataSource>${t('points.csv')}</SrcDataSource>` +
      '<GeometryType>wkbPoint</GeometryType><LayerSRS>EPSG:32632</LayerSRS>' +
      '<GeometryField encoding="PointFromColumns" x="x" y="y" z="z"/></OGRVRTLayer></OGRVRTDataSource>',
  );
  const grid = ['-txe', '400000', String(400000 + extent), '-tye', String(5000000 + extent), '5000000'];
  const outsize = ['-outsize', String(size), String(size)];
  await gdal('gdal_grid', [
    '-q',
    '-a',
    'linear',
    '-ot',
    'Float32',
    ...grid,
    ...outsize,
    '-l',
    'points',
    t('points.vrt'),
    t('dem.tif'),
  ]);
  await gdal('gdal_grid', [
    '-q',
    '-a',
    'nearest',
    '-zfield',
    'c',
    '-ot',
    'Byte',
    ...grid,
    ...outsize,
    '-l',
    'points',
    t('points.vrt'),
    t('classes.tif'),
  ]);
  await gdal('gdal_translate', [
    '-q',
    '-ot',
    'UInt16',
    '-scale',
    '200',
    '2000',
    '0',
    '65535',
    t('dem.tif'),
    t('smooth-u16.tif'),
  ]);
  await gdal(PYTHON, [
    '-m',
    'osgeo_utils.gdal_calc',
    '--quiet',
    '-A',
    t('dem.tif'),
    '--type',
    'UInt16',
    '--outfile',
    t('noisy-u16.tif'),
    '--calc',
    'numpy.clip((A-200)*2.2 + numpy.random.default_rng(7).normal(0, 40, A.shape), 0, 65535)',
  ]);
  await gdal('gdaldem', ['hillshade', '-q', '-z', '3', t('dem.tif'), t('hillshade.tif')]);
  await gdal('gdaldem', ['slope', '-q', t('dem.tif'), t('slope.tif')]);
  await gdal('gdal_translate', ['-q', '-ot', 'Byte', '-scale', '0', '40', '0', '255', t('slope.tif'), t('slope8.tif')]);
  await gdal('gdal_translate', ['-q', '-ot', 'Byte', '-scale', '200', '2000', '0', '255', t('dem.tif'), t('dem8.tif')]);
  await gdal('gdalbuildvrt', ['-q', '-separate', t('rgb.vrt'), t('hillshade.tif'), t('slope8.tif'), t('dem8.tif')]);
  await gdal('gdal_translate', ['-q', '-co', 'INTERLEAVE=PIXEL', '-co', 'PHOTOMETRIC=RGB', t('rgb.vrt'), t('rgb.tif')]);
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  return list;
}
