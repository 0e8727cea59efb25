/**
 * Band statistics whose sums are exact, so they do not depend on how tiles were grouped: a shard adds its tiles'
 * sums into exact accumulators, the complete step adds the shards' accumulators, and the result is the same bits
 * whatever the number of shards, machines or threads. Each tile's own sums are doubles (accumulated pixel by pixel
 * in a fixed order); they are added as exact binary fractions (a double is an integer multiple of 2^-1074, kept as
 * a BigInt) and rounded to a double once, at the end. A shard's accumulator is a few hundred bytes of JSON.
 */
import type { BandAccumulator } from './statistics.xml.ts';

/** One band, exactly: sums are hexadecimal integers in units of 2^-1074 (JSON-safe, a few hundred characters). */
export interface BandStatsExact {
  readonly count: number;
  readonly sum: string;
  readonly sumSq: string;
  /** null when no valid pixel was seen */
  readonly min: number | null;
  readonly max: number | null;
}

const view = new DataView(new ArrayBuffer(8));

/** x as an integer number of 2^-1074 (exact for every finite double). */
export function scaledOf(x: number): bigint {
  if (x === 0 || !Number.isFinite(x)) return 0n;
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const exp = Number((bits >> 52n) & 0x7ffn);
  const mant = bits & ((1n << 52n) - 1n);
  const abs = exp === 0 ? mant : (mant | (1n << 52n)) << BigInt(exp - 1);
  return bits >> 63n ? -abs : abs;
}

/** The double nearest an integer number of 2^-1074 (the same input always gives the same bits). */
export function doubleOfScaled(s: bigint): number {
  if (s === 0n) return 0;
  const neg = s < 0n;
  const a = neg ? -s : s;
  const bitLength = a.toString(2).length;
  const shift = Math.max(0, bitLength - 64);
  let top = a >> BigInt(shift);
  // a sticky bit keeps the rounding of the 64 -> 53 bit conversion correct
  if (shift > 0 && (a & ((1n << BigInt(shift)) - 1n)) !== 0n) top |= 1n;
  const v = Number(top) * 2 ** (shift - 1074);
  return neg ? -v : v;
}

function hex(b: bigint): string {
  return b < 0n ? `-${(-b).toString(16)}` : b.toString(16);
}

function unhex(s: string): bigint {
  if (!/^-?[0-9a-f]+$/.test(s)) throw new RangeError(`"${s.slice(0, 40)}" is not an exact sum`);
  return s.startsWith('-') ? -BigInt(`0x${s.slice(1)}`) : BigInt(`0x${s}`);
}

/** Exact accumulators of `bands` bands: add tiles (doubles) or other exact accumulators, in any order. */
export class StatsExact {
  private readonly count: number[];
  private readonly sum: bigint[];
  private readonly sumSq: bigint[];
  private readonly min: number[];
  private readonly max: number[];

  constructor(bands: number) {
    this.count = new Array(bands).fill(0);
    this.sum = new Array(bands).fill(0n);
    this.sumSq = new Array(bands).fill(0n);
    this.min = new Array(bands).fill(Number.POSITIVE_INFINITY);
    this.max = new Array(bands).fill(Number.NEGATIVE_INFINITY);
  }

  get bands(): number {
    return this.count.length;
  }

  /** add one tile's accumulators */
  addTile(acc: readonly BandAccumulator[]): void {
    for (let b = 0; b < this.bands; b++) {
      const a = acc[b];
      this.count[b] += a.count;
      this.sum[b] += scaledOf(a.sum);
      this.sumSq[b] += scaledOf(a.sumSq);
      if (a.min < this.min[b]) this.min[b] = a.min;
      if (a.max > this.max[b]) this.max[b] = a.max;
    }
  }

  /** add another exact accumulator (a shard's) */
  addExact(bands: readonly BandStatsExact[]): void {
    if (bands.length !== this.bands) throw new RangeError(`statistics of ${bands.length} bands, not ${this.bands}`);
    for (let b = 0; b < this.bands; b++) {
      const x = bands[b];
      this.count[b] += x.count;
      this.sum[b] += unhex(x.sum);
      this.sumSq[b] += unhex(x.sumSq);
      if (x.min !== null && x.min < this.min[b]) this.min[b] = x.min;
      if (x.max !== null && x.max > this.max[b]) this.max[b] = x.max;
    }
  }

  toJSON(): BandStatsExact[] {
    return this.count.map((count, b) => ({
      count,
      sum: hex(this.sum[b]),
      sumSq: hex(this.sumSq[b]),
      min: Number.isFinite(this.min[b]) ? this.min[b] : null,
      max: Number.isFinite(this.max[b]) ? this.max[b] : null,
    }));
  }

  /** the accumulators rounded to doubles, for the GDAL_METADATA document */
  toAccumulators(): BandAccumulator[] {
    return this.count.map((count, b) => ({
      count,
      sum: doubleOfScaled(this.sum[b]),
      sumSq: doubleOfScaled(this.sumSq[b]),
      min: this.min[b],
      max: this.max[b],
    }));
  }
}
