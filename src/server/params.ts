/**
 * Request parameters read the same way by every route: integers in canonical decimal digits, numbers, bounding
 * boxes, CRSs, image formats, tile file names and sizes, band names of catalogue mosaics, JSON bodies.
 */
import type { Context } from 'hono';
import { parseCrs } from '../render/crs.ts';
import type { ImageFormat } from '../render/encode.ts';
import { CogmillError } from '../render/errors.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { TILE_SIZE_DEFAULT } from '../render/tilematrix.ts';
import type { Bounds, Crs } from '../render/types.ts';
import { RequestError } from './errors.ts';

const TILE_SIZES = [256, 512] as const;

/** A decimal integer as a person writes it: digits only, no sign, exponent, hex prefix, spaces or leading zeros. */
const DECIMAL_INTEGER = /^(0|[1-9][0-9]{0,14})$/;

/**
 * Parse an integer path/query parameter or answer 400 naming it. Only canonical decimal integers are accepted
 * (`Number()` would also take `1e1`, `0x10`, `+1` and ` 1`, and several spellings of one tile would be cached
 * apart).
 */
export function intParam(value: string | undefined, name: string, min: number, max: number): number {
  const n = value !== undefined && DECIMAL_INTEGER.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new RequestError(
      'bad-request',
      `${name} must be an integer between ${min} and ${max}, in decimal digits (got "${(value ?? '').slice(0, 30)}")`,
    );
  }
  return n;
}

const FORMAT_ALIASES: Readonly<Record<string, ImageFormat>> = { png: 'png', webp: 'webp', jpg: 'jpg', jpeg: 'jpg' };

export function imageFormat(ext: string): ImageFormat {
  const f = FORMAT_ALIASES[ext.toLowerCase()];
  if (!f) throw new RequestError('bad-request', `format "${ext.slice(0, 10)}" is not served; use .png, .webp or .jpg`);
  return f;
}

/** `{y}.{fmt}` or `{y}@2x.{fmt}`. */
export function parseTileFile(file: string): { yText: string; scale: 1 | 2; format: ImageFormat } {
  const m = /^([^.@]*)(@2x)?\.([A-Za-z]+)$/.exec(file);
  if (!m)
    throw new RequestError(
      'bad-request',
      `tile "${file.slice(0, 40)}" must look like {y}.png, {y}.webp, {y}.jpg or {y}@2x.png`,
    );
  return { yText: m[1], scale: m[2] ? 2 : 1, format: imageFormat(m[3]) };
}

export function tileSizeParam(text: string | undefined): number {
  if (text === undefined || text === '') return TILE_SIZE_DEFAULT;
  const n = Number(text);
  if (!(TILE_SIZES as readonly number[]).includes(n))
    throw new RequestError('bad-request', `tilesize must be 256 or 512 (got "${text.slice(0, 10)}")`);
  return n;
}

export function numberParam(text: string | undefined, name: string, min: number, max: number): number {
  const n = text === undefined || text.trim() === '' ? Number.NaN : Number(text);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new RequestError(
      'bad-request',
      `${name} must be a number between ${min} and ${max} (got "${(text ?? '').slice(0, 30)}")`,
    );
  }
  return n;
}

export function parseBbox(text: string, what: string): Bounds {
  const parts = text.split(',');
  const nums = parts.map((p) => (p.trim() === '' ? Number.NaN : Number(p)));
  if (parts.length !== 4 || !nums.every(Number.isFinite)) {
    throw new RequestError('bad-request', `${what} "${text.slice(0, 80)}" must be four numbers minx,miny,maxx,maxy`);
  }
  const [x0, y0, x1, y1] = nums;
  if (!(x1 > x0 && y1 > y0))
    throw new RequestError('bad-request', `${what} ${text.slice(0, 80)}: maxx must exceed minx and maxy exceed miny`);
  return [x0, y0, x1, y1];
}

/** `crs=` of a request: an unknown or unreadable CRS is the request's fault (400). */
export function requestCrs(text: string): Crs {
  try {
    return parseCrs(text);
  } catch (e) {
    throw new RequestError('bad-request', `crs: ${(e as Error).message}`);
  }
}

/**
 * Band names a request may use for `bN` in `bands` and `expression`: the assets of a catalogue mosaic (B04, B08,
 * nir...). Names that look like bN, or are not plain identifiers, are left out.
 */
export function bandAliases(m: Mosaic | undefined): Map<string, number> | undefined {
  if (!m?.items) return undefined;
  const out = new Map<string, number>();
  m.bandNames.forEach((name, i) => {
    if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && !/^b\d+$/.test(name)) out.set(name, i + 1);
  });
  return out.size ? out : undefined;
}

/** `bands` and `expression` with band names written as bN (other parameters as they are). */
export function aliasBandNames(name: string, value: string, aliases: Map<string, number> | undefined): string {
  if (!aliases) return value;
  if (name === 'bands')
    return value
      .split(',')
      .map((t) => {
        const k = aliases.get(t.trim());
        return k === undefined ? t : String(k);
      })
      .join(',');
  if (name === 'expression')
    return value.replace(/[A-Za-z_][A-Za-z0-9_]*/g, (w) => {
      const k = aliases.get(w);
      return k === undefined ? w : `b${k}`;
    });
  return value;
}

/** A request's JSON body, or a 400: `needs` says what the body should be (the Content-Type is added). */
export async function jsonBody(c: Context, needs: string): Promise<unknown> {
  const type = c.req.header('content-type') ?? '';
  if (!/^application\/json\b/i.test(type))
    throw new RequestError('bad-request', `${needs} (Content-Type: application/json)`);
  try {
    return await c.req.json();
  } catch (e) {
    if (e instanceof CogmillError) throw e;
    throw new RequestError('bad-request', `the request body is not valid JSON: ${(e as Error).message}`);
  }
}
