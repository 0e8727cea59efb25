/**
 * The style of a request, from its query: `bands=`, `expression=`, `rescale=`, `colormap=`, `nodata=`,
 * `resampling=` validated into a render-side Style, and re-encoded for the URLs of TileJSON and WMTS documents.
 */
import { RenderError } from '../render/errors.ts';
import { parseColormap } from '../render/style.colormap.ts';
import { parseExpression } from '../render/style.expression.ts';
import { defaultBands, type Style } from '../render/style.ts';
import { RESAMPLINGS, type Resampling } from '../render/types.ts';

export interface StyleQuery {
  /** the first value of a query parameter */
  get(name: string): string | undefined;
  /** every value of a (repeatable) query parameter */
  getAll(name: string): readonly string[];
}

export interface StyleLimits {
  readonly maxExpressionLength: number;
}

/** The query parameters a style reads, in the order they appear in normalised URLs. */
export const STYLE_PARAMS = ['bands', 'expression', 'rescale', 'colormap', 'nodata', 'resampling'] as const;

function parseNumber(text: string, what: string): number {
  const t = text.trim();
  if (/^nan$/i.test(t)) return Number.NaN;
  const n = t === '' ? Number.NaN : Number(t);
  if (!Number.isFinite(n)) throw new RenderError('bad-request', `${what} "${text.slice(0, 40)}" is not a number`);
  return n;
}

/** `nodata=` value: a number or `nan`. */
export function parseNodata(text: string): number {
  return parseNumber(text, 'nodata');
}

/** `bands=1,2,3` (or repeated `bands=`): 1-based bands of a mosaic with `bandCount` bands; undefined when absent. */
export function parseBands(texts: readonly string[], bandCount: number): number[] | undefined {
  const parts = texts.flatMap((s) => s.split(','));
  if (parts.length === 0) return undefined;
  return parts.map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 1 || n > bandCount || s.trim() === '') {
      throw new RenderError(
        'bad-request',
        `bands: "${s.slice(0, 20)}" is not a band of this mosaic; use 1..${bandCount}, e.g. bands=1,2,3`,
      );
    }
    return n;
  });
}

/**
 * Validate the style parameters of a query for a mosaic with `bandCount` bands: `bands=1,2,3` (or repeated),
 * `expression=`, `rescale=min,max` (repeatable, one per output band or one for all), `colormap=`, `nodata=`,
 * `resampling=`. Every problem is a RenderError 'bad-request' that says what to write instead. For images
 * (`image`, the default) the request must give 1 or 3 output bands; data requests may give any number.
 */
export function parseStyle(
  q: StyleQuery,
  bandCount: number,
  limits: StyleLimits,
  opts: { image?: boolean } = {},
): Style {
  const image = opts.image ?? true;
  const bands = parseBands(q.getAll('bands'), bandCount);
  const exprText = q.get('expression');
  const expression =
    exprText === undefined ? undefined : parseExpression(exprText, bandCount, limits.maxExpressionLength);
  if (expression && bands) throw new RenderError('bad-request', 'give either bands= or expression=, not both');
  const outputs = expression ? expression.outputs.length : bands ? bands.length : defaultBands(bandCount).length;
  if (image && outputs !== 1 && outputs !== 3) {
    throw new RenderError(
      'bad-request',
      `${expression ? 'expression' : 'bands'} gives ${outputs} output bands; an image needs 1 (gray or colormap) or 3 (RGB)`,
    );
  }
  let rescale: [number, number][] | undefined;
  const rescaleTexts = q.getAll('rescale');
  if (rescaleTexts.length > 0) {
    rescale = rescaleTexts.map((s) => {
      const parts = s.split(',');
      if (parts.length !== 2)
        throw new RenderError('bad-request', `rescale "${s.slice(0, 40)}" must be min,max (e.g. rescale=0,4000)`);
      const lo = parseNumber(parts[0], 'rescale min');
      const hi = parseNumber(parts[1], 'rescale max');
      if (Number.isNaN(lo) || Number.isNaN(hi) || !(hi > lo)) {
        throw new RenderError('bad-request', `rescale "${s.slice(0, 40)}": max must be greater than min`);
      }
      return [lo, hi];
    });
    if (rescale.length !== 1 && rescale.length !== outputs) {
      throw new RenderError(
        'bad-request',
        `${rescale.length} rescale ranges for ${outputs} output bands; give one for all bands or one per band`,
      );
    }
  }
  const cmText = q.get('colormap');
  const colormap = cmText === undefined || cmText.trim() === '' ? undefined : parseColormap(cmText);
  if (colormap && image && outputs !== 1) {
    throw new RenderError(
      'bad-request',
      `a colormap applies to one band, but this request gives ${outputs}; select one band or expression`,
    );
  }
  const ndText = q.get('nodata');
  const nodata = ndText === undefined || ndText.trim() === '' ? undefined : parseNodata(ndText);
  const rsText = q.get('resampling');
  let resampling: Resampling | undefined;
  if (rsText !== undefined && rsText !== '') {
    if (!(RESAMPLINGS as readonly string[]).includes(rsText)) {
      throw new RenderError(
        'bad-request',
        `resampling "${rsText.slice(0, 20)}" is unknown; use one of ${RESAMPLINGS.join(', ')}`,
      );
    }
    resampling = rsText as Resampling;
  }
  return { bands, expression, rescale, colormap, nodata, resampling };
}

/** The style parameters of a query, re-encoded (for URLs in TileJSON and WMTS documents). */
export function styleQueryString(q: StyleQuery): string {
  const out = new URLSearchParams();
  for (const name of STYLE_PARAMS) for (const v of q.getAll(name)) out.append(name, v);
  return out.toString();
}
