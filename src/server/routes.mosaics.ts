/** The catalog: list of mosaics, one mosaic's description, and the index page. */
import { Hono } from 'hono';
import type { Mosaic } from '../render/mosaic.ts';
import { redactUrl } from '../render/source.http.ts';
import { gridBounds } from '../render/types.ts';
import type { AppEnv } from './app.ts';
import type { AppDeps } from './deps.ts';
import { baseUrl, MOSAIC_ID, mosaicLinks } from './urls.ts';

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
    links: mosaicLinks(base, m.id),
  };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

export function mosaicRoutes(deps: AppDeps): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  r.get('/mosaics', (c) => {
    const base = baseUrl(c, deps.config);
    return c.json({
      mosaics: deps.catalog
        .list()
        .map((e) =>
          e.mosaic
            ? { id: e.id, title: e.mosaic.title, status: 'ok', links: mosaicLinks(base, e.id) }
            : { id: e.id, status: 'error', error: e.error },
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
          : `<li>${id}: <b>error</b> ${escapeHtml(e.error?.message ?? '')}</li>`;
      })
      .join('\n');
    return c.html(
      `<!doctype html><html><head><meta charset="utf-8"><title>cogmill</title><style>body{font:15px system-ui,sans-serif;margin:2em;max-width:60em}li{margin:.4em 0}</style></head><body><h1>cogmill</h1><p>Mosaics served here:</p><ul>${rows || '<li>none configured</li>'}</ul><p><a href="/openapi.yaml">OpenAPI</a> · <a href="/docs">API docs</a> · <a href="/metrics">metrics</a></p></body></html>`,
    );
  });
  return r;
}
