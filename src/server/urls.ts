/** Absolute URLs for links in JSON, TileJSON, WMTS and VRT documents. */
import type { Context } from 'hono';
import type { Config } from '../config.ts';

/** Mosaic ids: letters, digits, `_` and `-` (no dots, so `/mosaics/{id}.tif` is unambiguous). */
export const MOSAIC_ID = '[A-Za-z0-9][A-Za-z0-9_-]{0,63}';

/** The base URL clients reach us at: configured publicUrl, else X-Forwarded-* headers, else the Host header. */
export function baseUrl(c: Context, config: Config): string {
  if (config.server.publicUrl) return config.server.publicUrl.replace(/\/+$/, '');
  const proto =
    c.req.header('x-forwarded-proto')?.split(',')[0]?.trim() || new URL(c.req.url).protocol.replace(':', '');
  const host =
    c.req.header('x-forwarded-host')?.split(',')[0]?.trim() || c.req.header('host') || new URL(c.req.url).host;
  return `${proto}://${host}`;
}

export function mosaicLinks(base: string, id: string) {
  const m = `${base}/mosaics/${encodeURIComponent(id)}`;
  return {
    self: m,
    tiles: `${m}/tiles/{z}/{x}/{y}.png`,
    tilejson: `${m}/tilejson.json`,
    wmts: `${m}/WMTSCapabilities.xml`,
    vrt: `${m}.vrt`,
    cog: `${m}.tif`,
    viewer: `${m}/viewer`,
    qgis: `${m}/qgis.qgz`,
    tileMatrixSets: `${m}/tileMatrixSets`,
    export: `${m}/export.tif`,
  };
}
