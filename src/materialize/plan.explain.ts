/**
 * A plan explained before any pixel is read (`--dry-run`, `dryRun=true`): levels and their sizes, tiles, shards and
 * their part ranges, BigTIFF or not, the sources each level reads (and whether each has an overview fit for it),
 * the source bytes that should take, and the range the output size falls in. Only headers are read.
 */
import type { Engine } from '../render/engine.ts';
import { explainRender } from '../render/mosaic.explain.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { CLASSIC_TIFF_MAX_OFFSET, layoutCog, maxTilePayloadBytes } from './cog.layout.ts';
import { levelGrid } from './cog.tiles.ts';
import { S3_MAX_PART_BYTES, S3_MAX_PARTS, S3_MIN_PART_BYTES } from './part.plan.ts';
import type { MaterializeOptions } from './pipeline.options.ts';
import { type MaterializePlan, planLayout, planMaterialization } from './plan.ts';
import { choosePredictor } from './predictor.choice.ts';
import { isStaged, type Sink, type SinkLimits, type SinkStaged } from './sink.ts';

export interface PlanExplainSource {
  readonly href: string;
  /** the source's own overview level read (0 = full resolution) */
  readonly overview: number | null;
  /** source pixels per output pixel */
  readonly decimation: number;
  /** false when the level is 2x or more coarser than the source and no overview of the source is used */
  readonly usableOverview: boolean;
  readonly bytes: number | null;
}

export interface PlanExplain {
  readonly destination: string;
  readonly width: number;
  readonly height: number;
  readonly bands: number;
  readonly dtype: string;
  readonly options: MaterializePlan['options'];
  readonly tiles: number;
  readonly levels: readonly {
    readonly level: number;
    readonly width: number;
    readonly height: number;
    readonly tiles: number;
    readonly sources: readonly PlanExplainSource[];
    readonly sourceBytes: number | null;
  }[];
  readonly partSizeBytes: number;
  readonly shards: readonly {
    readonly index: number;
    readonly tiles: [number, number];
    readonly parts: [number, number];
  }[];
  /** "no": classic TIFF whatever the compression; "yes": always; "maybe": depends on how well tiles compress */
  readonly bigTiff: 'no' | 'maybe' | 'yes';
  readonly estimatedSourceBytes: number | null;
  /** header alone (every tile empty) .. every tile incompressible */
  readonly outputBytes: { readonly min: number; readonly max: number };
}

export async function explainPlan(
  engine: Engine,
  mosaic: Mosaic,
  plan: MaterializePlan,
  signal?: AbortSignal,
): Promise<PlanExplain> {
  const layout = planLayout(mosaic, plan);
  const upper = maxTilePayloadBytes(layout.spec) + layout.tileFrameBytes;
  const maxData = upper * layout.tileCount;
  const big = layoutCog({ ...layout.spec, bigTiff: true });
  const bigTiff =
    layout.headerBytes + maxData <= CLASSIC_TIFF_MAX_OFFSET
      ? 'no'
      : layout.headerBytes + layout.tileCount * layout.tileFrameBytes > CLASSIC_TIFF_MAX_OFFSET
        ? 'yes'
        : 'maybe';
  let total: number | null = 0;
  const levels: PlanExplain['levels'][number][] = [];
  for (const l of layout.levels) {
    const ex = await explainRender(engine, mosaic, levelGrid(mosaic, l), {
      headers: true,
      resampling: l.level === 0 ? plan.options.resampling : plan.options.overviewResampling,
      signal,
    });
    const sources = ex.items.flatMap((it) =>
      it.assets.map((a) => ({
        href: a.href,
        overview: a.level,
        decimation: Math.round(a.decimation * 100) / 100,
        usableOverview: !(a.decimation >= 2 && (a.level ?? 0) === 0),
        bytes: a.bytes ?? null,
      })),
    );
    levels.push({
      level: l.level,
      width: l.width,
      height: l.height,
      tiles: l.tileCount,
      sources,
      sourceBytes: ex.totals.bytes,
    });
    total = total === null || ex.totals.bytes === null ? null : total + ex.totals.bytes;
  }
  return {
    destination: plan.destination,
    width: plan.width,
    height: plan.height,
    bands: plan.bands,
    dtype: plan.dtype,
    options: plan.options,
    tiles: plan.tileCount,
    levels,
    partSizeBytes: plan.partSizeBytes,
    shards: plan.shards.map((s) => ({
      index: s.index,
      tiles: [s.firstTile, s.endTile] as [number, number],
      parts: [s.partBase, s.partBase + s.partSlots - 1] as [number, number],
    })),
    bigTiff,
    estimatedSourceBytes: total,
    outputBytes: { min: layout.headerBytes, max: (bigTiff === 'no' ? layout.headerBytes : big.headerBytes) + maxData },
  };
}

/**
 * Explain materialising `mosaic` into `sink` as the run would plan it: `shards` runs of tiles to a staged or parts
 * sink, one to a file (written in file order). No upload is created, nothing is written; the only pixels read
 * are the one or two tiles that choose an 'auto' predictor (predictor.choice.ts), as the run chooses it.
 */
export async function explainMaterialization(
  engine: Engine,
  mosaic: Mosaic,
  sink: Sink | SinkStaged,
  options: MaterializeOptions,
  shards: number,
  signal?: AbortSignal,
): Promise<PlanExplain> {
  const sequential = !isStaged(sink) && sink.mode === 'sequential';
  const limits: SinkLimits = isStaged(sink)
    ? sink.limits
    : sink.mode === 'sequential'
      ? { minPartBytes: 1, maxPartBytes: S3_MAX_PART_BYTES, maxParts: S3_MAX_PARTS }
      : {
          minPartBytes: sink.minPartBytes ?? S3_MIN_PART_BYTES,
          maxPartBytes: S3_MAX_PART_BYTES,
          maxParts: sink.maxParts ?? S3_MAX_PARTS,
        };
  const plan = planMaterialization({
    mosaic,
    options: await choosePredictor(engine, mosaic, options, signal),
    destination: sink.location,
    limits: options.minPartBytes !== undefined ? { ...limits, minPartBytes: options.minPartBytes } : limits,
    shards: sequential ? 1 : shards,
  });
  return explainPlan(engine, mosaic, plan, signal);
}
