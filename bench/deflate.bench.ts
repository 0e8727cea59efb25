/**
 * Deflate output size and speed on imagery the project did not generate (bench/imagery.ts), against GDAL:
 * each image is written by `gdal_translate -of COG` (DEFLATE at GDAL's default level 6, 512 blocks, overviews,
 * predictor 1 and 2, and 3 for float), every tile of every level is read back (GDAL's predicted bytes, so the
 * engines compress exactly what GDAL compressed), and compressed again by each engine. Reported: total bytes as a
 * multiple of GDAL's, the worst single tile, and the compression time per tile (one at a time, one thread).
 *
 *   node bench/deflate.bench.ts [--small]
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { deflateEngine, deflateTile, inflateTile, useDeflateEngine } from '../src/render/deflate.ts';
import { type Bench, runStandalone } from './harness.ts';
import { ensureImagery } from './imagery.ts';
import { note, PYTHON, round, run, table } from './support.ts';

const deflate = promisify(zlib.deflate);
const zstd = promisify(zlib.zstdCompress);

interface EngineCase {
  readonly name: string;
  compress(bytes: Uint8Array): Promise<Uint8Array>;
}

const ENGINES: readonly EngineCase[] = [
  {
    name: 'cogmill (libdeflate)',
    async compress(b) {
      useDeflateEngine('libdeflate');
      return deflateTile(b, 6);
    },
  },
  {
    name: 'cogmill fallback (zlib 7)',
    async compress(b) {
      useDeflateEngine('zlib');
      try {
        return await deflateTile(b, 6);
      } finally {
        useDeflateEngine('libdeflate');
      }
    },
  },
  { name: 'zlib 6', compress: (b) => deflate(b, { level: 6 }) },
  { name: 'zlib 6 Z_RLE (before)', compress: (b) => deflate(b, { level: 6, strategy: zlib.constants.Z_RLE }) },
  {
    name: 'zstd 9 (option, not deflate)',
    compress: (b) => zstd(b, { params: { [zlib.constants.ZSTD_c_compressionLevel]: 9 } }),
  },
];

const EXTRACT = `
import json, sys
from osgeo import gdal
ds = gdal.Open(sys.argv[1])
b = ds.GetRasterBand(1)
bands = [b] + [b.GetOverview(i) for i in range(b.GetOverviewCount())]
out = []
for lv in bands:
    bx, by = lv.GetBlockSize()
    nx = (lv.XSize + bx - 1) // bx
    ny = (lv.YSize + by - 1) // by
    for y in range(ny):
        for x in range(nx):
            o = lv.GetMetadataItem('BLOCK_OFFSET_%d_%d' % (x, y), 'TIFF')
            s = lv.GetMetadataItem('BLOCK_SIZE_%d_%d' % (x, y), 'TIFF')
            if o and s and int(s) > 0:
                out.append([int(o), int(s)])
print(json.dumps(out))
`;

export const deflateBench: Bench = {
  name: 'deflate',
  title: 'Deflate size and speed vs GDAL on GDAL-made imagery (bench/imagery.ts)',
  async run(ctx) {
    const size = ctx.small ? 1024 : 4096;
    const images = await ensureImagery(size);
    const rows: Record<string, unknown>[] = [];
    const worst = new Map<string, number>();
    for (const image of images) {
      const predictors = image.categorical ? [1] : image.dtype === 'float32' ? [1, 3] : [1, 2];
      for (const predictor of predictors) {
        const out = path.join(ctx.outDir, `${image.name}-p${predictor}.tif`);
        await run(
          'gdal_translate',
          [
            '-q',
            '-of',
            'COG',
            '-co',
            'COMPRESS=DEFLATE',
            '-co',
            `PREDICTOR=${predictor}`,
            '-co',
            'BLOCKSIZE=512',
            '-co',
            `OVERVIEW_RESAMPLING=${image.categorical ? 'MODE' : 'AVERAGE'}`,
            image.file,
            out,
          ],
          { timeoutMs: 600_000 },
        );
        const blocks = JSON.parse((await run(PYTHON, ['-c', EXTRACT, out], { timeoutMs: 60_000 })).stdout) as [
          number,
          number,
        ][];
        const file = await readFile(out);
        const declared = 512 * 512 * image.bands * (image.dtype === 'uint8' ? 1 : image.dtype === 'uint16' ? 2 : 4);
        const tiles: { gdal: number; raw: Uint8Array }[] = [];
        for (const [o, s] of blocks) {
          tiles.push({ gdal: s, raw: await inflateTile(file.subarray(o, o + s), declared) });
        }
        const gdalBytes = tiles.reduce((a, t) => a + t.gdal, 0);
        const row: Record<string, unknown> = { image: image.name, predictor, tiles: tiles.length };
        for (const engine of ENGINES) {
          let bytes = 0;
          let worstTile = 0;
          const t0 = performance.now();
          for (const t of tiles) {
            const c = await engine.compress(t.raw);
            bytes += c.length;
            worstTile = Math.max(worstTile, c.length / t.gdal);
          }
          const ms = (performance.now() - t0) / tiles.length;
          const ratio = bytes / gdalBytes;
          row[engine.name] = `${round(ratio, 3)} (worst tile ${round(worstTile, 3)}; ${round(ms, 2)} ms)`;
          worst.set(engine.name, Math.max(worst.get(engine.name) ?? 0, ratio));
          ctx.emit({ image: image.name, predictor, engine: engine.name, sizeRatio: ratio, worstTile, msPerTile: ms });
        }
        rows.push(row);
        note(`${image.name} predictor ${predictor}: ${JSON.stringify(row)}`);
      }
    }
    const summary = [...worst].map(([engine, ratio]) => ({ engine, worstImageSizeRatio: round(ratio, 3) }));
    return {
      sections: [
        {
          title: `Bytes as a multiple of GDAL's (DEFLATE level 6, same predicted tiles), worst tile, ms per tile (${size} x ${size}; engine in use: ${deflateEngine()})`,
          body: table(rows),
        },
        { title: 'Worst image per engine (target <= 1.02)', body: table(summary) },
      ],
    };
  },
};

if (import.meta.main) await runStandalone(deflateBench);
