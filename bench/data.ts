/**
 * Deterministic benchmark inputs (fixed seeds, no download), generated once and cached in bench/data/<mode>/:
 *
 * - Sentinel-2-like uint16 single-band scenes (10980 x 10980 at 10 m; --small: 1830 x 1830 at 60 m, like the
 *   60 m bands) placed like MGRS tiles: two neighbours in UTM zone 32 (100 km apart, so they overlap by 9.8 km)
 *   and one in zone 31 that overlaps the western one by ~10 km across the zone boundary near 6°E. Nodata (0)
 *   wedges, spatially correlated texture (deflate + predictor ratio ~1.4, like real bands).
 * - an 8192 x 8192 RGB uint8 image in EPSG:3857 (--small: 2048 x 2048);
 * - 2 x 2 categorical uint8 land-cover tiles in EPSG:4326 (4096 x 4096 each; --small: 1024), large patches of
 *   ten classes, nodata 255;
 * - a crop of the western zone-32 scene a quarter of its pixels (for memory growth: the scene is 4x the crop).
 *
 * Every input exists as a COG (cogmill's writer: GDAL's layout, deflate, predictor 2, 512 blocks, overviews) and
 * as a plain tiled GeoTIFF without overviews (`gdal_translate -co TILED=YES -co COMPRESS=DEFLATE`).
 *
 *   node bench/data.ts [--small] [--dir DIR]      generate what is missing and print the manifest
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { nodataWedge, texture } from '../src/demo.data.ts';
import { writeCog } from '../src/materialize/cog.write.ts';
import { crsFromEpsg } from '../src/render/crs.ts';
import { createTransformer } from '../src/render/transform.ts';
import type { GeoTransform } from '../src/render/types.ts';
import { BENCH_DIR, note, run } from './support.ts';

/** bump when the generator changes: cached inputs of another version are regenerated */
export const DATA_VERSION = 1;

export interface BenchInput {
  /** cogmill-written COG */
  readonly cog: string;
  /** plain tiled GeoTIFF (256 blocks, deflate, no overviews) */
  readonly tiled: string;
  readonly width: number;
  readonly height: number;
  readonly epsg: number;
  readonly transform: GeoTransform;
}

export interface BenchData {
  readonly dir: string;
  readonly small: boolean;
  /** zone 32, west */
  readonly s2West: BenchInput;
  /** zone 32, east of s2West (9.8 km overlap) */
  readonly s2East: BenchInput;
  /** zone 31, overlapping s2West by ~10 km across the zone boundary */
  readonly s2Zone31: BenchInput;
  /** the north-west quarter of s2West (memory growth: s2West has 4x its pixels) */
  readonly s2Quarter: BenchInput;
  readonly rgb: BenchInput;
  readonly landcover: readonly BenchInput[];
}

export interface Sizes {
  readonly s2Size: number;
  readonly s2Res: number;
  readonly rgbSize: number;
  readonly rgbRes: number;
  readonly lcSize: number;
}

export function sizesFor(small: boolean): Sizes {
  return small
    ? { s2Size: 1830, s2Res: 60, rgbSize: 2048, rgbRes: 40, lcSize: 1024 }
    : { s2Size: 10980, s2Res: 10, rgbSize: 8192, rgbRes: 10, lcSize: 4096 };
}

/** S2 scene footprint: 109.8 km; MGRS neighbours are 100 km apart */
const S2_EXTENT_M = 109_800;
const MGRS_STEP_M = 100_000;
const S2_TOP_Y = 5_000_040;
const S2_WEST_X = 300_000;
const ZONE_OVERLAP_M = 10_000;
const S2_NODATA = 0;
const LC_NODATA = 255;
const TEXTURE_PIXEL = 10;
const LC_CLASSES = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100] as const;

function round10(v: number): number {
  return Math.round(v / 10) * 10;
}

interface Plan {
  readonly name: string;
  readonly epsg: number;
  readonly transform: GeoTransform;
  readonly width: number;
  readonly height: number;
}

/** Where the scenes lie (pure). */
export function scenePlans(sizes: Sizes): { west: Plan; east: Plan; zone31: Plan; quarter: Plan } {
  const { s2Size: n, s2Res: r } = sizes;
  const west: Plan = {
    name: 's2-32-west',
    epsg: 32632,
    transform: [S2_WEST_X, r, 0, S2_TOP_Y, 0, -r],
    width: n,
    height: n,
  };
  const east: Plan = {
    name: 's2-32-east',
    epsg: 32632,
    transform: [S2_WEST_X + MGRS_STEP_M, r, 0, S2_TOP_Y, 0, -r],
    width: n,
    height: n,
  };
  // the zone-31 scene's east edge lies ZONE_OVERLAP_M east of the west scene's west edge (at mid height)
  const [ex, ey] = createTransformer(crsFromEpsg(32632), crsFromEpsg(32631)).point(
    S2_WEST_X,
    S2_TOP_Y - S2_EXTENT_M / 2,
  );
  const zone31: Plan = {
    name: 's2-31',
    epsg: 32631,
    transform: [round10(ex + ZONE_OVERLAP_M - S2_EXTENT_M), r, 0, round10(ey + S2_EXTENT_M / 2), 0, -r],
    width: n,
    height: n,
  };
  const half = Math.floor(n / 2);
  const quarter: Plan = {
    name: 's2-32-west-quarter',
    epsg: 32632,
    transform: west.transform,
    width: half,
    height: half,
  };
  return { west, east, zone31, quarter };
}

function rgbPlan(sizes: Sizes): Plan {
  // centred near 6.5°E 45°N in Web Mercator metres
  const [cx, cy] = createTransformer(crsFromEpsg(4326), crsFromEpsg(3857)).point(6.5, 45);
  const half = (sizes.rgbSize * sizes.rgbRes) / 2;
  return {
    name: 'rgb-3857',
    epsg: 3857,
    transform: [round10(cx - half), sizes.rgbRes, 0, round10(cy + half), 0, -sizes.rgbRes],
    width: sizes.rgbSize,
    height: sizes.rgbSize,
  };
}

function landcoverPlans(sizes: Sizes): Plan[] {
  const res = 1 / sizes.lcSize; // one degree per tile
  const out: Plan[] = [];
  for (const [i, lon] of [5, 6].entries())
    for (const [j, lat] of [46, 45].entries()) {
      out.push({
        name: `landcover-${i}${j}`,
        epsg: 4326,
        transform: [lon, res, 0, lat, 0, -res],
        width: sizes.lcSize,
        height: sizes.lcSize,
      });
    }
  return out;
}

/** A 32-bit integer hash of a cell, so patches agree across tiles whatever order they are generated in. */
function hash3(i: number, j: number, seed: number): number {
  let h = Math.imul(i, 0x27d4eb2d) ^ Math.imul(j, 0x165667b1) ^ Math.imul(seed, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 15), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Categorical patches: a jittered-grid Voronoi partition of the plane (cells of ~0.04°) with wavy borders, one
 * class per cell; nodata (255) where a broad smooth field is low (a "sea" of ~10%). A function of lon/lat only.
 */
function landcover(plan: Plan): Uint8Array {
  const { width, height, transform: t } = plan;
  const out = new Uint8Array(width * height);
  const cell = 0.04;
  for (let y = 0; y < height; y++) {
    const lat = t[3] + (y + 0.5) * t[5];
    for (let x = 0; x < width; x++) {
      const lon = t[0] + (x + 0.5) * t[1];
      const sea = Math.sin(lon * 2.1 + 0.7) + Math.sin(lat * 2.7 + 1.9) + 0.5 * Math.sin((lon + lat) * 5.3);
      if (sea < -1.6) {
        out[y * width + x] = LC_NODATA;
        continue;
      }
      const wx = lon + 0.006 * Math.sin(lat * 157) + 0.003 * Math.sin(lat * 431 + lon * 97);
      const wy = lat + 0.006 * Math.sin(lon * 139) + 0.003 * Math.sin(lon * 389 + lat * 83);
      const ci = Math.floor(wx / cell);
      const cj = Math.floor(wy / cell);
      let best = Infinity;
      let cls = 0;
      for (let dj = -1; dj <= 1; dj++)
        for (let di = -1; di <= 1; di++) {
          const h = hash3(ci + di, cj + dj, 7);
          const px = (ci + di + (h & 0xffff) / 65536) * cell;
          const py = (cj + dj + (h >>> 16) / 65536) * cell;
          const d = (px - wx) ** 2 + (py - wy) ** 2;
          if (d < best) {
            best = d;
            cls = LC_CLASSES[hash3(ci + di, cj + dj, 11) % LC_CLASSES.length];
          }
        }
      out[y * width + x] = cls;
    }
  }
  return out;
}

async function writeAtomically(file: string, write: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = `${file}.partial.tif`;
  await rm(tmp, { force: true });
  await write(tmp);
  await rename(tmp, file);
}

async function ensureTiled(cog: string, tiled: string): Promise<void> {
  if (existsSync(tiled)) return;
  await writeAtomically(tiled, async (tmp) => {
    await run('gdal_translate', ['-q', '-of', 'GTiff', '-co', 'TILED=YES', '-co', 'COMPRESS=DEFLATE', cog, tmp], {
      timeoutMs: 900_000,
    });
  });
}

/**
 * Write the COG of a generated raster. Categorical data gets no predictor and mode overviews (what a land-cover
 * product ships with): cogmill's in-memory writer averages, so GDAL rebuilds that COG from its full resolution.
 */
async function ensureInput(
  dir: string,
  plan: Plan,
  generate: () => Promise<Parameters<typeof writeCog>[1]>,
  categorical = false,
): Promise<BenchInput> {
  const cog = path.join(dir, `${plan.name}.cog.tif`);
  const tiled = path.join(dir, `${plan.name}.tiled.tif`);
  if (!existsSync(cog)) {
    const t0 = performance.now();
    const raster = await generate();
    await writeAtomically(cog, async (tmp) => {
      if (!categorical) return writeCog(tmp, raster, { compression: 'deflate', blockSize: 512 });
      const full = `${tmp}.full.tif`;
      await writeCog(full, raster, { compression: 'deflate', predictor: 1, blockSize: 512 });
      try {
        await run(
          'gdal_translate',
          [
            '-q',
            '-of',
            'COG',
            '-co',
            'COMPRESS=DEFLATE',
            '-co',
            'BLOCKSIZE=512',
            '-co',
            'OVERVIEW_RESAMPLING=MODE',
            full,
            tmp,
          ],
          { timeoutMs: 900_000 },
        );
      } finally {
        await rm(full, { force: true });
      }
    });
    note(`generated ${path.basename(cog)} in ${Math.round(performance.now() - t0)} ms`);
  }
  await ensureTiled(cog, tiled);
  return { cog, tiled, width: plan.width, height: plan.height, epsg: plan.epsg, transform: plan.transform };
}

/**
 * The texture's world frame for a transform: coordinates scaled so that one pixel is always 10 units, so a
 * coarser --small input has the same texture per pixel (and the same compression ratio) as the full-size one.
 */
function textureFrame(t: GeoTransform): [number, number, number] {
  const k = TEXTURE_PIXEL / t[1];
  return [t[0] * k, t[3] * k, TEXTURE_PIXEL];
}

function s2Scene(plan: Plan, wedge: { k: number; mirror: boolean }) {
  return async () => {
    const { width: w, height: h, transform: t } = plan;
    // the texture's seed is the zone: scenes of one zone show the same ground where they overlap (up to noise)
    const a = texture(w, h, 'uint16', 200, 6000, plan.epsg, ...textureFrame(t));
    nodataWedge(a, w, h, wedge.k, wedge.mirror, S2_NODATA);
    return {
      width: w,
      height: h,
      dtype: 'uint16' as const,
      bands: [a],
      transform: t,
      epsg: plan.epsg,
      geographic: false,
      nodata: S2_NODATA,
    };
  };
}

/** Generate whatever is missing under `dir` (default bench/data/full or bench/data/small) and describe it. */
export async function ensureBenchData(opts: { small: boolean; dir?: string }): Promise<BenchData> {
  const dir = opts.dir ?? path.join(BENCH_DIR, 'data', opts.small ? 'small' : 'full');
  await mkdir(dir, { recursive: true });
  const manifestFile = path.join(dir, 'manifest.json');
  const manifest = existsSync(manifestFile)
    ? (JSON.parse(await readFile(manifestFile, 'utf8')) as { version?: number })
    : {};
  if (manifest.version !== DATA_VERSION) {
    // another generator version: start again
    for (const f of await readdir(dir)) if (f.endsWith('.tif')) await rm(path.join(dir, f), { force: true });
  }
  const sizes = sizesFor(opts.small);
  const plans = scenePlans(sizes);
  const n = sizes.s2Size;
  const s2West = await ensureInput(dir, plans.west, s2Scene(plans.west, { k: n * 0.35, mirror: false }));
  const s2East = await ensureInput(dir, plans.east, s2Scene(plans.east, { k: n * 0.5, mirror: true }));
  const s2Zone31 = await ensureInput(dir, plans.zone31, s2Scene(plans.zone31, { k: n * 0.3, mirror: false }));
  const s2Quarter = await ensureInput(dir, plans.quarter, s2Scene(plans.quarter, { k: n * 0.35, mirror: false }));
  const rp = rgbPlan(sizes);
  const rgb = await ensureInput(dir, rp, async () => {
    const t = rp.transform;
    const bands = [0, 1, 2].map((b) => texture(rp.width, rp.height, 'uint8', 10, 245, 100 + b, ...textureFrame(t)));
    return {
      width: rp.width,
      height: rp.height,
      dtype: 'uint8' as const,
      bands,
      transform: t,
      epsg: 3857,
      geographic: false,
    };
  });
  const landcoverInputs: BenchInput[] = [];
  for (const p of landcoverPlans(sizes)) {
    landcoverInputs.push(
      await ensureInput(
        dir,
        p,
        async () => ({
          width: p.width,
          height: p.height,
          dtype: 'uint8' as const,
          bands: [landcover(p)],
          transform: p.transform,
          epsg: 4326,
          geographic: true,
          nodata: LC_NODATA,
        }),
        true,
      ),
    );
  }
  const data: BenchData = {
    dir,
    small: opts.small,
    s2West,
    s2East,
    s2Zone31,
    s2Quarter,
    rgb,
    landcover: landcoverInputs,
  };
  await writeFile(manifestFile, `${JSON.stringify({ version: DATA_VERSION, sizes, data }, null, 2)}\n`);
  return data;
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { small: { type: 'boolean', default: false }, dir: { type: 'string' } } });
  const data = await ensureBenchData({ small: values.small ?? false, dir: values.dir });
  process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
}
