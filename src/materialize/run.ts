/**
 * A materialisation that survives its processes: the plan and every shard's report are kept as notes next to the
 * destination (S3: `KEY.cogmill/plan.json`, `KEY.cogmill/shard-000007.json`), so any process can run a shard, the
 * complete step can run anywhere, and a run that died part-way is resumed by running the same command again:
 *
 * 1. plan (pure); if the destination holds a saved plan with the same fingerprint whose upload is still open, take
 *    it (resume); else create a new upload and save the plan;
 * 2. a shard is done when its report is saved and every part it names is in ListParts with the same ETag and size;
 *    only the other shards run again;
 * 3. complete, then remove the notes.
 * Other unfinished uploads to the same key (stale ones, from runs that cannot be resumed) are listed, and aborted
 * when asked. The notes are removed on completion and on abort.
 */
import type { Engine } from '../render/engine.ts';
import { CogmillError } from '../render/errors.ts';
import type { Mosaic } from '../render/mosaic.ts';
import type { MaterializeOptions } from './pipeline.options.ts';
import { checkPlanFits, type MaterializePlan, parsePlan, planMaterialization } from './plan.ts';
import { parseShardReport, type ShardReport } from './shard.ts';
import type { SinkStaged, StagedPart, UploadInfo } from './sink.ts';

export const PLAN_NOTE = 'plan.json';

export function reportNote(shard: number): string {
  return `shard-${String(shard).padStart(6, '0')}.json`;
}

export interface Prepared {
  readonly plan: MaterializePlan;
  /** reports of the shards already done (by shard index; undefined = to do) */
  readonly reports: (ShardReport | undefined)[];
  readonly resumed: boolean;
  /** unfinished uploads to the key other than this one */
  readonly stale: readonly UploadInfo[];
  /** stale uploads aborted on request */
  readonly aborted: readonly string[];
}

export interface PrepareOptions {
  readonly options: MaterializeOptions;
  readonly shards: number;
  /** take up a saved plan of the same mosaic and options (default true) */
  readonly resume?: boolean;
  /** abort the other unfinished uploads to the key */
  readonly abortStale?: boolean;
  readonly signal?: AbortSignal;
}

/** The saved plan of a destination, if any (a damaged one counts as none). */
export async function savedPlan(sink: SinkStaged, signal?: AbortSignal): Promise<MaterializePlan | undefined> {
  const text = await sink.getNote(PLAN_NOTE, signal);
  if (text === undefined) return undefined;
  try {
    return parsePlan(text);
  } catch {
    return undefined;
  }
}

/** Reports of `plan` saved at the destination whose parts are all still staged as reported. */
export async function doneReports(
  sink: SinkStaged,
  plan: MaterializePlan,
  signal?: AbortSignal,
): Promise<(ShardReport | undefined)[]> {
  const names = new Set(await sink.listNotes(signal));
  const staged = new Map<number, StagedPart>((await sink.listStaged(signal)).map((p) => [p.partNumber, p]));
  const out: (ShardReport | undefined)[] = plan.shards.map(() => undefined);
  for (const s of plan.shards) {
    if (!names.has(reportNote(s.index))) continue;
    const text = await sink.getNote(reportNote(s.index), signal);
    if (text === undefined) continue;
    let r: ShardReport;
    try {
      r = parseShardReport(text, plan);
    } catch {
      continue;
    }
    const intact = r.parts.every((p) => {
      const there = staged.get(p.partNumber);
      return there !== undefined && there.etag === p.etag && there.bytes === p.bytes;
    });
    if (intact) out[s.index] = r;
  }
  return out;
}

/** Plan, or take up the saved plan (resume); create the upload when new; save the plan next to the destination. */
export async function prepare(mosaic: Mosaic, sink: SinkStaged, o: PrepareOptions): Promise<Prepared> {
  const planned = planMaterialization({
    mosaic,
    options: o.options,
    destination: sink.location,
    limits:
      o.options.minPartBytes !== undefined ? { ...sink.limits, minPartBytes: o.options.minPartBytes } : sink.limits,
    shards: o.shards,
  });
  const uploads = await sink.listUploads(o.signal);
  const saved = o.resume === false ? undefined : await savedPlan(sink, o.signal);
  const resumable =
    saved !== undefined &&
    saved.fingerprint === planned.fingerprint &&
    saved.uploadId !== null &&
    uploads.some((u) => u.uploadId === saved.uploadId);
  const stale = uploads.filter((u) => !(resumable && u.uploadId === saved!.uploadId));
  const aborted: string[] = [];
  if (o.abortStale) {
    for (const u of stale) {
      await sink.abortUpload(u.uploadId, o.signal);
      aborted.push(u.uploadId);
    }
  }
  if (resumable) {
    sink.attach(saved!.uploadId!);
    const reports = await doneReports(sink, saved!, o.signal);
    return { plan: saved!, reports, resumed: true, stale: o.abortStale ? [] : stale, aborted };
  }
  await sink.clearNotes(o.signal);
  const uploadId = await sink.create(o.signal);
  const plan: MaterializePlan = { ...planned, uploadId };
  await sink.putNote(PLAN_NOTE, JSON.stringify(plan), o.signal);
  return { plan, reports: plan.shards.map(() => undefined), resumed: false, stale: o.abortStale ? [] : stale, aborted };
}

/** Load a plan for a shard or complete step: from a file's text, checked against the mosaic it names. */
export function planFor(text: string, mosaic: Mosaic): MaterializePlan {
  const plan = parsePlan(text);
  checkPlanFits(plan, mosaic);
  if (plan.uploadId === null)
    throw new CogmillError('bad-request', `the plan ${plan.id} has no upload yet: make it with --plan-out`);
  return plan;
}

export async function saveReport(sink: SinkStaged, report: ShardReport, signal?: AbortSignal): Promise<void> {
  await sink.putNote(reportNote(report.shard), JSON.stringify(report), signal);
}

/** Engine + mosaic of a plan, for processes that only have the plan. */
export async function openPlanMosaic(engine: Engine, plan: MaterializePlan, signal?: AbortSignal): Promise<Mosaic> {
  // a plan is written by an operator's coordinator (plan file, queue, next to the destination): its sources are
  // trusted like configured ones; the fingerprint check below refuses a plan whose sources changed
  engine.trust(plan.mosaic.sources);
  const mosaic = await engine.openMosaic(plan.mosaic, signal);
  checkPlanFits(plan, mosaic);
  return mosaic;
}
