/**
 * One shard of a plan: render + encode its run of tiles in file order and stage them, straight to the destination,
 * as parts of its own number range. What it returns (the report) is a few KB whatever the shard's size: tile byte
 * counts, the parts it staged (number, offset, size, ETag), the byte extents it held back, exact band statistics.
 *
 * Bytes of shard i, in order, are cut like this (m = the sink's smallest part, P = the plan's part size):
 * - shard 0 holds back its first m bytes (they follow the header in part 1, which the complete step makes last);
 * - the rest goes out as parts of exactly P bytes, numbered partBase + 1, +2, ..., while more than P + m bytes are
 *   waiting, and what is left at the end (>= m bytes) as one last part, so every part is >= m;
 * - a rest smaller than m (a tiny or mostly empty shard) is held back whole.
 * Held bytes are never kept: the complete step renders those few tiles again (encoding is deterministic) and
 * glues them. Memory: tiles in flight + less than P + m bytes per shard.
 *
 * A shard can run any number of times, anywhere: it produces the same bytes under the same part numbers.
 */
import { CogmillError } from '../render/errors.ts';
import type { CogLayout } from './cog.layout.ts';
import { frameTile } from './cog.layout.ts';
import type { Part } from './part.plan.ts';
import type { MaterializePlan, ShardRange } from './plan.ts';
import type { StagedPart } from './sink.ts';
import { type BandStatsExact, StatsExact } from './statistics.exact.ts';
import type { TileJobResult } from './tile.job.ts';
import type { TileRef } from './tile.pool.ts';

export const SHARD_REPORT_KIND = 'cogmill.materialize.shard';
/** framed bytes a streaming shard may queue for its sequential sink before rendering waits */
const STREAM_QUEUE_BYTES = 64 * 1024 * 1024;

/** Render + encode one tile (worker threads, inline, or anything else that gives the same bytes). */
export type TileRenderer = (tile: TileRef, signal?: AbortSignal) => Promise<TileJobResult>;

/** A staged part of a shard and where its bytes sit in the shard. */
export interface ShardPart extends StagedPart {
  /** offset of the part's first byte from the shard's first byte */
  readonly offset: number;
}

export interface ByteExtent {
  readonly offset: number;
  readonly bytes: number;
}

export interface ShardReport {
  readonly kind: typeof SHARD_REPORT_KIND;
  readonly planId: string;
  readonly fingerprint: string;
  readonly uploadId: string | null;
  readonly shard: number;
  /** framed bytes of the shard (its share of the file) */
  readonly bytes: number;
  /** payload byte count of each tile of the shard, in file order (0 = sparse) */
  readonly tileBytes: readonly number[];
  readonly parts: readonly ShardPart[];
  /** extents (from the shard's start) not staged: the complete step renders them again */
  readonly held: readonly ByteExtent[];
  /** exact band statistics of the shard's full-resolution tiles (null without statistics) */
  readonly stats: readonly BandStatsExact[] | null;
  /** tiles rendered by this run (counted for resume) */
  readonly tilesRendered: number;
}

/** Cuts a shard's bytes into parts (pure; `emit` gets each part as soon as it is complete). */
export class ShardWriter {
  private readonly plan: MaterializePlan;
  private readonly shard: ShardRange;
  private readonly emit: (part: Part, offset: number) => void;
  private readonly headBytes: number;
  private offset = 0;
  private buf: Uint8Array[] = [];
  private bufBytes = 0;
  private bufOffset = 0;
  private emitted = 0;

  constructor(plan: MaterializePlan, shard: ShardRange, emit: (part: Part, offset: number) => void) {
    this.plan = plan;
    this.shard = shard;
    this.emit = emit;
    // with no smallest part (Azure) part 1 can be the header alone: nothing is held
    this.headBytes = shard.index === 0 && plan.minPartBytes > 1 ? plan.minPartBytes : 0;
    this.bufOffset = this.headBytes;
  }

  push(chunk: Uint8Array): void {
    let c = chunk;
    if (this.offset < this.headBytes) {
      const skip = Math.min(c.byteLength, this.headBytes - this.offset);
      c = c.subarray(skip);
      this.offset += skip;
    }
    if (c.byteLength === 0) return;
    this.offset += c.byteLength;
    this.buf.push(c);
    this.bufBytes += c.byteLength;
    const size = this.plan.partSizeBytes;
    while (this.bufBytes >= size + this.plan.minPartBytes) this.send(size);
  }

  private send(n: number): void {
    if (this.emitted + 2 > this.shard.partSlots)
      throw new CogmillError('internal', `shard ${this.shard.index} produced more parts than its plan allows`);
    const chunks: Uint8Array[] = [];
    let left = n;
    while (left > 0) {
      const c = this.buf[0];
      if (c.byteLength <= left) {
        chunks.push(c);
        this.buf.shift();
        left -= c.byteLength;
      } else {
        chunks.push(c.subarray(0, left));
        this.buf[0] = c.subarray(left);
        left = 0;
      }
    }
    this.emitted++;
    const offset = this.bufOffset;
    this.bufBytes -= n;
    this.bufOffset += n;
    this.emit({ partNumber: this.shard.partBase + this.emitted, chunks, bytes: n }, offset);
  }

  /** The shard's last part (if it can stand alone) and the extents held back. */
  finish(): { bytes: number; held: ByteExtent[] } {
    const held: ByteExtent[] = [];
    const head = Math.min(this.offset, this.headBytes);
    if (head > 0) held.push({ offset: 0, bytes: head });
    if (this.bufBytes > 0) {
      if (this.emitted > 0 || this.bufBytes >= this.plan.minPartBytes) this.send(this.bufBytes);
      else {
        held.push({ offset: this.bufOffset, bytes: this.bufBytes });
        this.buf = [];
        this.bufBytes = 0;
      }
    }
    return { bytes: this.offset, held: mergeExtents(held) };
  }
}

function mergeExtents(list: ByteExtent[]): ByteExtent[] {
  const out: ByteExtent[] = [];
  for (const e of list) {
    const last = out.at(-1);
    if (last && last.offset + last.bytes === e.offset)
      out[out.length - 1] = { offset: last.offset, bytes: last.bytes + e.bytes };
    else out.push(e);
  }
  return out;
}

export interface ShardDeps {
  readonly plan: MaterializePlan;
  readonly layout: CogLayout;
  readonly render: TileRenderer;
  /** stage a part at the destination (bounded and retried by the caller) */
  readonly stage: (part: Part) => Promise<StagedPart>;
  /**
   * Instead of parts: every framed tile in file order to a sequential sink (a file). Writes are chained; the shard
   * waits when more than 64 MiB are queued.
   */
  readonly write?: (chunk: Uint8Array) => Promise<void>;
  readonly signal?: AbortSignal;
  /** tiles rendered at once (default 4) */
  readonly tilesInFlight?: number;
  /** parts being staged at once before rendering waits (default 4) */
  readonly stagesInFlight?: number;
  /** after each tile, in file order */
  readonly onTile?: (done: number, total: number) => void;
  /** after each staged part */
  readonly onPart?: (part: StagedPart) => void;
}

/**
 * Run shard `index` of the plan; resolves with its report once every part is staged. On failure or abort it
 * rejects (parts already staged stay staged: a later run overwrites them with the same bytes).
 */
export async function runShard(index: number, deps: ShardDeps): Promise<ShardReport> {
  const { plan, layout, signal } = deps;
  const shard = plan.shards[index];
  if (!shard) throw new CogmillError('bad-request', `the plan has no shard ${index} (it has ${plan.shards.length})`);
  const count = shard.endTile - shard.firstTile;
  const tileBytes = new Array<number>(count).fill(0);
  const stats = plan.options.statistics ? new StatsExact(plan.bands) : undefined;
  const parts: ShardPart[] = [];
  const staging = new Set<Promise<void>>();
  let stageError: unknown;
  const maxStages = Math.max(1, deps.stagesInFlight ?? 4);
  const writer = new ShardWriter(plan, shard, (part, offset) => {
    const p = deps.stage(part).then(
      (staged) => {
        parts.push({ ...staged, offset });
        deps.onPart?.(staged);
      },
      (e) => {
        stageError ??= e;
      },
    );
    const tracked = p.finally(() => staging.delete(tracked));
    staging.add(tracked);
  });

  let writes: Promise<void> = Promise.resolve();
  let writesQueuedBytes = 0;
  let writeError: unknown;
  const write = deps.write;
  const push = (framed: Uint8Array) => {
    if (!write) return writer.push(framed);
    writesQueuedBytes += framed.byteLength;
    writes = writes.then(async () => {
      if (writeError !== undefined) return;
      try {
        await write(framed);
      } catch (e) {
        writeError ??= e;
      }
      writesQueuedBytes -= framed.byteLength;
    });
  };
  let streamBytes = 0;

  const ready = new Map<number, TileJobResult>();
  let next = 0;
  let done = 0;
  let failure: unknown;
  const deliver = () => {
    while (ready.has(next)) {
      const r = ready.get(next)!;
      ready.delete(next);
      tileBytes[next] = r.payload.byteLength;
      if (stats && r.stats) stats.addTile(r.stats);
      const framed = r.framed ?? frameTile(layout, r.payload);
      streamBytes += framed.byteLength;
      push(framed);
      next++;
      done++;
      deps.onTile?.(done, count);
    }
  };
  const inflight = new Set<Promise<void>>();
  const maxTiles = Math.max(1, deps.tilesInFlight ?? 4);
  for (let i = 0; i < count && failure === undefined; i++) {
    signal?.throwIfAborted();
    if (stageError !== undefined) throw stageError;
    if (writeError !== undefined) throw writeError;
    const ref = layout.tileAtFileIndex(shard.firstTile + i);
    const task = deps.render(ref, signal).then(
      (r) => {
        ready.set(i, r);
        deliver();
      },
      (e) => {
        failure ??= e;
      },
    );
    const tracked = task.finally(() => inflight.delete(tracked));
    inflight.add(tracked);
    while (inflight.size >= maxTiles) await Promise.race(inflight);
    while (staging.size >= maxStages) await Promise.race(staging);
    if (writesQueuedBytes > STREAM_QUEUE_BYTES) await writes;
  }
  await Promise.all(inflight);
  if (failure !== undefined) {
    await Promise.allSettled(staging);
    throw failure;
  }
  await writes;
  if (writeError !== undefined) throw writeError;
  const { bytes, held } = write ? { bytes: streamBytes, held: [] } : writer.finish();
  await Promise.all(staging);
  if (stageError !== undefined) throw stageError;
  signal?.throwIfAborted();
  parts.sort((a, b) => a.partNumber - b.partNumber);
  return {
    kind: SHARD_REPORT_KIND,
    planId: plan.id,
    fingerprint: plan.fingerprint,
    uploadId: plan.uploadId,
    shard: index,
    bytes,
    tileBytes,
    parts,
    held,
    stats: stats ? stats.toJSON() : null,
    tilesRendered: count,
  };
}

/** Read a shard report (from a queue or a note); one of another plan or upload is refused. */
export function parseShardReport(text: string, plan: MaterializePlan): ShardReport {
  let r: ShardReport;
  try {
    r = JSON.parse(text) as ShardReport;
  } catch (e) {
    throw new CogmillError('corrupt', `a shard report is not JSON: ${(e as Error).message}`);
  }
  const shard = plan.shards[r?.shard];
  if (r?.kind !== SHARD_REPORT_KIND || !shard) throw new CogmillError('corrupt', 'not a shard report of this plan');
  if (r.planId !== plan.id || r.fingerprint !== plan.fingerprint || r.uploadId !== plan.uploadId)
    throw new CogmillError('changed', `the report of shard ${r.shard} belongs to another plan or upload`);
  if (!Array.isArray(r.tileBytes) || r.tileBytes.length !== shard.endTile - shard.firstTile)
    throw new CogmillError('corrupt', `the report of shard ${r.shard} has the wrong number of tiles`);
  return r;
}
