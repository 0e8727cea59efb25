/**
 * Tiles and data for QGIS, GDAL and web maps: XYZ tiles in WebMercatorQuad, TileJSON 3.0.0, WMTS 1.0.0
 * capabilities, point values, statistics, a bounded preview and bbox crops (image or GeoTIFF of the values).
 *
 * Every image request runs the same steps: validate (400/404 before anything else), compute the ETag from the
 * mosaic etag and the normalised request (a matching If-None-Match answers 304 with no pixel read), look the
 * encoded image up in the tile cache (concurrent identical requests render once), else hand a plain-data request to
 * the tile pipeline (src/render/tile.pipeline.ts: render -> style -> stretch -> encode) or, for a GeoTIFF crop,
 * to src/materialize/cog.crop.ts. Renders are bounded by the app-wide render gate (limits.ts), nothing else.
 *
 * Areas outside the mosaic are transparent. A tile that does not touch the mosaic (or has no valid pixel) is a
 * 200 with a fully transparent image in the requested format (black for JPEG, which has no alpha) and the header
 * `OATiles-hint: empty`: every client draws it (QGIS, GDAL, OpenLayers, Leaflet, MapLibre), caches it like any
 * tile, and draws the neighbouring tiles normally; 204 is not handled by MapLibre or ArcGIS Online.
 */
import { type Context, Hono } from 'hono';
import { cropCog, GEOTIFF_MIME } from '../materialize/cog.crop.ts';
import { crsFromEpsg } from '../render/crs.ts';
import type { ImageFormat } from '../render/encode.ts';
import { cropGrid, mosaicZooms, overlaps, padded, paddedWgs84, previewGrid } from '../render/grid.request.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { parseInterval } from '../render/stac.ts';
import { DEFAULT_HISTOGRAM_BINS, MAX_HISTOGRAM_BINS } from '../render/statistics.ts';
import { parseExpression } from '../render/style.expression.ts';
import { type Style, styleKey } from '../render/style.ts';
import type { TileRunner } from '../render/tile.pipeline.pool.ts';
import { TilePipeline, type TileRequest } from '../render/tile.pipeline.ts';
import {
  boundsInSet,
  finestUsefulLevel,
  nativeTileMatrixSet,
  tileMatrixSetFor,
  tmsTileGrid,
  worldTileMatrixSet,
} from '../render/tilematrix.sets.ts';
import { TILE_SIZE_DEFAULT, tileBoundsWgs84 } from '../render/tilematrix.ts';
import { createTransformer } from '../render/transform.ts';
import { type Grid, gridBounds } from '../render/types.ts';
import type { AppDeps } from './deps.ts';
import { RequestError } from './errors.ts';
import { ifNoneMatch, strongEtag } from './http.range.ts';
import { appMetrics } from './metrics.ts';
import {
  aliasBandNames,
  bandAliases,
  imageFormat,
  intParam,
  numberParam,
  parseBbox,
  parseTileFile,
  requestCrs,
  tileSizeParam,
} from './params.ts';
import { type AppEnv, addTimings, timed } from './request.ts';
import { parseBands, parseNodata, parseStyle, type StyleQuery, styleQueryString } from './style.query.ts';
import { type CachedImage, TileCache, type TileCacheResult } from './tile.cache.ts';
import { baseUrl, MOSAIC_ID } from './urls.ts';
import { type WmtsSetOffer, wmtsCapabilities } from './wmts.capabilities.ts';

type Ctx = Context<AppEnv>;

const DEFAULT_PREVIEW_SIZE = 1024;
/** Largest side of a crop image or GeoTIFF, whatever the pixel budget. */
const MAX_CROP_SIDE = 16384;

/** Parsed tile URLs remembered (about half a KiB each), and the longest URL remembered. */
const MAX_TILE_URLS = 4096;
const MAX_TILE_URL_LENGTH = 1024;

/** What an image answer is cached and validated by. */
interface CacheEntry {
  readonly etag: string;
  /** tile cache key: mosaic id + etag + normalised request */
  readonly cacheKey: string;
}

/** A tile URL validated: its ETag and cache key, and the pipeline's request, derived from the URL and the mosaic alone. */
interface TileUrl extends CacheEntry {
  /** the mosaic object the URL was validated against */
  readonly mosaic: Mosaic;
  readonly request: TileRequest;
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
  const pipeline = new TilePipeline({ engine, statistics, mosaic: (id) => catalog.get(id) });
  const runner: TileRunner = deps.tilePool ?? pipeline;

  /** The pipeline's request for an image of `grid`. */
  function imageRequest(
    c: Ctx,
    m: Mosaic,
    grid: Grid,
    format: ImageFormat,
    style: Style,
    inside: boolean,
  ): TileRequest {
    return { mosaicId: m.id, mosaicEtag: m.etag, grid, format, style, datetime: datetimeOf(c).interval, inside };
  }

  /** The pipeline's image of `request`; its step times go to the request's summary line and to the metrics. */
  async function image(c: Ctx, kind: string, request: TileRequest, signal: AbortSignal): Promise<CachedImage> {
    const out = await runner.run(request, signal);
    addTimings(c.get('req'), out.timings);
    if (out.timings.render !== undefined) metrics.renderSeconds.observe({ kind }, out.timings.render / 1000);
    return { body: out.body, contentType: out.contentType, empty: out.empty };
  }
  const styleLimits = { maxExpressionLength: limits.maxExpressionLength };

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
   * The validated, normalised form of recent tile URLs: a repeated request skips parsing and hashing. An entry is
   * used only for the mosaic object and etag it was made for; only successful parses are kept; oldest go first.
   */
  const tileUrls = new Map<string, TileUrl>();

  function parseTileUrl(c: Ctx, m: Mosaic): TileUrl {
    const url = c.req.url;
    const known = tileUrls.get(url);
    if (known && known.mosaic === m && known.request.mosaicEtag === m.etag) return known;
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
    const request = imageRequest(c, m, grid, format, style, inside);
    const parsed: TileUrl = { ...cacheEntry(m, key), mosaic: m, request };
    if (url.length <= MAX_TILE_URL_LENGTH) {
      if (known) tileUrls.delete(url);
      else if (tileUrls.size >= MAX_TILE_URLS) tileUrls.delete(tileUrls.keys().next().value!);
      tileUrls.set(url, parsed);
    }
    return parsed;
  }

  function tileHandler() {
    return async (c: Ctx) => {
      const m = catalog.get(c.req.param('id')!);
      const t = parseTileUrl(c, m);
      return serveCached(c, t, (signal) => image(c, 'tile', t.request, signal));
    };
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
    const request = imageRequest(c, m, grid, format, style, true);
    return serveCached(c, cacheEntry(m, key), (signal) => image(c, 'preview', request, signal));
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
    const datetime = datetimeOf(c).interval;
    return serveCached(
      c,
      cacheEntry(m, key),
      async (signal) =>
        tiff
          ? {
              body: await timed(c.get('req'), 'render', () =>
                cropCog(
                  { engine, mosaic: (id) => catalog.get(id) },
                  { mosaicId: m.id, mosaicEtag: m.etag, grid, style, datetime },
                  signal,
                ),
              ),
              contentType: GEOTIFF_MIME,
              empty: false,
            }
          : image(c, 'crop', imageRequest(c, m, grid, format!, style, true), signal),
      { 'Content-Disposition': `inline; filename="${name.replace(/[^A-Za-z0-9_.,-]/g, '_')}"` },
    );
  });

  return r;
}
