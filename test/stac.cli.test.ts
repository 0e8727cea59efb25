/**
 * The command line at catalogue scale, as real processes: `cogmill index` and `cogmill materialize` over a folder
 * of 1,500 GeoTIFFs under a 128-descriptor limit (one descriptor per source held for life used to exhaust it);
 * `cogmill serve` of a stac-geoparquet file recognised by its content; `cogmill explain` of a mosaic index served
 * over HTTP opens no GeoTIFF.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { cogBytes } from '../src/materialize/cog.write.ts';
import { crsFromEpsg } from '../src/render/crs.ts';
import { lonLatToTile } from '../src/render/tilematrix.ts';
import { createTransformer } from '../src/render/transform.ts';
import { CLI, spawnServe } from './support/cli.ts';
import { sh, tempDir } from './support/gdal.ts';
import { type StaticServer, startStaticServer } from './support/http.server.ts';
import { writeCatalogue } from './support/stac.catalog.ts';

const run = promisify(execFile);
const FILES = 1500;
const SIDE = 16;
const ACROSS = 50;

/** `bash -c 'ulimit -n LIMIT; node cli.ts ARGS'` with a clean environment plus `env`. */
async function cli(args: string[], opts: { fdLimit?: number; env?: Record<string, string>; cwd?: string } = {}) {
  const quoted = [process.execPath, CLI, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const script = `${opts.fdLimit ? `ulimit -n ${opts.fdLimit}; ` : ''}exec ${quoted}`;
  return run('bash', ['-c', script], {
    cwd: opts.cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...opts.env },
    maxBuffer: 64 * 1024 * 1024,
  });
}

describe('cogmill index / materialize / serve / explain at catalogue scale', () => {
  let dir: string;
  let folder: string;
  let files: StaticServer;

  before(async () => {
    dir = await tempDir('cogmill-stac-cli-');
    folder = path.join(dir, 'grid');
    await mkdir(folder);
    const jobs: Promise<void>[] = [];
    for (let i = 0; i < FILES; i++) {
      const cx = i % ACROSS;
      const cy = Math.floor(i / ACROSS);
      const data = new Uint8Array(SIDE * SIDE).fill((i % 250) + 1);
      jobs.push(
        cogBytes(
          {
            width: SIDE,
            height: SIDE,
            dtype: 'uint8',
            bands: [data],
            transform: [500_000 + cx * SIDE * 10, 10, 0, 5_000_000 - cy * SIDE * 10, 0, -10],
            epsg: 32632,
            geographic: false,
            nodata: 0,
          },
          { blockSize: 16 },
        ).then((b) => writeFile(path.join(folder, `t${String(i).padStart(4, '0')}.tif`), b)),
      );
      if (jobs.length >= 64) await Promise.all(jobs.splice(0));
    }
    await Promise.all(jobs);
    files = await startStaticServer(dir);
  });
  after(async () => {
    await files?.stop();
  });

  test('a folder of 1,500 GeoTIFFs under a 128-descriptor limit: index and materialize succeed', async () => {
    const env = { COGMILL_SOURCES_MAX_OPEN_FILES: '48' };
    const index = path.join(dir, 'index.json');
    await cli(['index', folder, '-o', index], { fdLimit: 128, env });
    const doc = JSON.parse(await readFile(index, 'utf8')) as { features: { assets: { data: { href: string } } }[] };
    assert.equal(doc.features.length, FILES);
    assert.equal(doc.features[7].assets.data.href, './grid/t0007.tif', 'hrefs relative to the index');
    const out = path.join(dir, 'all.tif');
    await cli(['materialize', folder, '--out', out, '--quiet'], { fdLimit: 128, env });
    const info = JSON.parse(await sh('gdalinfo', ['-json', '-stats', out])) as {
      size: [number, number];
      bands: { minimum: number; maximum: number }[];
    };
    assert.deepEqual(info.size, [ACROSS * SIDE, (FILES / ACROSS) * SIDE]);
    assert.equal(info.bands[0].minimum, 1);
    assert.equal(info.bands[0].maximum, 250);
  });

  test('explain of a mosaic index over HTTP opens no GeoTIFF; with --headers, one request per file under the tile', async () => {
    // the same index with URL hrefs
    const local = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as {
      features: { assets: { data: { href: string } } }[];
    };
    for (const f of local.features) f.assets.data.href = `${files.url}/${f.assets.data.href.slice(2)}`;
    await writeFile(path.join(dir, 'index.http.json'), JSON.stringify(local));
    const [lon, lat] = createTransformer(crsFromEpsg(32632), crsFromEpsg(4326)).point(500_000 + 3000, 5_000_000 - 2000);
    const [x, y] = lonLatToTile(lon, lat, 15);
    const mark = files.requests.length;
    const { stdout } = await cli(['explain', `${files.url}/index.http.json`, '--tile', `15/${x}/${y}`]);
    const ex = JSON.parse(stdout) as { totals: { items: number; assets: number }; headersRead: boolean };
    const tifs = files.requests.slice(mark).filter((r) => r.path.endsWith('.tif'));
    assert.equal(tifs.length, 0, 'no GeoTIFF was read');
    assert.ok(ex.totals.items > 4 && ex.totals.items < 100, `${ex.totals.items} files under a z15 tile`);
    const m2 = files.requests.length;
    const { stdout: withHeaders } = await cli([
      'explain',
      `${files.url}/index.http.json`,
      '--tile',
      `15/${x}/${y}`,
      '--headers',
    ]);
    const ex2 = JSON.parse(withHeaders) as { totals: { items: number; bytes: number } };
    const read = files.requests.slice(m2).filter((r) => r.path.endsWith('.tif'));
    assert.equal(read.length, ex2.totals.items, 'one header request per file under the tile');
    assert.ok(ex2.totals.bytes > 0);
  });

  test('cogmill serve of a stac-geoparquet file with no telling name is a catalogue mosaic', async () => {
    const cat = await writeCatalogue(path.join(dir, 'stac'), { scenesPerZone: 12, cols: 4, writeRasters: false });
    const hidden = path.join(dir, 'stac', 'catalogue.bin');
    await copyFile(cat.itemsParquet, hidden);
    const child = await spawnServe([hidden, '--assets', 'B04,B11', '--composite', 'median', '--period', 'P1W']);
    try {
      const m = (await (await fetch(`${child.url}/mosaics/default`)).json()) as {
        composite: string;
        bands: { name: string }[];
        catalogue: { items: number; periods: { id: string }[] };
      };
      assert.equal(m.catalogue.items, 96);
      assert.deepEqual(
        m.bands.map((b) => b.name),
        ['B04', 'B11'],
      );
      assert.equal(m.composite, 'median');
      assert.deepEqual(
        m.catalogue.periods.map((p) => p.id),
        ['2024-W01', '2024-W03', '2024-W05', '2024-W08'],
      );
    } finally {
      child.kill();
    }
    const perWeek = await spawnServe([hidden, '--assets', 'B04,B11', '--period', 'P1W', '--period-bands']);
    try {
      const m = (await (await fetch(`${perWeek.url}/mosaics/default`)).json()) as { bands: { name: string }[] };
      assert.deepEqual(
        m.bands.map((b) => b.name),
        ['W01', 'W03', 'W05', 'W08'].flatMap((w) => [`B04@2024-${w}`, `B11@2024-${w}`]),
      );
    } finally {
      perWeek.kill();
    }
  });
});

describe('memory at catalogue scale', () => {
  let child: string;
  let cat: { items: number; itemsJson: string; itemsParquet: string };
  before(async () => {
    const dir = await tempDir('cogmill-stac-mem-');
    child = path.join(import.meta.dirname, 'support', 'stac.open.child.ts');
    // written by another process: this one holds none of the 20,000 items
    const gen = await run(process.execPath, [child, '--generate', dir, '2500'], { maxBuffer: 1024 * 1024 });
    cat = JSON.parse(gen.stdout);
    assert.equal(cat.items, 20_000);
  });

  /** Open `doc` in a fresh process; its RSS afterwards, and the requests it made (the COGs were never written). */
  async function openIn(doc: string) {
    const { stdout } = await run(process.execPath, ['--expose-gc', child, doc], { maxBuffer: 1024 * 1024 });
    const r = JSON.parse(stdout) as { items: number; rssBytes: number; sourceRequests: number };
    console.log(`# ${path.basename(doc)}: ${JSON.stringify(r)}`);
    assert.equal(r.items, 20_000);
    return r;
  }

  test('20,000 items from an ItemCollection: the process holds less than 300 MiB after opening', async () => {
    const r = await openIn(cat.itemsJson);
    assert.equal(r.sourceRequests, 2, 'items.json: its first bytes, then the whole document');
    assert.ok(r.rssBytes < 300 * 1024 * 1024, `RSS ${Math.round(r.rssBytes / 2 ** 20)} MiB after opening`);
  });

  test('20,000 items from stac-geoparquet (nested structs): under 300 MiB after opening', async () => {
    const r = await openIn(cat.itemsParquet);
    assert.ok(r.sourceRequests < 200, `items.parquet: ${r.sourceRequests} range reads (footer, row groups)`);
    assert.ok(r.rssBytes < 300 * 1024 * 1024, `RSS ${Math.round(r.rssBytes / 2 ** 20)} MiB after opening`);
  });
});
