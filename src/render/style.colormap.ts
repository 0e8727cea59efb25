/** Colormaps: 256-entry RGBA tables, named ones generated from a few control points each, or given as JSON. */
import { RenderError } from './errors.ts';

export type Rgba = readonly [number, number, number, number];

export interface Colormap {
  /** the name, or a canonical JSON text for custom colormaps: used in cache keys */
  readonly key: string;
  /** 256 RGBA entries, indexed by the stretched 0..255 value */
  readonly lut: Uint8Array;
}

/**
 * Control points of the named colormaps: colours evenly spaced from 0 to 1, or `position:colour` pairs. The
 * sequential and diverging maps follow matplotlib's and ColorBrewer's published colours.
 */
const COLORMAP_POINTS: Readonly<Record<string, string>> = {
  gray: '#000000 #ffffff',
  viridis: '#440154 #472c7a #3b518b #2c718e #21908d #27ad81 #5cc863 #aadc32 #fde725',
  magma: '#000004 #1c1044 #4f127b #812581 #b5367a #e55064 #fb8761 #fec287 #fcfdbf',
  inferno: '#000004 #1f0c48 #550f6d #88226a #ba3655 #e35933 #f98e09 #f8c931 #fcffa4',
  plasma: '#0d0887 #4c02a1 #7e03a8 #a92395 #cc4778 #e56b5d #f89441 #fdc328 #f0f921',
  cividis: '#00224e #123570 #3b496c #575d6d #707173 #8a8678 #a59c74 #c3b369 #e1cc55 #fee838',
  terrain: '0:#333399 0.15:#0099ff 0.25:#00cc66 0.5:#ffff99 0.75:#805c54 1:#ffffff',
  rdylgn: '#a50026 #d73027 #f46d43 #fdae61 #fee08b #ffffbf #d9ef8b #a6d96a #66bd63 #1a9850 #006837',
  rdylbu: '#a50026 #d73027 #f46d43 #fdae61 #fee090 #ffffbf #e0f3f8 #abd9e9 #74add1 #4575b4 #313695',
  rdbu: '#67001f #b2182b #d6604d #f4a582 #fddbc7 #f7f7f7 #d1e5f0 #92c5de #4393c3 #2166ac #053061',
  brbg: '#543005 #8c510a #bf812d #dfc27d #f6e8c3 #f5f5f5 #c7eae5 #80cdc1 #35978f #01665e #003c30',
  spectral: '#9e0142 #d53e4f #f46d43 #fdae61 #fee08b #ffffbf #e6f598 #abdda4 #66c2a5 #3288bd #5e4fa2',
  coolwarm: '#3b4cc0 #7b9ff9 #c0d4f5 #f2cbb7 #ee8468 #b40426',
  blues: '#f7fbff #deebf7 #c6dbef #9ecae1 #6baed6 #4292c6 #2171b5 #08519c #08306b',
  greens: '#f7fcf5 #e5f5e0 #c7e9c0 #a1d99b #74c476 #41ab5d #238b45 #006d2c #00441b',
  reds: '#fff5f0 #fee0d2 #fcbba1 #fc9272 #fb6a4a #ef3b2c #cb181d #a50f15 #67000d',
  oranges: '#fff5eb #fee6ce #fdd0a2 #fdae6b #fd8d3c #f16913 #d94801 #a63603 #7f2704',
  purples: '#fcfbfd #efedf5 #dadaeb #bcbddc #9e9ac8 #807dba #6a51a3 #54278f #3f007d',
  ylgn: '#ffffe5 #f7fcb9 #d9f0a3 #addd8e #78c679 #41ab5d #238443 #006837 #004529',
  ylorrd: '#ffffcc #ffeda0 #fed976 #feb24c #fd8d3c #fc4e2a #e31a1c #bd0026 #800026',
};

const COLORMAP_ALIASES: Readonly<Record<string, string>> = { grey: 'gray', greys: 'gray', grays: 'gray' };

/** Names accepted by `colormap=` (each also with `_r` for the reversed map). */
export const COLORMAP_NAMES: readonly string[] = Object.keys(COLORMAP_POINTS);

/** Parse a colour: `#rgb`, `#rrggbb`, `#rrggbbaa`, `[r, g, b]` or `[r, g, b, a]` (0..255). */
export function parseColor(c: unknown, where = 'colour'): Rgba {
  if (typeof c === 'string') {
    const m = /^#?([0-9a-f]{3}|[0-9a-f]{6}|[0-9a-f]{8})$/i.exec(c.trim());
    if (m) {
      let h = m[1];
      if (h.length === 3) h = [...h].map((x) => x + x).join('');
      const n = (k: number) => Number.parseInt(h.slice(k, k + 2), 16);
      return [n(0), n(2), n(4), h.length === 8 ? n(6) : 255];
    }
  } else if (
    Array.isArray(c) &&
    (c.length === 3 || c.length === 4) &&
    c.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)
  ) {
    return [c[0], c[1], c[2], c.length === 4 ? c[3] : 255];
  }
  throw new RenderError(
    'bad-request',
    `colormap: ${where} ${JSON.stringify(c)?.slice(0, 40)} is not "#rrggbb", "#rrggbbaa" or [r, g, b(, a)] with 0..255`,
  );
}

/** A 256-entry table interpolating linearly between stops at positions 0..255 (clamped outside them). */
function lutFromStops(stops: readonly (readonly [number, Rgba])[]): Uint8Array {
  const lut = new Uint8Array(256 * 4);
  let k = 0;
  for (let i = 0; i < 256; i++) {
    while (k < stops.length - 1 && stops[k + 1][0] < i) k++;
    const [p0, c0] = stops[k];
    const [p1, c1] = stops[Math.min(k + 1, stops.length - 1)];
    const t = i <= p0 ? 0 : i >= p1 ? 1 : (i - p0) / (p1 - p0);
    for (let ch = 0; ch < 4; ch++) lut[i * 4 + ch] = Math.round(c0[ch] + (c1[ch] - c0[ch]) * t);
  }
  return lut;
}

function reverseLut(lut: Uint8Array): Uint8Array {
  const out = new Uint8Array(lut.length);
  for (let i = 0; i < 256; i++) out.set(lut.subarray((255 - i) * 4, (255 - i) * 4 + 4), i * 4);
  return out;
}

const namedLuts = new Map<string, Uint8Array>();

/** A named colormap (`viridis`, `terrain_r`, ...). Throws RenderError 'bad-request' listing the names. */
export function namedColormap(name: string): Colormap {
  const lower = name.trim().toLowerCase();
  const reversed = lower.endsWith('_r');
  const base0 = reversed ? lower.slice(0, -2) : lower;
  const base = COLORMAP_ALIASES[base0] ?? base0;
  const points = Object.hasOwn(COLORMAP_POINTS, base) ? COLORMAP_POINTS[base] : undefined;
  if (!points) {
    throw new RenderError(
      'bad-request',
      `colormap "${name.slice(0, 40)}" is unknown; use one of ${COLORMAP_NAMES.join(', ')} (add _r to reverse), or a JSON colormap`,
    );
  }
  const key = reversed ? `${base}_r` : base;
  let lut = namedLuts.get(key);
  if (!lut) {
    const items = points.split(' ');
    const stops = items.map((p, i): readonly [number, Rgba] => {
      const [pos, colour] = p.includes(':') ? p.split(':') : [String(i / (items.length - 1)), p];
      return [Number(pos) * 255, parseColor(colour)];
    });
    lut = lutFromStops(stops);
    if (reversed) lut = reverseLut(lut);
    namedLuts.set(key, lut);
  }
  return { key, lut };
}

const MAX_COLORMAP_JSON_CHARS = 16 * 1024;

/**
 * A custom colormap as JSON, over the stretched 0..255 value:
 * - an object `{"0": "#000000", "17": [255, 0, 0], ...}`: a discrete table; values not listed are transparent;
 * - an array `[[0, "#000000"], [128, "#ff0000"], [255, "#ffffff"]]`: a gradient through ascending stops.
 */
export function customColormap(json: string): Colormap {
  if (json.length > MAX_COLORMAP_JSON_CHARS) {
    throw new RenderError(
      'bad-request',
      `colormap: JSON of ${json.length} characters is longer than ${MAX_COLORMAP_JSON_CHARS}`,
    );
  }
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (e) {
    throw new RenderError('bad-request', `colormap: not a name and not valid JSON (${(e as Error).message})`);
  }
  const position = (p: unknown, where: string): number => {
    const n = typeof p === 'string' && p.trim() !== '' ? Number(p) : p;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 255) {
      throw new RenderError(
        'bad-request',
        `colormap: ${where} ${JSON.stringify(p)} must be an integer 0..255 (a stretched value)`,
      );
    }
    return n;
  };
  if (Array.isArray(v)) {
    if (v.length < 2)
      throw new RenderError('bad-request', 'colormap: a gradient needs at least two [position, colour] stops');
    const stops = v.map((s, i): readonly [number, Rgba] => {
      if (!Array.isArray(s) || s.length !== 2) {
        throw new RenderError('bad-request', `colormap: stop ${i} must be [position 0..255, colour]`);
      }
      return [position(s[0], `stop ${i} position`), parseColor(s[1], `stop ${i} colour`)];
    });
    for (let i = 1; i < stops.length; i++) {
      if (stops[i][0] <= stops[i - 1][0])
        throw new RenderError('bad-request', 'colormap: gradient stop positions must increase');
    }
    return { key: JSON.stringify(stops), lut: lutFromStops(stops) };
  }
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>);
    if (entries.length === 0) throw new RenderError('bad-request', 'colormap: the JSON object lists no value');
    const lut = new Uint8Array(256 * 4);
    const canon: [number, Rgba][] = [];
    for (const [k, c] of entries) {
      const i = position(k, 'key');
      const rgba = parseColor(c, `value of ${i}`);
      lut.set(rgba, i * 4);
      canon.push([i, rgba]);
    }
    canon.sort((a, b) => a[0] - b[0]);
    return { key: JSON.stringify({ discrete: canon }), lut };
  }
  throw new RenderError(
    'bad-request',
    'colormap: JSON must be an object {value: colour} or an array of [position, colour]',
  );
}

/** `colormap=` as a name or a JSON colormap. */
export function parseColormap(text: string): Colormap {
  const t = text.trim();
  return t.startsWith('{') || t.startsWith('[') ? customColormap(t) : namedColormap(t);
}
