/**
 * The 'auto' predictor (src/materialize/predictor.choice.ts) on imagery the project did not generate
 * (bench/imagery.ts: GDAL's own tools): for each image, the predictor cogmill chooses from two of its tiles, and
 * the whole file GDAL writes with each candidate (`gdal_translate -of COG -co PREDICTOR=NO` and `=2` / `=3`, level
 * 6, 512 blocks). Reported: both sizes, the chosen one as a multiple of the smaller (1.000: the right pick).
 *
 *   node bench/predictor.bench.ts [--small]
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { choosePredictor } from '../src/materialize/predictor.choice.ts';
import { Engine } from '../src/render/engine.ts';
import { type Bench, runStandalone } from './harness.ts';
import { ensureImagery } from './imagery.ts';
import { note, round, run, table } from './support.ts';

export const predictorBench: Bench = {
  name: 'predictor',
  title: "The 'auto' predictor on GDAL-made imagery: chosen vs the smaller of GDAL's two files",
  async run(ctx) {
    const size = ctx.small ? 1024 : 2048;
    const images = await ensureImagery(size);
    const rows: Record<string, unknown>[] = [];
    let worst = 1;
    for (const image of images) {
      const engine = new Engine({ roots: [path.dirname(image.file)] });
      let chosen: number;
      try {
        const mosaic = await engine.openMosaic({ id: image.name, sources: [image.file] });
        const options = await choosePredictor(engine, mosaic, { blockSize: 512 });
        chosen = typeof options.predictor === 'number' ? options.predictor : Number.NaN;
      } finally {
        await engine.close();
      }
      const differencing = image.dtype === 'float32' ? 3 : 2;
      const bytes = new Map<number, number>();
      for (const p of [1, differencing]) {
        const out = path.join(ctx.outDir, `${image.name}-predictor-${p}.tif`);
        const name = p === 1 ? 'NO' : p === 3 ? 'FLOATING_POINT' : 'STANDARD';
        const resampling = image.categorical ? 'MODE' : 'AVERAGE';
        const co = ['COMPRESS=DEFLATE', `PREDICTOR=${name}`, 'BLOCKSIZE=512', `OVERVIEW_RESAMPLING=${resampling}`];
        await run('gdal_translate', ['-q', '-of', 'COG', ...co.flatMap((c) => ['-co', c]), image.file, out], {
          timeoutMs: 600_000,
        });
        bytes.set(p, (await stat(out)).size);
      }
      const best = Math.min(...bytes.values());
      const ratio = (bytes.get(chosen) ?? Number.NaN) / best;
      worst = Math.max(worst, ratio);
      const row = {
        image: image.name,
        type: `${image.dtype} x ${image.bands}`,
        chosen,
        noneBytes: bytes.get(1),
        differencingBytes: bytes.get(differencing),
        differencingOverNone: round((bytes.get(differencing) ?? 0) / (bytes.get(1) ?? 1), 3),
        chosenOverSmaller: round(ratio, 3),
      };
      rows.push(row);
      ctx.emit(row);
      note(`${image.name}: ${JSON.stringify(row)}`);
    }
    return {
      sections: [
        { title: `Chosen predictor and GDAL's file sizes (${size} x ${size}, DEFLATE level 6)`, body: table(rows) },
        { title: 'Worst chosen / smaller (1.000: every pick right)', body: `${round(worst, 3)}\n` },
      ],
    };
  },
};

if (import.meta.main) await runStandalone(predictorBench);
