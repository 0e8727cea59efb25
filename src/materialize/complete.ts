/**
 * The complete step of a plan: from the shards' reports (a few KB each) it builds the header, glues the extents the
 * shards held back into legal parts, stages part 1 (header + first data) last and commits the upload.
 *
 * Held extents are small (shard 0's first m bytes, and shards whose bytes are fewer than m, m = the sink's smallest
 * part): their tiles are rendered again here (encoding is deterministic; each re-rendered tile's size is checked
 * against the size its shard reported) and staged as
 * - part 1 when they come first (with any staged part needed to make part 1 at least m bytes),
 * - a part of their own, numbered with the first held shard's free glue number, when they add up to >= m bytes,
 * - else together with the staged part that follows them (that part is rendered again and staged under the glue
 *   number; its old number is left out of the commit, which discards it),
 * - or as the very last part, which may be small.
 * So at most a few parts' worth of tiles are rendered here, and no tile byte a shard staged travels through this
 * process.
 */
import { CogmillError } from '../render/errors.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { buildHeader, type CogLayout, frameTile, layoutCog, needsBigTiff } from './cog.layout.ts';
import { cogSpecFor } from './pipeline.options.ts';
import type { MaterializePlan } from './plan.ts';
import { optionsOfPlan } from './plan.ts';
import type { ShardReport, TileRenderer } from './shard.ts';
import type { SinkResult, SinkStaged, StagedPart } from './sink.ts';
import { StatsExact } from './statistics.exact.ts';
import { statisticsXml } from './statistics.xml.ts';

/** One part of the final object: bytes [start, end) of the tile data (after the header). */
export type CompletionPart =
  | {
      readonly partNumber: number;
      readonly start: number;
      readonly end: number;
      readonly source: 'staged';
      readonly etag: string;
    }
  | { readonly partNumber: number; readonly start: number; readonly end: number; readonly source: 'render' };

export interface CompletionPlan {
  /** part 1 is the header followed by data bytes [0, part1End) */
  readonly part1End: number;
  /** every other part, in file order */
  readonly parts: readonly CompletionPart[];
  readonly dataBytes: number;
}

interface Item {
  readonly start: number;
  readonly end: number;
  readonly shard: number;
  readonly staged?: StagedPart;
}

/** Which bytes go into which part (pure). */
export function planCompletion(plan: MaterializePlan, reports: readonly ShardReport[]): CompletionPlan {
  const items: Item[] = [];
  let at = 0;
  for (const r of reports) {
    const local: Item[] = [
      ...r.parts.map((p) => ({ start: at + p.offset, end: at + p.offset + p.bytes, shard: r.shard, staged: p })),
      ...r.held.map((h) => ({ start: at + h.offset, end: at + h.offset + h.bytes, shard: r.shard })),
    ].sort((a, b) => a.start - b.start);
    let cursor = at;
    for (const it of local) {
      if (it.start !== cursor) throw new CogmillError('corrupt', `the report of shard ${r.shard} leaves a gap`);
      cursor = it.end;
    }
    if (cursor !== at + r.bytes) throw new CogmillError('corrupt', `the report of shard ${r.shard} does not add up`);
    items.push(...local);
    at += r.bytes;
  }
  const m = plan.minPartBytes;
  let i = 0;
  let part1End = 0;
  const absorbHeld = () => {
    while (i < items.length && !items[i].staged) part1End = items[i++].end;
  };
  absorbHeld();
  // part 1 must be >= m bytes when more parts follow (the header alone is enough when m is 1, as on Azure)
  while (m > 1 && i < items.length && part1End < m) {
    part1End = items[i++].end;
    absorbHeld();
  }
  const parts: CompletionPart[] = [];
  let pending: { start: number; end: number; partNumber: number } | undefined;
  for (; i < items.length; i++) {
    const it = items[i];
    if (!it.staged) {
      if (pending) pending.end = it.end;
      else pending = { start: it.start, end: it.end, partNumber: plan.shards[it.shard].partBase };
      continue;
    }
    if (pending && pending.end - pending.start < m) {
      parts.push({ partNumber: pending.partNumber, start: pending.start, end: it.end, source: 'render' });
    } else {
      if (pending) parts.push({ ...pending, source: 'render' });
      parts.push({
        partNumber: it.staged.partNumber,
        start: it.start,
        end: it.end,
        source: 'staged',
        etag: it.staged.etag,
      });
    }
    pending = undefined;
  }
  if (pending) parts.push({ ...pending, source: 'render' });
  return { part1End, parts, dataBytes: at };
}

export interface CompleteDeps {
  readonly plan: MaterializePlan;
  readonly mosaic: Mosaic;
  /** the plan's layout before sizes were known (planLayout) */
  readonly layout: CogLayout;
  readonly sink: SinkStaged;
  readonly render: TileRenderer;
  readonly signal?: AbortSignal;
  /** tiles rendered at once (default 4) */
  readonly tilesInFlight?: number;
}

export interface CompleteResult extends SinkResult {
  readonly tiles: number;
  readonly levels: number;
  readonly bigTiff: boolean;
  /** tiles rendered again by the complete step */
  readonly tilesRendered: number;
  /** bytes staged by the complete step (header included) */
  readonly bytesStaged: number;
}

/** The header of a plan's COG from the shards' reports. */
export function headerOf(
  plan: MaterializePlan,
  mosaic: Mosaic,
  reports: readonly ShardReport[],
): { header: Uint8Array; layout: CogLayout; counts: number[] } {
  const counts = reports.flatMap((r) => r.tileBytes);
  if (counts.length !== plan.tileCount)
    throw new CogmillError(
      'corrupt',
      `the reports give ${counts.length} tile sizes, the plan has ${plan.tileCount} tiles`,
    );
  let gdalMetadata: string | undefined;
  if (plan.options.statistics) {
    const stats = new StatsExact(plan.bands);
    for (const r of reports) {
      if (!r.stats) throw new CogmillError('corrupt', `the report of shard ${r.shard} has no statistics`);
      stats.addExact(r.stats);
    }
    gdalMetadata = statisticsXml(stats.toAccumulators(), plan.width * plan.height);
  }
  const spec = cogSpecFor(mosaic, optionsOfPlan(plan), gdalMetadata);
  const payloadTotal = counts.reduce((a, b) => a + b, 0);
  const layout = layoutCog({ ...spec, bigTiff: needsBigTiff(spec, payloadTotal) });
  return { header: buildHeader(layout, counts), layout, counts };
}

/** Checks the reports are one per shard, in order, and add up. */
export function checkReports(plan: MaterializePlan, reports: readonly (ShardReport | undefined)[]): ShardReport[] {
  const missing = plan.shards.filter((s) => !reports[s.index]).map((s) => s.index);
  if (missing.length)
    throw new CogmillError('conflict', `shards ${missing.slice(0, 20).join(', ')} have not reported yet`);
  return reports as ShardReport[];
}

/** Bytes [start, end) of the tile data, rendered again (sizes checked against the reports). */
async function renderRange(
  deps: CompleteDeps,
  counts: readonly number[],
  framedStart: Float64Array,
  start: number,
  end: number,
  onTile: () => void,
): Promise<Uint8Array> {
  const out = new Uint8Array(end - start);
  if (end <= start) return out;
  const frame = deps.layout.tileFrameBytes;
  // first tile whose framed bytes end after `start`
  let lo = 0;
  let hi = counts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (framedStart[mid + 1] > start) hi = mid;
    else lo = mid + 1;
  }
  const tiles: number[] = [];
  for (let t = lo; t < counts.length && framedStart[t] < end; t++) if (counts[t] > 0) tiles.push(t);
  const limit = Math.max(1, deps.tilesInFlight ?? 4);
  let next = 0;
  const work = async () => {
    while (next < tiles.length) {
      const t = tiles[next++];
      const r = await deps.render(deps.layout.tileAtFileIndex(t), deps.signal);
      onTile();
      if (r.payload.byteLength !== counts[t]) {
        throw new CogmillError(
          'internal',
          `tile ${t} encoded to ${r.payload.byteLength} bytes here and ${counts[t]} bytes in its shard: encoding is not deterministic on these machines (same cogmill version and libraries everywhere?)`,
        );
      }
      const framed = r.framed ?? frameTile(deps.layout, r.payload);
      const from = Math.max(start, framedStart[t]);
      const to = Math.min(end, framedStart[t] + counts[t] + frame);
      out.set(framed.subarray(from - framedStart[t], to - framedStart[t]), from - start);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tiles.length) }, work));
  return out;
}

/**
 * Glue, header, part 1, commit. Staged parts the reports name must be in the upload with the same ETag (else the
 * shard must run again: `conflict`). On failure nothing is aborted here: the caller decides (a retry of this step
 * is safe, as it stages the same bytes under the same numbers).
 */
export async function completeMaterialization(
  reports: readonly ShardReport[],
  deps: CompleteDeps,
): Promise<CompleteResult> {
  const { plan, mosaic, sink, signal } = deps;
  const { header, layout, counts } = headerOf(plan, mosaic, reports);
  const frame = deps.layout.tileFrameBytes;
  const framedStart = new Float64Array(counts.length + 1);
  for (let t = 0; t < counts.length; t++) framedStart[t + 1] = framedStart[t] + (counts[t] > 0 ? counts[t] + frame : 0);
  const completion = planCompletion(plan, reports);
  if (completion.dataBytes !== framedStart[counts.length])
    throw new CogmillError('corrupt', 'the shard reports do not agree with their own tile sizes');

  const listed = new Map((await sink.listStaged(signal)).map((p) => [p.partNumber, p]));
  for (const p of completion.parts) {
    if (p.source !== 'staged') continue;
    const there = listed.get(p.partNumber);
    if (!there || there.etag !== p.etag || there.bytes !== p.end - p.start) {
      throw new CogmillError(
        'conflict',
        `part ${p.partNumber} is not in the upload as its shard reported it (${there ? 'a different part is' : 'missing'}): run that shard again`,
      );
    }
  }
  let tilesRendered = 0;
  let bytesStaged = 0;
  const onTile = () => {
    tilesRendered++;
  };
  const finalParts: StagedPart[] = [];
  for (const p of completion.parts) {
    if (p.source === 'staged') {
      finalParts.push({ partNumber: p.partNumber, bytes: p.end - p.start, etag: p.etag });
      continue;
    }
    const bytes = await renderRange(deps, counts, framedStart, p.start, p.end, onTile);
    finalParts.push(await sink.stage({ partNumber: p.partNumber, chunks: [bytes], bytes: bytes.byteLength }, signal));
    bytesStaged += bytes.byteLength;
  }
  const first = await renderRange(deps, counts, framedStart, 0, completion.part1End, onTile);
  const part1 = await sink.stage(
    { partNumber: 1, chunks: [header, first], bytes: header.byteLength + first.byteLength },
    signal,
  );
  bytesStaged += part1.bytes;
  const result = await sink.commit([part1, ...finalParts], signal);
  if (result.bytes !== header.byteLength + completion.dataBytes) {
    throw new CogmillError(
      'internal',
      `the object is ${result.bytes} bytes, the COG should be ${header.byteLength + completion.dataBytes}`,
    );
  }
  return {
    ...result,
    tiles: plan.tileCount,
    levels: layout.levels.length,
    bigTiff: layout.bigTiff,
    tilesRendered,
    bytesStaged,
  };
}
