/**
 * Styling: turns rendered data values into 8-bit image samples. Three steps, each pure and separately testable:
 *
 *   values  = bands selected, or band math (`expression`), with an optional nodata override  (`styleValues`)
 *   bytes   = linear stretch of each output band to 0..255 (`rescale`, or the mosaic's 2nd-98th percentile)
 *   image   = gray + alpha, RGBA, or a colormap applied to one band                            (`styleImage`)
 *
 * This file holds the Style and the values step; style.expression.ts the band math, style.colormap.ts the
 * colormaps, style.stretch.ts the stretch and the image. A query becomes a Style in src/server/style.query.ts.
 */
import type { Colormap } from './style.colormap.ts';
import { type Expression, expressionEvaluators } from './style.expression.ts';
import type { DType, Pixels, Resampling, TypedArray } from './types.ts';

/** What a request asks for, validated. Bands are 1-based, as in the query. */
export interface Style {
  readonly bands?: readonly number[];
  readonly expression?: Expression;
  /** one [min, max] for every output band, or one per output band */
  readonly rescale?: readonly (readonly [number, number])[];
  readonly colormap?: Colormap;
  readonly nodata?: number;
  readonly resampling?: Resampling;
}

/** Bands shown when none are asked for: RGB for three or more bands, else the first band. */
export function defaultBands(bandCount: number): number[] {
  return bandCount >= 3 ? [1, 2, 3] : [1];
}

/**
 * The 1-based mosaic bands a style reads (render these, in this order). Images default to `defaultBands`; data
 * (`image: false`, e.g. a GeoTIFF crop) defaults to every band.
 */
export function styleInputBands(style: Style, bandCount: number, opts: { image?: boolean } = {}): readonly number[] {
  if (style.expression) return style.expression.bands;
  if (style.bands) return style.bands;
  return (opts.image ?? true) ? defaultBands(bandCount) : Array.from({ length: bandCount }, (_, i) => i + 1);
}

/** A canonical text of the style (same for equivalent queries), for ETags and cache keys. */
export function styleKey(style: Style): string {
  const parts: string[] = [];
  if (style.bands) parts.push(`bands=${style.bands.join(',')}`);
  if (style.expression) parts.push(`expression=${style.expression.canonical}`);
  if (style.rescale) parts.push(`rescale=${style.rescale.map((r) => r.join(',')).join(';')}`);
  if (style.colormap) parts.push(`colormap=${style.colormap.key}`);
  if (style.nodata !== undefined) parts.push(`nodata=${style.nodata}`);
  if (style.resampling) parts.push(`resampling=${style.resampling}`);
  return parts.join('&');
}

/**
 * Output values of a style: one array per output band, and a validity mask (255 valid, 0 not). They may share
 * arrays with the pixels they come from: read them, do not change them.
 */
export interface StyleValues {
  readonly width: number;
  readonly height: number;
  readonly bands: readonly (TypedArray | Float64Array)[];
  readonly mask: Uint8Array;
  /** the dtype of the values: the mosaic's for band selections, float64 for expressions */
  readonly dtype: DType;
}

/**
 * The values a style shows, from pixels rendered with `styleInputBands` (in that order): the nodata override
 * masks pixels where every input band equals it; an expression is evaluated on valid pixels, and a result that is
 * not finite (division by zero, log of a negative) masks the pixel.
 */
export function styleValues(pixels: Pixels, style: Pick<Style, 'expression' | 'nodata'>): StyleValues {
  const { width, height } = pixels;
  const n = width * height;
  const inputs = pixels.bands;
  // the values share the pixels' arrays unless something masks more
  if (style.nodata === undefined && !style.expression)
    return { width, height, bands: inputs, mask: pixels.mask, dtype: pixels.dtype };
  const mask = new Uint8Array(pixels.mask);
  if (style.nodata !== undefined) {
    const nd = style.nodata;
    const nan = Number.isNaN(nd);
    for (let i = 0; i < n; i++) {
      if (!mask[i]) continue;
      let all = true;
      for (let b = 0; b < inputs.length && all; b++) all = nan ? Number.isNaN(inputs[b][i]) : inputs[b][i] === nd;
      if (all) mask[i] = 0;
    }
  }
  if (!style.expression) return { width, height, bands: inputs, mask, dtype: pixels.dtype };
  const evals = expressionEvaluators(style.expression);
  const outs = evals.map(() => new Float64Array(n));
  const v = new Float64Array(inputs.length);
  for (let i = 0; i < n; i++) {
    if (!mask[i]) continue;
    for (let b = 0; b < inputs.length; b++) v[b] = inputs[b][i];
    for (let k = 0; k < evals.length; k++) {
      const x = evals[k](v);
      if (!Number.isFinite(x)) {
        mask[i] = 0;
        break;
      }
      outs[k][i] = x;
    }
  }
  return { width, height, bands: outs, mask, dtype: 'float64' };
}
