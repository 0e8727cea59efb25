/**
 * renderMosaic's shortcuts (row copies for sources on the target's pixel lattice, copies where a kernel takes one
 * source pixel) against the general warp (`generalPath: true`): every window, resampling and compositing rule must
 * give the same bytes. Sources: GDAL-written COGs on one lattice (uint16 with nodata holes and overviews, float32
 * with NaN / -0 / infinities, int32 near its limits, RGB with an internal mask), one half a pixel off the lattice,
 * one in another UTM zone, and sources on a lattice whose pixel centres map to positions a hair off the centres.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cogLevels } from '../src/materialize/cog.layout.ts';
import { cogTileGrid, renderCogTile, tileBands } from '../src/materialize/cog.tiles.ts';
import { crsFromEpsg } from '../src/render/crs.ts';
import { Engine } from '../src/render/engine.ts';
import type { Mosaic, MosaicSpec } from '../src/render/mosaic.ts';
import { renderMosaic } from '../src/render/render.ts';
import { transformBounds } from '../src/render/transform.ts';
import type { RenderStats } from '../src/render/types.ts';
import { COMPOSITES, type Composite, type Grid, type Pixels, RESAMPLINGS } from '../src/render/types.ts';
import { gdalFixtures } from './support/gdal.ts';

const FIXTURES = `
import sys
import numpy as np
from osgeo import gdal, osr
gdal.UseExceptions()
out = sys.argv[1]
sys.path.insert(0, sys.argv[2])
import gdal_write
RES = 30.0
X0, Y0 = 399960.0, 5000040.0

def texture(h, w, seed, lo, hi):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    t = np.sin(x / 7.0 + seed) * np.cos(y / 5.0) + 0.3 * rng.standard_normal((h, w))
    t = (t - t.min()) / (t.max() - t.min())
    return lo + t * (hi - lo)

def write(name, arrays, epsg, gt, gdal_type, nodata=None, mask=None):
    gdal_write.write(f'{out}/{name}.tif', arrays, epsg, gt, gdal_type, nodata=nodata, mask=mask, blocksize=128)

def lattice(col, row):
    return (X0 + col * RES, RES, 0.0, Y0 - row * RES, 0.0, -RES)

# uint16 on the lattice, nodata 0: a wedge of nodata and scattered nodata pixels
a = np.round(texture(256, 320, 1, 1, 60000)).astype(np.uint16)
a[np.add.outer(np.arange(256), np.arange(320)) < 60] = 0
a[::17, ::13] = 0
write('a', [a], 32632, lattice(0, 0), gdal.GDT_UInt16, nodata=0)
# overlapping a, 200 columns right and 96 rows down (multiples of 4: aligned on two overview levels too)
b = np.round(texture(224, 288, 2, 1, 65535)).astype(np.uint16)
b[100:140, 30:90] = 0
b[::11, ::7] = 0
write('b', [b], 32632, lattice(200, 96), gdal.GDT_UInt16, nodata=0)
# float32 on the lattice: NaN holes, nodata -9999, negative zeros, infinities
c = texture(160, 200, 3, -100, 100).astype(np.float32)
c[20:40, 50:80] = np.nan
c[::9, ::5] = -9999
c[1::6, ::4] = -0.0
c[3::23, 7::19] = np.inf
c[5::29, 2::17] = -np.inf
write('c', [c], 32632, lattice(40, 30), gdal.GDT_Float32, nodata=-9999)
# int32 near its limits on the lattice (nodata -2147483648)
f = np.round(texture(128, 160, 4, -2147483000, 2147483000)).astype(np.int32)
f[::13, ::3] = -2147483648
write('f', [f], 32632, lattice(64, 48), gdal.GDT_Int32, nodata=-2147483648)
# RGB uint8 on the lattice with an internal mask
rgb = [np.round(texture(192, 224, 5 + i, 0, 255)).astype(np.uint8) for i in range(3)]
m = np.full((192, 224), 255, np.uint8)
m[60:120, 100:150] = 0
m[::7, ::5] = 0
write('e', rgb, 32632, lattice(16, 8), gdal.GDT_Byte, mask=m)
# half a pixel off the lattice
g = np.round(texture(120, 140, 6, 1, 50000)).astype(np.uint16)
write('g', [g], 32632, (X0 + 150.5 * RES, RES, 0.0, Y0 - 40.5 * RES, 0.0, -RES), gdal.GDT_UInt16, nodata=0)
# a second lattice whose pixel centres do not map to exact half-integers (0.3 m at an odd origin): positions within
# 1e-9 of the centres, so bilinear and cubic move values by a hair there
def lattice2(col, row):
    return (356789.1 + col * 0.3, 0.3, 0.0, 4987654.3 - row * 0.3, 0.0, -0.3)
h = np.round(texture(160, 200, 8, 1, 65535)).astype(np.uint16)
h[::9, ::4] = 0
write('h', [h], 32632, lattice2(0, 0), gdal.GDT_UInt16, nodata=0)
i2 = np.round(texture(150, 180, 9, 1, 65535)).astype(np.uint16)
i2[::8, ::3] = 0
write('i', [i2], 32632, lattice2(120, 70), gdal.GDT_UInt16, nodata=0)
k = np.round(texture(100, 120, 10, -2147483000, 2147483000)).astype(np.int32)
write('k', [k], 32632, lattice2(30, 20), gdal.GDT_Int32)
# RGB uint8 without a mask on the lattice (pixel-interleaved), nodata 0: pixels black in every band are empty,
# pixels black in one or two bands are not
r = [np.round(texture(256, 384, 11 + i, 0, 255)).astype(np.uint8) for i in range(3)]
for band in r:
    band[::19, ::23] = 0
r[1][::5, ::3] = 0
r[0][::7, ::11] = 0
r[2][::7, ::11] = 0
r[1][::7, ::11] = 200
write('r', r, 32632, lattice(0, 0), gdal.GDT_Byte, nodata=0)
# the same grid, no nodata: every pixel is data
write('s', [np.round(texture(256, 384, 14 + i, 0, 255)).astype(np.uint8) for i in range(3)], 32632, lattice(0, 0), gdal.GDT_Byte)
# UTM zone 31 over the same ground (reprojected onto the zone 32 grid)
s32 = osr.SpatialReference(); s32.ImportFromEPSG(32632)
s31 = osr.SpatialReference(); s31.ImportFromEPSG(32631)
for s in (s32, s31):
    s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
x31, y31, _ = osr.CoordinateTransformation(s32, s31).TransformPoint(X0 + 1000, Y0 - 500)
d = np.round(texture(200, 220, 7, 1, 40000)).astype(np.uint16)
d[::5, ::9] = 0
write('d', [d], 32631, (round(x31), 12.0, 0.0, round(y31), 0.0, -12.0), gdal.GDT_UInt16, nodata=0)
`;

const bytesOf = (p: Pixels): Buffer =>
  Buffer.concat([...p.bands.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)), Buffer.from(p.mask)]);

function validPixels(p: Pixels): number {
  let n = 0;
  for (const v of p.mask) if (v) n++;
  return n;
}

/** Windows of a mosaic: every COG tile (block 128) of every level, and odd windows of the native grid and beyond. */
function windows(mosaic: Mosaic): { name: string; grid: Grid }[] {
  const out: { name: string; grid: Grid }[] = [];
  const g = mosaic.grid;
  for (const lvl of cogLevels(g.width, g.height, 128)) {
    for (let ty = 0; ty < lvl.tilesY; ty++) {
      for (let tx = 0; tx < lvl.tilesX; tx++)
        out.push({ name: `tile ${lvl.level}/${tx}/${ty}`, grid: cogTileGrid(mosaic, lvl, tx, ty, 128) });
    }
  }
  const t = g.transform;
  const sub = (name: string, col: number, row: number, w: number, h: number, scale = 1) =>
    out.push({
      name,
      grid: {
        crs: g.crs,
        transform: [t[0] + col * t[1], t[1] * scale, 0, t[3] + row * t[5], 0, t[5] * scale],
        width: w,
        height: h,
      },
    });
  sub('native 37,11', 37, 11, 150, 130);
  sub('native, off the top left', -30, -20, 160, 140);
  sub('native, off the bottom right', g.width - 100, g.height - 60, 150, 100);
  sub('whole mosaic (chunked)', 0, 0, g.width, g.height);
  sub('half a pixel off', 100.5, 60.5, 96, 96);
  sub('x0.5', 120, 80, 120, 100, 0.5);
  sub('x2', 10, 6, 120, 90, 2);
  sub('x4 from -8,-4', -8, -4, 70, 60, 4);
  sub('x3', 3, 5, 100, 80, 3);
  const web = crsFromEpsg(3857);
  const b = transformBounds([t[0] + 60 * t[1], t[3] + 250 * t[5], t[0] + 300 * t[1], t[3] + 40 * t[5]], g.crs, web);
  out.push({
    name: 'EPSG:3857',
    grid: {
      crs: web,
      transform: [b[0], (b[2] - b[0]) / 128, 0, b[3], 0, -(b[3] - b[1]) / 128],
      width: 128,
      height: 128,
    },
  });
  return out;
}

describe('render shortcuts = general warp, byte for byte', () => {
  let dir: string;
  let engine: Engine;
  const mosaic = (id: string, names: string[], extra: Partial<MosaicSpec> = {}) =>
    engine.openMosaic({ id, sources: names.map((n) => path.join(dir, `${n}.tif`)), ...extra });

  before(async () => {
    dir = await gdalFixtures('cogmill-render-fast-', FIXTURES);
    engine = new Engine({ roots: [dir] });
  });

  after(async () => {
    await engine?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const cases: {
    name: string;
    sources: string[];
    extra?: Partial<MosaicSpec>;
    composites: readonly Composite[];
  }[] = [
    { name: 'same-zone uint16 (two sources on one lattice)', sources: ['a', 'b'], composites: COMPOSITES },
    {
      name: 'aligned + half a pixel off + reprojected',
      sources: ['a', 'g', 'd', 'b'],
      composites: COMPOSITES,
    },
    {
      name: 'float32 with NaN, -0, infinities over uint16',
      sources: ['c', 'a'],
      extra: { dtype: 'float32' },
      composites: COMPOSITES,
    },
    { name: 'int32 near its limits', sources: ['f', 'a'], extra: { dtype: 'int32' }, composites: COMPOSITES },
    { name: 'RGB with an internal mask', sources: ['e'], composites: ['first', 'last', 'mean', 'max'] },
    {
      name: 'uint16 into uint8 (clamped)',
      sources: ['b', 'a'],
      extra: { dtype: 'uint8' },
      composites: ['first', 'last', 'min', 'mean'],
    },
    {
      name: 'float32 and uint16 into int16',
      sources: ['c', 'b'],
      extra: { dtype: 'int16' },
      composites: ['first', 'last', 'max'],
    },
    { name: 'uint16 into float64', sources: ['b', 'a'], extra: { dtype: 'float64' }, composites: ['first', 'mean'] },
    { name: 'uint16 on a lattice off exact centres', sources: ['h', 'i'], composites: COMPOSITES },
    {
      name: 'uint16 into float32 on a lattice off exact centres',
      sources: ['i', 'h'],
      extra: { dtype: 'float32' },
      composites: ['first', 'max'],
    },
    {
      name: 'int32 on a lattice off exact centres',
      sources: ['k', 'h'],
      extra: { dtype: 'int32' },
      composites: ['first', 'mean', 'min'],
    },
  ];

  for (const c of cases) {
    test(c.name, async () => {
      const m = await mosaic(c.name.replace(/\W+/g, '-'), c.sources, c.extra);
      const wins = windows(m);
      let compared = 0;
      let withData = 0;
      for (const w of wins) {
        for (const resampling of RESAMPLINGS) {
          for (const composite of c.composites) {
            const statsFast: RenderStats = { sourcesRead: 0, sourcesSkipped: 0, pixelsSampled: 0 };
            const statsGeneral: RenderStats = { sourcesRead: 0, sourcesSkipped: 0, pixelsSampled: 0 };
            const fast = await renderMosaic(m, w.grid, { resampling, composite }, statsFast);
            const general = await renderMosaic(m, w.grid, { resampling, composite, generalPath: true }, statsGeneral);
            const what = `${w.name}, ${resampling}, ${composite}`;
            assert.equal(fast.dtype, general.dtype, what);
            assert.ok(bytesOf(fast).equals(bytesOf(general)), `${what}: the shortcuts changed the output`);
            assert.deepEqual(statsFast, statsGeneral, what);
            compared++;
            if (validPixels(fast) > 0) withData++;
          }
        }
      }
      // the windows do hold data (the comparison is not between two empty renders)
      assert.ok(withData > compared * 0.8, `${withData} of ${compared} renders have data`);
    });
  }

  // COG tiles taken as one source block as it is (cog.tiles.block.ts) against the rendered tile, every tile of
  // every level, for the resamplings that may take them; `blocks` counts the tiles taken that way (not all of them:
  // tiles where a later source fills nodata pixels, edge tiles, the masked source's tiles are rendered)
  for (const c of [
    { sources: ['s'], composite: 'first', blocks: true },
    { sources: ['r'], composite: 'first', blocks: true },
    { sources: ['s', 'r'], composite: 'last', blocks: true },
    { sources: ['r', 's'], composite: 'first', blocks: true },
    { sources: ['a', 'b'], composite: 'first', blocks: true },
    { sources: ['b', 'a'], composite: 'first', blocks: true },
    { sources: ['a', 'b'], composite: 'max', blocks: false },
    { sources: ['e'], composite: 'first', blocks: false },
    { sources: ['c', 'a'], composite: 'first', blocks: false, extra: { dtype: 'float32' } },
  ] as const) {
    test(`COG tiles taken as one source block = rendered tiles: ${c.sources.join(', ')}, ${c.composite}`, async () => {
      const extra = 'extra' in c ? c.extra : {};
      const m = await mosaic(`block-${c.sources.join('')}-${c.composite}`, [...c.sources], {
        composite: c.composite,
        ...extra,
      });
      const levels = cogLevels(m.grid.width, m.grid.height, 128);
      let blocks = 0;
      let compared = 0;
      for (const resampling of RESAMPLINGS) {
        const options = { blockSize: 128, resampling, overviewResampling: resampling };
        for (const lvl of levels) {
          for (let ty = 0; ty < lvl.tilesY; ty++) {
            for (let tx = 0; tx < lvl.tilesX; tx++) {
              const what = `${resampling} tile ${lvl.level}/${tx}/${ty}`;
              const taken = await renderCogTile(engine, m, levels, lvl.level, tx, ty, options);
              const rendered = await renderCogTile(engine, m, levels, lvl.level, tx, ty, {
                ...options,
                blockTiles: false,
              });
              if (taken.samples) blocks++;
              assert.equal(taken.validCount, rendered.validCount, what);
              assert.deepEqual(taken.mask, rendered.mask, what);
              assert.deepEqual(tileBands(taken, m.dtype, m.bandCount), rendered.bands, what);
              compared++;
            }
          }
        }
      }
      if (c.blocks) assert.ok(blocks > 0 && blocks < compared, `${blocks} of ${compared} tiles taken as one block`);
      else assert.equal(blocks, 0, 'no tile of this mosaic is one source block as it is');
    });
  }

  test('an aligned tile copies its source exactly (nearest, first)', async () => {
    const m = await mosaic('aligned-a', ['a']);
    const px = await renderMosaic(m, cogTileGrid(m, cogLevels(m.grid.width, m.grid.height, 128)[0], 1, 1, 128));
    const src = await m.sources[0].raster.readWindow(0, 128, 128, 128, 128, [0]);
    for (let i = 0; i < 128 * 128; i++) {
      const v = src.bands[0][i];
      assert.equal(px.mask[i], v === 0 ? 0 : 255);
      assert.equal(px.bands[0][i], v);
    }
  });
});
