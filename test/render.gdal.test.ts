/**
 * The pixel engine against gdalwarp: the same sources rendered onto the same grids must agree.
 * Runs with the sources read from disk and over HTTP (range requests); the S3 variant lives in render.s3.test.ts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { crsFromEpsg } from '../src/render/crs.ts';
import { Engine } from '../src/render/engine.ts';
import type { Mosaic, MosaicSpec } from '../src/render/mosaic.ts';
import type { Composite, DType, Grid, Resampling } from '../src/render/types.ts';
import { sourceWarp } from '../src/render/warp.window.ts';
import { agreement, fixtureDir, gdalwarp, tempDir, WARP_NEAREST_EXACT_UINT16 } from './support/gdal.ts';
import { type StaticServer, startStaticServer } from './support/http.server.ts';

const WEB_MERCATOR_HALF = 20037508.342789244;

/** A square EPSG:3857 window of `size` pixels at zoom `z`, centred near (lon, lat). Snapped to the tile lattice. */
export function mercatorWindow(z: number, lon: number, lat: number, size = 256): Grid {
  const res = (2 * WEB_MERCATOR_HALF) / 256 / 2 ** z;
  const x = (lon * WEB_MERCATOR_HALF) / 180;
  const y = (Math.log(Math.tan(((90 + lat) * Math.PI) / 360)) * WEB_MERCATOR_HALF) / Math.PI;
  const col = Math.round((x + WEB_MERCATOR_HALF) / res - size / 2);
  const row = Math.round((WEB_MERCATOR_HALF - y) / res - size / 2);
  return {
    crs: crsFromEpsg(3857),
    transform: [-WEB_MERCATOR_HALF + col * res, res, 0, WEB_MERCATOR_HALF - row * res, 0, -res],
    width: size,
    height: size,
  };
}

function subGrid(g: Grid, col: number, row: number, w: number, h: number, shiftPx = 0): Grid {
  const t = g.transform;
  return {
    crs: g.crs,
    transform: [t[0] + (col + shiftPx) * t[1], t[1], 0, t[3] + (row + shiftPx) * t[5], 0, t[5]],
    width: w,
    height: h,
  };
}

function geographicWindow(lon0: number, lat1: number, res: number, w: number, h: number): Grid {
  return { crs: crsFromEpsg(4326), transform: [lon0, res, 0, lat1, 0, -res], width: w, height: h };
}

interface Ctx {
  engine: Engine;
  loc: (name: string) => string;
  file: (name: string) => string;
  mosaic: (id: string, names: string[], extra?: Partial<MosaicSpec>) => Promise<Mosaic>;
}

async function check(
  ctx: Ctx,
  names: string[],
  grid: Grid,
  opts: {
    resampling: Resampling;
    composite?: Composite;
    dtype: DType;
    bands: number;
    nodata: number;
    min: number;
    tol?: number;
    rel?: number;
  },
) {
  const m = await ctx.mosaic(`m-${names.join('-')}-${opts.resampling}`, names, {
    resampling: opts.resampling,
    composite: opts.composite,
  });
  const ours = await ctx.engine.render(m, grid);
  // gdalwarp: later inputs win, so reverse for "first valid wins"
  const ref = await gdalwarp(names.map(ctx.file).reverse(), grid, {
    resampling: opts.resampling === 'nearest' ? 'near' : opts.resampling,
    dtype: opts.dtype,
    bands: opts.bands,
    dstNodata: opts.nodata,
    extra: ['-et', '0'],
  });
  const a = agreement(ours, ref, opts.tol ?? 0, opts.rel ?? 0);
  assert.ok(a.compared > grid.width * grid.height * 0.2, `too few valid pixels to compare: ${a.compared}`);
  assert.ok(
    a.fraction >= opts.min,
    `agreement ${(a.fraction * 100).toFixed(3)}% < ${opts.min * 100}% (validity mismatches: ${a.validityMismatch})`,
  );
  return a;
}

/** nearest on the uint16 fixtures (nodata 0): >= 99.5% of the pixels identical */
const NEAREST_UINT16 = { resampling: 'nearest', dtype: 'uint16', bands: 1, nodata: 0, min: 0.995 } as const;

for (const kind of ['file', 'http'] as const) {
  describe(`render matches gdalwarp, sources over ${kind}`, () => {
    let server: StaticServer | undefined;
    const ctx = {} as Ctx;
    let dir = '';
    before(async () => {
      dir = await fixtureDir();
      if (kind === 'http') server = await startStaticServer(dir);
      ctx.engine = new Engine({ roots: [dir], allowedUrlPrefixes: server ? [`${server.url}/`] : [] });
      ctx.file = (n) => path.join(dir, `${n}.tif`);
      ctx.loc = (n) => (server ? `${server.url}/${n}.tif` : path.join(dir, `${n}.tif`));
      ctx.mosaic = (id, names, extra = {}) => ctx.engine.openMosaic({ id, sources: names.map(ctx.loc), ...extra });
    });
    after(async () => {
      await ctx.engine?.close();
      await server?.stop();
    });

    test('native grid, one source, nearest: >= 99.9% identical', async () => {
      const m = await ctx.mosaic('n1', ['utm32']);
      const g = subGrid(m.grid, 37, 41, 300, 250);
      const a = await check(ctx, ['utm32'], g, {
        resampling: 'nearest',
        dtype: 'uint16',
        bands: 1,
        nodata: 0,
        min: 0.999,
      });
      assert.equal(a.validityMismatch, 0);
    });

    test('a half-pixel shift fails the nearest criterion (the comparison can fail)', async () => {
      const m = await ctx.mosaic('n1', ['utm32']);
      const g = subGrid(m.grid, 37, 41, 300, 250);
      const ours = await ctx.engine.render(m, g);
      const shifted = subGrid(m.grid, 37, 41, 300, 250, 0.5);
      const ref = await gdalwarp([ctx.file('utm32')], shifted, {
        resampling: 'near',
        dtype: 'uint16',
        bands: 1,
        dstNodata: 0,
      });
      const a = agreement(ours, ref);
      assert.ok(a.compared > g.width * g.height * 0.5, `pixels compared: ${a.compared}`);
      assert.ok(a.fraction < 0.995, `a shifted reference still agrees on ${(a.fraction * 100).toFixed(2)}%`);
    });

    test('striped LZW GeoTIFF without overviews reads the same values', async () => {
      const m = await ctx.mosaic('st', ['utm32_striped']);
      const g = subGrid(m.grid, 0, 0, 700, 600);
      await check(ctx, ['utm32_striped'], g, {
        resampling: 'nearest',
        dtype: 'uint16',
        bands: 1,
        nodata: 0,
        min: 0.999,
      });
    });

    test('two UTM zones on the native grid, first valid wins, nearest: >= 99.5%', async () => {
      const m = await ctx.mosaic('two', ['utm32', 'utm31']);
      assert.equal(m.grid.crs.epsg, 32632);
      const g = subGrid(m.grid, 0, 0, Math.min(600, m.grid.width), Math.min(500, m.grid.height));
      await check(ctx, ['utm32', 'utm31'], g, NEAREST_UINT16);
    });

    for (const z of [10, 11, 12, 13]) {
      test(`EPSG:3857 zoom ${z}, two zones, nearest (overview choice): >= 99.5%`, async () => {
        const g = mercatorWindow(z, 6.0, 45.0);
        await check(ctx, ['utm32', 'utm31'], g, NEAREST_UINT16);
      });
    }

    test('EPSG:4326 window, two zones, nearest: >= 99.5%', async () => {
      const g = geographicWindow(5.93, 45.06, 0.0002, 400, 300);
      await check(ctx, ['utm32', 'utm31'], g, NEAREST_UINT16);
    });

    for (const r of ['bilinear', 'cubic', 'average'] as const) {
      // zoom 13 upsamples, 12 downsamples full resolution (1.35 source pixels per target pixel), 11 and 10 read
      // overviews, and at 10 the window is split into chunks because each source covers only part of it
      test(`${r}: >= 99% within 1 unit (3857 zooms 13 to 10, EPSG:4326)`, async () => {
        const opts = { resampling: r, dtype: 'uint16', bands: 1, nodata: 0, min: 0.99, tol: 1 } as const;
        // the transport does not change the maths: the HTTP run keeps to the two full-resolution zooms
        for (const z of kind === 'file' ? [13, 12, 11, 10] : [13, 12]) {
          await check(ctx, ['utm32', 'utm31'], mercatorWindow(z, 6.0, 45.0), opts);
        }
        if (kind === 'file')
          await check(ctx, ['utm32', 'utm31'], geographicWindow(5.93, 45.06, 0.0002, 400, 300), opts);
      });
    }

    test('mode across CRSs picks the same source values: >= 99.5% identical', async () => {
      // gdalwarp's mode clears a 65536-bin histogram per pixel for 16-bit data: small windows keep it quick
      const opts = { resampling: 'mode', dtype: 'uint16', bands: 1, nodata: 0, min: 0.995 } as const;
      for (const z of [12, 11]) await check(ctx, ['utm32', 'utm31'], mercatorWindow(z, 6.0, 45.0, 128), opts);
    });

    test('an exact transform (maxErrorPx 0) matches gdalwarp -et 0 nearest on >= 99.99%', async () => {
      const m = await ctx.mosaic('exact', ['utm32', 'utm31'], { resampling: 'nearest' });
      const g = mercatorWindow(12, 6.0, 45.0);
      const ours = await ctx.engine.render(m, g, { maxErrorPx: 0 });
      const ref = await gdalwarp(['utm31', 'utm32'].map(ctx.file), g, WARP_NEAREST_EXACT_UINT16);
      const a = agreement(ours, ref);
      assert.ok(a.compared > g.width * g.height * 0.5, `pixels compared: ${a.compared}`);
      assert.ok(a.fraction >= 0.9999, `agreement ${(a.fraction * 100).toFixed(3)}%`);
    });

    test('RGB uint8 in EPSG:3857, same CRS: nearest >= 99.9%, bilinear >= 99% within 1', async () => {
      const m = await ctx.mosaic('rgb', ['rgb']);
      assert.equal(m.bandCount, 3);
      const g = subGrid(m.grid, 20, 30, 256, 256);
      await check(ctx, ['rgb'], g, { resampling: 'nearest', dtype: 'uint8', bands: 3, nodata: 0, min: 0.999 });
      await check(ctx, ['rgb'], mercatorWindow(13, 6.0, 45.0), {
        resampling: 'bilinear',
        dtype: 'uint8',
        bands: 3,
        nodata: 0,
        min: 0.99,
        tol: 1,
      });
    });

    test('float32 with nodata: nearest exact on its grid, bilinear within 1e-3 relative in UTM', async () => {
      const m = await ctx.mosaic('f', ['float']);
      assert.equal(m.dtype, 'float32');
      const g = subGrid(m.grid, 10, 10, 300, 300);
      await check(ctx, ['float'], g, { resampling: 'nearest', dtype: 'float32', bands: 1, nodata: -9999, min: 0.999 });
      // the fixture spans 255332..271754 E, 4978155..4996513 N in UTM 32 (gdaltransform of its corners): a 10 x 8 km
      // window around its centre (263554, 4987330), with the nodata disc inside; 40 m is coarser than the fixture
      // along x (31.5 m) and finer along y (44.4 m)
      const utm: Grid = {
        crs: crsFromEpsg(32632),
        transform: [258560, 40, 0, 4991320, 0, -40],
        width: 250,
        height: 200,
      };
      for (const r of ['bilinear', 'cubic', 'average'] as const) {
        await check(ctx, ['float'], utm, {
          resampling: r,
          dtype: 'float32',
          bands: 1,
          nodata: -9999,
          min: 0.99,
          rel: 1e-3,
          tol: 1e-3,
        });
      }
    });

    test('band-interleaved int16 with an internal mask and overviews', async () => {
      const m = await ctx.mosaic('pm', ['planar_mask']);
      assert.equal(m.bandCount, 4);
      assert.equal(m.sources[0].raster.info.hasMask, true);
      assert.equal(m.sources[0].raster.info.interleave, 'band');
      const full = subGrid(m.grid, 0, 0, 300, 260);
      const px = await ctx.engine.render(m, full);
      // the masked rectangle is invalid, its neighbourhood valid
      assert.equal(px.mask[130 * 300 + 80], 0);
      assert.equal(px.mask[10 * 300 + 10], 255);
      await check(ctx, ['planar_mask'], full, {
        resampling: 'nearest',
        dtype: 'int16',
        bands: 4,
        nodata: -32768,
        min: 0.999,
      });
      // half resolution reads the first overview
      const half: Grid = {
        ...full,
        transform: [full.transform[0], 20, 0, full.transform[3], 0, -20],
        width: 150,
        height: 130,
      };
      await check(ctx, ['planar_mask'], half, {
        resampling: 'nearest',
        dtype: 'int16',
        bands: 4,
        nodata: -32768,
        min: 0.99,
      });
    });

    test('compositing rules pixel by pixel where the two zones overlap', async () => {
      const g = mercatorWindow(12, 6.0, 45.0);
      const a = await ctx.engine.render(await ctx.mosaic('a', ['utm32']), g);
      const b = await ctx.engine.render(await ctx.mosaic('b', ['utm31']), g);
      let overlap = 0;
      const rules: Composite[] = ['first', 'last', 'min', 'max', 'mean', 'count'];
      const outs = new Map<Composite, Awaited<ReturnType<Engine['render']>>>();
      for (const c of rules)
        outs.set(c, await ctx.engine.render(await ctx.mosaic(`c-${c}`, ['utm32', 'utm31'], { composite: c }), g));
      for (let i = 0; i < g.width * g.height; i++) {
        const va = a.mask[i] !== 0;
        const vb = b.mask[i] !== 0;
        const x = a.bands[0][i];
        const y = b.bands[0][i];
        for (const c of rules) assert.equal(outs.get(c)!.mask[i] !== 0, va || vb, `${c} validity at ${i}`);
        if (!(va && vb)) {
          if (va || vb) {
            const only = va ? x : y;
            for (const c of ['first', 'last', 'min', 'max', 'mean'] as const)
              assert.equal(outs.get(c)!.bands[0][i], only);
            assert.equal(outs.get('count')!.bands[0][i], 1);
          }
          continue;
        }
        overlap++;
        assert.equal(outs.get('first')!.bands[0][i], x);
        assert.equal(outs.get('last')!.bands[0][i], y);
        assert.equal(outs.get('min')!.bands[0][i], Math.min(x, y));
        assert.equal(outs.get('max')!.bands[0][i], Math.max(x, y));
        assert.equal(outs.get('mean')!.bands[0][i], Math.round((x + y) / 2));
        assert.equal(outs.get('count')!.bands[0][i], 2);
      }
      assert.ok(overlap > 1000, `overlap ${overlap}`);
    });
  });
}

const execFileP = promisify(execFile);

interface GdalPlan {
  /** 0 = full resolution, k = overview k - 1 (as in RasterInfo.levels) */
  readonly level: number;
  /** "Src=x,y,wxh Dst=x,y,wxh" per warp chunk, in warp order */
  readonly chunks: readonly string[];
}

/** What gdalwarp reports (--debug on) about one source warped onto `grid`: overview level and chunks. */
async function gdalwarpPlan(source: string, grid: Grid, resampling: string): Promise<GdalPlan> {
  const dir = await tempDir('cogmill-plan-');
  try {
    const gt = grid.transform;
    const te = [gt[0], gt[3] + grid.height * gt[5], gt[0] + grid.width * gt[1], gt[3]].map(String);
    const args = ['--debug', 'on', '-q', '-of', 'ENVI', '-t_srs', `EPSG:${grid.crs.epsg}`, '-te', ...te];
    args.push(
      '-ts',
      String(grid.width),
      String(grid.height),
      '-r',
      resampling,
      '-et',
      '0',
      source,
      path.join(dir, 'out.img'),
    );
    const { stderr } = await execFileP('gdalwarp', args, { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
    const ovr = /Selecting overview level (\d+)/.exec(stderr);
    const chunks = [...stderr.matchAll(/GWK\w*\(\) (Src=\d+,\d+,\d+x\d+ Dst=\d+,\d+,\d+x\d+)/g)].map((m) => m[1]);
    return { level: ovr ? Number(ovr[1]) + 1 : 0, chunks };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('warp plan matches gdalwarp (overview level, chunks, source windows)', () => {
  let engine: Engine;
  let dir = '';
  before(async () => {
    dir = await fixtureDir();
    engine = new Engine({ roots: [dir] });
  });
  after(async () => {
    await engine?.close();
  });

  const ourPlan = async (name: string, grid: Grid, resampling: Resampling): Promise<GdalPlan> => {
    const p = sourceWarp(grid, await engine.openRaster(path.join(dir, `${name}.tif`)), resampling);
    const chunks = (p?.chunks ?? []).map(
      (c) => `Src=${c.sx},${c.sy},${c.sw}x${c.sh} Dst=${c.dx},${c.dy},${c.dw}x${c.dh}`,
    );
    return { level: p?.level ?? 0, chunks };
  };

  for (const z of [10, 11, 12, 13]) {
    test(`EPSG:3857 zoom ${z}: the same level and the same chunks for both sources and kernels`, async () => {
      const g = mercatorWindow(z, 6.0, 45.0);
      // kernels differ in their reach (bilinear 1, cubic 2, average 0 source pixels, widened when downsampling)
      const kernels = z <= 11 ? (['bilinear', 'cubic', 'average'] as const) : (['cubic'] as const);
      for (const name of ['utm32', 'utm31']) {
        for (const r of kernels) {
          const gdal = await gdalwarpPlan(path.join(dir, `${name}.tif`), g, r);
          assert.ok(gdal.chunks.length > 0);
          assert.deepEqual(await ourPlan(name, g, r), gdal, `${name} ${r}`);
        }
      }
      if (z === 10)
        assert.equal((await ourPlan('utm32', g, 'bilinear')).chunks.length, 4, 'zoom 10 splits into chunks');
    });
  }

  test('the overview threshold: x extent of the window in source pixels over its width, as gdalwarp', async () => {
    const raster = await engine.openRaster(path.join(dir, 'utm32.tif'));
    // a tall window: along y it spans fewer source pixels per target pixel than along x, so a rule using both
    // axes (or the source's diagonal) would switch overviews at another resolution
    const grid = (res: number): Grid => ({
      crs: crsFromEpsg(3857),
      transform: [661000, res, 0, 5628000, 0, -res],
      width: 60,
      height: 320,
    });
    let lo = 30;
    let hi = 80;
    assert.equal(sourceWarp(grid(lo), raster, 'nearest')?.level, 0);
    assert.equal(sourceWarp(grid(hi), raster, 'nearest')?.level, 1);
    for (let i = 0; i < 40; i++) {
      const mid = (lo + hi) / 2;
      if (sourceWarp(grid(mid), raster, 'nearest')?.level === 0) lo = mid;
      else hi = mid;
    }
    const file = path.join(dir, 'utm32.tif');
    assert.equal((await gdalwarpPlan(file, grid(lo * (1 - 1e-5)), 'near')).level, 0);
    assert.equal((await gdalwarpPlan(file, grid(hi * (1 + 1e-5)), 'near')).level, 1);
  });
});
