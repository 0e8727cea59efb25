/**
 * Materialise to a local file, side by side with GDAL on the same inputs:
 * - same-zone mosaic (two overlapping zone-32 scenes) vs `gdal_translate -of COG` of a `gdalbuildvrt`;
 * - two-zone mosaic (zone 31 + zone 32, reprojected to EPSG:32632) vs `gdalwarp -of COG` on the same grid;
 * - the same-zone mosaic from plain tiled GeoTIFFs (no overviews: both tools derive every level from full res);
 * - the RGB image and the land-cover tiles (mode overviews).
 * Wall time, CPU time, peak RSS and output size of each, as child processes; each output validated once with
 * GDAL's COG validator.
 *
 *   node bench/materialize.bench.ts [--small]
 */
import { existsSync } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { MaterializeOptions } from '../src/materialize/pipeline.ts';
import { choosePredictor } from '../src/materialize/predictor.choice.ts';
import type { AzureSettings } from '../src/render/azure.client.ts';
import { Engine, type EngineSettings } from '../src/render/engine.ts';
import type { MosaicSpec } from '../src/render/mosaic.ts';
import type { S3Settings } from '../src/render/s3.client.ts';
import { type Grid, gridBounds } from '../src/render/types.ts';
import type { BenchData } from './data.ts';
import { type Bench, type BenchContext, runStandalone } from './harness.ts';
import type { MaterializeJob } from './materialize.child.ts';
import { BENCH_DIR, type Measured, measured, median, mib, NODE, note, PYTHON, round, run, table } from './support.ts';

/**
 * The creation options of the issue, for every GDAL run; `predictor` the one cogmill's plan chose for the same
 * mosaic ('auto': the smaller of differencing and none on two of its tiles), so that both write the same encoding.
 */
export function gdalCogOptions(overviewResampling = 'AVERAGE', predictor = 2): string[] {
  return [
    '-co',
    'COMPRESS=DEFLATE',
    '-co',
    `PREDICTOR=${predictor === 1 ? 'NO' : predictor === 3 ? 'FLOATING_POINT' : '2'}`,
    '-co',
    'BLOCKSIZE=512',
    '-co',
    `OVERVIEW_RESAMPLING=${overviewResampling}`,
    '-co',
    'NUM_THREADS=ALL_CPUS',
  ];
}

export interface CogmillRun extends Measured {
  readonly result: { bytes: number; tiles: number; levels: number; width: number; height: number; elapsedMs: number };
}

/** Materialise in a child process (bench/materialize.child.ts), measured like a GDAL command. */
export async function cogmillMaterialize(
  spec: MosaicSpec,
  out: string,
  roots: readonly string[],
  options: MaterializeOptions = {},
  extra: {
    s3?: S3Settings;
    azure?: AzureSettings;
    nodeArgs?: readonly string[];
    timeoutMs?: number;
    engine?: Partial<EngineSettings>;
  } = {},
): Promise<CogmillRun> {
  const job: MaterializeJob = { spec, out, roots, options, s3: extra.s3, azure: extra.azure, engine: extra.engine };
  const m = await measured(
    NODE,
    [...(extra.nodeArgs ?? []), path.join(BENCH_DIR, 'materialize.child.ts'), JSON.stringify(job)],
    {
      timeoutMs: extra.timeoutMs ?? 3_600_000,
    },
  );
  const line = m.stdout.trim().split('\n').pop() ?? '{}';
  return { ...m, result: JSON.parse(line) };
}

/** The grid of a mosaic as cogmill builds it (headers only). */
export async function mosaicGrid(spec: MosaicSpec, roots: readonly string[]): Promise<Grid> {
  const engine = new Engine({ roots });
  try {
    return (await engine.openMosaic(spec)).grid;
  } finally {
    await engine.close();
  }
}

/** The predictor cogmill's plan takes for `spec` with `options` (as bench/materialize.child.ts will). */
export async function chosenPredictor(
  spec: MosaicSpec,
  roots: readonly string[],
  options: MaterializeOptions,
): Promise<number> {
  const engine = new Engine({ roots });
  try {
    const mosaic = await engine.openMosaic(spec);
    const chosen = await choosePredictor(engine, mosaic, options);
    return typeof chosen.predictor === 'number' ? chosen.predictor : 2;
  } finally {
    await engine.close();
  }
}

export interface Validation {
  readonly valid: boolean;
  readonly warnings: number;
  readonly message: string;
}

/** GDAL's COG validator, full check. */
export async function validateCog(file: string, env: Record<string, string> = {}): Promise<Validation> {
  const r = await run(
    PYTHON,
    ['-m', 'osgeo_utils.samples.validate_cloud_optimized_geotiff', '--full-check=yes', file],
    {
      timeoutMs: 900_000,
      allowFail: true,
      env: { ...process.env, ...env },
    },
  );
  const text = `${r.stdout}\n${r.stderr}`.trim();
  const warnings = (text.match(/warning/gi) ?? []).length;
  return {
    valid: r.code === 0 && /is a valid cloud optimized GeoTIFF/i.test(text),
    warnings,
    message: text.split('\n').slice(0, 3).join(' '),
  };
}

async function rasterSize(file: string): Promise<string> {
  const info = JSON.parse((await run('gdalinfo', ['-json', file], { timeoutMs: 60_000 })).stdout) as {
    size: [number, number];
  };
  return `${info.size[0]}x${info.size[1]}`;
}

const LEVEL_BYTES_PY = `
import json, sys
from osgeo import gdal
ds = gdal.Open(sys.argv[1])
b = ds.GetRasterBand(1)
out = []
for lv in [b] + [b.GetOverview(i) for i in range(b.GetOverviewCount())]:
    bx, by = lv.GetBlockSize()
    n = 0
    for y in range((lv.YSize + by - 1) // by):
        for x in range((lv.XSize + bx - 1) // bx):
            n += int(lv.GetMetadataItem('BLOCK_SIZE_%d_%d' % (x, y), 'TIFF') or 0)
    out.append([lv.XSize, lv.YSize, n])
print(json.dumps(out))
`;

/** Tile bytes per level: [width, height, bytes] from full resolution down. */
async function levelBytes(file: string): Promise<[number, number, number][]> {
  return JSON.parse((await run(PYTHON, ['-c', LEVEL_BYTES_PY, file], { timeoutMs: 120_000 })).stdout);
}

/**
 * cogmill's tile bytes over GDAL's on the levels both files hold (same size). GDAL's COG driver reuses the
 * overviews of its input when it has some (a VRT of COGs does), so its file can stop a level earlier than the
 * levels GDAL makes when it computes them (down to one block, as cogmill does); the extra level is not a
 * difference in compression.
 */
async function sameLevelsRatio(ours: string, theirs: string): Promise<{ ratio: number; levels: string }> {
  const [a, b] = await Promise.all([levelBytes(ours), levelBytes(theirs)]);
  let x = 0;
  let y = 0;
  let n = 0;
  for (const [w, h, bytes] of a) {
    const other = b.find(([w2, h2]) => w2 === w && h2 === h);
    if (!other) continue;
    x += bytes;
    y += other[2];
    n++;
  }
  return { ratio: y > 0 ? x / y : Number.NaN, levels: `${n} of ${a.length} / ${b.length}` };
}

interface Case {
  readonly name: string;
  readonly spec: MosaicSpec;
  readonly options: MaterializeOptions;
  readonly gdalTool: string;
  /** prepare (not timed) and return the timed GDAL command, writing with `predictor` */
  gdal(out: string, grid: Grid, dir: string, predictor: number): Promise<{ cmd: string; args: string[] }>;
}

/** gdalwarp onto cogmill's grid, nearest, both CPUs; later sources win in GDAL, so the list is reversed. */
function warpArgs(grid: Grid, sources: readonly string[], out: string, predictor: number): string[] {
  const b = gridBounds(grid);
  return [
    '-q',
    '-of',
    'COG',
    '-t_srs',
    `EPSG:${grid.crs.epsg}`,
    '-te',
    ...b.map(String),
    '-tr',
    String(grid.transform[1]),
    String(-grid.transform[5]),
    '-r',
    'near',
    '-multi',
    '-wo',
    'NUM_THREADS=ALL_CPUS',
    ...gdalCogOptions('AVERAGE', predictor),
    ...[...sources].reverse(),
    out,
  ];
}

/** The striped GeoTIFF (deflate, predictor 2, GDAL's default strips, no overviews) made from an input's COG. */
function striped(cog: string): string {
  return cog.replace(/\.cog\.tif$/, '.striped.tif');
}

/** Make the striped inputs once (GDAL, untimed). */
async function ensureStriped(cogs: readonly string[]): Promise<void> {
  for (const cog of cogs) {
    if (existsSync(striped(cog))) continue;
    const tmp = `${striped(cog)}.tmp.tif`;
    await run('gdal_translate', ['-q', '-co', 'COMPRESS=DEFLATE', '-co', 'PREDICTOR=2', cog, tmp], {
      timeoutMs: 1_800_000,
    });
    await rename(tmp, striped(cog));
  }
}

function cases(data: BenchData): Case[] {
  const { s2West, s2East, s2Zone31, rgb, landcover } = data;
  // GDAL paints later sources over earlier ones, cogmill keeps the first valid pixel: same result, reversed lists
  const viaVrt =
    (name: string, sources: readonly string[], ovr = 'AVERAGE') =>
    async (out: string, _grid: Grid, dir: string, predictor: number) => {
      const vrt = path.join(dir, `${name}.vrt`);
      await run('gdalbuildvrt', ['-q', '-overwrite', vrt, ...[...sources].reverse()], { timeoutMs: 60_000 });
      return { cmd: 'gdal_translate', args: ['-q', '-of', 'COG', ...gdalCogOptions(ovr, predictor), vrt, out] };
    };
  const sameZone = [s2West.cog, s2East.cog];
  const twoZones = [s2West.cog, s2Zone31.cog];
  return [
    {
      name: 'S2 same zone, 2 scenes (COG inputs)',
      spec: { id: 'same-zone', sources: sameZone },
      options: {},
      gdalTool: 'gdal_translate (VRT)',
      gdal: viaVrt('same-zone', sameZone),
    },
    {
      name: 'S2 two zones, 2 scenes -> EPSG:32632 (COG inputs)',
      spec: { id: 'two-zones', sources: twoZones },
      options: {},
      gdalTool: 'gdalwarp',
      gdal: async (out, grid, _dir, p) => ({ cmd: 'gdalwarp', args: warpArgs(grid, twoZones, out, p) }),
    },
    {
      name: 'S2 same zone, 2 scenes (plain tiled inputs, no overviews)',
      spec: { id: 'same-zone-tiled', sources: [s2West.tiled, s2East.tiled] },
      options: {},
      gdalTool: 'gdal_translate (VRT)',
      gdal: viaVrt('same-zone-tiled', [s2West.tiled, s2East.tiled]),
    },
    {
      name: 'S2 two zones, 2 scenes -> EPSG:32632 (striped inputs, predictor 2, no overviews)',
      spec: { id: 'two-zones-striped', sources: twoZones.map(striped) },
      options: {},
      gdalTool: 'gdalwarp',
      gdal: async (out, grid, _dir, p) => ({ cmd: 'gdalwarp', args: warpArgs(grid, twoZones.map(striped), out, p) }),
    },
    {
      name: 'RGB uint8 EPSG:3857 (COG input)',
      spec: { id: 'rgb', sources: [rgb.cog] },
      options: {},
      gdalTool: 'gdal_translate (VRT)',
      gdal: viaVrt('rgb', [rgb.cog]),
    },
    {
      name: 'land cover uint8 EPSG:4326, 4 tiles, mode overviews (COG inputs)',
      spec: { id: 'landcover', sources: landcover.map((l) => l.cog), resampling: 'nearest' },
      options: { overviewResampling: 'mode' },
      gdalTool: 'gdal_translate (VRT)',
      gdal: viaVrt(
        'landcover',
        landcover.map((l) => l.cog),
        'MODE',
      ),
    },
  ];
}

/** Read every input once so that neither tool pays for the first disk read. */
export async function warmInputs(files: readonly string[]): Promise<void> {
  await run('cat', [...files], { timeoutMs: 600_000 }).catch(() => undefined);
}

export const materializeBench: Bench = {
  name: 'materialize',
  title: 'Materialise to a local file vs gdal_translate / gdalwarp -of COG',
  async run(ctx: BenchContext) {
    const { data, outDir } = ctx;
    const roots = [data.dir];
    // two runs each at full size, in alternating order (one run can be off by 2x when the machine is shared);
    // one with --small, which must stay under a minute
    const repeats = ctx.repeats ?? (ctx.small ? 1 : 2);
    const rows: Record<string, unknown>[] = [];
    const summary: Record<string, unknown>[] = [];
    const list = cases(data);
    await ensureStriped([data.s2West.cog, data.s2Zone31.cog]);
    for (const c of list) {
      // COGMILL_BENCH_CASE=RGB: only the cases whose name holds that text
      if (process.env.COGMILL_BENCH_CASE && !c.name.includes(process.env.COGMILL_BENCH_CASE)) continue;
      await warmInputs(c.spec.sources);
      const grid = await mosaicGrid(c.spec, roots);
      const predictor = await chosenPredictor(c.spec, roots, c.options);
      const ours: CogmillRun[] = [];
      const theirs: Measured[] = [];
      const oursOut = path.join(outDir, `${c.spec.id}.cogmill.tif`);
      const gdalOut = path.join(outDir, `${c.spec.id}.gdal.tif`);
      for (let i = 0; i < repeats; i++) {
        // alternate who goes first
        const order = i % 2 === 0 ? ['cogmill', 'gdal'] : ['gdal', 'cogmill'];
        for (const who of order) {
          await rm(who === 'cogmill' ? oursOut : gdalOut, { force: true });
          if (who === 'cogmill') {
            const r = await cogmillMaterialize(c.spec, oursOut, roots, c.options);
            ours.push(r);
            note(`  ${c.name}: cogmill ${round(r.wallMs / 1000)} s, ${mib(r.peakRssBytes)} MiB peak`);
          } else {
            const g = await c.gdal(gdalOut, grid, outDir, predictor);
            const r = await measured(g.cmd, g.args, { timeoutMs: 3_600_000 });
            theirs.push(r);
            note(`  ${c.name}: ${g.cmd} ${round(r.wallMs / 1000)} s, ${mib(r.peakRssBytes)} MiB peak`);
          }
        }
      }
      const [vOurs, vGdal] = await Promise.all([validateCog(oursOut), validateCog(gdalOut)]);
      const [sizeOurs, sizeGdal] = await Promise.all([
        stat(oursOut).then((s) => s.size),
        stat(gdalOut).then((s) => s.size),
      ]);
      const [dimOurs, dimGdal] = await Promise.all([rasterSize(oursOut), rasterSize(gdalOut)]);
      const same = await sameLevelsRatio(oursOut, gdalOut);
      const oursWall = median(ours.map((r) => r.wallMs));
      const gdalWall = median(theirs.map((r) => r.wallMs));
      const tool = (
        name: string,
        runs: Measured[],
        wall: number,
        bytes: number,
        v: { valid: boolean; warnings: number },
        dims: string,
      ) => ({
        case: c.name,
        tool: name,
        pixels: dims,
        wallS: round(wall / 1000),
        runsS: runs.map((r) => round(r.wallMs / 1000, 1)).join(' / '),
        cpuS: round(median(runs.map((r) => r.cpuSeconds))),
        peakRssMiB: mib(Math.max(...runs.map((r) => r.peakRssBytes))),
        outputMiB: mib(bytes),
        validCog: v.valid ? (v.warnings ? `yes (${v.warnings} warnings)` : 'yes') : 'NO',
      });
      const a = tool('cogmill', ours, oursWall, sizeOurs, vOurs, dimOurs);
      const b = tool(c.gdalTool, theirs, gdalWall, sizeGdal, vGdal, dimGdal);
      rows.push(a, b);
      const s = {
        case: c.name,
        predictor,
        speedup: round(gdalWall / oursWall),
        sizeRatio: round(sizeOurs / sizeGdal, 3),
        sameLevelsSizeRatio: round(same.ratio, 3),
        levelsCompared: same.levels,
        rssRatio: round(Math.max(...ours.map((r) => r.peakRssBytes)) / Math.max(...theirs.map((r) => r.peakRssBytes))),
        repeats,
      };
      summary.push(s);
      ctx.emit({ ...s, cogmill: a, gdal: b, tilesPerSecond: round(ours[0].result.tiles / (oursWall / 1000), 1) });
      if (!vOurs.valid) note(`  cogmill output is not a valid COG: ${vOurs.message}`);
      if (!vGdal.valid) note(`  GDAL output is not a valid COG: ${vGdal.message}`);
    }
    return {
      sections: [
        {
          title: 'Summary (speedup = GDAL wall time / cogmill wall time; size ratio = cogmill bytes / GDAL bytes)',
          body:
            `${table(summary)}\n\nTargets: speedup >= 1.5 (floor 1.0), size ratio <= 1.02. sameLevelsSizeRatio: tile ` +
            "bytes of the levels both files hold (GDAL's COG driver keeps a VRT's own overview levels, which can " +
            'stop one level above the single-block level cogmill and GDAL make when they compute overviews).',
        },
        { title: 'Each run (median wall and CPU time over the repeats, largest peak RSS)', body: table(rows) },
      ],
    };
  },
};

if (import.meta.main) await runStandalone(materializeBench);
