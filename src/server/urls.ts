/** Absolute URLs for links in JSON, TileJSON, WMTS and VRT documents. */
import type { Context } from 'hono';
import type { Config } from '../config.schema.ts';

/** Mosaic ids: letters, digits, `_` and `-` (no dots, so `/mosaics/{id}.tif` is unambiguous). */
export const MOSAIC_ID = '[A-Za-z0-9][A-Za-z0-9_-]{0,63}';

/**
 * The base URL clients reach us at: `server.publicUrl` when configured (recommended); else the request's Host
 * header, or the X-Forwarded-Host / X-Forwarded-Proto headers when `server.trustProxy` says a proxy sets them
 * (from anyone else they are ignored: a client could otherwise put its own host into links a shared cache keeps).
 * An answer built from these headers says so in `Vary`.
 */
export function baseUrl(c: Context, config: Config): string {
  if (config.server.publicUrl) return config.server.publicUrl.replace(/\/+$/, '');
  const url = new URL(c.req.url);
  let proto = url.protocol.replace(':', '');
  let host = c.req.header('host') || url.host;
  if (config.server.trustProxy) {
    proto = forwarded(c.req.header('x-forwarded-proto'), /^https?$/i)?.toLowerCase() ?? proto;
    host = forwarded(c.req.header('x-forwarded-host'), HOST) ?? host;
    c.header('Vary', 'Host, X-Forwarded-Host, X-Forwarded-Proto', { append: true });
  } else {
    c.header('Vary', 'Host', { append: true });
  }
  return `${proto}://${host}`;
}

/** host[:port]: a name, an IPv4 address or a bracketed IPv6 address. */
const HOST = /^([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?$/;

/** The first value of a forwarded header, if it has the expected form. */
function forwarded(value: string | undefined, form: RegExp): string | undefined {
  const first = value?.split(',')[0]?.trim();
  return first && form.test(first) ? first : undefined;
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
