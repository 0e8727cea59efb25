import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { crsFromEpsg } from '../src/render/crs.ts';
import { RenderError } from '../src/render/errors.ts';
import {
  nativeFinestLevel,
  nativeSetUnavailable,
  nativeTileMatrixSet,
  tileMatrixSetJson,
  tmsTileGrid,
  tmsTilesForBounds,
  worldTileMatrixSet,
} from '../src/render/tilematrix.sets.ts';
import { resolutionAtZoom, xyzTileGrid } from '../src/render/tilematrix.ts';
import type { Grid } from '../src/render/types.ts';

const utmGrid: Grid = {
  crs: crsFromEpsg(32632),
  transform: [254540, 20, 0, 4993900, 0, -20],
  width: 880,
  height: 651,
};

describe('world tile matrix sets', () => {
  it('WebMercatorQuad agrees with the XYZ tile grids', () => {
    const set = worldTileMatrixSet('WebMercatorQuad');
    for (const [z, x, y] of [
      [0, 0, 0],
      [5, 17, 11],
      [13, 4230, 2915],
    ]) {
      assert.deepEqual(tmsTileGrid(set, z, x, y), xyzTileGrid(z, x, y));
      assert.equal(set.matrix(z).cellSize, resolutionAtZoom(z));
    }
    // OGC 17-083r4 Annex: level 0 scale denominator of GoogleMapsCompatible
    assert.ok(Math.abs(set.matrix(0).scaleDenominator - 559082264.0287178) < 1e-6);
    assert.equal(set.tileMatrices.length, 25);
    assert.equal(set.matrix(30).matrixWidth, 2 ** 30);
  });

  it('WorldCRS84Quad: two tiles at level 0, 0.703125 degree pixels, the published scale', () => {
    const set = worldTileMatrixSet('WorldCRS84Quad');
    const m0 = set.matrix(0);
    assert.deepEqual([m0.matrixWidth, m0.matrixHeight, m0.cellSize], [2, 1, 0.703125]);
    assert.ok(Math.abs(m0.scaleDenominator - 279541132.0143589) < 1e-5, String(m0.scaleDenominator));
    const g = tmsTileGrid(set, 1, 3, 1);
    assert.deepEqual(g.transform, [90, 0.3515625, 0, 0, 0, -0.3515625]);
    assert.equal(g.crs.epsg, 4326);
    const json = tileMatrixSetJson(set);
    assert.equal(json.crs, 'http://www.opengis.net/def/crs/OGC/1.3/CRS84');
    assert.deepEqual(json.tileMatrices[0].pointOfOrigin, [-180, 90], 'CRS84 is longitude first');
  });

  it('refuses tiles outside the matrix and levels beyond the set', () => {
    const set = worldTileMatrixSet('WorldCRS84Quad');
    assert.throws(() => tmsTileGrid(set, 0, 2, 0), RenderError);
    assert.throws(() => set.matrix(31), RenderError);
  });
});

describe('native tile matrix set', () => {
  it('has the mosaic grid as its finest level and halves from the same corner', () => {
    const set = nativeTileMatrixSet(utmGrid, 'utm')!;
    assert.equal(set.maxLevel, 2, '880 px: 256 * 2^2 >= 880');
    assert.equal(nativeFinestLevel(256, 256), 0);
    assert.equal(nativeFinestLevel(257, 10), 1);
    const fine = set.matrix(2);
    assert.deepEqual(
      [fine.cellSize, fine.originX, fine.originY, fine.matrixWidth, fine.matrixHeight],
      [20, 254540, 4993900, 4, 3],
    );
    const coarse = set.matrix(0);
    assert.deepEqual([coarse.cellSize, coarse.matrixWidth, coarse.matrixHeight], [80, 1, 1]);
    // a finest-level tile is a window of the mosaic grid: same lattice
    const t = tmsTileGrid(set, 2, 1, 2);
    assert.deepEqual(t.transform, [254540 + 256 * 20, 20, 0, 4993900 - 512 * 20, 0, -20]);
    const r = tmsTilesForBounds(set, 2, [254540, 4980880, 272140, 4993900])!;
    assert.deepEqual([r.minX, r.minY, r.maxX, r.maxY], [0, 0, 3, 2]);
    const json = tileMatrixSetJson(set);
    assert.equal(json.crs, 'http://www.opengis.net/def/crs/EPSG/0/32632');
    assert.deepEqual(json.tileMatrices[2].pointOfOrigin, [254540, 4993900]);
  });

  it('writes latitude (or northing) first where the EPSG axis order says so', () => {
    const geo = nativeTileMatrixSet(
      { crs: crsFromEpsg(4326), transform: [5.9, 0.0004, 0, 45.08, 0, -0.0004], width: 500, height: 400 },
      'flt',
    )!;
    assert.deepEqual(tileMatrixSetJson(geo).tileMatrices[0].pointOfOrigin, [45.08, 5.9]);
    const laea = nativeTileMatrixSet(
      { crs: crsFromEpsg(3035), transform: [4e6, 100, 0, 3e6, 0, -100], width: 100, height: 100 },
      'laea',
    )!;
    assert.deepEqual(tileMatrixSetJson(laea).tileMatrices[0].pointOfOrigin, [3e6, 4e6]);
  });

  it('is not offered for rotated grids or non-square pixels', () => {
    assert.match(nativeSetUnavailable({ ...utmGrid, transform: [0, 20, 0, 0, 0, -10] }) ?? '', /square/);
    assert.match(nativeSetUnavailable({ ...utmGrid, transform: [0, 20, 1, 0, 0, -20] }) ?? '', /north-up/);
    assert.equal(nativeTileMatrixSet({ ...utmGrid, transform: [0, 20, 0, 0, 0, 20] }, 'x'), undefined);
  });
});
