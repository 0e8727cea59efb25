/**
 * Tile matrix sets read by GDAL's WMTS driver: the native set's finest level is the mosaic's own pixel grid, so its
 * pixels equal the virtual COG's (nearest) and `gdalwarp -et 0` of the sources, with no resampling in between;
 * WorldCRS84Quad tiles match gdalwarp to the same longitude/latitude grid. The OGC TMS JSON documents are checked
 * against the capabilities GDAL read.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crsFromEpsg } from '../src/render/crs.ts';
import { stretchByte } from '../src/render/style.stretch.ts';
import type { Grid } from '../src/render/types.ts';
import { startFixtureServer, type TestServer } from './support/app.ts';
import { bandArrays, gdalRead, gdalwarp, sh, WARP_NEAREST_EXACT_UINT16 } from './support/gdal.ts';

/** Every band of a GDAL dataset at full resolution as `type`, with its size and geotransform. */
async function gdalReadAs(
  src: string,
  type: 'Byte' | 'UInt16',
): Promise<{ width: number; height: number; gt: number[]; bands: (Uint8Array | Uint16Array)[] }> {
  const r = await gdalRead(src, {
    args: ['-ot', type],
    env: { GDAL_DISABLE_READDIR_ON_OPEN: 'EMPTY_DIR', GDAL_HTTP_TIMEOUT: '60' },
  });
  return { width: r.width, height: r.height, gt: r.gt, bands: bandArrays(r) };
}

describe('GDAL reads the tile matrix sets over WMTS', () => {
  let server: TestServer;
  let work = '';
  let file = (n: string) => n;

  before(async () => {
    ({ server, work, file } = await startFixtureServer('cogmill-tms-gdal-', (file) => [
      { id: 'utm', sources: [file('utm32'), file('utm31')], resampling: 'nearest' },
      { id: 'flt', sources: [file('float')], resampling: 'nearest' },
    ]));
  });

  after(async () => {
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('native set: the finest level is the mosaic grid, its pixels = virtual COG (nearest) = gdalwarp -et 0', async (t) => {
    const m = server.deps.catalog.get('utm');
    const grid = m.grid;
    // GDAL splits a WMTS: connection string at commas, so the rescale comma is percent-encoded
    const caps = `WMTS:${server.url}/mosaics/utm/WMTSCapabilities.xml?SERVICE=WMTS&rescale=0%2C4000&format=png,tilematrixset=native`;
    const before = server.logs.length;
    const wmts = await gdalReadAs(caps, 'Byte');
    assert.deepEqual([wmts.width, wmts.height, wmts.bands.length], [grid.width, grid.height, 4]);
    assert.deepEqual(wmts.gt, [...grid.transform], 'the finest native level has the mosaic geotransform');
    const tiles = server.logs
      .slice(before)
      .filter((l) => l.msg === 'request' && String(l.path).startsWith('/mosaics/utm/tiles/native/2/'));
    assert.equal(tiles.length, 4 * 3, 'GDAL read the 4 x 3 tiles of the finest native level');

    const cog = await gdalReadAs(`/vsicurl/${server.url}/mosaics/utm.tif`, 'UInt16');
    assert.deepEqual(cog.gt, [...grid.transform]);
    const ref = await gdalwarp([file('utm31'), file('utm32')], grid, WARP_NEAREST_EXACT_UINT16);
    const n = grid.width * grid.height;
    let valid = 0;
    let cogVsWarp = 0;
    let wmtsVsCog = 0;
    let alpha = 0;
    const [r, g, b, a] = wmts.bands;
    const v = cog.bands[0];
    for (let i = 0; i < n; i++) {
      if (v[i] !== ref.bands[0][i]) cogVsWarp++;
      const isValid = v[i] !== 0;
      if ((a[i] !== 0) !== isValid) alpha++;
      if (!isValid) continue;
      valid++;
      const want = stretchByte(v[i], 0, 4000);
      if (r[i] !== want || g[i] !== want || b[i] !== want) wmtsVsCog++;
    }
    t.diagnostic(`${valid} valid of ${n}; cog != gdalwarp: ${cogVsWarp}; wmts != cog: ${wmtsVsCog}; alpha: ${alpha}`);
    assert.ok(valid > n * 0.5 && valid < n, 'the mosaic has valid pixels and nodata');
    assert.equal(cogVsWarp, 0, 'virtual COG = gdalwarp -et 0, pixel for pixel');
    assert.equal(alpha, 0, 'WMTS transparency = COG nodata');
    assert.equal(wmtsVsCog, 0, 'WMTS native pixels = stretched virtual COG pixels, no resampling');
  });

  test('WorldCRS84Quad: GDAL reads the longitude/latitude set, matching gdalwarp to EPSG:4326', async (t) => {
    const json = (await (await fetch(`${server.url}/mosaics/utm/tileMatrixSets/WorldCRS84Quad`)).json()) as {
      tileMatrices: { id: string; cellSize: number }[];
    };
    const caps = `WMTS:${server.url}/mosaics/utm/WMTSCapabilities.xml?SERVICE=WMTS&rescale=0%2C4000&format=png,tilematrixset=WorldCRS84Quad`;
    const info = JSON.parse(await sh('gdalinfo', ['-json', caps]));
    const gt = info.geoTransform as number[];
    const level = json.tileMatrices.find((m) => Math.abs(m.cellSize - gt[1]) < 1e-12);
    assert.ok(level, `GDAL's full resolution ${gt[1]} is a level of the JSON document`);
    // a window of 512 x 384 pixels in the middle of the mosaic at the finest level
    const [w0, h0] = info.size as [number, number];
    const x0 = Math.floor(w0 / 2) - 256;
    const y0 = Math.floor(h0 / 2) - 192;
    const out = path.join(work, 'crs84.tif');
    await sh('gdal_translate', ['-q', '-srcwin', String(x0), String(y0), '512', '384', caps, out]);
    const got = await gdalReadAs(out, 'Byte');
    const grid: Grid = {
      crs: crsFromEpsg(4326),
      transform: [gt[0] + x0 * level.cellSize, level.cellSize, 0, gt[3] - y0 * level.cellSize, 0, -level.cellSize],
      width: 512,
      height: 384,
    };
    const ref = await gdalwarp([file('utm31'), file('utm32')], grid, WARP_NEAREST_EXACT_UINT16);
    let compared = 0;
    let within = 0;
    for (let i = 0; i < 512 * 384; i++) {
      if (!ref.valid[i] || !got.bands[3][i]) continue;
      compared++;
      if (Math.abs(got.bands[0][i] - stretchByte(ref.bands[0][i], 0, 4000)) <= 2) within++;
    }
    t.diagnostic(`within 2 levels: ${within} of ${compared}`);
    assert.ok(compared > 512 * 384 * 0.5);
    assert.ok(within / compared >= 0.99, `${((100 * within) / compared).toFixed(2)}%`);
  });

  test('native set of a geographic mosaic: latitude first in WMTS, read back by GDAL on the mosaic grid', async () => {
    const grid = server.deps.catalog.get('flt').grid;
    const caps = await (await fetch(`${server.url}/mosaics/flt/WMTSCapabilities.xml`)).text();
    const native = /<ows:Identifier>native<\/ows:Identifier>[\s\S]*?<\/TileMatrixSet>/.exec(caps)![0];
    assert.match(native, /<ows:SupportedCRS>urn:ogc:def:crs:EPSG::4326<\/ows:SupportedCRS>/);
    assert.match(native, new RegExp(`<TopLeftCorner>${grid.transform[3]} ${grid.transform[0]}</TopLeftCorner>`));
    const info = JSON.parse(
      await sh('gdalinfo', ['-json', `WMTS:${server.url}/mosaics/flt/WMTSCapabilities.xml,tilematrixset=native`]),
    );
    assert.deepEqual(info.size, [grid.width, grid.height]);
    const gt = info.geoTransform as number[];
    for (let i = 0; i < 6; i++) assert.ok(Math.abs(gt[i] - grid.transform[i]) < 1e-12, `gt[${i}] ${gt[i]}`);
  });

  test('tile matrix set documents: lists, one set, the native one per mosaic, 404s', async () => {
    const list = (await (await fetch(`${server.url}/tileMatrixSets`)).json()) as { tileMatrixSets: { id: string }[] };
    assert.deepEqual(
      list.tileMatrixSets.map((s) => s.id),
      ['WebMercatorQuad', 'WorldCRS84Quad'],
    );
    const merc = (await (await fetch(`${server.url}/tileMatrixSets/WebMercatorQuad`)).json()) as Record<
      string,
      unknown
    >;
    assert.equal(merc.crs, 'http://www.opengis.net/def/crs/EPSG/0/3857');
    assert.equal((merc.tileMatrices as unknown[]).length, 25);
    const mine = (await (await fetch(`${server.url}/mosaics/utm/tileMatrixSets`)).json()) as {
      tileMatrixSets: { id: string; tiles: string }[];
    };
    assert.deepEqual(
      mine.tileMatrixSets.map((s) => s.id),
      ['WebMercatorQuad', 'WorldCRS84Quad', 'native'],
    );
    assert.equal(mine.tileMatrixSets[2].tiles, `${server.url}/mosaics/utm/tiles/native/{z}/{x}/{y}.png`);
    const native = (await (await fetch(`${server.url}/mosaics/utm/tileMatrixSets/native`)).json()) as {
      crs: string;
      tileMatrices: { cellSize: number; pointOfOrigin: number[] }[];
    };
    assert.equal(native.crs, 'http://www.opengis.net/def/crs/EPSG/0/32632');
    const grid = server.deps.catalog.get('utm').grid;
    assert.equal(native.tileMatrices.at(-1)!.cellSize, grid.transform[1]);
    assert.deepEqual(native.tileMatrices.at(-1)!.pointOfOrigin, [grid.transform[0], grid.transform[3]]);
    assert.equal((await fetch(`${server.url}/tileMatrixSets/native`)).status, 404);
    assert.equal((await fetch(`${server.url}/tileMatrixSets/LINZAntarticaMapTilegrid`)).status, 404);
    assert.equal((await fetch(`${server.url}/mosaics/utm/tiles/native/3/0/0.png`)).status, 400, 'beyond the finest');
    assert.equal((await fetch(`${server.url}/mosaics/utm/tiles/native/2/4/0.png`)).status, 400, 'outside the matrix');
    assert.equal((await fetch(`${server.url}/mosaics/utm/tiles/Nope/2/0/0.png`)).status, 404);
  });
});
