/**
 * The GeoKey directory (tag 34735) read defensively: its header, key count and every key's location are checked
 * against what the file holds, so a directory that lies (65,535 keys in a 4-entry array, keys pointing at tags
 * the file lacks) gets a clear `corrupt` error instead of whatever a parser makes of it.
 */
import { RenderError } from './errors.ts';

/** GeoTIFF defines about 50 keys; GDAL writes fewer than 20. More than this is not a GeoKey directory. */
export const MAX_GEOKEYS = 1024;

const GEO_DOUBLE_PARAMS = 34736;
const GEO_ASCII_PARAMS = 34737;

/**
 * Parse raw GeoKeyDirectory SHORTs into `{ KeyName: value }` (names from `names`, unknown ids skipped).
 * `tagValue` gives the value of the tag a key refers to (GeoDoubleParams, GeoAsciiParams).
 */
export function parseGeoKeyDirectory(
  raw: ArrayLike<number> | null | undefined,
  tagValue: (tag: number) => unknown,
  names: Readonly<Record<number, string>>,
  source: string,
): Record<string, unknown> | null {
  if (!raw) return null;
  const bad = (why: string) => new RenderError('corrupt', `${source}: the GeoKey directory ${why}`);
  if (raw.length < 4) throw bad(`has ${raw.length} values; its header alone needs 4`);
  const count = raw[3];
  if (count > MAX_GEOKEYS) throw bad(`claims ${count} keys (a GeoTIFF has at most ${MAX_GEOKEYS})`);
  if (raw.length < 4 + count * 4) {
    throw bad(`claims ${count} keys but holds ${Math.floor((raw.length - 4) / 4)} (${raw.length} values)`);
  }
  const out: Record<string, unknown> = {};
  for (let k = 0; k < count; k++) {
    const i = 4 + k * 4;
    const id = raw[i];
    const location = raw[i + 1];
    const n = raw[i + 2];
    const offset = raw[i + 3];
    let value: unknown;
    if (location === 0) {
      value = offset;
    } else if (location === GEO_DOUBLE_PARAMS || location === GEO_ASCII_PARAMS || location === 34735) {
      const v = tagValue(location);
      if (v === undefined || v === null) {
        throw bad(`key ${id} points at tag ${location}, which the file does not have`);
      }
      if (typeof v === 'string') {
        if (offset + n > v.length + 1) throw bad(`key ${id} reads past the end of tag ${location}`);
        value = v.substring(offset, offset + n - 1);
      } else if (typeof v === 'object' && 'length' in (v as object)) {
        const arr = v as ArrayLike<number>;
        if (offset + n > arr.length) throw bad(`key ${id} reads past the end of tag ${location}`);
        value = n === 1 ? arr[offset] : Array.from({ length: n }, (_, j) => arr[offset + j]);
      } else {
        value = v;
      }
    } else {
      throw bad(`key ${id} points at tag ${location}, which cannot hold GeoKey values`);
    }
    const name = names[id];
    if (name) out[name] = value;
  }
  return out;
}
