/**
 * The compositor: where each source's values go for the mosaic's compositing rule (first, last, min, max, mean,
 * count), and the output conversion into the mosaic's type. The median rule is composite.median.ts.
 */
import type { RenderScratch } from './render.scratch.ts';
import { allocTyped, type Composite, type DType, dtypeRange, isFloat, type TypedArray } from './types.ts';

/** Runs shorter than this are copied pixel by pixel rather than with `set`. */
const RUN_SET_MIN = 16;

/**
 * Where the sources' values go: straight into arrays of the output type for 'first' and 'last' (one value per
 * pixel survives, stored as the output conversion would store it), Float64 accumulators for the other rules.
 * The output conversion: integers round half up (as GDAL does) and clamp to the type; floats are stored as they are.
 */
export class Composer {
  /** 255 where a pixel has a value: the result's mask */
  readonly mask: Uint8Array;
  validCount = 0;
  private readonly composite: Composite;
  private readonly dtype: DType;
  private readonly nb: number;
  private readonly n: number;
  private readonly float: boolean;
  private readonly lo: number;
  private readonly hi: number;
  private readonly fill: number;
  /** the result's bands ('first', 'last') */
  private readonly out: TypedArray[] | undefined;
  private readonly acc: Float64Array[] | undefined;
  private readonly counts: Uint32Array | undefined;
  private readonly px: Float64Array;

  constructor(dtype: DType, nb: number, n: number, composite: Composite, fill: number, scratch: RenderScratch) {
    this.composite = composite;
    this.dtype = dtype;
    this.nb = nb;
    this.n = n;
    this.float = isFloat(dtype);
    [this.lo, this.hi] = dtypeRange(dtype);
    this.fill = fill;
    this.mask = new Uint8Array(n);
    this.px = new Float64Array(nb);
    if (composite === 'first' || composite === 'last') {
      this.out = Array.from({ length: nb }, () => {
        const a = allocTyped(dtype, n);
        if (fill !== 0) a.fill(fill);
        return a;
      });
    } else {
      this.acc = scratch.acc(nb, n);
      if (composite === 'mean' || composite === 'count') this.counts = scratch.counts(n);
    }
  }

  /** `x` into `out[o]` as the output type holds it. */
  private store(out: TypedArray, o: number, x: number): void {
    if (this.float) {
      out[o] = x;
      return;
    }
    const r = Math.floor(x + 0.5);
    out[o] = Math.min(Math.max(r, this.lo), this.hi);
  }

  /** One source's value per band for pixel `o`. */
  put(o: number, px: Float64Array): void {
    const mask = this.mask;
    const nb = this.nb;
    const out = this.out;
    if (out) {
      if (mask[o] === 0) {
        mask[o] = 255;
        this.validCount++;
      } else if (this.composite === 'first') {
        return;
      }
      for (let b = 0; b < nb; b++) this.store(out[b], o, px[b]);
      return;
    }
    const acc = this.acc!;
    const composite = this.composite;
    if (mask[o] === 0) {
      mask[o] = 255;
      this.validCount++;
      for (let b = 0; b < nb; b++) acc[b][o] = composite === 'count' ? 1 : px[b];
      if (this.counts) this.counts[o] = 1;
      return;
    }
    switch (composite) {
      case 'min':
        for (let b = 0; b < nb; b++) if (px[b] < acc[b][o]) acc[b][o] = px[b];
        break;
      case 'max':
        for (let b = 0; b < nb; b++) if (px[b] > acc[b][o]) acc[b][o] = px[b];
        break;
      case 'mean':
        for (let b = 0; b < nb; b++) acc[b][o] += px[b];
        this.counts![o]++;
        break;
      case 'count':
        for (let b = 0; b < nb; b++) acc[b][o] += 1;
        break;
      default:
        break;
    }
  }

  /** Source pixels k .. k + m of `bands` into pixels o .. o + m, as they are (a `verbatim` source). */
  private copySegment(o: number, k: number, m: number, bands: readonly TypedArray[]): void {
    const out = this.out!;
    const mask = this.mask;
    for (let b = 0; b < this.nb; b++) {
      const src = bands[b];
      const dst = out[b];
      if (m >= RUN_SET_MIN) dst.set(src.subarray(k, k + m), o);
      else for (let i = 0; i < m; i++) dst[o + i] = src[k + i];
    }
    if (this.composite === 'first') {
      // the caller takes only pixels without a value
      mask.fill(255, o, o + m);
      this.validCount += m;
      return;
    }
    for (let i = o; i < o + m; i++) {
      if (mask[i] === 0) {
        mask[i] = 255;
        this.validCount++;
      }
    }
  }

  /** `copySegment` of one pixel (decimated nearest: every run is one pixel long). */
  private copyPixel(o: number, k: number, bands: readonly TypedArray[]): void {
    const out = this.out!;
    for (let b = 0; b < this.nb; b++) out[b][o] = bands[b][k];
    if (this.mask[o] === 0) {
      this.mask[o] = 255;
      this.validCount++;
    }
  }

  /** `put` of source pixel k of `bands` (0 + its value when `plusZero`) for pixel o. */
  private take(o: number, k: number, bands: readonly TypedArray[], plusZero: boolean): void {
    const px = this.px;
    const nb = this.nb;
    if (plusZero) for (let b = 0; b < nb; b++) px[b] = bands[b][k] + 0;
    else for (let b = 0; b < nb; b++) px[b] = bands[b][k];
    this.put(o, px);
  }

  /**
   * For each c < len with idx[c] >= 0: `put` of source pixel idx[c] of `bands` (0 + its value when `plusZero`) for
   * pixel o0 + c. With `verbatim` (the output type holds every source value unchanged), runs of consecutive source
   * pixels are copied as they are. Returns the pixels taken.
   */
  takeRow(
    o0: number,
    idx: Int32Array,
    len: number,
    bands: readonly TypedArray[],
    plusZero: boolean,
    verbatim: boolean,
  ): number {
    const mask = this.mask;
    const first = this.composite === 'first';
    let taken = 0;
    if (this.out && verbatim && !plusZero) {
      let c = 0;
      while (c < len) {
        const k = idx[c];
        if (k < 0 || (first && mask[o0 + c] !== 0)) {
          c++;
          continue;
        }
        let e = c + 1;
        while (e < len && idx[e] === k + (e - c) && !(first && mask[o0 + e] !== 0)) e++;
        if (e - c === 1) this.copyPixel(o0 + c, k, bands);
        else this.copySegment(o0 + c, k, e - c, bands);
        taken += e - c;
        c = e;
      }
      return taken;
    }
    for (let c = 0; c < len; c++) {
      const k = idx[c];
      if (k < 0) continue;
      const o = o0 + c;
      if (first && mask[o] !== 0) continue;
      this.take(o, k, bands, plusZero);
      taken++;
    }
    return taken;
  }

  /** `takeRow` of the source pixels k0 + c (c < len) that are valid. Returns the pixels taken. */
  takeRun(
    o0: number,
    k0: number,
    len: number,
    bands: readonly TypedArray[],
    valid: Uint8Array,
    plusZero: boolean,
    verbatim: boolean,
  ): number {
    const mask = this.mask;
    const first = this.composite === 'first';
    let taken = 0;
    if (this.out && verbatim && !plusZero) {
      let c = 0;
      while (c < len) {
        while (c < len && (valid[k0 + c] === 0 || (first && mask[o0 + c] !== 0))) c++;
        let e = c;
        while (e < len && valid[k0 + e] !== 0 && !(first && mask[o0 + e] !== 0)) e++;
        if (e > c) this.copySegment(o0 + c, k0 + c, e - c, bands);
        taken += e - c;
        c = e;
      }
      return taken;
    }
    for (let c = 0; c < len; c++) {
      const k = k0 + c;
      if (valid[k] === 0) continue;
      const o = o0 + c;
      if (first && mask[o] !== 0) continue;
      this.take(o, k, bands, plusZero);
      taken++;
    }
    return taken;
  }

  /** The result's bands. */
  finish(): TypedArray[] {
    if (this.out) return this.out;
    const { n, mask, counts, float, lo, hi, fill } = this;
    const mean = this.composite === 'mean';
    return this.acc!.map((a) => {
      const out = allocTyped(this.dtype, n);
      if (fill !== 0) out.fill(fill);
      for (let i = 0; i < n; i++) {
        if (mask[i] === 0) continue;
        let x = mean ? a[i] / counts![i] : a[i];
        if (!float) {
          x = Math.floor(x + 0.5);
          x = Math.min(Math.max(x, lo), hi);
        }
        out[i] = x;
      }
      return out;
    });
  }
}

/** True when every value of `src` is stored unchanged by the output conversion into `dst`. */
export function storesVerbatim(src: DType, dst: DType): boolean {
  // a float output stores the value as assignment (and `set`) convert it
  if (isFloat(dst)) return true;
  if (isFloat(src)) return false;
  const [slo, shi] = dtypeRange(src);
  const [dlo, dhi] = dtypeRange(dst);
  return slo >= dlo && shi <= dhi;
}
