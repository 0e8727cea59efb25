/**
 * GDAL agrees with a catalogue mosaic: GDAL reading the mosaic's virtual COG over /vsicurl/, and its VRT (through
 * the server's range proxy, and with the assets' own URLs), gives, for a window across two UTM zones, the pixels
 * gdalwarp makes from the assets explain lists for that window (nearest, -et 0, later sources on top, so they are
 * given in reverse compositing order), for a 10 m band and a 20 m band. A median has no VRT (422).
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crsFromEpsg } from '../src/render/crs.ts';
import type { Grid } from '../src/render/types.ts';
import { startTestServer, type TestServer } from './support/app.ts';
import { gdalwarp, sh, tempDir, WARP_NEAREST_EXACT_UINT16 } from './support/gdal.ts';
import { type StaticServer, startStaticServer } from './support/http.server.ts';
import { sceneValue, writeCatalogue } from './support/stac.catalog.ts';

/** A window of a uint16 raster as GDAL reads it (band after band), written to `out` on the way. */
async function windowUint16(
  src: string,
  [x, y, w, h]: readonly [number, number, number, number],
  out: string,
  extra: readonly string[] = [],
): Promise<Uint16Array> {
  await sh('gdal_translate', [
    '-q',
    '-of',
    'ENVI',
    '-co',
    'INTERLEAVE=BSQ',
    ...extra,
    '-srcwin',
    ...[x, y, w, h].map(String),
    src,
    out,
  ]);
  return new Uint16Array(new Uint8Array(await readFile(out)).buffer);
}

describe('a catalogue mosaic read by GDAL equals gdalwarp of its assets', () => {
  let dir: string;
  let files: StaticServer;
  let app: TestServer;

  before(async () => {
    dir = await tempDir('cogmill-stac-gdal-');
    files = await startStaticServer(dir);
    await writeCatalogue(dir, { scenesPerZone: 24, cols: 6, baseUrl: files.url });
    app = await startTestServer({
      sources: { allowedUrlPrefixes: [`${files.url}/`] },
      mosaics: [
        {
          id: 's2',
          stac: { items: `${files.url}/items.json`, sortby: '-datetime' },
          assets: ['B04', 'B11'],
          crs: 'EPSG:32632',
          resolution: 10,
        },
        {
          id: 's2w',
          stac: { items: `${files.url}/items.json` },
          assets: ['B04', 'B11'],
          crs: 'EPSG:32632',
          resolution: 10,
          period: 'P1W',
          periodBands: true,
        },
        {
          id: 's2med',
          stac: { items: `${files.url}/items.json` },
          assets: ['B04'],
          crs: 'EPSG:32632',
          resolution: 10,
          composite: 'median',
        },
      ],
    });
  });
  after(async () => {
    await app?.stop();
    await files?.stop();
  });

  for (const zone of [32632, 32633] as const) {
    test(`virtual COG and VRT: a window over the ${zone === 32632 ? 'native' : 'reprojected'} zone (EPSG:${zone} items)`, async () => {
      const m = (await (await fetch(`${app.url}/mosaics/s2`)).json()) as {
        transform: number[];
        width: number;
        height: number;
      };
      const [ox, res, , oy] = m.transform;
      // a window of 300 x 200 pixels on the mosaic's lattice over the zone's block of scenes
      const centre = zone === 32632 ? [780_000 + 1500, 5_000_000 - 1300] : [220_000 + 1500, 5_000_000 - 1300];
      const [cx, cy] =
        zone === 32632
          ? centre
          : (await import('../src/render/transform.ts'))
              .createTransformer(crsFromEpsg(32633), crsFromEpsg(32632))
              .point(centre[0], centre[1]);
      const col = Math.round((cx - ox) / res) - 150;
      const row = Math.round((oy - cy) / res) - 100;
      const grid: Grid = {
        crs: crsFromEpsg(32632),
        transform: [ox + col * res, res, 0, oy - row * res, 0, -res],
        width: 300,
        height: 200,
      };
      const g = grid.transform;
      const bbox = [g[0], g[3] - 200 * res, g[0] + 300 * res, g[3]].join(',');
      const ex = (await (
        await fetch(`${app.url}/mosaics/s2/explain?bbox=${bbox}&crs=EPSG:32632&resolution=${res}`)
      ).json()) as {
        items: { id: string; assets: { asset: string; href: string }[] }[];
        emptyFraction: number;
      };
      assert.ok(ex.items.length >= 8, `${ex.items.length} items under the window`);
      const out = path.join(dir, `vcog-${zone}.img`);
      const raw = await windowUint16(`/vsicurl/${app.url}/mosaics/s2.tif`, [col, row, 300, 200], out);
      // the VRT: through the range proxy for one zone, the assets' own URLs for the other
      const vrtUrl = `${app.url}/mosaics/s2.vrt${zone === 32632 ? '' : '?sources=direct'}`;
      const vrtXml = await (await fetch(vrtUrl)).text();
      assert.match(vrtXml, zone === 32632 ? /\/items\/\d+\/B04\.tif</ : /\/cogs\/[^<]*_B11\.tif</);
      const vrtPath = path.join(dir, `mosaic-${zone}.vrt`);
      await writeFile(vrtPath, vrtXml);
      const vrtOut = path.join(dir, `vrt-${zone}.img`);
      const vrtRaw = await windowUint16(vrtPath, [col, row, 300, 200], vrtOut);
      const n = 300 * 200;
      for (const [b, asset] of [
        [0, 'B04'],
        [1, 'B11'],
      ] as const) {
        // compositing order is the items' order in explain; gdalwarp paints later sources on top
        const hrefs = ex.items.map((it) => it.assets.find((a) => a.asset === asset)!.href).reverse();
        // the same files, read by gdalwarp from disk
        const ref = await gdalwarp(
          hrefs.map((h) => path.join(dir, new URL(h).pathname)),
          grid,
          WARP_NEAREST_EXACT_UINT16,
        );
        let same = 0;
        let sameVrt = 0;
        let valid = 0;
        for (let i = 0; i < n; i++) {
          if (ref.valid[i]) valid++;
          if (raw[b * n + i] === ref.bands[0][i]) same++;
          if (vrtRaw[b * n + i] === ref.bands[0][i]) sameVrt++;
        }
        assert.ok(valid > n / 2, `${asset}: ${valid} valid reference pixels`);
        assert.equal(same, n, `${asset}: ${n - same} of ${n} pixels of the virtual COG differ from gdalwarp`);
        assert.equal(sameVrt, n, `${asset}: ${n - sameVrt} of ${n} pixels of the VRT differ from gdalwarp`);
      }
    });
  }

  test('periodBands: 2 assets x 4 weeks = 8 bands in the virtual COG and the VRT; a week equals its items by hand', async () => {
    const m = (await (await fetch(`${app.url}/mosaics/s2w`)).json()) as { transform: number[] };
    const [ox, res, , oy] = m.transform;
    const vrtPath = path.join(dir, 's2w.vrt');
    const vrtXml = await (await fetch(`${app.url}/mosaics/s2w.vrt`)).text();
    await writeFile(vrtPath, vrtXml);
    const weeks = ['2024-W01', '2024-W03', '2024-W05', '2024-W08'];
    const names = weeks.flatMap((w) => [`B04@${w}`, `B11@${w}`]);
    for (const file of [`/vsicurl/${app.url}/mosaics/s2w.tif`, vrtPath]) {
      const info = JSON.parse(await sh('gdalinfo', ['-json', file])) as { bands: { description: string }[] };
      assert.deepEqual(
        info.bands.map((b) => b.description),
        names,
        file,
      );
    }
    // each band of the VRT lists the 48 items of its week (24 scenes in each of two zones), not the 192
    const perBand = vrtXml.split('<VRTRasterBand dataType="UInt16" band=').slice(1);
    assert.deepEqual(
      perBand.map((b) => (b.match(/<ComplexSource/g) ?? []).length),
      names.map(() => 48),
    );
    // scene (col 2, row 1) of zone 32632, the week of date 1 (its nodata corner) and of date 2, read by GDAL
    const [col, row] = [2, 1];
    const x0 = Math.round((780_000 + col * 640 - ox) / res);
    const y0 = Math.round((oy - (5_000_000 - row * 640)) / res);
    for (const file of [`/vsicurl/${app.url}/mosaics/s2w.tif`, vrtPath]) {
      const out = path.join(dir, `s2w-${file === vrtPath ? 'vrt' : 'cog'}.img`);
      const raw = await windowUint16(file, [x0, y0, 64, 64], out, ['-b', '3', '-b', '6']);
      let wrong = 0;
      let corner = 0;
      for (let y = 0; y < 64; y++) {
        for (let x = 0; x < 64; x++) {
          // the virtual COG: a pixel of a period is valid where every band of that period has a value (B11's 20 m
          // corner is coarser than B04's); the VRT's bands are independent (each asset's own nodata)
          const b11w03 = sceneValue(0, col, row, 1, 11, x >> 1, y >> 1);
          const own = sceneValue(0, col, row, 1, 4, x, y);
          const b04w03 = file === vrtPath || b11w03 !== 0 ? own : 0;
          const b11w05 = sceneValue(0, col, row, 2, 11, x >> 1, y >> 1);
          if (own === 0) corner++;
          if (raw[y * 64 + x] !== b04w03 || raw[4096 + y * 64 + x] !== b11w05) wrong++;
        }
      }
      assert.ok(corner > 0, 'the week of date 1 has its nodata corner');
      assert.equal(wrong, 0, `${file}: ${wrong} of 4096 pixels differ from the scene's values`);
    }
  });

  test('a composite a VRT cannot express (median) gets 422 and says where its values are', async () => {
    const res = await fetch(`${app.url}/mosaics/s2med.vrt`);
    assert.equal(res.status, 422);
    assert.match(
      ((await res.json()) as { message: string }).message,
      /"median", which a VRT cannot express.*s2med\.tif/,
    );
  });

  test('the VRT of a window lists only the items under it; the proxy answers an asset and refuses others', async () => {
    const all = await (await fetch(`${app.url}/mosaics/s2.vrt`)).text();
    const some = await (await fetch(`${app.url}/mosaics/s2.vrt?bbox=780100,4999500,780500,4999900`)).text();
    const count = (x: string) => (x.match(/<ComplexSource/g) ?? []).length;
    // 24 scenes x 4 dates per zone, 2 bands; the window lies inside one scene (4 dates)
    assert.equal(count(all), 2 * 24 * 4 * 2);
    assert.equal(count(some), 4 * 2);
    const href = /\/vsicurl\/(http:[^<]*\/items\/\d+\/B04\.tif)</.exec(some)![1];
    const asset = await fetch(href, { headers: { range: 'bytes=0-3' } });
    assert.equal(asset.status, 206);
    assert.deepEqual([...new Uint8Array(await asset.arrayBuffer())], [0x49, 0x49, 0x2a, 0x00]);
    assert.equal((await fetch(href.replace('/B04.tif', '/B03.tif'))).status, 404, 'not an asset of this mosaic');
    assert.equal((await fetch(`${app.url}/mosaics/s2/items/999999/B04.tif`)).status, 404);
  });
});
