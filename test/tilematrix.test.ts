import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { crsFromEpsg } from '../src/render/crs.ts';
import { RenderError } from '../src/render/errors.ts';
import {
  assertValidTile,
  isValidTile,
  lonLatToTile,
  resolutionAtZoom,
  TILE_MAX_ZOOM,
  tileBoundsMercator,
  tileBoundsWgs84,
  tilesForBounds,
  WEB_MERCATOR_HALF_SIZE_M,
  WEB_MERCATOR_MAX_LAT,
  wgs84Bounds,
  xyzTileGrid,
  zoomForResolution,
} from '../src/render/tilematrix.ts';
import type { Grid } from '../src/render/types.ts';

const run = promisify(execFile);
const TOOL_TIMEOUT_MS = 120_000;
const O = 20037508.342789244;

function near(actual: number, expected: number, tol: number, what = ''): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what} ${actual} != ${expected} (tol ${tol})`);
}

describe('tile matrix constants and resolutions', () => {
  it('knows the Web Mercator world', () => {
    assert.equal(WEB_MERCATOR_HALF_SIZE_M, O);
    near(WEB_MERCATOR_HALF_SIZE_M, Math.PI * 6378137, 1e-6);
    assert.equal(TILE_MAX_ZOOM, 30);
  });

  it('has the WebMercatorQuad resolutions', () => {
    assert.equal(resolutionAtZoom(0), 156543.03392804097);
    // the usual quoted figure for z=10; GDAL's COG driver writes 152.874056570352508 (checked below), as we do
    near(resolutionAtZoom(10), 152.87405657041106, 1e-9);
    assert.equal(resolutionAtZoom(10), 152.8740565703525);
    assert.equal(resolutionAtZoom(10, 512), 76.43702828517625);
    assert.equal(resolutionAtZoom(30), resolutionAtZoom(0) / 2 ** 30);
    near(resolutionAtZoom(30), 1.4579206139598132e-4, 1e-18);
  });

  it('picks the zoom for a resolution (exact zooms, between zooms, strategies)', () => {
    for (let z = 0; z <= 30; z++) {
      for (const s of ['auto', 'upper', 'lower'] as const)
        assert.equal(zoomForResolution(resolutionAtZoom(z), 256, s), z);
    }
    assert.equal(zoomForResolution(100), 11); // 10.61
    assert.equal(zoomForResolution(130), 10); // 10.23
    assert.equal(zoomForResolution(130, 256, 'upper'), 11);
    assert.equal(zoomForResolution(100, 256, 'lower'), 10);
    assert.equal(zoomForResolution(76.43702828520553, 512), 10);
    assert.equal(zoomForResolution(1e9), 0);
    assert.equal(zoomForResolution(1e-9), 30);
    assert.throws(
      () => zoomForResolution(0),
      (e: unknown) => e instanceof RenderError && e.kind === 'bad-request',
    );
    assert.throws(() => zoomForResolution(Number.NaN), RenderError);
  });
});

describe('tiles', () => {
  it('bounds tile 0/0/0 as the whole world', () => {
    assert.deepEqual(tileBoundsMercator(0, 0, 0), [-O, -O, O, O]);
    const b = tileBoundsWgs84(0, 0, 0);
    assert.equal(b[0], -180);
    assert.equal(b[2], 180);
    near(b[1], -WEB_MERCATOR_MAX_LAT, 1e-12, 'south');
    near(b[3], WEB_MERCATOR_MAX_LAT, 1e-12, 'north');
  });

  it('bounds deeper tiles', () => {
    assert.deepEqual(tileBoundsMercator(1, 1, 0), [0, 0, O, O]);
    const b = tileBoundsWgs84(1, 0, 1);
    assert.deepEqual([b[0], b[2]], [-180, 0]);
    near(b[1], -WEB_MERCATOR_MAX_LAT, 1e-12);
    near(b[3], 0, 1e-12);
    // z=2 tile 2/2/1: east of Greenwich, north of the equator, south of 66.51326 deg
    const c = tileBoundsWgs84(2, 2, 1);
    assert.deepEqual([c[0], c[2]], [0, 90]);
    near(c[1], 0, 1e-12);
    near(c[3], 66.51326044311186, 1e-10);
  });

  it('builds the EPSG:3857 grid of a tile', () => {
    const g = xyzTileGrid(1, 0, 0);
    assert.equal(g.crs.epsg, 3857);
    assert.equal(g.width, 256);
    assert.equal(g.height, 256);
    assert.deepEqual(g.transform, [-O, 78271.51696402048, 0, O, 0, -78271.51696402048]);
    const g512 = xyzTileGrid(10, 511, 340, 512);
    assert.equal(g512.width, 512);
    near(g512.transform[1], resolutionAtZoom(10, 512), 0);
    near(g512.transform[0], -O + (511 * 2 * O) / 1024, 1e-6);
    near(g512.transform[3], O - (340 * 2 * O) / 1024, 1e-6);
    assert.throws(
      () => xyzTileGrid(1, 2, 0),
      (e: unknown) => e instanceof RenderError && e.kind === 'bad-request',
    );
    assert.throws(() => xyzTileGrid(1, 0, 0, 0), RenderError);
  });

  it('validates z/x/y', () => {
    assert.equal(isValidTile(0, 0, 0), true);
    assert.equal(isValidTile(30, 2 ** 30 - 1, 0), true);
    assert.equal(isValidTile(31, 0, 0), false);
    assert.equal(isValidTile(-1, 0, 0), false);
    assert.equal(isValidTile(1, 2, 0), false);
    assert.equal(isValidTile(1, 0, -1), false);
    assert.equal(isValidTile(1.5, 0, 0), false);
    assert.equal(isValidTile(2, 1.5, 0), false);
    assert.equal(isValidTile(Number.NaN, 0, 0), false);
    assert.doesNotThrow(() => assertValidTile(3, 7, 7));
    assert.throws(
      () => assertValidTile(3, 8, 0),
      (e: unknown) => e instanceof RenderError && e.kind === 'bad-request' && /0\.\.7/.test(e.message),
    );
    assert.throws(
      () => assertValidTile(31, 0, 0),
      (e: unknown) => e instanceof RenderError && /0\.\.30/.test(e.message),
    );
  });

  it('finds the tile of a longitude/latitude, clamped into the matrix', () => {
    assert.deepEqual(lonLatToTile(0, 0, 1), [1, 1]);
    assert.deepEqual(lonLatToTile(-0.000001, 0.000001, 1), [0, 0]);
    assert.deepEqual(lonLatToTile(180, -90, 3), [7, 7]);
    assert.deepEqual(lonLatToTile(-180, 90, 3), [0, 0]);
    assert.throws(() => lonLatToTile(0, 0, 31), RenderError);
  });

  it('finds tiles of a longitude/latitude like GDAL (EPSG:3857 coordinates from gdaltransform)', () => {
    const pts: [number, number][] = [
      [-122.4194, 37.7749],
      [13.405, 52.52],
      [151.2093, -33.8688],
      [-58.3816, -34.6037],
      [139.6917, 35.6895],
    ];
    const stdout = execFileSync('gdaltransform', ['-s_srs', 'OGC:CRS84', '-t_srs', 'EPSG:3857', '-output_xy'], {
      input: pts.map((p) => `${p[0]} ${p[1]}\n`).join(''),
      timeout: TOOL_TIMEOUT_MS,
    }).toString();
    const merc = stdout
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/).map(Number));
    for (const z of [0, 5, 12, 18]) {
      const span = (2 * O) / 2 ** z;
      pts.forEach((p, i) => {
        const expected = [Math.floor((merc[i][0] + O) / span), Math.floor((O - merc[i][1]) / span)];
        assert.deepEqual(lonLatToTile(p[0], p[1], z), expected, `${p} at z=${z}`);
      });
    }
  });

  it('lists the tiles that intersect bounds', () => {
    assert.deepEqual(tilesForBounds([-180, -90, 180, 90], 2), { z: 2, minX: 0, minY: 0, maxX: 3, maxY: 3 });
    // a tile's own bounds give just that tile, not its neighbours
    for (const [z, x, y] of [
      [5, 17, 10],
      [12, 2218, 1387],
      [1, 0, 1],
    ]) {
      assert.deepEqual(tilesForBounds(tileBoundsWgs84(z, x, y), z), { z, minX: x, minY: y, maxX: x, maxY: y });
    }
    // a point gives the tile that holds it
    const [x, y] = lonLatToTile(13.405, 52.52, 14);
    assert.deepEqual(tilesForBounds([13.405, 52.52, 13.405, 52.52], 14), { z: 14, minX: x, minY: y, maxX: x, maxY: y });
    // Germany at z=6
    assert.deepEqual(tilesForBounds([5.87, 47.27, 15.04, 55.06], 6), { z: 6, minX: 33, minY: 20, maxX: 34, maxY: 22 });
    assert.throws(
      () => tilesForBounds([10, 0, 0, 1], 3),
      (e: unknown) => e instanceof RenderError,
    );
  });

  it('computes WGS 84 bounds of any grid (tile grids give the tile bounds)', () => {
    for (const [z, x, y] of [
      [0, 0, 0],
      [3, 5, 2],
      [14, 8800, 5373],
    ]) {
      const b = wgs84Bounds(xyzTileGrid(z, x, y));
      const expected = tileBoundsWgs84(z, x, y);
      for (let i = 0; i < 4; i++) near(b[i], expected[i], 1e-9, `${z}/${x}/${y} [${i}]`);
    }
    const utm: Grid = { crs: crsFromEpsg(32633), transform: [500000, 10, 0, 5500000, 0, -10], width: 100, height: 100 };
    const b = wgs84Bounds(utm);
    near(b[0], 15, 1e-9, 'west on the central meridian');
    assert.ok(b[1] > 49.6 && b[3] < 49.7 && b[2] > 15.01 && b[2] < 15.02, `${b}`);
  });
});

describe('against GDAL GoogleMapsCompatible COG tiling', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cogmill-tilematrix-'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('chooses the same zoom as ZOOM_LEVEL_STRATEGY and aligns to the same tile grid', async () => {
    for (const resM of [10, 100, 130, 3000]) {
      const src = join(dir, `src-${resM}.tif`);
      const x0 = 1_000_000;
      const y0 = 6_000_000;
      await run(
        'gdal_create',
        ['-of', 'GTiff', '-outsize', '32', '32', '-a_srs', 'EPSG:3857', '-a_ullr']
          .concat([x0, y0, x0 + 32 * resM, y0 - 32 * resM].map(String))
          .concat([src]),
        { timeout: TOOL_TIMEOUT_MS },
      );
      for (const strategy of ['auto', 'upper', 'lower'] as const) {
        const out = join(dir, `cog-${resM}-${strategy}.tif`);
        await run(
          'gdal_translate',
          ['-q', '-of', 'COG', '-co', 'TILING_SCHEME=GoogleMapsCompatible'].concat([
            '-co',
            `ZOOM_LEVEL_STRATEGY=${strategy.toUpperCase()}`,
            src,
            out,
          ]),
          { timeout: TOOL_TIMEOUT_MS },
        );
        const { stdout } = await run('gdalinfo', ['-json', out], { timeout: TOOL_TIMEOUT_MS });
        const gt: number[] = JSON.parse(stdout).geoTransform;
        const z = zoomForResolution(resM, 256, strategy);
        near(gt[1], resolutionAtZoom(z), 1e-9, `res ${resM} m ${strategy}: zoom ${z}`);
        // the file's origin is the corner of a tile, and that tile's grid starts there
        const span = 256 * resolutionAtZoom(z);
        const tx = Math.round((gt[0] + O) / span);
        const ty = Math.round((O - gt[3]) / span);
        const tile = xyzTileGrid(z, tx, ty).transform;
        near(tile[0], gt[0], 1e-6, 'origin x');
        near(tile[3], gt[3], 1e-6, 'origin y');
      }
    }
  });
});
