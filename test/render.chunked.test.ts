/**
 * A source without overviews under a coarse window (an overview tile over full-resolution pixels) is read chunk by
 * chunk, each chunk within gdalwarp's 64 MiB, instead of as one window of every source pixel; the pixels are the
 * same as from one read.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import { Engine } from '../src/render/engine.ts';
import { renderMosaic } from '../src/render/render.ts';
import type { Grid, Pixels, RenderStats } from '../src/render/types.ts';
import { PYTHON, sh, tempDir } from './support/gdal.ts';

const bytesOf = (p: Pixels): Buffer =>
  Buffer.concat([...p.bands.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)), Buffer.from(p.mask)]);

describe('chunked source reads', () => {
  test('an 8192 x 8192 source without overviews under a 256 x 256 window: bounded reads, same pixels', async () => {
    const dir = await tempDir('cogmill-chunked-');
    const wavy = path.join(dir, 'wavy.tif');
    const big = path.join(dir, 'big.tif');
    await sh(PYTHON, [
      '-c',
      [
        'import sys, numpy as np',
        'from osgeo import gdal, osr',
        "ds = gdal.GetDriverByName('GTiff').Create(sys.argv[1], 256, 256, 1, gdal.GDT_Float32)",
        'ds.SetGeoTransform((500000, 320, 0, 5081920, 0, -320))',
        's = osr.SpatialReference(); s.ImportFromEPSG(32632); ds.SetProjection(s.ExportToWkt())',
        'y, x = np.mgrid[0:256, 0:256]',
        'ds.GetRasterBand(1).WriteArray(1000 + np.sin(y / 9.0) * 700 + x * 31.0 + (x * y) % 17)',
        'ds = None',
      ].join('\n'),
      wavy,
    ]);
    await sh(
      'gdal_translate',
      [
        ...['-q', '-ot', 'UInt16', '-outsize', '8192', '8192', '-r', 'bilinear', '-a_nodata', '0'],
        ...['-co', 'TILED=YES', '-co', 'COMPRESS=DEFLATE', '-co', 'PREDICTOR=2', wavy, big],
      ],
      600_000,
    );
    const engine = new Engine({ roots: [dir], tileCacheBytes: 16 * 1024 * 1024 });
    try {
      const mosaic = await engine.openMosaic({ id: 'big', sources: [big] });
      const t = mosaic.grid.transform;
      const grid: Grid = {
        crs: mosaic.grid.crs,
        transform: [t[0], t[1] * 32, 0, t[3], 0, t[5] * 32],
        width: 256,
        height: 256,
      };
      for (const resampling of ['average', 'mode'] as const) {
        const chunked: RenderStats = { sourcesRead: 0, sourcesSkipped: 0, pixelsSampled: 0 };
        const whole: RenderStats = { sourcesRead: 0, sourcesSkipped: 0, pixelsSampled: 0 };
        const a = await renderMosaic(mosaic, grid, { resampling }, chunked);
        const b = await renderMosaic(mosaic, grid, { resampling, sourceReadMaxBytes: Infinity }, whole);
        assert.ok(bytesOf(a).equals(bytesOf(b)), `${resampling}: same pixels`);
        assert.equal(whole.largestSourceWindowPixels, 8192 * 8192, 'one read of every pixel');
        // uint16 + a validity byte per pixel: each chunk within 64 MiB
        assert.ok(
          chunked.largestSourceWindowPixels! * 3 <= 64 * 1024 * 1024,
          `${resampling}: largest read ${chunked.largestSourceWindowPixels} pixels`,
        );
        assert.ok(chunked.sourcePixelsRead! >= 8192 * 8192, 'every source pixel read');
        let valid = 0;
        for (const v of a.mask) if (v) valid++;
        assert.equal(valid, 256 * 256);
      }
    } finally {
      await engine.close();
    }
  });
});
