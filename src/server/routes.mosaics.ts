/**
 * The catalog: list of mosaics, one mosaic's description, the index page; mosaics registered at run time
 * (POST /mosaics, PUT and DELETE /mosaics/{id}, behind the bearer token); and explain (what a render would read).
 */
import type { Context } from 'hono';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { ConfigError } from '../config.error.ts';
import { parseMosaicDefinition } from '../config.parse.ts';
import type { MosaicDefinition } from '../render/catalog.ts';
import { parseCrs } from '../render/crs.ts';
import { withoutServerPaths } from '../render/errors.ts';
import { explainRender } from '../render/mosaic.explain.ts';
import { mosaicPeriods } from '../render/mosaic.items.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { redactUrl } from '../render/source.http.ts';
import { parseInterval } from '../render/stac.ts';
import { xyzTileGrid } from '../render/tilematrix.ts';
import { type Grid, gridBounds } from '../render/types.ts';
import { requireToken } from './auth.ts';
import type { AppDeps } from './deps.ts';
import { RequestError } from './errors.ts';
import { jsonBody } from './params.ts';
import type { AppEnv } from './request.ts';
import { baseUrl, MOSAIC_ID, mosaicLinks } from './urls.ts';

/** A mosaic's time periods and catalogue summary (catalogue mosaics only). */
function describeCatalogue(m: Mosaic) {
  const mi = m.items;
  if (!mi) return undefined;
  let t0 = Number.POSITIVE_INFINITY;
  let t1 = Number.NEGATIVE_INFINITY;
  for (const it of mi.items) {
    if (Number.isFinite(it.datetime)) t0 = Math.min(t0, it.datetime);
    if (Number.isFinite(it.endDatetime)) t1 = Math.max(t1, it.endDatetime);
  }
  return {
    items: mi.items.length,
    assets: mi.assets,
    datetime: Number.isFinite(t0) ? [new Date(t0).toISOString(), new Date(t1).toISOString()] : null,
    ...(mi.period
      ? {
          period: mi.period,
          periods: mosaicPeriods(mi.items, mi.period).map(({ id, datetime, items }) => ({ id, datetime, items })),
        }
      : {}),
  };
}

/** Overview sizes of the mosaic's virtual COG: halve (floor) until both sides fit one block. */
export function mosaicOverviews(m: Mosaic): { width: number; height: number }[] {
  const out: { width: number; height: number }[] = [];
  let w = m.grid.width;
  let h = m.grid.height;
  while (w > m.blockSize || h > m.blockSize) {
    w = Math.max(1, Math.floor(w / 2));
    h = Math.max(1, Math.floor(h / 2));
    out.push({ width: w, height: h });
  }
  return out;
}

export function describeMosaic(m: Mosaic, base: string) {
  return {
    id: m.id,
    title: m.title,
    crs: { epsg: m.grid.crs.epsg, name: m.grid.crs.name },
    width: m.grid.width,
    height: m.grid.height,
    transform: m.grid.transform,
    resolution: [Math.abs(m.grid.transform[1]), Math.abs(m.grid.transform[5])],
    bounds: gridBounds(m.grid),
    boundsWgs84: m.boundsWgs84,
    dtype: m.dtype,
    nodata: m.nodata === undefined ? null : Number.isNaN(m.nodata) ? 'nan' : m.nodata,
    bands: m.bandNames.map((name, i) => ({ index: i + 1, name, dtype: m.dtype })),
    composite: m.composite,
    resampling: m.resampling,
    blockSize: m.blockSize,
    overviews: mosaicOverviews(m),
    etag: m.etag,
    ...(m.items ? { catalogue: describeCatalogue(m) } : {}),
    sources: m.sources.map((s) => ({
      index: s.index,
      location: /^[a-z]+:\/\//i.test(s.location) ? redactUrl(s.location) : s.location,
      width: s.raster.info.width,
      height: s.raster.info.height,
      bands: s.raster.info.bandCount,
      dtype: s.raster.info.dtype,
      crs: s.raster.info.crs.epsg,
      nodata: s.raster.info.nodata ?? null,
      overviews: s.raster.info.levels.length - 1,
      compression: s.raster.info.compression,
    })),
    /** sources left out because they cannot be read (sources.onSourceError: skip) */
    brokenSources: (m.broken ?? []).map((b) => ({ index: b.index, name: b.name, kind: b.kind, reason: b.reason })),
    links: mosaicLinks(base, m.id),
  };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

/** The mosaic definition in a request body (JSON), validated like one in the config file. */
async function readDefinition(c: Context<AppEnv>, id?: string): Promise<MosaicDefinition> {
  let body = await jsonBody(c, 'the mosaic definition is a JSON body');
  if (id !== undefined && body && typeof body === 'object' && !Array.isArray(body)) {
    const given = (body as { id?: unknown }).id;
    if (given !== undefined && given !== id)
      throw new RequestError('bad-request', `the body's id "${String(given)}" differs from the URL's "${id}"`);
    body = { ...body, id };
  }
  try {
    return parseMosaicDefinition(body) as MosaicDefinition;
  } catch (e) {
    if (e instanceof ConfigError) throw new RequestError('bad-request', e.message);
    throw e;
  }
}

/** The window of an explain request: `tile=z/x/y` (WebMercatorQuad) or `bbox`, `crs` and `resolution`. */
function explainGrid(c: Context<AppEnv>, m: Mosaic, maxPixels: number): Grid {
  const tile = c.req.query('tile');
  if (tile !== undefined) {
    const t = /^(\d{1,2})\/(\d{1,9})\/(\d{1,9})$/.exec(tile);
    if (!t) throw new RequestError('bad-request', `tile must be z/x/y (got "${tile.slice(0, 40)}")`);
    const [z, x, y] = [Number(t[1]), Number(t[2]), Number(t[3])];
    if (z > 30 || x >= 2 ** z || y >= 2 ** z) throw new RequestError('bad-request', `tile ${tile} does not exist`);
    return xyzTileGrid(z, x, y);
  }
  const bboxText = c.req.query('bbox');
  if (bboxText === undefined)
    throw new RequestError(
      'bad-request',
      'explain needs tile=z/x/y, or bbox=minx,miny,maxx,maxy (with crs and resolution)',
    );
  const b = bboxText.split(',').map(Number);
  if (b.length !== 4 || !b.every(Number.isFinite) || !(b[0] < b[2] && b[1] < b[3]))
    throw new RequestError('bad-request', 'bbox must be minx,miny,maxx,maxy with minx < maxx and miny < maxy');
  const crs = c.req.query('crs') ? parseCrs(c.req.query('crs')!) : m.grid.crs;
  const resText = c.req.query('resolution');
  const res = resText === undefined ? Math.abs(m.grid.transform[1]) : Number(resText);
  if (!(res > 0 && Number.isFinite(res)))
    throw new RequestError('bad-request', 'resolution must be a positive number (CRS units per pixel)');
  const width = Math.max(1, Math.round((b[2] - b[0]) / res));
  const height = Math.max(1, Math.round((b[3] - b[1]) / res));
  if (width * height > maxPixels)
    throw new RequestError(
      'too-large',
      `a window of ${width} x ${height} pixels is larger than the limit of ${maxPixels} pixels`,
    );
  return { crs, transform: [b[0], res, 0, b[3], 0, -res], width, height };
}

export function mosaicRoutes(deps: AppDeps): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  const auth = requireToken(deps);
  const limit = bodyLimit({
    maxSize: deps.config.server.maxBodyBytes,
    onError: () => {
      throw new RequestError(
        'too-large',
        `the request body is larger than ${deps.config.server.maxBodyBytes} bytes (server.maxBodyBytes)`,
      );
    },
  });
  r.post('/mosaics', auth, limit, async (c) => {
    const def = await readDefinition(c);
    const m = await deps.catalog.register(def, { replace: false, signal: c.get('req').signal });
    const base = baseUrl(c, deps.config);
    c.header('Location', `${base}/mosaics/${encodeURIComponent(m.id)}`);
    return c.json(describeMosaic(m, base), 201);
  });
  r.put(`/mosaics/:id{${MOSAIC_ID}}`, auth, limit, async (c) => {
    const id = c.req.param('id');
    const existed = deps.catalog.list().some((e) => e.id === id);
    const def = await readDefinition(c, id);
    const m = await deps.catalog.register(def, { replace: true, signal: c.get('req').signal });
    return c.json(describeMosaic(m, baseUrl(c, deps.config)), existed ? 200 : 201);
  });
  r.delete(`/mosaics/:id{${MOSAIC_ID}}`, auth, async (c) => {
    await deps.catalog.unregister(c.req.param('id'));
    return c.body(null, 204);
  });
  r.get(`/mosaics/:id{${MOSAIC_ID}}/explain`, async (c) => {
    const m = deps.catalog.get(c.req.param('id'));
    const grid = explainGrid(c, m, deps.engine.settings.maxRenderPixels);
    const dt = c.req.query('datetime');
    const headers = c.req.query('headers');
    if (headers !== undefined && headers !== 'true' && headers !== 'false')
      throw new RequestError('bad-request', 'headers must be true or false');
    const out = await explainRender(deps.engine, m, grid, {
      headers: headers === 'true',
      ...(dt ? { datetime: parseInterval(dt) } : {}),
      signal: c.get('req').signal,
    });
    return c.json({
      ...out,
      items: out.items.map((it) => ({
        ...it,
        assets: it.assets.map((a) => ({ ...a, href: /^[a-z]+:\/\//i.test(a.href) ? redactUrl(a.href) : a.href })),
      })),
    });
  });
  r.get('/mosaics', (c) => {
    const base = baseUrl(c, deps.config);
    return c.json({
      mosaics: deps.catalog.list().map((e) =>
        e.mosaic
          ? {
              id: e.id,
              title: e.mosaic.title,
              status: e.mosaic.broken?.length ? 'degraded' : 'ok',
              origin: e.origin,
              links: mosaicLinks(base, e.id),
            }
          : {
              id: e.id,
              status: 'error',
              origin: e.origin,
              error: e.error && { ...e.error, message: withoutServerPaths(e.error.message) },
            },
      ),
    });
  });
  r.get(`/mosaics/:id{${MOSAIC_ID}}`, (c) => {
    const m = deps.catalog.get(c.req.param('id'));
    return c.json(describeMosaic(m, baseUrl(c, deps.config)));
  });
  r.get('/', (c) => {
    const rows = deps.catalog
      .list()
      .map((e) => {
        const id = escapeHtml(e.id);
        return e.mosaic
          ? `<li><a href="/mosaics/${id}/viewer">${escapeHtml(e.mosaic.title)}</a> <small>(${e.mosaic.grid.width} x ${e.mosaic.grid.height}, ${e.mosaic.bandCount} band(s), ${e.mosaic.dtype}, EPSG:${e.mosaic.grid.crs.epsg}) · <a href="/mosaics/${id}">json</a> · <a href="/mosaics/${id}.vrt">vrt</a> · <a href="/mosaics/${id}.tif">cog</a> · <a href="/mosaics/${id}/qgis.qgz">qgis project</a></small></li>`
          : `<li>${id}: <b>error</b> ${escapeHtml(withoutServerPaths(e.error?.message ?? ''))}</li>`;
      })
      .join('\n');
    return c.html(
      `<!doctype html><html><head><meta charset="utf-8"><title>cogmill</title><style>body{font:15px system-ui,sans-serif;margin:2em;max-width:60em}li{margin:.4em 0}</style></head><body><h1>cogmill</h1><p>Mosaics served here:</p><ul>${rows || '<li>none configured</li>'}</ul><p><a href="/openapi.yaml">OpenAPI</a> · <a href="/docs">API docs</a> · <a href="/metrics">metrics</a></p></body></html>`,
    );
  });
  return r;
}
