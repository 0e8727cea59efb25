/** The stretch: values to bytes (a linear rescale per band) and bytes to an image (gray + alpha, RGBA, colormap). */
import { RenderError } from './errors.ts';
import type { Colormap } from './style.colormap.ts';
import type { Style, StyleValues } from './style.ts';
import type { DType } from './types.ts';

/** Interleaved 8-bit samples ready for the encoder. */
export interface StyledImage {
  readonly width: number;
  readonly height: number;
  /** 2 = gray + alpha, 4 = RGBA */
  readonly channels: 2 | 4;
  readonly data: Uint8Array;
}

/** The stretched byte of a value: round((v - min) * 255 / (max - min)), clamped to 0..255 (as styleImage). */
export function stretchByte(v: number, min: number, max: number): number {
  const t = Math.round((v - min) * (255 / (max - min)));
  return t < 0 ? 0 : Math.min(t, 255);
}

/** Typed arrays whose values are integers: their stretch can go through a table. */
function isIntegerArray(a: ArrayLike<number>): boolean {
  return (
    a instanceof Uint8Array ||
    a instanceof Uint16Array ||
    a instanceof Int16Array ||
    a instanceof Int8Array ||
    a instanceof Uint32Array ||
    a instanceof Int32Array
  );
}

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** The stretched bytes of the integers in [lo, hi]: `table[k]` is the byte of `base + k`. */
interface StretchTable {
  readonly base: number;
  readonly table: Uint8Array;
}

/**
 * A table for stretching `src` when its values are integers and [lo, hi] holds at most `n` of them (building it
 * costs less than the image); integers below lo stretch to 0, above hi to 255. Undefined otherwise.
 */
function stretchTable(src: ArrayLike<number>, n: number, lo: number, hi: number): StretchTable | undefined {
  if (!(hi > lo && Number.isFinite(lo) && Number.isFinite(hi)) || !isIntegerArray(src)) return undefined;
  const base = Math.ceil(lo);
  const size = Math.floor(hi) - base + 1;
  if (size > n) return undefined;
  const table = new Uint8Array(size);
  for (let k = 0; k < size; k++) table[k] = stretchByte(base + k, lo, hi);
  return { base, table };
}

/** The stretched byte of every valid pixel of `src` (see stretchByte); invalid pixels are left at 0. */
function stretchBytes(src: ArrayLike<number>, mask: Uint8Array, n: number, lo: number, hi: number): Uint8Array {
  const out = new Uint8Array(n);
  const st = stretchTable(src, n, lo, hi);
  if (st) {
    const { base, table } = st;
    const size = table.length;
    for (let i = 0; i < n; i++) {
      if (mask[i] === 0) continue;
      const k = src[i] - base;
      out[i] = k < 0 ? 0 : k >= size ? 255 : table[k];
    }
    return out;
  }
  const scale = 255 / (hi - lo);
  for (let i = 0; i < n; i++) {
    if (mask[i] === 0) continue;
    const t = Math.round((src[i] - lo) * scale);
    out[i] = t < 0 ? 0 : Math.min(t, 255);
  }
  return out;
}

/** Bytes shown as they are: a byte band over the range 0..255 (stretchByte is then the identity). */
function bytesAsThey(src: ArrayLike<number>, lo: number, hi: number): src is Uint8Array {
  return src instanceof Uint8Array && lo === 0 && hi === 255;
}

/** Gray + alpha of one band, one 16-bit word per pixel (little-endian: gray, then alpha 255). */
function grayWords(src: ArrayLike<number>, mask: Uint8Array, n: number, lo: number, hi: number, out: Uint16Array) {
  if (bytesAsThey(src, lo, hi)) {
    for (let i = 0; i < n; i++) if (mask[i] !== 0) out[i] = src[i] | 0xff00;
    return;
  }
  const st = stretchTable(src, n, lo, hi);
  if (st) {
    const { base, table } = st;
    const size = table.length;
    for (let i = 0; i < n; i++) {
      if (mask[i] === 0) continue;
      const k = src[i] - base;
      out[i] = (k < 0 ? 0 : k >= size ? 255 : table[k]) | 0xff00;
    }
    return;
  }
  const scale = 255 / (hi - lo);
  for (let i = 0; i < n; i++) {
    if (mask[i] === 0) continue;
    const t = Math.round((src[i] - lo) * scale);
    // NaN stays NaN and ORs to gray 0, as a NaN stored in a byte is 0
    out[i] = (t < 0 ? 0 : Math.min(t, 255)) | 0xff00;
  }
}

/**
 * Stretch and colour values: `ranges` holds [min, max] per output band (one range is used for every band).
 * One band gives gray + alpha, or RGBA through `colormap` (its alpha times the mask); three bands give RGBA.
 * Invalid pixels are fully transparent with zero colour (black where a format drops alpha).
 */
export function styleImage(
  values: StyleValues,
  ranges: readonly (readonly [number, number])[],
  colormap?: Colormap,
): StyledImage {
  const { width, height, mask } = values;
  const n = width * height;
  const nb = values.bands.length;
  if (nb !== 1 && nb !== 3) throw new RenderError('bad-request', `an image needs 1 or 3 bands, got ${nb}`);
  const range = (b: number) => ranges[Math.min(b, ranges.length - 1)];
  if (nb === 1) {
    const [lo, hi] = range(0);
    if (!colormap && LITTLE_ENDIAN) {
      const data = new Uint8Array(n * 2);
      grayWords(values.bands[0], mask, n, lo, hi, new Uint16Array(data.buffer));
      return { width, height, channels: 2, data };
    }
    const t = stretchBytes(values.bands[0], mask, n, lo, hi);
    if (colormap) {
      const lut = colormap.lut;
      const data = new Uint8Array(n * 4);
      if (LITTLE_ENDIAN) {
        // one 32-bit word per pixel: the colormap entry, or 0 where its alpha is 0
        const words = new Uint32Array(256);
        for (let k = 0; k < 256; k++) {
          const l = k * 4;
          if (lut[l + 3] !== 0) words[k] = lut[l] | (lut[l + 1] << 8) | (lut[l + 2] << 16) | (lut[l + 3] << 24);
        }
        const out = new Uint32Array(data.buffer);
        for (let i = 0; i < n; i++) if (mask[i] !== 0) out[i] = words[t[i]];
        return { width, height, channels: 4, data };
      }
      for (let i = 0; i < n; i++) {
        if (mask[i] === 0) continue;
        const l = t[i] * 4;
        const a = lut[l + 3];
        if (a === 0) continue;
        const o = i * 4;
        data[o] = lut[l];
        data[o + 1] = lut[l + 1];
        data[o + 2] = lut[l + 2];
        data[o + 3] = a;
      }
      return { width, height, channels: 4, data };
    }
    const data = new Uint8Array(n * 2);
    for (let i = 0; i < n; i++) {
      if (mask[i] === 0) continue;
      data[i * 2] = t[i];
      data[i * 2 + 1] = 255;
    }
    return { width, height, channels: 2, data };
  }
  const [r, g, b] = [0, 1, 2].map((k) => {
    const [lo, hi] = range(k);
    const band = values.bands[k];
    // bytes shown as they are (8-bit RGB, the common case): packed straight from the bands
    return bytesAsThey(band, lo, hi) ? band : stretchBytes(band, mask, n, lo, hi);
  });
  const data = new Uint8Array(n * 4);
  if (LITTLE_ENDIAN) {
    const out = new Uint32Array(data.buffer);
    for (let i = 0; i < n; i++) if (mask[i] !== 0) out[i] = r[i] | (g[i] << 8) | (b[i] << 16) | 0xff000000;
    return { width, height, channels: 4, data };
  }
  for (let i = 0; i < n; i++) {
    if (mask[i] === 0) continue;
    const o = i * 4;
    data[o] = r[i];
    data[o + 1] = g[i];
    data[o + 2] = b[i];
    data[o + 3] = 255;
  }
  return { width, height, channels: 4, data };
}

/** True when a style needs no statistics: explicit rescale, or 8-bit band values shown as they are. */
export function styleHasFixedRange(style: Style, dtype: DType): boolean {
  return style.rescale !== undefined || (!style.expression && dtype === 'uint8');
}

/** The [min, max] ranges of a style when it has fixed ones (see styleHasFixedRange), else undefined. */
export function fixedRanges(style: Style, dtype: DType): readonly (readonly [number, number])[] | undefined {
  if (style.rescale) return style.rescale;
  if (!style.expression && dtype === 'uint8') return [[0, 255]];
  return undefined;
}

/** A usable stretch from percentiles: [low, high], widened when they coincide so the division stays finite. */
export function stretchFromPercentiles(low: number, high: number): [number, number] {
  if (!Number.isFinite(low) || !Number.isFinite(high)) return [0, 1];
  if (high > low) return [low, high];
  return [low - 0.5, low + 0.5];
}
