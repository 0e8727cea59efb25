/**
 * The multipart plan, pure: how a COG whose tile sizes are unknown in advance is cut into S3 parts while tiles are
 * still being produced, with the header (part 1) uploaded last.
 *
 * The file is header | run 0 | run 1 | ... where each run is a contiguous range of tiles in file order with its
 * own range of part numbers, so runs can be produced in parallel (threads here, or other machines). A run holds
 * back its first `minPartBytes` (its head) and its last bytes (its tail, < partSizeBytes); everything between goes
 * out as parts of exactly `partSizeBytes` as soon as it is there. When a run ends, its tail is glued to the next
 * run's head (and to any run too small to have parts of its own) into a legal part (>= minPartBytes unless it is
 * the very last). Part 1 is the header followed by run 0's head, uploaded at the very end.
 *
 * S3 rules respected: part numbers 1..10,000, increasing in file order (gaps allowed), every part but the last
 * >= 5 MiB and <= 5 GiB.
 */
import { GiB, MiB } from '../render/types.ts';

export const S3_MIN_PART_BYTES = 5 * MiB;
export const S3_MAX_PART_BYTES = 5 * GiB;
export const S3_MAX_PARTS = 10_000;

export interface RunRange {
  readonly index: number;
  /** first tile (file index) of the run, inclusive */
  readonly firstTile: number;
  /** end tile (file index), exclusive */
  readonly endTile: number;
  /** the run's part numbers are [partBase, partBase + partSlots) */
  readonly partBase: number;
  readonly partSlots: number;
}

export interface PartPlan {
  readonly partSizeBytes: number;
  readonly minPartBytes: number;
  readonly runs: readonly RunRange[];
}

/**
 * Plan runs over `tileUpperBytes` (an upper bound of each tile's framed size, in file order), with `runCount` runs of
 * about equal upper-bound size. Part size: at least `minPartSizeBytes`, large enough that even incompressible data
 * fits in 10,000 parts.
 */
export function planParts(
  tileUpperBytes: ArrayLike<number>,
  runCount: number,
  options: { minPartSizeBytes?: number; minPartBytes?: number; maxParts?: number } = {},
): PartPlan {
  const minPartBytes = options.minPartBytes ?? S3_MIN_PART_BYTES;
  const maxParts = options.maxParts ?? S3_MAX_PARTS;
  const n = tileUpperBytes.length;
  let total = 0;
  for (let i = 0; i < n; i++) total += tileUpperBytes[i];
  const runs = Math.max(1, Math.min(runCount, n || 1));
  // slots: 1 for the header part, per run 2 spare (glue) + its middle parts
  const available = maxParts - 1 - 2 * runs;
  if (available < runs) throw new RangeError(`too many runs (${runs}) for ${maxParts} parts`);
  let partSize = Math.max(options.minPartSizeBytes ?? 8 * MiB, minPartBytes, Math.ceil(total / (available - runs)));
  partSize = Math.ceil(partSize / MiB) * MiB;
  if (partSize > S3_MAX_PART_BYTES / 2) throw new RangeError('the output is too large for one multipart upload');
  // split tiles into runs of about equal upper-bound bytes
  const out: RunRange[] = [];
  const target = total / runs;
  let first = 0;
  let acc = 0;
  let base = 2; // part 1 is the header part
  for (let r = 0; r < runs; r++) {
    let end = first;
    if (r === runs - 1) {
      end = n;
      acc = 0;
      for (let i = first; i < n; i++) acc += tileUpperBytes[i];
    } else {
      acc = 0;
      while (end < n && (acc < target || end === first)) acc += tileUpperBytes[end++];
    }
    const slots = Math.ceil(acc / partSize) + 2;
    out.push({ index: r, firstTile: first, endTile: end, partBase: base, partSlots: slots });
    base += slots;
    first = end;
  }
  if (base - 1 > maxParts) throw new RangeError(`plan needs ${base - 1} parts, more than ${maxParts}`);
  return { partSizeBytes: partSize, minPartBytes, runs: out };
}

/** A part ready to upload: its number and its bytes as a list of chunks (concatenated in order). */
export interface Part {
  readonly partNumber: number;
  readonly chunks: readonly Uint8Array[];
  readonly bytes: number;
}

function total(chunks: readonly Uint8Array[]): number {
  let n = 0;
  for (const c of chunks) n += c.byteLength;
  return n;
}

/** Take exactly `n` bytes from the front of a chunk list (splitting a chunk if needed). */
function take(chunks: Uint8Array[], n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = n;
  while (left > 0 && chunks.length) {
    const c = chunks[0];
    if (c.byteLength <= left) {
      out.push(c);
      chunks.shift();
      left -= c.byteLength;
    } else {
      out.push(c.subarray(0, left));
      chunks[0] = c.subarray(left);
      left = 0;
    }
  }
  return out;
}

/** What a run leaves for the glue step when it ends. */
export interface RunResult {
  readonly index: number;
  readonly head: readonly Uint8Array[];
  readonly headBytes: number;
  /** parts the run uploaded itself (its middle) */
  readonly middleParts: number;
  readonly tail: readonly Uint8Array[];
  readonly tailBytes: number;
  readonly bytes: number;
}

/**
 * Streams one run's bytes: holds the head, emits middle parts of exactly partSizeBytes (numbered from
 * partBase + 1), keeps the tail. Memory held: head + less than two parts.
 */
export class RunWriter {
  readonly run: RunRange;
  private readonly plan: PartPlan;
  private readonly emit: (part: Part) => void;
  private head: Uint8Array[] = [];
  private headBytes = 0;
  private buf: Uint8Array[] = [];
  private bufBytes = 0;
  private middle = 0;
  private bytes = 0;

  constructor(plan: PartPlan, run: RunRange, emit: (part: Part) => void) {
    this.plan = plan;
    this.run = run;
    this.emit = emit;
  }

  /** True once the head is complete (the glue of the previous run can go). */
  get headReady(): boolean {
    return this.headBytes >= this.plan.minPartBytes;
  }

  /** The held head (valid once headReady or finished). */
  headChunks(): readonly Uint8Array[] {
    return this.head;
  }

  push(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength;
    let c = chunk;
    if (this.headBytes < this.plan.minPartBytes) {
      const need = this.plan.minPartBytes - this.headBytes;
      const h = c.subarray(0, need);
      this.head.push(h);
      this.headBytes += h.byteLength;
      c = c.subarray(h.byteLength);
      if (c.byteLength === 0) return;
    }
    this.buf.push(c);
    this.bufBytes += c.byteLength;
    // keep at least one byte back so the tail is never empty while more may come: emit while a full part plus more is held
    while (this.bufBytes > this.plan.partSizeBytes) {
      if (this.middle + 2 >= this.run.partSlots)
        throw new RangeError(`run ${this.run.index} produced more than its planned parts`);
      const chunks = take(this.buf, this.plan.partSizeBytes);
      this.bufBytes -= this.plan.partSizeBytes;
      this.middle++;
      this.emit({ partNumber: this.run.partBase + this.middle, chunks, bytes: this.plan.partSizeBytes });
    }
  }

  finish(): RunResult {
    return {
      index: this.run.index,
      head: this.head,
      headBytes: this.headBytes,
      middleParts: this.middle,
      tail: this.buf,
      tailBytes: this.bufBytes,
      bytes: this.bytes,
    };
  }
}

/**
 * Glues runs in file order as they finish. Part 1 takes the header and the first >= minPartBytes of data and is
 * held to the end; every other held piece goes out as soon as at least minPartBytes are pending, so memory held
 * here stays below one part plus one run's head and tail. Numbering: the pending data of run k goes out as part
 * `partBase_k` (never used by the run's middle parts, which start at partBase_k + 1); the very last part takes the
 * last number of the last run's range. Numbers therefore increase in file order.
 */
export class Gluer {
  private readonly plan: PartPlan;
  private readonly emit: (part: Part) => void;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private nextRun = 0;
  private readonly results = new Map<number, RunResult>();
  /** data of part 1 (after the header), once it holds at least minPartBytes */
  private headerData: Uint8Array[] | undefined;

  constructor(plan: PartPlan, emit: (part: Part) => void) {
    this.plan = plan;
    this.emit = emit;
  }

  private add(chunks: readonly Uint8Array[]): void {
    for (const c of chunks) {
      this.pending.push(c);
      this.pendingBytes += c.byteLength;
    }
  }

  /** Send what is pending as part `partNumber` (or keep it as part 1's data while part 1 is not full). */
  private flush(partNumber: number): void {
    if (this.pendingBytes === 0) return;
    if (!this.headerData) {
      this.headerData = this.pending;
    } else {
      if (this.pendingBytes < this.plan.minPartBytes)
        throw new RangeError(`part ${partNumber} would be only ${this.pendingBytes} bytes`);
      this.emit({ partNumber, chunks: this.pending, bytes: this.pendingBytes });
    }
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** Register a finished run; emits every part that became possible. */
  runFinished(result: RunResult): void {
    this.results.set(result.index, result);
    while (this.results.has(this.nextRun)) {
      const r = this.results.get(this.nextRun)!;
      this.results.delete(this.nextRun);
      const base = this.plan.runs[r.index].partBase;
      this.add(r.head);
      if (r.middleParts > 0) {
        // the run's middle parts follow its head: what is pending (head included, >= minPartBytes) goes first
        this.flush(base);
        this.add(r.tail);
      } else {
        this.add(r.tail);
        if (this.pendingBytes >= this.plan.minPartBytes) this.flush(base);
      }
      this.nextRun++;
    }
  }

  /**
   * All runs finished: emits the last part, if any, and returns part 1 (`header` followed by its data), which the
   * caller uploads last.
   */
  finish(header: Uint8Array): { headerPart: Part } {
    if (this.nextRun !== this.plan.runs.length)
      throw new Error(`runs ${this.nextRun}..${this.plan.runs.length - 1} not finished`);
    let data: Uint8Array[];
    if (!this.headerData) {
      // everything is smaller than one part: a single part holds the header and all data
      data = this.pending;
    } else {
      data = this.headerData;
      if (this.pendingBytes > 0) {
        const last = this.plan.runs[this.plan.runs.length - 1];
        this.emit({ partNumber: last.partBase + last.partSlots - 1, chunks: this.pending, bytes: this.pendingBytes });
      }
    }
    this.pending = [];
    this.pendingBytes = 0;
    const chunks = [header, ...data];
    return { headerPart: { partNumber: 1, chunks, bytes: total(chunks) } };
  }
}
