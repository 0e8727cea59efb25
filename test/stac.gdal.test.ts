/**
 * GDAL agrees with a catalogue mosaic: GDAL reading the mosaic's virtual COG over /vsicurl/ gives, for a window
 * across two UTM zones, the pixels gdalwarp makes from the assets explain lists for that window (nearest, -et 0,
 * later sources on top, so they are given in reverse compositing order), for a 10 m band and a 20 m band.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crsFromEpsg } from '../src/render/crs.ts';
import type { Grid } from '../src/render/types.ts';
import { startTestServer, type TestServer } from './support/app.ts';
import { gdalwarp, sh, tempDir } from './support/gdal.ts';
import { type StaticServer, startStaticServer } from './support/http.server.ts';
import { writeCatalogue } from './support/stac.catalog.ts';

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
      ],
    });
  });
  after(async () => {
    await app?.stop();
    await files?.stop();
  });

  for (const zone of [32632, 32633] as const) {
    test(`a window over the ${zone === 32632 ? 'native' : 'reprojected'} zone (EPSG:${zone} items)`, async () => {
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
      await sh('gdal_translate', [
        '-q',
        '-of',
        'ENVI',
        '-co',
        'INTERLEAVE=BSQ',
        '-srcwin',
        String(col),
        String(row),
        '300',
        '200',
        `/vsicurl/${app.url}/mosaics/s2.tif`,
        out,
      ]);
      const raw = new Uint16Array(new Uint8Array(await readFile(out)).buffer);
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
          {
            resampling: 'near',
            dtype: 'uint16',
            bands: 1,
            dstNodata: 0,
            extra: ['-et', '0'],
          },
        );
        let same = 0;
        let valid = 0;
        for (let i = 0; i < n; i++) {
          if (ref.valid[i]) valid++;
          if (raw[b * n + i] === ref.bands[0][i]) same++;
        }
        assert.ok(valid > n / 2, `${asset}: ${valid} valid reference pixels`);
        assert.equal(same, n, `${asset}: ${n - same} of ${n} pixels differ from gdalwarp`);
      }
    });
  }
});
