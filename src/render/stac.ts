/**
 * STAC inputs: Items and ItemCollections (JSON), STAC API searches (POST or GET, paging through `next` links), and
 * the compact item model the rest of cogmill works with (a few numbers and one href per asset, not the whole JSON:
 * 20,000 items must stay small in memory).
 *
 * Footprints come from the catalogue, never from the rasters: `proj:code` / `proj:epsg`, `proj:shape` and
 * `proj:transform` (asset level first, then item level) give each asset's grid; the item's `bbox` gives its
 * longitude/latitude box. Parsing is pure; fetching is injected (the engine passes a fetch under its URL policy).
 */
import path from 'node:path';
import { RenderError } from './errors.ts';
import type { Bounds, DType, GeoTransform } from './types.ts';

/** One asset of an item: where it is and, when the catalogue says so, its grid and sample type. */
export interface CatalogAsset {
  readonly href: string;
  readonly epsg?: number;
  /** GDAL order: x = t[0] + col * t[1] + row * t[2]; y = t[3] + col * t[4] + row * t[5] */
  readonly transform?: GeoTransform;
  readonly width?: number;
  readonly height?: number;
  readonly dtype?: DType;
  readonly nodata?: number;
  readonly bandCount?: number;
}

export interface CatalogItem {
  readonly id: string;
  readonly collection?: string;
  /** ms since the epoch (start of the interval for items with start_datetime); NaN when the item has no time */
  readonly datetime: number;
  /** ms since the epoch: end of the item's interval (= datetime for an instant) */
  readonly endDatetime: number;
  /** longitude/latitude box (EPSG:4326) */
  readonly bbox: Bounds;
  readonly assets: Readonly<Record<string, CatalogAsset>>;
  /** values of the properties named in sortby (and eo:cloud_cover), for ordering */
  readonly sortKeys: Readonly<Record<string, number | string>>;
}

export type SortDirection = 'asc' | 'desc';
export interface StacSortBy {
  readonly field: string;
  readonly direction: SortDirection;
}

/** The search parameters of the STAC API item search (applied client-side to files where they can be). */
export interface StacQuery {
  readonly collections?: readonly string[];
  readonly ids?: readonly string[];
  readonly bbox?: Bounds;
  /** RFC 3339 instant or interval `start/end` (open ends as `..`) */
  readonly datetime?: string;
  /** the STAC API query extension: `{ "eo:cloud_cover": { "lt": 20 } }` (API searches only) */
  readonly query?: Readonly<Record<string, unknown>>;
  /** a CQL2 filter: JSON object (cql2-json) or text (cql2-text) (API searches only) */
  readonly filter?: Readonly<Record<string, unknown>> | string;
  readonly sortby?: readonly StacSortBy[];
}

export interface StacParseOptions {
  /** assets to keep (default: every asset that looks like a raster) */
  readonly assets?: readonly string[];
  /** where relative hrefs are resolved from: the URL or path of the document */
  readonly base?: string;
  /** property names whose values are kept for ordering */
  readonly sortFields?: readonly string[];
}

const DTYPE_OF: Record<string, DType> = {
  uint8: 'uint8',
  int8: 'int8',
  uint16: 'uint16',
  int16: 'int16',
  uint32: 'uint32',
  int32: 'int32',
  float32: 'float32',
  float64: 'float64',
};

const RASTER_TYPE = /image\/(tiff|x\.geotiff|geotiff)|application=geotiff|profile=cloud-optimized/i;
const RASTER_EXT = /\.(tif|tiff|gtiff)(\?|#|$)/i;

function bad(message: string): never {
  throw new RenderError('bad-request', message);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function finiteArray(v: unknown, min: number): number[] | undefined {
  if (!Array.isArray(v) || v.length < min) return undefined;
  const out = v.map(Number);
  return out.every(Number.isFinite) ? out : undefined;
}

/** `EPSG:32633`, `32633` or a number; undefined for anything else (WKT2/PROJJSON are not read). */
export function epsgOf(code: unknown, epsg: unknown): number | undefined {
  if (typeof code === 'string') {
    const m = /^epsg:(\d{1,9})$/i.exec(code.trim());
    if (m) return Number(m[1]);
  }
  if (typeof epsg === 'number' && Number.isInteger(epsg) && epsg > 0) return epsg;
  if (typeof epsg === 'string' && /^\d{1,9}$/.test(epsg)) return Number(epsg);
  return undefined;
}

/** STAC `proj:transform` ([a, b, c, d, e, f] of x = a*col + b*row + c, y = d*col + e*row + f) as a GDAL geotransform. */
export function gdalTransformOf(t: readonly number[]): GeoTransform {
  return [t[2], t[0], t[1], t[5], t[3], t[4]];
}

/** A GDAL geotransform as a STAC `proj:transform` (6 numbers). */
export function stacTransformOf(gt: GeoTransform): number[] {
  return [gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]];
}

export function parseTime(value: unknown, what: string): number {
  if (value === null || value === undefined || value === '') return Number.NaN;
  if (value instanceof Date) return value.getTime();
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'number') return value;
  const ms = Date.parse(String(value));
  if (!Number.isFinite(ms)) bad(`${what}: "${String(value).slice(0, 60)}" is not an RFC 3339 date-time`);
  return ms;
}

/** An RFC 3339 instant or interval `start/end` (`..` or empty for an open end) as [startMs, endMs] (inclusive). */
export function parseInterval(text: string): readonly [number, number] {
  const s = text.trim();
  const parts = s.split('/');
  if (parts.length > 2) bad(`datetime "${s.slice(0, 80)}" is not an instant or an interval start/end`);
  const end = (v: string, open: number) => (v === '' || v === '..' ? open : parseTime(v, 'datetime'));
  if (parts.length === 1) {
    const t = parseTime(parts[0], 'datetime');
    if (!Number.isFinite(t)) bad(`datetime "${s}" is empty`);
    return [t, t];
  }
  const a = end(parts[0], Number.NEGATIVE_INFINITY);
  const b = end(parts[1], Number.POSITIVE_INFINITY);
  if (a > b) bad(`datetime "${s}" ends before it starts`);
  return [a, b];
}

/** `-datetime,+eo:cloud_cover` or `[{ field, direction }]`; `properties.` prefixes are dropped. */
export function parseSortby(v: unknown): StacSortBy[] {
  if (v === undefined || v === null) return [];
  const list: unknown[] =
    typeof v === 'string' ? v.split(',').filter((s) => s.trim() !== '') : Array.isArray(v) ? v : [v];
  return list.map((e) => {
    let field: string;
    let direction: SortDirection = 'asc';
    if (typeof e === 'string') {
      const t = e.trim();
      direction = t.startsWith('-') ? 'desc' : 'asc';
      field = t.replace(/^[+-]/, '');
    } else if (isObject(e) && typeof e.field === 'string') {
      field = e.field;
      if (e.direction !== undefined) {
        if (e.direction !== 'asc' && e.direction !== 'desc') bad(`sortby direction must be asc or desc`);
        direction = e.direction;
      }
    } else {
      return bad('sortby must be a list of "field" / "-field" or of { field, direction }');
    }
    field = field.replace(/^properties\./, '');
    if (!/^[\w:.-]{1,100}$/.test(field)) bad(`sortby field "${field.slice(0, 40)}" is not a property name`);
    return { field, direction };
  });
}

/** The folder relative hrefs of a local document resolve against, per document (one path walk, not one per asset). */
let lastBase: { base: string; dir: string } | undefined;

function resolveHref(href: string, base: string | undefined): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(href)) return href.startsWith('file://') ? href.slice(7) : href;
  // relative to a document on the web: URL rules (an absolute path stays on the document's host)
  if (base && /^[a-z][a-z0-9+.-]*:\/\//i.test(base) && !base.startsWith('file://')) return new URL(href, base).href;
  if (path.isAbsolute(href)) return href;
  if (!base) return path.resolve(href);
  if (lastBase?.base !== base) lastBase = { base, dir: path.dirname(path.resolve(base.replace(/^file:\/\//, ''))) };
  // the common case, ./name or name/name without dot segments: a plain join (flat strings, no path walk)
  if (!/(^|\/)\.\.?(\/|$)/.test(href.replace(/^\.\//, '')) && !href.includes('\\')) {
    const rel = href.startsWith('./') ? href.slice(2) : href;
    return `${lastBase.dir}/${rel}`;
  }
  return path.resolve(lastBase.dir, href);
}

function looksRaster(name: string, a: Record<string, unknown>): boolean {
  const roles = Array.isArray(a.roles) ? (a.roles as unknown[]) : [];
  if (roles.includes('thumbnail') || roles.includes('overview') || roles.includes('metadata')) return false;
  if (typeof a.type === 'string') return RASTER_TYPE.test(a.type);
  return typeof a.href === 'string' && RASTER_EXT.test(a.href) && name !== 'thumbnail';
}

/** The compact form of one STAC Item (a GeoJSON Feature). */
export function parseStacItem(raw: unknown, options: StacParseOptions = {}): CatalogItem {
  if (!isObject(raw)) bad('a STAC item must be a JSON object');
  const id = typeof raw.id === 'string' || typeof raw.id === 'number' ? String(raw.id) : bad('a STAC item has no id');
  const where = `STAC item ${id.slice(0, 80)}`;
  const props = isObject(raw.properties) ? raw.properties : {};
  const dt = parseTime(props.datetime ?? props.start_datetime ?? raw.datetime ?? raw.start_datetime, where);
  const endRaw = props.end_datetime ?? raw.end_datetime;
  const end = endRaw ? parseTime(endRaw, where) : dt;
  const rawAssets = isObject(raw.assets) ? raw.assets : bad(`${where} has no assets`);
  const itemEpsg = epsgOf(props['proj:code'] ?? raw['proj:code'], props['proj:epsg'] ?? raw['proj:epsg']);
  const itemShape = finiteArray(props['proj:shape'] ?? raw['proj:shape'], 2);
  const itemTransform = finiteArray(props['proj:transform'] ?? raw['proj:transform'], 6);
  const wanted = options.assets;
  const assets: Record<string, CatalogAsset> = {};
  for (const [name, a] of Object.entries(rawAssets)) {
    if (!isObject(a) || typeof a.href !== 'string') continue;
    if (wanted ? !wanted.includes(name) : !looksRaster(name, a)) continue;
    const epsg = epsgOf(a['proj:code'], a['proj:epsg']) ?? itemEpsg;
    const shape = finiteArray(a['proj:shape'], 2) ?? itemShape;
    const t = finiteArray(a['proj:transform'], 6) ?? itemTransform;
    const bands = Array.isArray(a['raster:bands'])
      ? (a['raster:bands'] as unknown[])
      : Array.isArray(a.bands)
        ? (a.bands as unknown[])
        : [];
    const b0 = isObject(bands[0]) ? bands[0] : {};
    const dtype = typeof b0.data_type === 'string' ? DTYPE_OF[b0.data_type] : undefined;
    const nd = b0.nodata;
    const nodata = typeof nd === 'number' ? nd : nd === 'nan' ? Number.NaN : undefined;
    const grid = shape && t && shape[0] >= 1 && shape[1] >= 1;
    // one object shape for every asset (tens of thousands are kept: no per-asset dictionaries)
    const asset: CatalogAsset = {
      href: resolveHref(a.href, options.base),
      epsg,
      transform: grid ? gdalTransformOf(t) : undefined,
      width: grid ? Math.round(shape[1]) : undefined,
      height: grid ? Math.round(shape[0]) : undefined,
      dtype,
      nodata,
      bandCount: bands.length > 0 ? bands.length : undefined,
    };
    assets[name] = asset;
  }
  if (wanted) {
    const missing = wanted.filter((w) => !assets[w]);
    if (missing.length === wanted.length) bad(`${where} has none of the assets ${wanted.join(', ')}`);
  } else if (Object.keys(assets).length === 0) {
    bad(`${where} has no GeoTIFF asset; name the assets to use with assets: [...]`);
  }
  const rb = finiteArray(raw.bbox, 4);
  let bbox: Bounds | undefined;
  if (rb) bbox = rb.length >= 6 ? [rb[0], rb[1], rb[3], rb[4]] : [rb[0], rb[1], rb[2], rb[3]];
  if (!bbox) bad(`${where} has no bbox`);
  if (!(bbox[0] <= bbox[2] && bbox[1] <= bbox[3]))
    bad(`${where}: bbox [${bbox.join(', ')}] is not [west, south, east, north]`);
  const sortKeys: Record<string, number | string> = {};
  for (const f of new Set(['eo:cloud_cover', ...(options.sortFields ?? [])])) {
    if (f === 'datetime' || f === 'id') continue;
    const v = props[f] ?? raw[f];
    if (typeof v === 'number' || typeof v === 'string') sortKeys[f] = v;
    else if (typeof v === 'bigint') sortKeys[f] = Number(v);
    else if (v instanceof Date) sortKeys[f] = v.getTime();
  }
  const collection = typeof raw.collection === 'string' ? raw.collection : undefined;
  return { id, collection, datetime: dt, endDatetime: end, bbox, assets, sortKeys };
}

/** The features of an ItemCollection / FeatureCollection, a single Item, or a plain array of items. */
export function featuresOf(doc: unknown): unknown[] {
  if (Array.isArray(doc)) return doc;
  if (isObject(doc)) {
    if (Array.isArray(doc.features)) return doc.features;
    if (doc.type === 'Feature') return [doc];
  }
  return bad('a STAC document must be an ItemCollection (FeatureCollection), an Item, or a list of items');
}

function notJson(where: string, detail: string): never {
  throw new RenderError('bad-request', `${where} is not valid JSON: ${detail}`);
}

/** Index just past the JSON value starting at `i` (strings, numbers, literals, nested objects and arrays). */
function skipValue(text: string, i: number, where: string): number {
  const n = text.length;
  let depth = 0;
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // a string: to its closing quote, over escapes
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
      if (i >= n) notJson(where, 'a string does not end');
      if (depth === 0) return i + 1;
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
      if (depth === 0) return i + 1;
      if (depth < 0) notJson(where, `unexpected "${text[i]}" at ${i}`);
    } else if (depth === 0 && (c === 0x2c || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) {
      return i;
    }
  }
  if (depth !== 0) notJson(where, 'the document ends inside an object or array');
  return i;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09 && c !== 0xfeff) break;
    i++;
  }
  return i;
}

function parseSlice(text: string, a: number, b: number, where: string): unknown {
  try {
    return JSON.parse(text.slice(a, b));
  } catch (e) {
    return notJson(where, (e as Error).message);
  }
}

/**
 * Read a FeatureCollection (or an array of items, or one Item) one feature at a time: each feature's text is parsed
 * and handed to `onFeature` on its own, so a 20,000-item document never exists as one object graph (its text and
 * one feature at a time do). Returns the rest of the document (links, type...) with `features` left out.
 */
export function eachFeature(
  text: string,
  onFeature: (raw: unknown) => void,
  where = 'the catalogue',
): Record<string, unknown> {
  let i = skipSpace(text, 0);
  const elements = (from: number): number => {
    // from is just past "["
    let j = skipSpace(text, from);
    if (text[j] === ']') return j + 1;
    for (;;) {
      const end = skipValue(text, j, where);
      onFeature(parseSlice(text, j, end, where));
      j = skipSpace(text, end);
      if (text[j] === ',') j = skipSpace(text, j + 1);
      else if (text[j] === ']') return j + 1;
      else notJson(where, `expected "," or "]" at ${j}`);
    }
  };
  if (text[i] === '[') {
    elements(i + 1);
    return {};
  }
  if (text[i] !== '{') notJson(where, 'it does not start with "{" or "["');
  const rest: Record<string, unknown> = {};
  let sawFeatures = false;
  i = skipSpace(text, i + 1);
  if (text[i] === '}') return rest;
  for (;;) {
    if (text[i] !== '"') notJson(where, `expected a key at ${i}`);
    const keyEnd = skipValue(text, i, where);
    const key = parseSlice(text, i, keyEnd, where) as string;
    i = skipSpace(text, keyEnd);
    if (text[i] !== ':') notJson(where, `expected ":" at ${i}`);
    i = skipSpace(text, i + 1);
    if (key === 'features' && text[i] === '[') {
      i = elements(i + 1);
      sawFeatures = true;
    } else {
      const end = skipValue(text, i, where);
      rest[key] = parseSlice(text, i, end, where);
      i = end;
    }
    i = skipSpace(text, i);
    if (text[i] === ',') i = skipSpace(text, i + 1);
    else if (text[i] === '}') break;
    else notJson(where, `expected "," or "}" at ${i}`);
  }
  if (!sawFeatures && rest.type === 'Feature') onFeature(rest);
  return sawFeatures ? { ...rest, features: [] } : rest;
}

/** The value an item is ordered by for one sortby field (NaN / '' sort last). */
function sortValue(item: CatalogItem, field: string): number | string | undefined {
  if (field === 'datetime' || field === 'start_datetime') return item.datetime;
  if (field === 'end_datetime') return item.endDatetime;
  if (field === 'id') return item.id;
  if (field === 'collection') return item.collection;
  return item.sortKeys[field];
}

/** Order items by sortby (stable; missing values last). */
export function sortItems(items: CatalogItem[], sortby: readonly StacSortBy[]): CatalogItem[] {
  if (sortby.length === 0) return items;
  const decorated = items.map((item, i) => ({ item, i }));
  decorated.sort((a, b) => {
    for (const { field, direction } of sortby) {
      const x = sortValue(a.item, field);
      const y = sortValue(b.item, field);
      const xm = x === undefined || (typeof x === 'number' && Number.isNaN(x));
      const ym = y === undefined || (typeof y === 'number' && Number.isNaN(y));
      if (xm || ym) {
        if (xm && ym) continue;
        return xm ? 1 : -1;
      }
      const c = x! < y! ? -1 : x! > y! ? 1 : 0;
      if (c !== 0) return direction === 'asc' ? c : -c;
    }
    return a.i - b.i;
  });
  return decorated.map((d) => d.item);
}

/** Keep the items that match the parts of a query a file can answer (collections, ids, bbox, datetime). */
export function filterItems(items: readonly CatalogItem[], q: StacQuery): CatalogItem[] {
  const interval = q.datetime ? parseInterval(q.datetime) : undefined;
  const cols = q.collections && q.collections.length > 0 ? new Set(q.collections) : undefined;
  const ids = q.ids && q.ids.length > 0 ? new Set(q.ids) : undefined;
  return items.filter((it) => {
    if (cols && !(it.collection && cols.has(it.collection))) return false;
    if (ids && !ids.has(it.id)) return false;
    if (q.bbox) {
      const b = q.bbox;
      if (it.bbox[0] > b[2] || it.bbox[2] < b[0] || it.bbox[1] > b[3] || it.bbox[3] < b[1]) return false;
    }
    if (interval && !(it.endDatetime >= interval[0] && it.datetime <= interval[1])) return false;
    return true;
  });
}
