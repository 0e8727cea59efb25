/**
 * GDAL_NODATA (tag 42113) read as GDAL reads it. GDAL parses the text with CPLAtof, i.e. C's strtod: leading
 * spaces are skipped, the longest number at the start is taken (decimal, hexadecimal `0x..`, `inf`, `nan`),
 * a comma stands for the decimal point, and text with no number at its start is 0. An empty tag means no nodata.
 */

export interface NodataReading {
  /** the value GDAL uses (undefined: no nodata) */
  readonly value: number | undefined;
  /** set when the text is not a plain number: what was read, for `cogmill info` and the logs */
  readonly warning?: string;
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/;
const HEX = /^([+-]?)0[xX]([0-9a-fA-F]+)/;
const SPECIAL = /^([+-]?)(infinity|inf|nan)/i;

/** strtod's reading of `text` (0 when nothing at its start is a number), and whether all of it was used. */
function strtod(text: string): { value: number; whole: boolean } {
  const s = text.replace(/^\s+/, '');
  const special = SPECIAL.exec(s);
  if (special) {
    const v = special[2].toLowerCase() === 'nan' ? Number.NaN : special[1] === '-' ? -Infinity : Infinity;
    return { value: v, whole: special[0].length === s.trimEnd().length };
  }
  const hex = HEX.exec(s);
  if (hex) {
    const v = Number.parseInt(hex[2], 16) * (hex[1] === '-' ? -1 : 1);
    return { value: v, whole: hex[0].length === s.trimEnd().length };
  }
  const dec = DECIMAL.exec(s);
  if (dec) return { value: Number(dec[0]), whole: dec[0].length === s.trimEnd().length };
  return { value: 0, whole: false };
}

export function readGdalNodata(raw: unknown): NodataReading {
  if (typeof raw !== 'string') return { value: undefined };
  const text = raw.replace(/\0+$/, '');
  if (text === '') return { value: undefined };
  // CPLAtof: a comma is a decimal point when the text has no point
  const normal = text.includes(',') && !text.includes('.') ? text.replace(',', '.') : text;
  const { value, whole } = strtod(normal);
  if (whole && normal === text) return { value };
  const shown = text.length > 40 ? `${text.slice(0, 40)}...` : text;
  return {
    value,
    warning: `GDAL_NODATA "${shown}" is not a plain number; read as ${Number.isNaN(value) ? 'nan' : value}, as GDAL does`,
  };
}
