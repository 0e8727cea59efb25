/**
 * Tiles and data for QGIS, GDAL and web maps: XYZ tiles in WebMercatorQuad, TileJSON 3.0.0, WMTS 1.0.0
 * capabilities, point values, statistics, a bounded preview and bbox crops (image or GeoTIFF of the values).
 *
 * Every image request runs the same steps: validate (400/404 before anything else), compute the ETag from the
 * mosaic etag and the normalised request (a matching If-None-Match answers 304 with no pixel read), look the
 * encoded image up in the tile cache (concurrent identical requests render once), else render -> style -> encode.
 *
 * Areas outside the mosaic are transparent. A tile that does not touch the mosaic (or has no valid pixel) is a
 * 200 with a fully transparent image in the requested format (black for JPEG, which has no alpha) and the header
 * `OATiles-hint: empty`: every client draws it (QGIS, GDAL, OpenLayers, Leaflet, MapLibre), caches it like any
 * tile, and draws the neighbouring tiles normally; 204 is not handled by MapLibre or ArcGIS Online.
 */
import { type Context, Hono } from 'hono';
import { assembleCog, cogLevels, planCog } from '../materialize/cog.layout.ts';
import { encodeTile } from '../materialize/tile.encode.ts';
import { crsFromEpsg, parseCrs } from '../render/crs.ts';
import { encodeImage, IMAGE_MIME, type ImageFormat } from '../render/encode.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { parseInterval } from '../render/stac.ts';
import { DEFAULT_HISTOGRAM_BINS, MAX_HISTOGRAM_BINS } from '../render/statistics.ts';
import { parseExpression } from '../render/style.expression.ts';
import { fixedRanges, stretchFromPercentiles, styleImage } from '../render/style.stretch.ts';
import { type Style, styleInputBands, styleKey, styleValues } from '../render/style.ts';
import {
  boundsInSet,
  finestUsefulLevel,
  nativeTileMatrixSet,
  tileMatrixSetFor,
  tmsTileGrid,
  worldTileMatrixSet,
} from '../render/tilematrix.sets.ts';
import { TILE_SIZE_DEFAULT, tileBoundsWgs84, zoomForResolution } from '../render/tilematrix.ts';
import { createTransformer, transformBounds } from '../render/transform.ts';
import {
  allocTyped,
  type Bounds,
  type Crs,
  type DType,
  dtypeRange,
  type Grid,
  gridBounds,
  isFloat,
  type TypedArray,
} from '../render/types.ts';
import type { AppDeps } from './deps.ts';
import { RequestError } from './errors.ts';
import { ifNoneMatch, strongEtag } from './http.range.ts';
import { appMetrics } from './metrics.ts';
import { intParam } from './params.ts';
import { type AppEnv, timed } from './request.ts';
import { parseBands, parseNodata, parseStyle, type StyleQuery, styleQueryString } from './style.query.ts';
import { type CachedImage, TileCache, type TileCacheResult } from './tile.cache.ts';
import { baseUrl, MOSAIC_ID } from './urls.ts';
import { type WmtsSetOffer, wmtsCapabilities } from './wmts.capabilities.ts';

type Ctx = Context<AppEnv>;

const TILE_SIZES = [256, 512] as const;
const DEFAULT_PREVIEW_SIZE = 1024;
/** Largest side of a crop image or GeoTIFF, whatever the pixel budget. */
const MAX_CROP_SIDE = 16384;
const CROP_TIFF_BLOCK_SIZE = 512;
const GEOTIFF_MIME = 'image/tiff; application=geotiff';

/** Parsed tile URLs remembered (about half a KiB each), and the longest URL remembered. */
const MAX_TILE_PLANS = 4096;
const MAX_TILE_PLAN_URL_LENGTH = 1024;

/** What an image answer is cached and validated by. */
interface CacheEntry {
  readonly etag: string;
  /** tile cache key: mosaic id + etag + normalised request */
  readonly cacheKey: string;
}

/** A validated tile request: everything the handler needs, derived from the URL and the mosaic alone. */
interface TilePlan extends CacheEntry {
  /** the mosaic (and its etag at the time) the plan was made for */
  readonly mosaic: Mosaic;
  readonly mosaicEtag: string;
  /** the tile's grid in its tile matrix set's CRS */
  readonly grid: Grid;
  readonly format: ImageFormat;
  readonly style: Style;
  /** the tile touches the mosaic's (padded) bounds; otherwise it is empty without rendering */
  readonly inside: boolean;
}

const FORMAT_ALIASES: Readonly<Record<string, ImageFormat>> = { png: 'png', webp: 'webp', jpg: 'jpg', jpeg: 'jpg' };

function imageFormat(ext: string): ImageFormat {
  const f = FORMAT_ALIASES[ext.toLowerCase()];
  if (!f) throw new RequestError('bad-request', `format "${ext.slice(0, 10)}" is not served; use .png, .webp or .jpg`);
  return f;
}

/** `{y}.{fmt}` or `{y}@2x.{fmt}`. */
function parseTileFile(file: string): { yText: string; scale: 1 | 2; format: ImageFormat } {
  const m = /^([^.@]*)(@2x)?\.([A-Za-z]+)$/.exec(file);
  if (!m)
    throw new RequestError(
      'bad-request',
      `tile "${file.slice(0, 40)}" must look like {y}.png, {y}.webp, {y}.jpg or {y}@2x.png`,
    );
  return { yText: m[1], scale: m[2] ? 2 : 1, format: imageFormat(m[3]) };
}

function tileSizeParam(text: string | undefined): number {
  if (text === undefined || text === '') return TILE_SIZE_DEFAULT;
  const n = Number(text);
  if (!(TILE_SIZES as readonly number[]).includes(n))
    throw new RequestError('bad-request', `tilesize must be 256 or 512 (got "${text.slice(0, 10)}")`);
  return n;
}

function numberParam(text: string | undefined, name: string, min: number, max: number): number {
  const n = text === undefined || text.trim() === '' ? Number.NaN : Number(text);
  if (!Number.isFinite(n) || n < min || n > max) {
    throw new RequestError(
      'bad-request',
      `${name} must be a number between ${min} and ${max} (got "${(text ?? '').slice(0, 30)}")`,
    );
  }
  return n;
}

function parseBbox(text: string, what: string): Bounds {
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
function requestCrs(text: string): Crs {
  try {
    return parseCrs(text);
  } catch (e) {
    throw new RequestError('bad-request', `crs: ${(e as Error).message}`);
  }
}

/**
 * The `datetime` of an image request (catalogue mosaics: only items whose time overlaps it), and its part of the
 * cache key (normalised, so equal intervals share a cache entry).
 */
function datetimeOf(c: Ctx): { interval?: readonly [number, number]; key: string } {
  const text = c.req.query('datetime');
  if (text === undefined || text === '') return { key: '' };
  const interval = parseInterval(text);
  const iso = (t: number) => (Number.isFinite(t) ? new Date(t).toISOString() : '..');
  return { interval, key: `|dt=${iso(interval[0])}/${iso(interval[1])}` };
}

/**
 * Band names a request may use for `bN` in `bands` and `expression`: the assets of a catalogue mosaic (B04, B08,
 * nir...). Names that look like bN, or are not plain identifiers, are left out.
 */
function bandAliases(m: Mosaic | undefined): Map<string, number> | undefined {
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

/** The style parameters of a request; for a catalogue mosaic, band names (asset names) stand for bN. */
function queryOf(c: Ctx, m?: Mosaic): StyleQuery {
  const aliases = bandAliases(m);
  return {
    get: (n) => {
      const v = c.req.query(n);
      return v === undefined ? v : aliasBandNames(n, v, aliases);
    },
    getAll: (n) => (c.req.queries(n) ?? []).map((v) => aliasBandNames(n, v, aliases)),
  };
}

/** True when some pixel of a validity mask is set. */
function anyValid(mask: Uint8Array): boolean {
  for (let i = 0; i < mask.length; i++) if (mask[i] !== 0) return true;
  return false;
}

function overlaps(a: Bounds, b: Bounds): boolean {
  return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
}

/** Bounds grown by 1% (+ a hair): densified bounds may miss a sliver of a curved edge. */
function padded(b: Bounds): Bounds {
  const pad = 0.01 * Math.max(b[2] - b[0], b[3] - b[1]) + 1e-9;
  return [b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad];
}

/** The mosaic's WGS 84 bounds, padded. */
function paddedWgs84(m: Mosaic): Bounds {
  return padded(m.boundsWgs84);
}

/** Metres per pixel of the mosaic in EPSG:3857 at its own location (the finer of x and y). */
function mercatorResolution(m: Mosaic): number {
  const b = transformBounds(gridBounds(m.grid), m.grid.crs, crsFromEpsg(3857));
  return Math.min((b[2] - b[0]) / m.grid.width, (b[3] - b[1]) / m.grid.height);
}

/**
 * Zooms of a mosaic: maxzoom is the first zoom whose pixels are at least as fine as the mosaic's (every source
 * pixel visible), minzoom the last zoom at which the whole mosaic still fits in about one tile.
 */
export function mosaicZooms(m: Mosaic, tileSize: number, maxZoomLimit: number): { minzoom: number; maxzoom: number } {
  const res = mercatorResolution(m);
  const maxzoom = Math.min(maxZoomLimit, zoomForResolution(res, tileSize, 'upper'));
  const span = res * Math.max(m.grid.width, m.grid.height);
  const minzoom = Math.min(maxzoom, zoomForResolution(span / tileSize, tileSize, 'lower'));
  return { minzoom, maxzoom };
}

/** A grid over the whole mosaic in its native CRS whose longest side is min(maxSize, the mosaic's). */
export function previewGrid(grid: Grid, maxSize: number): Grid {
  const scale = Math.max(1, Math.max(grid.width, grid.height) / maxSize);
  const width = Math.max(1, Math.round(grid.width / scale));
  const height = Math.max(1, Math.round(grid.height / scale));
  const [x0, y0, x1, y1] = gridBounds(grid);
  return { crs: grid.crs, transform: [x0, (x1 - x0) / width, 0, y1, 0, -(y1 - y0) / height], width, height };
}

/**
 * The grid of a crop: `bbox` in `crs`, `width` x `height` pixels. A missing size keeps the mosaic's pixel count
 * along the bbox diagonal (as gdalwarp's default) and the bbox's aspect ratio.
 */
export function cropGrid(m: Mosaic, bbox: Bounds, crs: Crs, width?: number, height?: number): Grid {
  const [x0, y0, x1, y1] = bbox;
  const w = x1 - x0;
  const h = y1 - y0;
  if (width === undefined || height === undefined) {
    if (width !== undefined) height = Math.max(1, Math.round((width * h) / w));
    else if (height !== undefined) width = Math.max(1, Math.round((height * w) / h));
    else {
      const nb = crs.epsg === m.grid.crs.epsg ? bbox : transformBounds(bbox, crs, m.grid.crs);
      const nw = (nb[2] - nb[0]) / m.grid.transform[1];
      const nh = (nb[3] - nb[1]) / -m.grid.transform[5];
      const res = Math.hypot(w, h) / Math.hypot(nw, nh);
      width = Math.max(1, Math.round(w / res));
      height = Math.max(1, Math.round(h / res));
    }
  }
  return { crs, transform: [x0, w / width, 0, y1, 0, -h / height], width, height };
}

/** At most `max` renders at once; the rest wait their turn (a slot is handed straight to the next waiter). */
class RenderLimiter {
  private readonly max: number;
  private active = 0;
  private readonly queue: (() => void)[] = [];

  constructor(max: number) {
    this.max = max;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active < this.max) this.active++;
    else await new Promise<void>((resolve) => this.queue.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** Values of a GeoTIFF crop level: one array per band of the output dtype, invalid pixels set to `fill`. */
interface DataLevel {
  readonly bands: TypedArray[];
  readonly invalid: number;
}

function representable(dtype: DType, v: number): boolean {
  if (isFloat(dtype)) return true;
  const [lo, hi] = dtypeRange(dtype);
  return Number.isInteger(v) && v >= lo && v <= hi;
}

/**
 * The sets a mosaic's WMTS offers: WebMercatorQuad to its maxzoom, WorldCRS84Quad to the first level as fine as
 * the mosaic, and the native grid (when the mosaic has one) at every level.
 */
export function wmtsOffers(m: Mosaic, tileSize: number, maxZoomLimit: number): WmtsSetOffer[] {
  const merc = worldTileMatrixSet('WebMercatorQuad', { tileSize });
  const crs84 = worldTileMatrixSet('WorldCRS84Quad', { tileSize });
  const offers: WmtsSetOffer[] = [
    { set: merc, maxLevel: mosaicZooms(m, tileSize, maxZoomLimit).maxzoom },
    { set: crs84, maxLevel: Math.min(maxZoomLimit, finestUsefulLevel(crs84, m.grid)) },
  ];
  const native = nativeTileMatrixSet(m.grid, m.title || m.id, tileSize);
  if (native) offers.push({ set: native, maxLevel: native.maxLevel });
  return offers;
}

export function tilesRoutes(deps: AppDeps): Hono<AppEnv> {
  const { config, catalog, engine } = deps;
  const limits = config.limits;
  const metrics = appMetrics(deps.metrics);
  const cache = new TileCache({ maxBytes: config.cache.tileBytes });
  const statistics = deps.statistics;
  const limiter = new RenderLimiter(limits.maxConcurrentRenders);
  const emptyImages = new Map<string, Promise<Uint8Array>>();
  const styleLimits = { maxExpressionLength: limits.maxExpressionLength };

  /** A fully transparent image (black for JPEG), made once per format and size. */
  function emptyImage(format: ImageFormat, width: number, height: number): Promise<Uint8Array> {
    const key = `${format}:${width}x${height}`;
    let p = emptyImages.get(key);
    if (!p) {
      const made = encodeImage(new Uint8Array(width * height * 2), width, height, 2, format);
      if (width * height <= 512 * 512) {
        emptyImages.set(key, made);
        made.catch(() => emptyImages.delete(key));
      }
      p = made;
    }
    return p;
  }

  /** [min, max] per output band: the request's rescale, 0..255 for 8-bit bands, else the 2nd-98th percentile. */
  async function stretchOf(m: Mosaic, style: Style): Promise<readonly (readonly [number, number])[]> {
    const fixed = fixedRanges(style, m.dtype);
    if (fixed) return fixed;
    // shared by every request of this mosaic: never cancelled by one of them
    const s = await statistics.get(m, {
      bands: style.expression ? undefined : styleInputBands(style, m.bandCount),
      expression: style.expression,
      nodata: style.nodata,
    });
    return s.bands.map((b) => stretchFromPercentiles(b.percentiles.p2 ?? Number.NaN, b.percentiles.p98 ?? Number.NaN));
  }

  /** Render, style and encode one image of `grid`. */
  async function renderImage(
    c: Ctx,
    m: Mosaic,
    grid: Grid,
    format: ImageFormat,
    style: Style,
    kind: string,
    signal: AbortSignal,
  ): Promise<CachedImage> {
    const info = c.get('req');
    const bands = styleInputBands(style, m.bandCount).map((b) => b - 1);
    const t0 = performance.now();
    const pixels = await limiter.run(() =>
      timed(info, 'render', () =>
        engine.render(m, grid, { resampling: style.resampling, bands, signal, datetime: datetimeOf(c).interval }),
      ),
    );
    metrics.renderSeconds.observe({ kind }, (performance.now() - t0) / 1000);
    const values = styleValues(pixels, style);
    if (!anyValid(values.mask)) {
      return { body: await emptyImage(format, grid.width, grid.height), contentType: IMAGE_MIME[format], empty: true };
    }
    const ranges = await timed(info, 'stretch', () => stretchOf(m, style));
    const img = styleImage(values, ranges, style.colormap);
    const body = await timed(info, 'encode', () => encodeImage(img.data, img.width, img.height, img.channels, format));
    return { body, contentType: IMAGE_MIME[format], empty: false };
  }

  function cacheHeaders(etag: string): Record<string, string> {
    return { ETag: etag, 'Cache-Control': config.server.cacheControl };
  }

  /** The ETag and tile cache key of an image request: `key` is the normalised request. */
  function cacheEntry(m: Mosaic, key: string): CacheEntry {
    return { etag: strongEtag(m.etag, key), cacheKey: `${m.id}|${m.etag}|${key}` };
  }

  /** 304 when If-None-Match matches; otherwise the cached or freshly produced body. */
  async function serveCached(
    c: Ctx,
    entry: CacheEntry,
    produce: (signal: AbortSignal) => Promise<CachedImage>,
    extra?: Record<string, string>,
  ): Promise<Response> {
    const info = c.get('req');
    const { etag } = entry;
    if (ifNoneMatch(c.req.header('if-none-match'), etag)) {
      info.fields.cache = 'not-modified';
      metrics.tileCache.inc({ result: 'not-modified' });
      return c.body(null, 304, cacheHeaders(etag));
    }
    // a hit is answered at once; a render gets the request's signal (aborted on client disconnect and deadline)
    let image = cache.peek(entry.cacheKey);
    let result: TileCacheResult = 'hit';
    if (!image) ({ image, result } = await cache.getOrRender(entry.cacheKey, produce, { signal: info.signal }));
    info.fields.cache = result;
    metrics.tileCache.inc({ result });
    const h: Record<string, string> = { ETag: etag, 'Cache-Control': config.server.cacheControl };
    if (extra) Object.assign(h, extra);
    h['Content-Type'] = image.contentType;
    if (image.empty) h['OATiles-hint'] = 'empty';
    return c.body(image.body as Uint8Array<ArrayBuffer>, 200, h);
  }

  /** ETag + 304 for small documents (JSON, XML) whose content depends on `parts`. */
  function conditional(c: Ctx, parts: string[]): { etag: string; notModified?: Response } {
    const etag = strongEtag(...parts);
    if (ifNoneMatch(c.req.header('if-none-match'), etag))
      return { etag, notModified: c.body(null, 304, cacheHeaders(etag)) };
    return { etag };
  }

  /**
   * The validated, normalised form of recent tile URLs: a repeated request skips parsing and hashing. A plan is
   * used only for the mosaic object and etag it was made for; only successful parses are kept; oldest go first.
   */
  const tilePlans = new Map<string, TilePlan>();

  function tilePlan(c: Ctx, m: Mosaic): TilePlan {
    const url = c.req.url;
    const known = tilePlans.get(url);
    if (known && known.mosaic === m && known.mosaicEtag === m.etag) return known;
    const tmsText = c.req.param('tms');
    const { yText, scale, format } = parseTileFile(c.req.param('file')!);
    const tileSize = scale === 2 ? 512 : tileSizeParam(c.req.query('tilesize'));
    // the XYZ route is WebMercatorQuad; /tiles/{tms}/... names the set
    const set = tileMatrixSetFor(tmsText ?? 'WebMercatorQuad', m, tileSize);
    const maxLevel = set.id === 'native' ? set.maxLevel : Math.min(set.maxLevel, limits.maxZoom);
    const z = intParam(c.req.param('z'), 'zoom z', 0, maxLevel);
    const matrix = set.matrix(z);
    const x = intParam(c.req.param('x'), `x at zoom ${z}`, 0, matrix.matrixWidth - 1);
    const y = intParam(yText, `y at zoom ${z}`, 0, matrix.matrixHeight - 1);
    const style = parseStyle(queryOf(c, m), m.bandCount, styleLimits);
    const key = `tile|${set.id}|${z}/${x}/${y}|${tileSize}|${format}|${styleKey(style)}${datetimeOf(c).key}`;
    const grid = tmsTileGrid(set, z, x, y);
    const inside =
      set.id === 'WebMercatorQuad'
        ? overlaps(tileBoundsWgs84(z, x, y), paddedWgs84(m))
        : overlaps(gridBounds(grid), padded(boundsInSet(set, m.grid)));
    const plan: TilePlan = { ...cacheEntry(m, key), mosaic: m, mosaicEtag: m.etag, grid, format, style, inside };
    if (url.length <= MAX_TILE_PLAN_URL_LENGTH) {
      if (known) tilePlans.delete(url);
      else if (tilePlans.size >= MAX_TILE_PLANS) tilePlans.delete(tilePlans.keys().next().value!);
      tilePlans.set(url, plan);
    }
    return plan;
  }

  function tileHandler() {
    return async (c: Ctx) => {
      const m = catalog.get(c.req.param('id')!);
      const p = tilePlan(c, m);
      return serveCached(c, p, async (signal) => {
        if (!p.inside)
          return {
            body: await emptyImage(p.format, p.grid.width, p.grid.height),
            contentType: IMAGE_MIME[p.format],
            empty: true,
          };
        return renderImage(c, m, p.grid, p.format, p.style, 'tile', signal);
      });
    };
  }

  async function renderDataLevel(
    m: Mosaic,
    grid: Grid,
    style: Style,
    bands: readonly number[],
    dtype: DType,
    fill: number,
    signal: AbortSignal,
    datetime?: readonly [number, number],
  ): Promise<DataLevel> {
    const pixels = await limiter.run(() =>
      engine.render(m, grid, { resampling: style.resampling, bands: bands.map((b) => b - 1), signal, datetime }),
    );
    const values = styleValues(pixels, style);
    const n = grid.width * grid.height;
    let invalid = 0;
    for (let i = 0; i < n; i++) if (!values.mask[i]) invalid++;
    const out = values.bands.map((src) => {
      const a = allocTyped(dtype, n);
      for (let i = 0; i < n; i++) a[i] = values.mask[i] ? src[i] : fill;
      return a;
    });
    return { bands: out, invalid };
  }

  /** A GeoTIFF (COG layout, deflate) of the data values of `grid`, with overviews rendered by the engine. */
  async function renderGeoTiff(c: Ctx, m: Mosaic, grid: Grid, style: Style, signal: AbortSignal): Promise<CachedImage> {
    const info = c.get('req');
    const bands = styleInputBands(style, m.bandCount, { image: false });
    const dtype: DType = style.expression ? 'float32' : m.dtype;
    let nodata = style.nodata ?? m.nodata;
    if (nodata !== undefined && !representable(dtype, nodata)) {
      throw new RequestError(
        'bad-request',
        `nodata ${nodata} cannot be stored in ${dtype} data; give nodata= a value ${dtype} can hold`,
      );
    }
    if (nodata === undefined && isFloat(dtype)) nodata = Number.NaN;
    const fill = nodata ?? 0;
    const levels = cogLevels(grid.width, grid.height, CROP_TIFF_BLOCK_SIZE);
    const [x0, y0, x1, y1] = gridBounds(grid);
    const data = await timed(info, 'render', () =>
      Promise.all(
        levels.map((l) => {
          const g: Grid =
            l.level === 0
              ? grid
              : {
                  crs: grid.crs,
                  transform: [x0, (x1 - x0) / l.width, 0, y1, 0, -(y1 - y0) / l.height],
                  width: l.width,
                  height: l.height,
                };
          return renderDataLevel(m, g, style, bands, dtype, fill, signal, datetimeOf(c).interval);
        }),
      ),
    );
    if (nodata === undefined && data.some((d) => d.invalid > 0)) nodata = 0;
    const bandCount = data[0].bands.length;
    const layout = planCog({
      width: grid.width,
      height: grid.height,
      bands: bandCount,
      dtype,
      blockSize: CROP_TIFF_BLOCK_SIZE,
      compression: 'deflate',
      predictor: isFloat(dtype) ? 3 : 2,
      transform: grid.transform,
      epsg: grid.crs.epsg,
      geographic: grid.crs.geographic,
      nodata,
      photometric: 'minisblack',
      ghost: { leaderTrailer: true },
    });
    const bs = CROP_TIFF_BLOCK_SIZE;
    const payloads = new Array<Uint8Array | undefined>(layout.tileCount);
    await timed(info, 'encode', async () => {
      for (const l of levels) {
        const lv = data[l.level];
        for (let ty = 0; ty < l.tilesY; ty++) {
          for (let tx = 0; tx < l.tilesX; tx++) {
            const w = Math.min(bs, l.width - tx * bs);
            const h = Math.min(bs, l.height - ty * bs);
            const tile = lv.bands.map((src) => {
              const t = allocTyped(dtype, bs * bs);
              if (fill !== 0) t.fill(fill);
              for (let r = 0; r < h; r++) {
                const from = (ty * bs + r) * l.width + tx * bs;
                t.set(src.subarray(from, from + w) as never, r * bs);
              }
              return t;
            });
            payloads[layout.tileIndexInFile(l.level, tx, ty)] = await encodeTile(tile, {
              dtype,
              bands: bandCount,
              blockSize: bs,
              compression: 'deflate',
              predictor: isFloat(dtype) ? 3 : 2,
            });
          }
        }
      }
    });
    return { body: assembleCog(layout, payloads), contentType: GEOTIFF_MIME, empty: false };
  }

  const r = new Hono<AppEnv>();
  const M = `/mosaics/:id{${MOSAIC_ID}}`;

  r.get(`${M}/tiles/:z/:x/:file`, tileHandler());
  r.get(`${M}/tiles/:tms/:z/:x/:file`, tileHandler());

  r.get(`${M}/tilejson.json`, (c) => {
    const m = catalog.get(c.req.param('id'));
    const tileSize = tileSizeParam(c.req.query('tilesize'));
    const format = imageFormat(c.req.query('format') ?? 'png');
    parseStyle(queryOf(c, m), m.bandCount, styleLimits);
    const base = baseUrl(c, config);
    const dt = c.req.query('datetime');
    if (dt) parseInterval(dt);
    const q = [
      styleQueryString(queryOf(c)),
      tileSize === TILE_SIZE_DEFAULT ? '' : `tilesize=${tileSize}`,
      dt ? `datetime=${encodeURIComponent(dt)}` : '',
    ]
      .filter(Boolean)
      .join('&');
    const cond = conditional(c, [m.etag, 'tilejson', base, q, format]);
    if (cond.notModified) return cond.notModified;
    const { minzoom, maxzoom } = mosaicZooms(m, tileSize, limits.maxZoom);
    const [w, s, e, n] = m.boundsWgs84;
    const url = `${base}/mosaics/${encodeURIComponent(m.id)}/tiles/{z}/{x}/{y}.${format}${q ? `?${q}` : ''}`;
    c.header('ETag', cond.etag);
    c.header('Cache-Control', config.server.cacheControl);
    return c.json({
      tilejson: '3.0.0',
      name: m.title,
      description: `cogmill mosaic ${m.id}: ${m.sources.length} source(s), ${m.bandCount} band(s) of ${m.dtype}`,
      version: '1.0.0',
      scheme: 'xyz',
      tiles: [url],
      minzoom,
      maxzoom,
      bounds: [w, s, e, n],
      center: [(w + e) / 2, (s + n) / 2, Math.min(maxzoom, minzoom + 1)],
    });
  });

  r.get(`${M}/WMTSCapabilities.xml`, (c) => {
    const m = catalog.get(c.req.param('id'));
    const tileSize = tileSizeParam(c.req.query('tilesize'));
    const fmt = c.req.query('format');
    const formats: ImageFormat[] = fmt ? [imageFormat(fmt)] : ['png', 'webp', 'jpg'];
    parseStyle(queryOf(c, m), m.bandCount, styleLimits);
    const base = baseUrl(c, config);
    const query = styleQueryString(queryOf(c));
    const cond = conditional(c, [m.etag, 'wmts', base, query, String(tileSize), formats.join(',')]);
    if (cond.notModified) return cond.notModified;
    const mosaicUrl = `${base}/mosaics/${encodeURIComponent(m.id)}`;
    const xml = wmtsCapabilities({
      mosaic: m,
      mosaicUrl,
      capabilitiesUrl: `${mosaicUrl}/WMTSCapabilities.xml`,
      formats,
      query: [query, tileSize === TILE_SIZE_DEFAULT ? '' : `tilesize=${tileSize}`].filter(Boolean).join('&'),
      sets: wmtsOffers(m, tileSize, limits.maxZoom),
    });
    return c.body(xml, 200, { 'Content-Type': 'application/xml; charset=utf-8', ...cacheHeaders(cond.etag) });
  });

  r.get(`${M}/point`, async (c) => {
    const m = catalog.get(c.req.param('id'));
    const lon = numberParam(c.req.query('lon'), 'lon', -180, 180);
    const lat = numberParam(c.req.query('lat'), 'lat', -90, 90);
    const [x, y] = createTransformer(crsFromEpsg(4326), m.grid.crs).point(lon, lat);
    const gt = m.grid.transform;
    const col = Math.floor((x - gt[0]) / gt[1]);
    const row = Math.floor((y - gt[3]) / gt[5]);
    if (
      !Number.isFinite(col) ||
      !Number.isFinite(row) ||
      col < 0 ||
      row < 0 ||
      col >= m.grid.width ||
      row >= m.grid.height
    ) {
      throw new RequestError(
        'not-found',
        `lon ${lon}, lat ${lat} is outside mosaic ${m.id} (WGS 84 bounds ${m.boundsWgs84.map((v) => v.toFixed(6)).join(', ')})`,
      );
    }
    const cond = conditional(c, [m.etag, 'point', String(col), String(row)]);
    if (cond.notModified) return cond.notModified;
    const grid: Grid = {
      crs: m.grid.crs,
      transform: [gt[0] + col * gt[1], gt[1], 0, gt[3] + row * gt[5], 0, gt[5]],
      width: 1,
      height: 1,
    };
    const info = c.get('req');
    const px = await timed(info, 'render', () =>
      engine.render(m, grid, { resampling: 'nearest', signal: info.signal }),
    );
    const valid = px.mask[0] !== 0;
    c.header('ETag', cond.etag);
    c.header('Cache-Control', config.server.cacheControl);
    return c.json({
      lon,
      lat,
      crs: m.grid.crs.epsg,
      x,
      y,
      col,
      row,
      valid,
      values: px.bands.map((b, i) => {
        const v = b[0];
        return { band: i + 1, name: m.bandNames[i], value: valid && !Number.isNaN(v) ? v : null, nodata: !valid };
      }),
    });
  });

  r.get(`${M}/statistics`, async (c) => {
    const m = catalog.get(c.req.param('id'));
    const bboxText = c.req.query('bbox');
    const bbox = bboxText === undefined || bboxText === '' ? undefined : parseBbox(bboxText, 'bbox');
    if (bbox && (bbox[0] < -180 || bbox[2] > 180 || bbox[1] < -90 || bbox[3] > 90)) {
      throw new RequestError(
        'bad-request',
        `bbox ${bboxText} must be in WGS 84 degrees (longitude -180..180, latitude -90..90)`,
      );
    }
    const binsText = c.req.query('bins');
    const bins =
      binsText === undefined || binsText === ''
        ? DEFAULT_HISTOGRAM_BINS
        : intParam(binsText, 'bins', 1, MAX_HISTOGRAM_BINS);
    const exprText = c.req.query('expression');
    const expression =
      exprText === undefined
        ? undefined
        : parseExpression(
            aliasBandNames('expression', exprText, bandAliases(m)),
            m.bandCount,
            limits.maxExpressionLength,
          );
    const bands = parseBands(
      (c.req.queries('bands') ?? []).map((v) => aliasBandNames('bands', v, bandAliases(m))),
      m.bandCount,
    );
    if (expression && bands) throw new RequestError('bad-request', 'give either bands= or expression=, not both');
    const ndText = c.req.query('nodata');
    const nodata = ndText === undefined || ndText === '' ? undefined : parseNodata(ndText);
    const cond = conditional(c, [
      m.etag,
      'statistics',
      bbox?.join(',') ?? '',
      String(bins),
      expression?.canonical ?? '',
      bands?.join(',') ?? '',
      String(nodata),
    ]);
    if (cond.notModified) return cond.notModified;
    const info = c.get('req');
    const s = await timed(info, 'statistics', () =>
      statistics.get(m, { bboxWgs84: bbox, bins, bands, expression, nodata }),
    );
    c.header('ETag', cond.etag);
    c.header('Cache-Control', config.server.cacheControl);
    return c.json({ mosaic: m.id, ...s });
  });

  r.get(`${M}/:file{preview\\.[A-Za-z]+}`, (c) => {
    const m = catalog.get(c.req.param('id'));
    const format = imageFormat(c.req.param('file').slice('preview.'.length));
    const sizeText = c.req.query('max_size');
    const maxSize =
      sizeText === undefined || sizeText === ''
        ? Math.min(DEFAULT_PREVIEW_SIZE, limits.maxPreviewSize)
        : intParam(sizeText, 'max_size', 1, limits.maxPreviewSize);
    const style = parseStyle(queryOf(c, m), m.bandCount, styleLimits);
    const grid = previewGrid(m.grid, maxSize);
    const key = `preview|${maxSize}|${format}|${styleKey(style)}${datetimeOf(c).key}`;
    return serveCached(c, cacheEntry(m, key), (signal) => renderImage(c, m, grid, format, style, 'preview', signal));
  });

  r.get(`${M}/bbox/:spec`, (c) => {
    const m = catalog.get(c.req.param('id'));
    const spec = c.req.param('spec');
    const match = /^([^,]+,[^,]+,[^,]+,[^,]+)\.([A-Za-z]+)$/.exec(spec);
    if (!match)
      throw new RequestError(
        'bad-request',
        `crop "${spec.slice(0, 60)}" must look like {minx},{miny},{maxx},{maxy}.png (or .tif, .webp, .jpg)`,
      );
    const bbox = parseBbox(match[1], 'bbox');
    const ext = match[2].toLowerCase();
    const tiff = ext === 'tif' || ext === 'tiff';
    const format = tiff ? undefined : imageFormat(ext);
    const crsText = c.req.query('crs');
    const crs = crsText ? requestCrs(crsText) : crsFromEpsg(4326);
    const widthText = c.req.query('width');
    const heightText = c.req.query('height');
    const width = widthText ? intParam(widthText, 'width', 1, MAX_CROP_SIDE) : undefined;
    const height = heightText ? intParam(heightText, 'height', 1, MAX_CROP_SIDE) : undefined;
    const style = parseStyle(queryOf(c, m), m.bandCount, styleLimits, { image: !tiff });
    const grid = cropGrid(m, bbox, crs, width, height);
    if (grid.width > MAX_CROP_SIDE || grid.height > MAX_CROP_SIDE || grid.width * grid.height > limits.maxCropPixels) {
      throw new RequestError(
        'bad-request',
        `the crop would be ${grid.width} x ${grid.height} pixels, over the limit of ${limits.maxCropPixels} pixels (and ${MAX_CROP_SIDE} per side); ` +
          'pass a smaller width= / height= or a smaller bbox',
      );
    }
    const size = `${grid.width}x${grid.height}`;
    const key = `bbox|${bbox.join(',')}|${crs.epsg}|${size}|${tiff ? 'tif' : format}|${styleKey(style)}${datetimeOf(c).key}`;
    const name = `${m.id}_${bbox.map((v) => String(v)).join('_')}.${tiff ? 'tif' : format}`;
    return serveCached(
      c,
      cacheEntry(m, key),
      (signal) =>
        tiff ? renderGeoTiff(c, m, grid, style, signal) : renderImage(c, m, grid, format!, style, 'crop', signal),
      { 'Content-Disposition': `inline; filename="${name.replace(/[^A-Za-z0-9_.,-]/g, '_')}"` },
    );
  });

  return r;
}
