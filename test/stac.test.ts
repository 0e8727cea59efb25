/**
 * Catalogue-scale mosaics over a generated catalogue (2,000 items in two UTM zones on four dates, one COG per band,
 * B04/B03 at 10 m and B11 at 20 m) served over HTTP with Range support: opening costs no source request (from an
 * ItemCollection, stac-geoparquet, or a STAC API search with paging), a z12 tile reads only the assets under it, and
 * composites equal the rule applied by hand to the items' values.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { mosaicBandSummaries } from '../src/materialize/statistics.xml.ts';
import { crsFromEpsg } from '../src/render/crs.ts';
import { Engine } from '../src/render/engine.ts';
import { mosaicPeriods, periodOf } from '../src/render/mosaic.items.ts';
import type { Mosaic, MosaicSpec } from '../src/render/mosaic.ts';
import { FileHandlePool } from '../src/render/source.pool.ts';
import { readStacParquet } from '../src/render/stac.parquet.ts';
import { parseInterval, parseSortby, parseStacItem, sortItems } from '../src/render/stac.ts';
import { StatisticsService } from '../src/render/statistics.ts';
import { lonLatToTile, xyzTileGrid } from '../src/render/tilematrix.ts';
import { createTransformer } from '../src/render/transform.ts';
import type { Grid } from '../src/render/types.ts';
import { tempDir } from './support/gdal.ts';
import { type StaticServer, startStaticServer } from './support/http.server.ts';
import { type StacApi, startStacApi } from './support/stac.api.ts';
import {
  BANDS,
  type Catalogue,
  cloudOf,
  DATES,
  type GeneratedItem,
  SCENE_M,
  sceneValue,
  writeCatalogue,
  ZONES,
} from './support/stac.catalog.ts';

describe('STAC parsing (pure)', () => {
  test('proj:* fields become a GDAL grid; raster:bands give dtype and nodata; hrefs resolve against the document', () => {
    const it = parseStacItem(
      {
        id: 'a',
        bbox: [1, 2, 3, 4],
        properties: { datetime: '2024-01-02T00:00:00Z', 'proj:code': 'EPSG:32632', 'eo:cloud_cover': 12 },
        assets: {
          B04: {
            href: 'cogs/a_B04.tif',
            type: 'image/tiff; application=geotiff',
            'proj:shape': [30, 20],
            'proj:transform': [10, 0, 500000, 0, -10, 5000000],
            'raster:bands': [{ data_type: 'uint16', nodata: 0 }],
          },
          B11: {
            href: '/abs/a_B11.tif',
            'proj:epsg': 32633,
            'proj:shape': [15, 10],
            'proj:transform': [20, 0, 1, 0, -20, 2, 0, 0, 1],
          },
          thumbnail: { href: 'a.jpg', type: 'image/jpeg', roles: ['thumbnail'] },
        },
      },
      { base: 'http://h:1/cat/items.json' },
    );
    assert.deepEqual(Object.keys(it.assets), ['B04', 'B11']);
    assert.equal(it.assets.B04.href, 'http://h:1/cat/cogs/a_B04.tif');
    assert.deepEqual(it.assets.B04.transform, [500000, 10, 0, 5000000, 0, -10]);
    assert.equal(it.assets.B04.width, 20);
    assert.equal(it.assets.B04.height, 30);
    assert.equal(it.assets.B04.epsg, 32632);
    assert.equal(it.assets.B04.dtype, 'uint16');
    assert.equal(it.assets.B04.nodata, 0);
    assert.equal(it.assets.B11.epsg, 32633, 'asset-level proj:epsg wins over the item-level proj:code');
    assert.equal(it.assets.B11.href, 'http://h:1/abs/a_B11.tif');
    assert.equal(it.datetime, Date.parse('2024-01-02T00:00:00Z'));
    assert.equal(it.sortKeys['eo:cloud_cover'], 12);
    assert.throws(() => parseStacItem({ id: 'x', assets: {} }), /no GeoTIFF asset/);
    assert.throws(
      () => parseStacItem({ id: 'x', bbox: [0, 0, 1, 1], assets: { a: { href: 'a.tif' } } }, { assets: ['B04'] }),
      /none of the assets B04/,
    );
  });

  test('sortby, intervals and periods', () => {
    assert.deepEqual(parseSortby('-datetime,+properties.eo:cloud_cover'), [
      { field: 'datetime', direction: 'desc' },
      { field: 'eo:cloud_cover', direction: 'asc' },
    ]);
    const mk = (id: string, t: string, cc?: number) =>
      parseStacItem({
        id,
        bbox: [0, 0, 1, 1],
        properties: { datetime: t, ...(cc === undefined ? {} : { 'eo:cloud_cover': cc }) },
        assets: { d: { href: `${id}.tif` } },
      });
    const items = [
      mk('a', '2024-01-01T00:00:00Z', 30),
      mk('b', '2024-01-02T00:00:00Z'),
      mk('c', '2024-01-03T00:00:00Z', 5),
    ];
    assert.deepEqual(
      sortItems(items.slice(), parseSortby('eo:cloud_cover')).map((i) => i.id),
      ['c', 'a', 'b'],
    );
    assert.deepEqual(
      sortItems(items.slice(), parseSortby('-datetime')).map((i) => i.id),
      ['c', 'b', 'a'],
    );
    assert.deepEqual(parseInterval('2024-01-01T00:00:00Z/..'), [Date.parse('2024-01-01T00:00:00Z'), Infinity]);
    assert.throws(() => parseInterval('2024-02-01/2024-01-01'), /ends before it starts/);
    assert.equal(periodOf(Date.parse('2024-01-01T12:00:00Z'), 'P1W').id, '2024-W01');
    assert.equal(periodOf(Date.parse('2024-12-30T12:00:00Z'), 'P1W').id, '2025-W01');
    assert.equal(periodOf(Date.parse('2024-02-29T23:59:59Z'), 'P1M').id, '2024-02');
    const periods = mosaicPeriods(items, 'P1D');
    assert.deepEqual(
      periods.map((p) => [p.id, p.items]),
      [
        ['2024-01-01', 1],
        ['2024-01-02', 1],
        ['2024-01-03', 1],
      ],
    );
  });
});

describe('file handle pool', () => {
  test('never holds more descriptors than its bound, whatever the number of files', async () => {
    const dir = await tempDir('cogmill-pool-');
    const files: string[] = [];
    for (let i = 0; i < 40; i++) {
      const f = path.join(dir, `f${i}.bin`);
      await writeFile(f, new Uint8Array([i, i + 1, i + 2]));
      files.push(f);
    }
    const pool = new FileHandlePool(4);
    let peak = 0;
    const got = await Promise.all(
      files.map((f, i) =>
        pool.use(f, async (fh) => {
          peak = Math.max(peak, pool.size);
          const b = new Uint8Array(3);
          await fh.read(b, 0, 3, 0);
          assert.deepEqual([...b], [i, i + 1, i + 2]);
          return b[0];
        }),
      ),
    );
    assert.deepEqual(
      got,
      files.map((_, i) => i),
    );
    assert.ok(peak <= 4, `peak ${peak} open handles`);
    assert.ok(pool.size <= 4);
    assert.equal(pool.opened, 40);
    await pool.close();
    assert.equal(pool.size, 0);
  });
});

/** Requests the static server saw for COG files (source requests), as paths. */
function cogRequests(server: StaticServer, from = 0): string[] {
  return server.requests
    .slice(from)
    .filter((r) => r.path.startsWith('/cogs/'))
    .map((r) => r.path);
}

function itemOfFile(p: string): string {
  return path.basename(p).replace(/_B\d+\.tif$/, '');
}

describe('catalogue mosaics over HTTP (2,000 items)', () => {
  let dir: string;
  let server: StaticServer;
  let api: StacApi;
  let cat: Catalogue;
  let engine: Engine;
  const byId = new Map<string, GeneratedItem>();

  before(async () => {
    dir = await tempDir('cogmill-stac-');
    server = await startStaticServer(dir);
    cat = await writeCatalogue(dir, { scenesPerZone: 250, cols: 25, baseUrl: server.url });
    for (const it of cat.items) byId.set(it.id, it);
    api = await startStacApi(cat.items.map((i) => i.json));
    engine = new Engine({ roots: [dir], allowedUrlPrefixes: [server.url, api.url] });
  });
  after(async () => {
    await engine?.close();
    await server?.stop();
    await api?.stop();
  });

  const spec = (over: Partial<MosaicSpec> & { catalogue: MosaicSpec['catalogue'] }): MosaicSpec => ({
    id: 's2',
    sources: [],
    assets: ['B04', 'B03', 'B11'],
    crs: 32632,
    resolution: [10, 10],
    ...over,
  });

  test('opening from an ItemCollection, stac-geoparquet or a paged STAC API search makes no source request', async () => {
    const mark = server.requests.length;
    const fromJson = await engine.openMosaic(spec({ catalogue: { items: `${server.url}/items.json` } }));
    const fromParquet = await engine.openMosaic(spec({ catalogue: { items: `${server.url}/items.parquet` } }));
    const fromJsonColumn = await engine.openMosaic(
      spec({ catalogue: { items: `${server.url}/items.json-assets.parquet` } }),
    );
    assert.deepEqual(cogRequests(server, mark), [], 'no COG was read');
    const paths = new Set(server.requests.slice(mark).map((r) => r.path));
    assert.deepEqual([...paths].sort(), ['/items.json', '/items.json-assets.parquet', '/items.parquet']);
    assert.equal(fromJson.items?.items.length, 2000);
    assert.equal(fromParquet.items?.items.length, 2000);
    const flat = (m: Mosaic) =>
      m.items!.items.map((i) => `${i.id} ${i.datetime} ${i.assets.B11.href} ${i.assets.B04.transform}`);
    assert.deepEqual(flat(fromParquet), flat(fromJson));
    assert.deepEqual(flat(fromJsonColumn), flat(fromJson));
    assert.equal(fromJson.bandCount, 3);
    assert.deepEqual(fromJson.bandNames, ['B04', 'B03', 'B11']);
    assert.equal(fromJson.dtype, 'uint16');
    assert.equal(fromJson.nodata, 0);
    assert.equal(fromJson.grid.crs.epsg, 32632);

    const apiMark = api.requests.length;
    const viaPost = await engine.openMosaic(
      spec({ catalogue: { search: `${api.url}/search`, collections: ['generated-s2'], limit: 300 } }),
    );
    const posts = api.requests.slice(apiMark);
    assert.equal(posts.length, 7, '2,000 items in pages of 300');
    assert.ok(posts.every((r) => r.method === 'POST' && JSON.stringify(r.body?.collections) === '["generated-s2"]'));
    assert.deepEqual(
      posts.map((r) => r.body?.token ?? 0),
      [0, 300, 600, 900, 1200, 1500, 1800],
    );
    const viaGet = await engine.openMosaic(
      spec({
        catalogue: {
          search: `${api.url}/search`,
          method: 'GET',
          datetime: '2024-01-01T00:00:00Z/2024-01-31T23:59:59Z',
          limit: 400,
        },
      }),
    );
    const viaLanding = await engine.openMosaic(spec({ catalogue: { items: `${api.url}/`, limit: 1000 } }));
    assert.equal(viaPost.items?.items.length, 2000);
    assert.equal(viaGet.items?.items.length, 1000, 'the datetime filter went to the API');
    assert.equal(viaLanding.items?.items.length, 2000);
    // a search URL given as a document (as on the command line): its GET next links are followed
    const viaSearchUrl = await engine.openMosaic(spec({ catalogue: { items: `${api.url}/search?limit=700` } }));
    assert.equal(viaSearchUrl.items?.items.length, 2000);
    // query, CQL2 filter and sortby go to the API as the STAC API spec writes them
    const m3 = api.requests.length;
    await engine.openMosaic(
      spec({
        catalogue: {
          search: `${api.url}/search`,
          limit: 1000,
          query: { 'eo:cloud_cover': { lt: 50 } },
          filter: { op: '<', args: [{ property: 'eo:cloud_cover' }, 50] },
          sortby: parseSortby('-eo:cloud_cover'),
        },
      }),
    );
    const sent = api.requests[m3].body!;
    assert.deepEqual(sent.query, { 'eo:cloud_cover': { lt: 50 } });
    assert.deepEqual(sent.filter, { op: '<', args: [{ property: 'eo:cloud_cover' }, 50] });
    assert.equal(sent['filter-lang'], 'cql2-json');
    assert.deepEqual(sent.sortby, [{ field: 'eo:cloud_cover', direction: 'desc' }]);
    await assert.rejects(
      engine.openMosaic(spec({ catalogue: { items: cat.itemsJson, filter: 'eo:cloud_cover < 50' } })),
      /query and filter are answered by a STAC API search/,
    );
    await assert.rejects(
      engine.openMosaic(spec({ catalogue: { search: `${api.url}/search`, limit: 100, maxItems: 500 } })),
      /matches more than 500 items/,
    );
    // the virtual views of a catalogue mosaic carry band names, not statistics that would open every item
    const summaries = await mosaicBandSummaries(new StatisticsService(engine), fromJson);
    assert.deepEqual(
      summaries.map((b) => [b.description, b.min]),
      [
        ['B04', null],
        ['B03', null],
        ['B11', null],
      ],
    );
    assert.deepEqual(cogRequests(server, mark), [], 'still no COG read');
  });

  test('a broken stac-geoparquet file gets a clear error, and the next open works', async () => {
    const good = await readFile(path.join(dir, 'items.parquet'));
    // the footer is gone: not a parquet file the decoder can read
    await writeFile(path.join(dir, 'cut.parquet'), good.subarray(0, 5000));
    await assert.rejects(
      engine.openMosaic(spec({ catalogue: { items: `${server.url}/cut.parquet` } })),
      (e: Error & { kind?: string }) =>
        e.kind === 'corrupt' && /cut\.parquet is not a readable parquet file/.test(e.message),
    );
    // a readable parquet file that is not stac-geoparquet: the decoder's own error, with its kind
    await writeFile(
      path.join(dir, 'plain.parquet'),
      new Uint8Array(parquetWriteBuffer({ columnData: [{ name: 'name', data: ['a', 'b'], type: 'STRING' }] })),
    );
    await assert.rejects(
      engine.openMosaic(spec({ catalogue: { items: `${server.url}/plain.parquet` } })),
      (e: Error & { kind?: string }) => e.kind === 'bad-request' && /it has no id or assets column/.test(e.message),
    );
    const m = await engine.openMosaic(spec({ catalogue: { items: `${server.url}/items.parquet` } }));
    assert.equal(m.items?.items.length, 2000);
  });

  test('stac-geoparquet decoded in the child process gives the same items, and the same errors, as in this one', async () => {
    const read = async (name: string, inProcessMaxRows: number) =>
      readStacParquet(await engine.source(`${server.url}/${name}`), {
        assets: ['B04', 'B11'],
        base: `${server.url}/${name}`,
        inProcessMaxRows,
      });
    const here = await read('items.parquet', Number.POSITIVE_INFINITY);
    const there = await read('items.parquet', 0);
    assert.equal(here.length, 2000);
    assert.deepEqual(there, here);
    // garbage over the pages of the fifth row group (the footer intact): both name the rows that cannot be read
    const bytes = new Uint8Array(await readFile(path.join(dir, 'items.parquet')));
    bytes.fill(0xff, Math.floor(bytes.length / 2), Math.floor(bytes.length / 2) + 2000);
    await writeFile(path.join(dir, 'garbled.parquet'), bytes);
    const errors = await Promise.all(
      [Number.POSITIVE_INFINITY, 0].map((n) =>
        read('garbled.parquet', n).then(
          () => assert.fail('a garbled row group must not decode'),
          (e: Error & { kind?: string }) => `${e.kind}: ${e.message}`,
        ),
      ),
    );
    assert.match(errors[0], /^corrupt: .*garbled\.parquet: rows \d+-\d+: /);
    assert.equal(errors[1], errors[0]);
  });

  test('one z12 tile reads only the assets under it; first valid wins stops opening items once the tile is full', async () => {
    const m = await engine.openMosaic(spec({ catalogue: { items: `${server.url}/items.json` }, composite: 'mean' }));
    // the middle of zone 32N's block of scenes
    const [ezone, ex, ey] = ZONES[0];
    const [lon, lat] = createTransformer(crsFromEpsg(ezone), crsFromEpsg(4326)).point(
      ex + 8 * SCENE_M,
      ey - 5 * SCENE_M,
    );
    const [tx, ty] = lonLatToTile(lon, lat, 12);
    const grid = xyzTileGrid(12, tx, ty);
    const mark = server.requests.length;
    const px = await engine.render(m, grid, {});
    const files = cogRequests(server, mark);
    const read = new Set(files.map(itemOfFile));
    assert.ok(
      px.mask.some((v) => v !== 0),
      'the tile has data',
    );
    // independent check: items with a tile pixel centre (every 4th) inside their footprint surely lie under it;
    // items whose footprint, in the tile's CRS, has a box that misses the tile grown by 3 pixels surely do not
    const inside = new Set<string>();
    const near = new Set<string>();
    const res = grid.transform[1];
    const [gx0, gy1] = [grid.transform[0], grid.transform[3]];
    const [gx1, gy0] = [gx0 + grid.width * res, gy1 - grid.height * res];
    for (const it of cat.items) {
      const toTile = createTransformer(crsFromEpsg(it.epsg), grid.crs);
      let [bx0, by0, bx1, by1] = [Infinity, Infinity, -Infinity, -Infinity];
      for (let k = 0; k <= 64; k++) {
        const t = (k / 64) * SCENE_M;
        for (const [x, y] of [
          [it.x0 + t, it.y0],
          [it.x0 + t, it.y0 - SCENE_M],
          [it.x0, it.y0 - t],
          [it.x0 + SCENE_M, it.y0 - t],
        ]) {
          const [X, Y] = toTile.point(x, y);
          bx0 = Math.min(bx0, X);
          bx1 = Math.max(bx1, X);
          by0 = Math.min(by0, Y);
          by1 = Math.max(by1, Y);
        }
      }
      const m = 3 * res;
      if (bx1 < gx0 - m || bx0 > gx1 + m || by1 < gy0 - m || by0 > gy1 + m) continue;
      near.add(it.id);
      const tr = createTransformer(grid.crs, crsFromEpsg(it.epsg));
      for (let r = 0; r < grid.height && !inside.has(it.id); r += 4) {
        for (let c = 0; c < grid.width; c += 4) {
          const [x, y] = tr.point(gx0 + (c + 0.5) * res, gy1 - (r + 0.5) * res);
          if (x >= it.x0 && x < it.x0 + SCENE_M && y <= it.y0 && y > it.y0 - SCENE_M) {
            inside.add(it.id);
            break;
          }
        }
      }
    }
    for (const id of inside) assert.ok(read.has(id), `item ${id} lies under the tile but was not read`);
    for (const id of read) assert.ok(near.has(id), `item ${id} was read but lies away from the tile`);
    assert.ok(read.size > 0 && read.size < 2000 / 4, `${read.size} items read for one tile`);
    // per asset: one header read and one block read, nothing else
    const perFile = new Map<string, number>();
    for (const f of files) perFile.set(f, (perFile.get(f) ?? 0) + 1);
    assert.equal(perFile.size, read.size * BANDS.length);
    assert.ok(
      [...perFile.values()].every((n) => n <= 2),
      'at most two requests per asset',
    );

    // first valid pixel, items by date: the first date's items fill the tile, the other dates are never opened
    // (a fresh engine: nothing cached)
    const fresh = new Engine({ allowedUrlPrefixes: [server.url] });
    const first = await fresh.openMosaic(
      spec({ catalogue: { items: `${server.url}/items.json`, sortby: parseSortby('datetime') }, composite: 'first' }),
    );
    const m2 = server.requests.length;
    const fpx = await fresh.render(first, grid, { bands: [0] });
    await fresh.close();
    const firstRead = new Set(cogRequests(server, m2).map(itemOfFile));
    assert.ok(
      firstRead.size > 0 && firstRead.size < read.size / 2,
      `${firstRead.size} items opened for first, ${read.size} for mean`,
    );
    const date0 = [...read].filter((id) => byId.get(id)!.date === 0);
    for (const id of date0) assert.ok(firstRead.has(id), `${id} (first date) was not read`);
    assert.deepEqual(fpx.mask, px.mask, 'same coverage');
  });

  test('a median over more items than one render can hold is refused before any source is read', async () => {
    const m = await engine.openMosaic(spec({ catalogue: { items: `${server.url}/items.json` }, composite: 'median' }));
    // a 4096 x 4096 window over the whole of zone 32N's block: 1,000 items, 3 uint16 bands of 16M pixels each
    const [, ox, oy] = ZONES[0];
    const grid: Grid = { crs: crsFromEpsg(32632), transform: [ox, 10, 0, oy, 0, -10], width: 4096, height: 4096 };
    const mark = server.requests.length;
    await assert.rejects(engine.render(m, grid), (e: Error & { code?: number }) => {
      assert.equal(e.code, 413);
      assert.match(e.message, /median over 1000 or more sources/);
      return true;
    });
    assert.deepEqual(cogRequests(server, mark), [], 'nothing was read');
  });

  /** A grid exactly on scene (col, row) of zone 0 (native 10 m lattice). */
  function sceneGrid(col: number, row: number): Grid {
    const [, ox, oy] = ZONES[0];
    return {
      crs: crsFromEpsg(32632),
      transform: [ox + col * SCENE_M, 10, 0, oy - row * SCENE_M, 0, -10],
      width: 64,
      height: 64,
    };
  }

  test('median, first by cloud cover, per period, and a 20 m band on the 10 m grid equal the rule applied by hand', async () => {
    const col = 3;
    const row = 2;
    const grid = sceneGrid(col, row);
    const values = (code: number, px: number, py: number, dates: number[]) =>
      dates
        .map((d) => sceneValue(0, col, row, d, code, code === 11 ? px >> 1 : px, code === 11 ? py >> 1 : py))
        .filter((v) => v !== 0);
    const median = (v: number[]) => {
      const s = v.slice().sort((a, b) => a - b);
      const k = s.length;
      return k % 2 ? s[(k - 1) / 2] : Math.floor((s[k / 2 - 1] + s[k / 2]) / 2 + 0.5);
    };
    const all = [0, 1, 2, 3];

    const med = await engine.render(
      await engine.openMosaic(spec({ catalogue: { items: cat.itemsJson }, composite: 'median' })),
      grid,
    );
    const byCloud = await engine.render(
      await engine.openMosaic(
        spec({ catalogue: { items: cat.itemsParquet, sortby: parseSortby('eo:cloud_cover') }, composite: 'first' }),
      ),
      grid,
    );
    const janMosaic = await engine.openMosaic(
      spec({ catalogue: { items: cat.itemsJson }, composite: 'median', period: 'P1M' }),
    );
    const periods = mosaicPeriods(janMosaic.items!.items, 'P1M');
    assert.deepEqual(
      periods.map((p) => [p.id, p.items]),
      [
        ['2024-01', 1000],
        ['2024-02', 1000],
      ],
    );
    const jan = await engine.render(janMosaic, grid, { datetime: parseInterval(periods[0].datetime) });
    const feb = await engine.render(janMosaic, grid, { datetime: parseInterval(periods[1].datetime) });
    let checked = 0;
    let evenCounts = 0;
    for (let py = 0; py < 64; py++) {
      for (let px = 0; px < 64; px++) {
        const i = py * 64 + px;
        for (const [b, code] of [
          [0, 4],
          [1, 3],
          [2, 11],
        ] as const) {
          const v = values(code, px, py, all);
          if (v.length % 2 === 0) evenCounts++;
          assert.equal(med.bands[b][i], median(v), `median of band ${code} at ${px},${py}`);
          const valid = all.filter((d) => values(code, px, py, [d]).length > 0);
          const best = valid.reduce((a, d) => (cloudOf(col, row, d) < cloudOf(col, row, a) ? d : a), valid[0]);
          assert.equal(byCloud.bands[b][i], values(code, px, py, [best])[0], `first by cloud cover at ${px},${py}`);
          assert.equal(jan.bands[b][i], median(values(code, px, py, [0, 1])), `January median at ${px},${py}`);
          assert.equal(feb.bands[b][i], median(values(code, px, py, [2, 3])), `February median at ${px},${py}`);
          checked++;
        }
      }
    }
    assert.equal(checked, 64 * 64 * 3);
    assert.ok(evenCounts > 0, 'some pixels have an even number of values (the mean of the middle two)');
    assert.equal(DATES.length, 4);
  });

  test('periodBands: one band set per period, each the composite of its items by hand; a pixel is valid in any period', async () => {
    const col = 3;
    const row = 2;
    const grid = sceneGrid(col, row);
    const m = await engine.openMosaic(
      spec({ catalogue: { items: cat.itemsJson }, composite: 'median', period: 'P1M', periodBands: true }),
    );
    assert.equal(m.bandCount, 6);
    assert.deepEqual(m.bandNames, [
      'B04@2024-01',
      'B03@2024-01',
      'B11@2024-01',
      'B04@2024-02',
      'B03@2024-02',
      'B11@2024-02',
    ]);
    const px = await engine.render(m, grid);
    const value = (code: number, x: number, y: number, d: number) =>
      sceneValue(0, col, row, d, code, code === 11 ? x >> 1 : x, code === 11 ? y >> 1 : y);
    const median2 = (a: number, b: number) =>
      a === 0 ? b : b === 0 ? a : Math.floor((Math.min(a, b) + Math.max(a, b)) / 2 + 0.5);
    let onlyOne = 0;
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 64; x++) {
        const i = y * 64 + x;
        assert.equal(px.mask[i], 255, `valid at ${x},${y}`);
        for (const [p, dates] of [
          [0, [0, 1]],
          [1, [2, 3]],
        ] as const) {
          for (const [b, code] of [
            [0, 4],
            [1, 3],
            [2, 11],
          ] as const) {
            const want = median2(value(code, x, y, dates[0]), value(code, x, y, dates[1]));
            assert.equal(px.bands[p * 3 + b][i], want, `band ${code} of period ${p} at ${x},${y}`);
            if (value(code, x, y, dates[0]) === 0 || value(code, x, y, dates[1]) === 0) onlyOne++;
          }
        }
      }
    }
    assert.ok(onlyOne > 0, "date 1's nodata corner leaves January one value there");
    // the same mosaic without periodBands: one set over every item
    const flat = await engine.openMosaic(
      spec({ catalogue: { items: cat.itemsJson }, composite: 'median', period: 'P1M' }),
    );
    assert.equal(flat.bandCount, 3);
  });
});

describe('refresh', () => {
  test('re-checks sources at most openConcurrency at a time, and a change moves the etag', async () => {
    const { cogBytes } = await import('../src/materialize/cog.write.ts');
    const { SourceMemory } = await import('./support/memory.source.ts');
    let inFlight = 0;
    let peak = 0;
    let stats = 0;
    class SourceSlowStat extends SourceMemory {
      override async stat() {
        stats++;
        inFlight++;
        peak = Math.max(peak, inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        return super.stat();
      }
    }
    const sources = new Map<string, SourceSlowStat>();
    for (let i = 0; i < 60; i++) {
      const bytes = await cogBytes(
        {
          width: 16,
          height: 16,
          dtype: 'uint8',
          bands: [new Uint8Array(256).fill(i + 1)],
          transform: [500_000 + i * 160, 10, 0, 5_000_000, 0, -10],
          epsg: 32632,
          geographic: false,
        },
        { blockSize: 16 },
      );
      sources.set(`mem://s${i}.tif`, new SourceSlowStat(`mem://s${i}.tif`, bytes));
    }
    const engine = new Engine({ openConcurrency: 4 }, { sourceFactory: async (loc) => sources.get(loc)! });
    const m = await engine.openMosaic({ id: 'r', sources: [...sources.keys()] });
    const etag = m.etag;
    assert.equal(await engine.refresh(m), false);
    assert.equal(stats, 60, 'every source was checked');
    assert.ok(peak <= 4, `${peak} checks at once`);
    sources.get('mem://s7.tif')!.etag = '"v2"';
    assert.equal(await engine.refresh(m), true);
    assert.notEqual(m.etag, etag);
    assert.ok(peak <= 4);
  });
});
