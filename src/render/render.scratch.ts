/** Scratch buffers: the typed arrays a render works in, kept between renders of this thread (bounded). */

/** Elements of the largest scratch buffer kept for later renders (larger windows allocate theirs and drop them). */
const SCRATCH_KEEP_ELEMENTS = 1 << 20;
/** Scratch sets kept between renders (each render in flight takes one). */
export const SCRATCH_KEEP_SETS = 4;

/** Buffers one render call works in and gives back; never part of its result. */
export class RenderScratch {
  private validBuf = new Uint8Array(0);
  private accBufs: Float64Array[] = [];
  private countsBuf = new Uint32Array(0);
  private rowsBuf = new Float64Array(0);
  private idxBuf = new Int32Array(0);

  valid(n: number): Uint8Array {
    if (this.validBuf.length < n) this.validBuf = new Uint8Array(n);
    return this.validBuf.subarray(0, n);
  }

  acc(nb: number, n: number): Float64Array[] {
    const out: Float64Array[] = [];
    for (let b = 0; b < nb; b++) {
      if (!(this.accBufs[b]?.length >= n)) this.accBufs[b] = new Float64Array(n);
      out.push(this.accBufs[b].subarray(0, n));
    }
    return out;
  }

  counts(n: number): Uint32Array {
    if (this.countsBuf.length < n) this.countsBuf = new Uint32Array(n);
    return this.countsBuf.subarray(0, n);
  }

  /** Four rows of `len` positions. */
  rows(len: number): [Float64Array, Float64Array, Float64Array, Float64Array] {
    if (this.rowsBuf.length < 4 * len) this.rowsBuf = new Float64Array(4 * len);
    const r = this.rowsBuf;
    return [r.subarray(0, len), r.subarray(len, 2 * len), r.subarray(2 * len, 3 * len), r.subarray(3 * len, 4 * len)];
  }

  idx(len: number): Int32Array {
    if (this.idxBuf.length < len) this.idxBuf = new Int32Array(len);
    return this.idxBuf;
  }

  /** Drop the buffers too large to keep. */
  trim(): void {
    if (this.validBuf.length > SCRATCH_KEEP_ELEMENTS) this.validBuf = new Uint8Array(0);
    this.accBufs = this.accBufs.filter((a) => a.length <= SCRATCH_KEEP_ELEMENTS);
    if (this.countsBuf.length > SCRATCH_KEEP_ELEMENTS) this.countsBuf = new Uint32Array(0);
    if (this.rowsBuf.length > SCRATCH_KEEP_ELEMENTS) this.rowsBuf = new Float64Array(0);
    if (this.idxBuf.length > SCRATCH_KEEP_ELEMENTS) this.idxBuf = new Int32Array(0);
  }
}

/** Scratch sets free for the next render of this thread (filled as renders finish, bounded). */
export const scratchFree: RenderScratch[] = [];
