/**
 * Peak RSS of a materialisation at two input sizes, one 4x the other in pixels (the north-west quarter of a scene,
 * then the whole scene): the growth must stay under 20%, since memory is bounded by parallelism and part size,
 * not by the mosaic. `gdal_translate -of COG` of the same inputs for reference.
 *
 *   node bench/memory.bench.ts [--small]
 */
import path from 'node:path';
import { type Bench, runStandalone } from './harness.ts';
import { cogmillMaterialize, gdalCogOptions, warmInputs } from './materialize.bench.ts';
import { measured, mib, note, round, table } from './support.ts';

export const memoryBench: Bench = {
  name: 'memory',
  title: 'Peak RSS of a materialisation at two input sizes (4x the pixels)',
  async run(ctx) {
    const { s2Quarter, s2West } = ctx.data;
    const roots = [ctx.data.dir];
    const rows: Record<string, unknown>[] = [];
    const peaks: Record<string, { cogmill: number; gdal: number }> = {};
    for (const [label, input] of [
      ['quarter', s2Quarter],
      ['full', s2West],
    ] as const) {
      await warmInputs([input.cog]);
      const ours = await cogmillMaterialize(
        { id: label, sources: [input.cog] },
        path.join(ctx.outDir, `${label}.cogmill.tif`),
        roots,
      );
      const gdal = await measured(
        'gdal_translate',
        ['-q', '-of', 'COG', ...gdalCogOptions(), input.cog, path.join(ctx.outDir, `${label}.gdal.tif`)],
        {
          timeoutMs: 3_600_000,
        },
      );
      peaks[label] = { cogmill: ours.peakRssBytes, gdal: gdal.peakRssBytes };
      for (const [tool, m] of [
        ['cogmill', ours],
        ['gdal_translate', gdal],
      ] as const) {
        const row = {
          input: `${label} (${input.width} x ${input.height})`,
          tool,
          peakRssMiB: mib(m.peakRssBytes),
          wallS: round(m.wallMs / 1000),
          cpuS: m.cpuSeconds,
        };
        rows.push(row);
        ctx.emit(row);
        note(`  ${label} ${tool}: ${row.peakRssMiB} MiB peak, ${row.wallS} s`);
      }
    }
    const growth = (k: 'cogmill' | 'gdal') => round((peaks.full[k] / peaks.quarter[k] - 1) * 100, 1);
    const summary = {
      cogmillGrowthPct: growth('cogmill'),
      gdalGrowthPct: growth('gdal'),
      cogmillFullPeakMiB: mib(peaks.full.cogmill),
    };
    ctx.emit(summary);
    return {
      sections: [
        {
          title: `Growth for 4x the pixels: cogmill ${summary.cogmillGrowthPct}% (target < 20%), gdal_translate ${summary.gdalGrowthPct}%`,
          body: table(rows),
        },
      ],
    };
  },
};

if (import.meta.main) await runStandalone(memoryBench);
