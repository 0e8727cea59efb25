/**
 * Deterministic synthetic rasters: spatially correlated texture (so compression ratios are realistic, neither
 * noise nor constant), nodata wedges, categorical patches. Used by the demo mosaic and the benchmarks.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { writeCog } from './materialize/cog.write.ts';
import { crsFromEpsg } from './render/crs.ts';
import { createTransformer } from './render/transform.ts';
import type { DType, GeoTransform, TypedArray } from './render/types.ts';
import { allocTyped } from './render/types.ts';

/** mulberry32: a small seeded PRNG */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Smooth multi-scale texture in [lo, hi], a function of world coordinates so that overlapping scenes agree
 * where they overlap (like two acquisitions of the same ground). `x0, y0` is the world position of pixel (0, 0)
 * and `step` the world size of a pixel.
 */
export function texture(
  width: number,
  height: number,
  dtype: DType,
  lo: number,
  hi: number,
  seed: number,
  x0 = 0,
  y0 = 0,
  step = 1,
): TypedArray {
  const rnd = prng(seed);
  const waves = Array.from({ length: 6 }, (_, k) => ({
    fx: (rnd() - 0.5) * 0.02 * 2 ** (k / 1.5),
    fy: (rnd() - 0.5) * 0.02 * 2 ** (k / 1.5),
    ph: rnd() * 6.283,
    amp: 1 / (k + 1),
  }));
  const noise = prng(seed ^ 0x9e3779b9);
  const out = allocTyped(dtype, width * height);
  let norm = 0;
  for (const w of waves) norm += w.amp;
  const rowX = new Float64Array(width);
  for (let y = 0; y < height; y++) {
    const wy = y0 - y * step;
    for (let x = 0; x < width; x++) rowX[x] = 0;
    for (const w of waves) {
      const base = wy * w.fy + w.ph;
      for (let x = 0; x < width; x++) rowX[x] += w.amp * Math.sin((x0 + x * step) * w.fx + base);
    }
    for (let x = 0; x < width; x++) {
      const v = (rowX[x] / norm + 1) / 2 + (noise() - 0.5) * 0.02;
      out[y * width + x] = lo + Math.min(1, Math.max(0, v)) * (hi - lo);
    }
  }
  return out;
}

/** Set pixels of a wedge (below the line x + y < k, or its mirror) to nodata. */
export function nodataWedge(
  a: TypedArray,
  width: number,
  height: number,
  k: number,
  mirror: boolean,
  nodata: number,
): void {
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const s = mirror ? width - x + (height - y) : x + y;
      if (s < k) a[y * width + x] = nodata;
    }
}

function utmOrigin(epsg: number, lon: number, lat: number, res: number, w: number, h: number): GeoTransform {
  const [cx, cy] = createTransformer(crsFromEpsg(4326), crsFromEpsg(epsg)).point(lon, lat);
  const x0 = Math.round((cx - (w * res) / 2) / res) * res;
  const y0 = Math.round((cy + (h * res) / 2) / res) * res;
  return [x0, res, 0, y0, 0, -res];
}

/**
 * The demo mosaic: two uint16 scenes either side of the UTM 31/32 boundary (overlapping, nodata wedges), and an
 * RGB uint8 image in Web Mercator. Returns the file paths.
 */
export async function writeDemoMosaic(dir: string, size = 2048): Promise<{ scenes: string[]; rgb: string }> {
  await mkdir(dir, { recursive: true });
  const res = 10;
  const scenes: string[] = [];
  for (const [name, epsg, lon, mirror] of [
    ['scene-32N.tif', 32632, 6.06, false],
    ['scene-31N.tif', 32631, 5.94, true],
  ] as const) {
    const gt = utmOrigin(epsg, lon, 45, res, size, size);
    const a = texture(size, size, 'uint16', 200, 6000, epsg, gt[0], gt[3], res);
    nodataWedge(a, size, size, size * 0.4, mirror, 0);
    const file = path.join(dir, name);
    await writeCog(file, {
      width: size,
      height: size,
      dtype: 'uint16',
      bands: [a],
      transform: gt,
      epsg,
      geographic: false,
      nodata: 0,
    });
    scenes.push(file);
  }
  const rgbSize = size;
  const gt = utmOrigin(3857, 6.0, 45.0, 20, rgbSize, rgbSize);
  const bands = [0, 1, 2].map((b) => texture(rgbSize, rgbSize, 'uint8', 10, 245, 100 + b, gt[0], gt[3], 20));
  const rgb = path.join(dir, 'rgb', 'rgb-3857.tif');
  await mkdir(path.dirname(rgb), { recursive: true });
  await writeCog(rgb, {
    width: rgbSize,
    height: rgbSize,
    dtype: 'uint8',
    bands,
    transform: gt,
    epsg: 3857,
    geographic: false,
  });
  return { scenes, rgb };
}
