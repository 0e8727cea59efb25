/**
 * Real clients read the tiles over HTTP: GDAL's WMS driver (a TMS description of the XYZ URL, the way QGIS's XYZ
 * layer reads it) and GDAL's WMTS driver (the capabilities document, as QGIS's WMTS connection does). What they
 * read must match gdalwarp of the sources to the same grid with the same style.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crsFromEpsg } from '../src/render/crs.ts';
import { lonLatToTile, tileBoundsMercator, WEB_MERCATOR_HALF_SIZE_M } from '../src/render/tilematrix.ts';
import type { Grid } from '../src/render/types.ts';
import { startFixtureServer, type TestServer } from './support/app.ts';
import {
  assertImageAgrees,
  compareImage,
  describeAgreement,
  gdalRead,
  gdalwarpMosaic,
  sh,
  stretchToByte,
} from './support/gdal.ts';

/** The 3857 grid of `cols` x `rows` 256 px tiles at zoom z from tile (x, y). */
function tilesGrid(z: number, x: number, y: number, cols: number, rows: number): Grid {
  const [minx, , , maxy] = tileBoundsMercator(z, x, y);
  const res = (2 * WEB_MERCATOR_HALF_SIZE_M) / (256 * 2 ** z);
  return { crs: crsFromEpsg(3857), transform: [minx, res, 0, maxy, 0, -res], width: 256 * cols, height: 256 * rows };
}

/** Every band of what GDAL reads from `src` (after `args`), as 8-bit arrays; its WMS cache kept in `work`. */
async function readBytes(
  src: string,
  work: string,
  args: string[],
): Promise<{ width: number; height: number; bands: Uint8Array[] }> {
  const r = await gdalRead(src, {
    args: ['-ot', 'Byte', ...args],
    env: { GDAL_HTTP_TIMEOUT: '60', GDAL_DEFAULT_WMS_CACHE_PATH: path.join(work, 'wms-cache') },
  });
  return { width: r.width, height: r.height, bands: r.bands.map((b) => new Uint8Array(b)) };
}

describe('GDAL reads the tiles over HTTP', () => {
  let server: TestServer;
  let work = '';
  let file = (n: string) => n;

  before(async () => {
    ({ server, work, file } = await startFixtureServer('cogmill-tiles-gdal-', (file) => [
      { id: 'utm', sources: [file('utm32'), file('utm31')] },
      { id: 'rgb', sources: [file('rgb')] },
    ]));
  });

  // work goes with the process (support/gdal.ts tempDir)
  after(() => server?.stop());

  test('WMS driver, TMS service on the XYZ URL: two UTM zones, rescale=0,4000, matches gdalwarp + the same stretch', async (t) => {
    const z = 13;
    const [cx, cy] = lonLatToTile(5.885, 45.0, z);
    // 5 x 4 tiles from the western edge of the mosaic over the zone boundary: outside, edge, overlap
    const x0 = cx;
    const y0 = cy - 2;
    const grid = tilesGrid(z, x0, y0, 5, 4);
    const H = WEB_MERCATOR_HALF_SIZE_M;
    const xml = `<GDAL_WMS>
  <Service name="TMS"><ServerUrl>${server.url}/mosaics/utm/tiles/\${z}/\${x}/\${y}.png?rescale=0,4000&amp;resampling=nearest</ServerUrl></Service>
  <DataWindow><UpperLeftX>${-H}</UpperLeftX><UpperLeftY>${H}</UpperLeftY><LowerRightX>${H}</LowerRightX><LowerRightY>${-H}</LowerRightY>
    <TileLevel>${z}</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY><YOrigin>top</YOrigin></DataWindow>
  <Projection>EPSG:3857</Projection><BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>2</BandsCount>
</GDAL_WMS>`;
    const desc = path.join(work, 'xyz.xml');
    await writeFile(desc, xml);
    const before = server.logs.length;
    const got = await readBytes(desc, work, [
      '-srcwin',
      String(x0 * 256),
      String(y0 * 256),
      String(grid.width),
      String(grid.height),
    ]);
    assert.deepEqual([got.width, got.height, got.bands.length], [1280, 1024, 2]);
    const tileLines = server.logs
      .slice(before)
      .filter((l) => l.msg === 'request' && String(l.path).includes('/tiles/13/'));
    assert.equal(tileLines.length, 20, 'GDAL fetched the 20 tiles');
    assert.ok(tileLines.every((l) => l.status === 200));
    const ref = await gdalwarpMosaic([file('utm32'), file('utm31')], grid, { dtype: 'uint16', bands: 1, dstNodata: 0 });
    const stretch = stretchToByte(0, 4000);
    const c = compareImage(
      { channels: [got.bands[0]], alpha: got.bands[1] },
      ref.valid,
      (i) => [stretch(ref.bands[0][i])],
      2,
    );
    t.diagnostic(describeAgreement(c, 2));
    const n = grid.width * grid.height;
    assert.ok(n - c.compared > n * 0.05, 'the window also holds transparent area outside the mosaic');
    assertImageAgrees(c, 'WMS/TMS read vs gdalwarp', { tol: 2, minCompared: 0.3 });
  });

  test('WMTS driver on WMTSCapabilities.xml: RGB uint8 without stretch matches gdalwarp', async (t) => {
    const caps = `WMTS:${server.url}/mosaics/rgb/WMTSCapabilities.xml`;
    const info = JSON.parse(await sh('gdalinfo', ['-json', caps]));
    assert.equal(info.bands.length, 4, 'RGBA');
    const res = (info.geoTransform as number[])[1];
    assert.ok(Math.abs(res - (2 * WEB_MERCATOR_HALF_SIZE_M) / (256 * 2 ** 13)) < 1e-6, 'full resolution is maxzoom 13');
    const z = 13;
    const [cx, cy] = lonLatToTile(6.0, 45.0, z);
    const grid = tilesGrid(z, cx - 1, cy - 1, 3, 2);
    const [ulx, uly] = [grid.transform[0], grid.transform[3]];
    const [lrx, lry] = [ulx + grid.width * grid.transform[1], uly + grid.height * grid.transform[5]];
    const got = await readBytes(caps, work, ['-projwin', String(ulx), String(uly), String(lrx), String(lry)]);
    assert.deepEqual([got.width, got.height, got.bands.length], [768, 512, 4]);
    const ref = await gdalwarpMosaic([file('rgb')], grid, { dtype: 'uint8', bands: 3, dstNodata: 0 });
    // rgb.tif holds values 1..255, so gdalwarp's 0 marks exactly the area outside it
    const c = compareImage(
      { channels: got.bands.slice(0, 3), alpha: got.bands[3] },
      ref.valid,
      (i) => [ref.bands[0][i], ref.bands[1][i], ref.bands[2][i]],
      2,
    );
    t.diagnostic(describeAgreement(c, 2));
    assertImageAgrees(c, 'WMTS RGB read vs gdalwarp', { tol: 2, minCompared: 0.5 });
  });

  test('WMTS driver with a styled capabilities URL (SERVICE=WMTS, rescale): the template carries the style', async (t) => {
    // GDAL splits a WMTS: connection string at commas, so the rescale comma is percent-encoded
    const caps = `WMTS:${server.url}/mosaics/utm/WMTSCapabilities.xml?SERVICE=WMTS&REQUEST=GetCapabilities&rescale=0%2C4000&format=png`;
    const z = 13;
    const [cx, cy] = lonLatToTile(6.02, 45.0, z);
    const grid = tilesGrid(z, cx - 1, cy - 1, 2, 2);
    const [ulx, uly] = [grid.transform[0], grid.transform[3]];
    const [lrx, lry] = [ulx + grid.width * grid.transform[1], uly + grid.height * grid.transform[5]];
    const before = server.logs.length;
    const got = await readBytes(caps, work, ['-projwin', String(ulx), String(uly), String(lrx), String(lry)]);
    const paths = server.logs.slice(before).filter((l) => l.msg === 'request' && String(l.path).includes('/tiles/'));
    assert.ok(paths.length >= 4);
    const ref = await gdalwarpMosaic([file('utm32'), file('utm31')], grid, { dtype: 'uint16', bands: 1, dstNodata: 0 });
    const stretch = stretchToByte(0, 4000);
    // GDAL's WMTS dataset is RGBA: gray comes back in R, G and B
    const c = compareImage(
      { channels: got.bands.slice(0, 3), alpha: got.bands[3] },
      ref.valid,
      (i) => {
        const v = stretch(ref.bands[0][i]);
        return [v, v, v];
      },
      2,
    );
    t.diagnostic(describeAgreement(c, 2));
    assertImageAgrees(c, 'styled WMTS read vs gdalwarp', { tol: 2, minCompared: 0.8 });
  });
});
