/**
 * A plan before any pixel is read: `cogmill materialize --dry-run` and `GET /materialize?...&dryRun=true` explain
 * the same plan (levels and sizes, tiles, shards and part ranges, BigTIFF, sources per level and whether each has
 * a usable overview, estimated source bytes, output size range) from the sources' headers only (with a named
 * predictor; an 'auto' one is chosen on one or two tiles, which the dry run reads too).
 *
 * The sources are two GDAL COGs side by side (one with overviews, one without) served by a recording HTTP server:
 * every request of a dry run is a range that starts in the header area (before the first tile's data, as GDAL
 * reports the tile offsets), while a real materialisation does read tile data (the check can fail). The figures
 * are checked against gdalinfo of the COG the same command materialises and against tile counts computed here.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import type { PlanExplain } from '../src/materialize/plan.explain.ts';
import { startTestServer, type TestServer } from './support/app.ts';
import { PYTHON, sh, tempDir, validateCog } from './support/gdal.ts';
import { type StaticServer, startStaticServer } from './support/http.server.ts';

const run = promisify(execFile);
const CLI = path.join(import.meta.dirname, '..', 'src', 'cli.ts');
const TOKEN = 'explain-test-token-0123456789abcdef';
const BLOCK = 256;

let dir = '';
let files: StaticServer;
let server: TestServer;
let urls: string[] = [];
/** per served file: where its first tile's data starts (GDAL's smallest block offset, over bands and overviews) */
const dataStart = new Map<string, number>();

interface Served {
  requests: number;
  /** requests without a range (a whole file) or starting at or after the file's first tile data */
  pixelReads: string[];
  bytes: number;
}

/** what the recording server answered since request number `from` */
function servedSince(from: number): Served {
  const out: Served = { requests: 0, pixelReads: [], bytes: 0 };
  for (const r of files.requests.slice(from)) {
    out.requests++;
    const start = dataStart.get(r.path.replace(/^\//, ''));
    const m = /^bytes=(\d+)-(\d*)$/.exec(r.range ?? '');
    if (!m) {
      if (r.method !== 'HEAD') out.pixelReads.push(`${r.method} ${r.path} (no range)`);
      continue;
    }
    const [a, b] = [Number(m[1]), m[2] === '' ? Number.NaN : Number(m[2])];
    out.bytes += Number.isNaN(b) ? 0 : b - a + 1;
    if (start === undefined || a >= start) out.pixelReads.push(`${r.method} ${r.path} ${r.range}`);
  }
  return out;
}

function cli(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return run(process.execPath, [CLI, ...args], { maxBuffer: 64 * 1024 * 1024, timeout: 240_000 });
}

before(async () => {
  dir = await tempDir('cogmill-explain-');
  // two 1024 x 1024 uint16 COGs side by side: west.tif with overviews (512, 256), east.tif without any
  await sh(PYTHON, [
    '-c',
    `
import sys, os
import numpy as np
from osgeo import gdal, osr
gdal.UseExceptions()
d = sys.argv[1]
srs = osr.SpatialReference(); srs.ImportFromEPSG(32632)
for name, x0, seed, ovr in (('west', 500000, 1, 'AUTO'), ('east', 510240, 2, 'NONE')):
    mem = gdal.GetDriverByName('MEM').Create('', 1024, 1024, 1, gdal.GDT_UInt16)
    mem.SetGeoTransform([x0, 10, 0, 5000000, 0, -10]); mem.SetProjection(srs.ExportToWkt())
    mem.GetRasterBand(1).WriteArray(np.random.default_rng(seed).integers(1, 4000, (1024, 1024)).astype('uint16'))
    mem.GetRasterBand(1).SetNoDataValue(0)
    gdal.Translate(os.path.join(d, name + '.tif'), mem, format='COG',
                   creationOptions=['BLOCKSIZE=256', 'COMPRESS=DEFLATE', 'OVERVIEWS=' + ovr])
    ds = gdal.Open(os.path.join(d, name + '.tif'))
    offsets = []
    bands = [ds.GetRasterBand(1)] + [ds.GetRasterBand(1).GetOverview(i) for i in range(ds.GetRasterBand(1).GetOverviewCount())]
    for b in bands:
        bx, by = b.GetBlockSize()
        for ty in range((b.YSize + by - 1) // by):
            for tx in range((b.XSize + bx - 1) // bx):
                o = b.GetMetadataItem('BLOCK_OFFSET_%d_%d' % (tx, ty), 'TIFF')
                if o: offsets.append(int(o))
    print(name + '.tif', min(offsets), len(bands))
`,
    dir,
  ]).then((out) => {
    for (const line of out.trim().split('\n')) {
      const [name, offset, levels] = line.split(' ');
      dataStart.set(name, Number(offset));
      assert.equal(Number(levels), name === 'west.tif' ? 3 : 1, `${name}: overview count`);
    }
  });
  files = await startStaticServer(dir);
  urls = ['west.tif', 'east.tif'].map((n) => `${files.url}/${n}`);
  server = await startTestServer({
    auth: { token: TOKEN },
    sources: { allowedUrlPrefixes: [`${files.url}/`] },
    materialize: { allowedDestinations: [`${dir}/`], workers: 2 },
    mosaics: [{ id: 'pair', sources: urls }],
  });
});

after(async () => {
  await server?.stop();
  await files?.stop();
});

/** the tiles of each level of a w x h COG cut in 256-pixel blocks, halved until both sides fit a block */
function expectedLevels(w: number, h: number): { width: number; height: number; tiles: number }[] {
  const out = [];
  for (;;) {
    out.push({ width: w, height: h, tiles: Math.ceil(w / BLOCK) * Math.ceil(h / BLOCK) });
    if (w <= BLOCK && h <= BLOCK) return out;
    w = Math.floor(w / 2);
    h = Math.floor(h / 2);
  }
}

describe('a plan before any pixel is read', () => {
  test('--dry-run and dryRun=true: the same plan from headers only; its figures match the COG made after', async () => {
    const out = path.join(dir, 'pair.tif');
    // a named predictor: an 'auto' one is chosen on one or two tiles (the next test)
    const common = ['--blocksize', String(BLOCK), '--shards', '2', '--workers', '2', '--predictor', '2'];

    // the command line: a fresh process opens the sources (headers) and explains
    const before = files.requests.length;
    const dry = await cli(['materialize', ...urls, '--out', out, ...common, '--dry-run']);
    const cliRead = servedSince(before);
    const explained = JSON.parse(dry.stdout) as PlanExplain;
    assert.deepEqual(cliRead.pixelReads, [], 'the dry run read tile data');
    assert.ok(cliRead.requests >= 2, `the headers were read: ${cliRead.requests} requests`);
    const sizes = (await Promise.all(['west.tif', 'east.tif'].map((n) => stat(path.join(dir, n))))).map((s) => s.size);
    assert.ok(cliRead.bytes < (sizes[0] + sizes[1]) / 4, `the dry run read ${cliRead.bytes} bytes of ${sizes}`);
    await assert.rejects(stat(out), /ENOENT/, 'a dry run writes nothing');

    // the server: the same explanation as JSON, and no tile data read either
    const httpBefore = files.requests.length;
    const q = new URLSearchParams({
      mosaic: 'pair',
      dest: out,
      blocksize: String(BLOCK),
      predictor: '2',
      dryRun: 'true',
    });
    const res = await fetch(`${server.url}/materialize?${q}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(res.status, 200, await res.clone().text());
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    const viaHttp = (await res.json()) as PlanExplain;
    assert.deepEqual(servedSince(httpBefore).pixelReads, [], 'dryRun=true read tile data');
    assert.deepEqual(viaHttp, explained, 'dryRun=true and --dry-run explain different plans');
    const jobs = await fetch(`${server.url}/jobs`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(((await jobs.json()) as { jobs: unknown[] }).jobs.length, 0, 'a dry run starts no job');
    await assert.rejects(stat(out), /ENOENT/);

    // now materialise for real: tile data is read (so the check above can fail), and the figures hold
    const realBefore = files.requests.length;
    const made = await cli(['materialize', ...urls, '--out', out, ...common, '--progress', 'none']);
    assert.ok(servedSince(realBefore).pixelReads.length > 0, 'a real run reads tile data');
    assert.deepEqual((await validateCog(out)).errors, []);
    const info = JSON.parse(await sh('gdalinfo', ['-json', out])) as {
      size: [number, number];
      bands: { overviews?: { size: [number, number] }[] }[];
    };
    const gdalLevels = [info.size, ...(info.bands[0].overviews ?? []).map((o) => o.size)];
    assert.deepEqual(
      explained.levels.map((l) => [l.width, l.height]),
      gdalLevels,
      'level sizes differ from the COG GDAL reads',
    );
    assert.deepEqual([explained.width, explained.height], info.size);
    assert.deepEqual(gdalLevels[0], [2048, 1024], 'the two sources side by side');
    const expected = expectedLevels(2048, 1024);
    assert.deepEqual(
      explained.levels.map((l) => ({ width: l.width, height: l.height, tiles: l.tiles })),
      expected,
    );
    const tiles = expected.reduce((a, l) => a + l.tiles, 0);
    assert.equal(explained.tiles, tiles);
    assert.equal(JSON.parse(made.stdout).tiles, tiles);
    assert.equal(explained.bands, 1);
    assert.equal(explained.dtype, 'uint16');
    assert.equal(explained.bigTiff, 'no');
    const bytes = (await stat(out)).size;
    assert.ok(
      explained.outputBytes.min <= bytes && bytes <= explained.outputBytes.max,
      `${bytes} bytes outside ${JSON.stringify(explained.outputBytes)}`,
    );

    // a file is written in file order: one shard over every tile
    assert.deepEqual(
      explained.shards.map((s) => s.tiles),
      [[0, tiles]],
    );

    // sources per level: full resolution reads both at their own level; coarser levels read west's overviews,
    // while east has none (its full resolution is read: not a usable overview)
    const at = (level: number, name: string) =>
      explained.levels[level].sources.find((s) => s.href.endsWith(`/${name}`));
    for (const name of ['west.tif', 'east.tif']) {
      assert.equal(at(0, name)?.overview, 0, `${name} at level 0`);
      assert.equal(at(0, name)?.decimation, 1);
      assert.equal(at(0, name)?.usableOverview, true);
    }
    for (let level = 1; level < expected.length; level++) {
      const west = at(level, 'west.tif');
      const east = at(level, 'east.tif');
      assert.ok(west && east, `level ${level} reads both sources`);
      assert.ok((west.overview ?? 0) >= 1, `west's overview for level ${level}: ${west.overview}`);
      assert.equal(west.usableOverview, true);
      // full-resolution source pixels per level pixel (each source covers half of the level)
      assert.equal(west.decimation, 2 ** level);
      assert.equal(east.decimation, 2 ** level);
      assert.equal(east.overview, 0);
      assert.equal(east.usableOverview, false, `east has no overview for level ${level}`);
    }
    const perLevel = explained.levels.map((l) => l.sourceBytes ?? Number.NaN);
    assert.ok(
      perLevel.every((b) => b > 0),
      `source bytes per level: ${perLevel}`,
    );
    assert.equal(
      explained.estimatedSourceBytes,
      perLevel.reduce((a, b) => a + b, 0),
    );
    // reading east's full resolution for every level costs more than reading it once
    assert.ok(perLevel[1] > perLevel[0] / 4, `level 1 reads ${perLevel[1]} bytes, level 0 ${perLevel[0]}`);
  });

  test("an 'auto' predictor: the dry run reads one or two tiles' pixels to choose it, and names the one the COG gets", async () => {
    const out = path.join(dir, 'pair-auto.tif');
    const common = ['--blocksize', String(BLOCK), '--workers', '1'];
    const before = files.requests.length;
    const dry = await cli(['materialize', ...urls, '--out', out, ...common, '--dry-run']);
    const reads = servedSince(before).pixelReads;
    const explained = JSON.parse(dry.stdout) as PlanExplain;
    // one or two sample tiles, each over at most both sources
    assert.ok(reads.length > 0 && reads.length <= 4, `pixel reads: ${reads.join(', ')}`);
    await assert.rejects(stat(out), /ENOENT/, 'a dry run writes nothing');
    await cli(['materialize', ...urls, '--out', out, ...common, '--progress', 'none']);
    const info = JSON.parse(await sh('gdalinfo', ['-json', out])) as {
      metadata: { IMAGE_STRUCTURE?: { PREDICTOR?: string } };
    };
    const written = Number(info.metadata.IMAGE_STRUCTURE?.PREDICTOR ?? '1');
    assert.equal(explained.options.predictor, written, 'the dry run and the file name the same predictor');
  });

  test('to S3 the plan has the asked shards with contiguous part ranges; a bad dryRun is a 400', async () => {
    const q = (extra: Record<string, string>) =>
      fetch(
        `${server.url}/materialize?${new URLSearchParams({ mosaic: 'pair', dest: path.join(dir, 'x.tif'), ...extra })}`,
        { headers: { authorization: `Bearer ${TOKEN}` } },
      );
    const bad = await q({ dryRun: 'perhaps' });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { message: string }).message, /dryRun must be true or false/);
    const dry = await cli([
      'materialize',
      ...urls,
      '--out',
      's3://nowhere/pair.tif',
      '--blocksize',
      String(BLOCK),
      '--shards',
      '3',
      '--dry-run',
    ]);
    const plan = JSON.parse(dry.stdout) as PlanExplain;
    assert.equal(plan.destination, 's3://nowhere/pair.tif');
    assert.equal(plan.shards.length, 3);
    let tile = 0;
    let part = 2;
    for (const s of plan.shards) {
      assert.equal(s.tiles[0], tile, 'shards follow each other in file order');
      assert.equal(s.parts[0], part, 'part ranges follow each other (part 1 is the header)');
      assert.ok(s.parts[1] >= s.parts[0] + 1);
      tile = s.tiles[1];
      part = s.parts[1] + 1;
    }
    assert.equal(tile, plan.tiles);
    assert.ok(plan.partSizeBytes >= 5 * 1024 * 1024, 'S3 parts are at least 5 MiB');
  });
});
