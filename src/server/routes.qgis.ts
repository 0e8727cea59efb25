/**
 * `GET /mosaics/{id}/qgis.qgz`: a QGIS project with every view of the mosaic, styled like its tiles (see
 * qgis.project.ts). The style parameters of the request (`bands`, `rescale`, `colormap`, `nodata`, `resampling`,
 * `expression`) are validated as for a tile; the image layers (WMTS, XYZ) carry all of them, the value layers
 * (COG, VRT) show the same bands with the same stretch and colormap. With `expression=`, the value layers show
 * the mosaic's default bands with their default stretch, and a band math layer (QGIS's virtual raster provider)
 * computes the expression when QGIS's raster calculator can express it (see qgisFormula).
 *
 * `auth=header` carries the request's Authorization header into the WMTS and XYZ layers (see authToCarry).
 *
 * The stretch is the tiles' own: the request's `rescale`, 0..255 for 8-bit bands, else the 2nd to 98th
 * percentile of the mosaic's statistics (the tiles' own statistics service: the same numbers). The ETag depends on the mosaic's
 * etag, the base URL and the normalised query, so a 304 costs no statistics.
 */
import { Hono } from 'hono';
import { mosaicVrtHasMask } from '../materialize/virtual.vrt.ts';
import { crsFromEpsg } from '../render/crs.ts';
import { mosaicZooms } from '../render/grid.request.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { fixedRanges, stretchFromPercentiles } from '../render/style.stretch.ts';
import { type Style, styleInputBands, styleKey } from '../render/style.ts';
import { nativeSetUnavailable } from '../render/tilematrix.sets.ts';
import { transformBounds } from '../render/transform.ts';
import { gridBounds } from '../render/types.ts';
import type { AppDeps } from './deps.ts';
import { RequestError } from './errors.ts';
import { ifNoneMatch, strongEtag } from './http.range.ts';
import { type QgisProjectInput, qgisFormula, qgisProjectXml } from './qgis.project.ts';
import type { AppEnv } from './request.ts';
import { parseStyle, type StyleQuery, styleQueryString } from './style.query.ts';
import { baseUrl, MOSAIC_ID } from './urls.ts';
import { zipArchive } from './zip.write.ts';

const QGZ_MIME = 'application/zip';

/**
 * `auth=header`: the request's own Authorization header goes into the project's tile layers (for deployments whose
 * gateway wants a token on every tile request). Only on request, so a project shared with others holds no token by
 * default; never in a URL.
 */
function authToCarry(mode: string | undefined, header: string | undefined): string | undefined {
  if (mode === undefined || mode === '') return undefined;
  if (mode !== 'header') {
    throw new RequestError(
      'bad-request',
      `auth must be "header" (carry this request's Authorization header), got "${mode.slice(0, 20)}"`,
    );
  }
  const value = header?.trim();
  if (!value || /[\r\n]/.test(value)) {
    throw new RequestError(
      'bad-request',
      'auth=header needs an Authorization header on this request to carry into the project',
    );
  }
  return value;
}

export function qgisRoutes(deps: AppDeps): Hono<AppEnv> {
  const { config, catalog, statistics } = deps;
  const limits = config.limits;
  const styleLimits = { maxExpressionLength: limits.maxExpressionLength };

  /** [min, max] per shown band, as the tiles compute them. */
  async function stretch(m: Mosaic, style: Style, bands: readonly number[]) {
    const fixed = fixedRanges(style, m.dtype);
    if (fixed) return fixed;
    const s = await statistics.get(m, { bands, nodata: style.nodata });
    return s.bands.map((b) => stretchFromPercentiles(b.percentiles.p2 ?? Number.NaN, b.percentiles.p98 ?? Number.NaN));
  }

  const r = new Hono<AppEnv>();

  r.get(`/mosaics/:id{${MOSAIC_ID}}/qgis.qgz`, async (c) => {
    const m = catalog.get(c.req.param('id'));
    const q: StyleQuery = { get: (n) => c.req.query(n), getAll: (n) => c.req.queries(n) ?? [] };
    const style = parseStyle(q, m.bandCount, styleLimits);
    const base = baseUrl(c, config);
    const query = styleQueryString(q);
    const authorization = authToCarry(c.req.query('auth'), c.req.header('authorization'));
    const etag = strongEtag(m.etag, 'qgis', base, styleKey(style), authorization ?? '');
    // a project holding a token is for the one who asked: no shared cache keeps it
    const headers = {
      ETag: etag,
      'Cache-Control': authorization ? 'private, no-store' : config.server.cacheControl,
      Vary: 'Authorization',
    };
    if (ifNoneMatch(c.req.header('if-none-match'), etag)) return c.body(null, 304, headers);
    // the value layers: the request's bands and stretch, or the default ones when it asks for band math
    const valueStyle: Style = style.expression ? { nodata: style.nodata, resampling: style.resampling } : style;
    const bands = styleInputBands(valueStyle, m.bandCount);
    const ranges = await stretch(m, valueStyle, bands);
    const mosaicUrl = `${base}/mosaics/${encodeURIComponent(m.id)}`;
    const native = nativeSetUnavailable(m.grid) === undefined;
    const { minzoom, maxzoom } = mosaicZooms(m, 256, limits.maxZoom);
    const bounds = gridBounds(m.grid);
    const mercator = crsFromEpsg(3857);
    const mercatorBounds = transformBounds(m.boundsWgs84, crsFromEpsg(4326), mercator);
    let input: QgisProjectInput = {
      id: m.id,
      title: m.title || m.id,
      crs: m.grid.crs,
      bounds,
      bandCount: m.bandCount,
      cogUrl: `${mosaicUrl}.tif`,
      vrtUrl: `${mosaicUrl}.vrt`,
      vrtMaskBand: mosaicVrtHasMask(m),
      wmtsUrl: `${mosaicUrl}/WMTSCapabilities.xml?SERVICE=WMTS&REQUEST=GetCapabilities${query ? `&${query}` : ''}`,
      wmtsTileMatrixSet: native ? 'native' : 'WebMercatorQuad',
      wmtsCrs: native ? m.grid.crs : mercator,
      wmtsBounds: native ? bounds : mercatorBounds,
      mercatorBounds,
      xyzUrl: `${mosaicUrl}/tiles/{z}/{x}/{y}.png${query ? `?${query}` : ''}`,
      minZoom: minzoom,
      maxZoom: maxzoom,
      style: { bands, ranges, colormap: valueStyle.colormap, resampling: valueStyle.resampling },
      authorization,
    };
    const formula = style.expression?.outputs.length === 1 ? qgisFormula(style.expression.outputs[0]) : undefined;
    if (style.expression && formula) {
      const s = await statistics.get(m, { expression: style.expression, nodata: style.nodata });
      const exprRanges = style.rescale ?? [
        stretchFromPercentiles(s.bands[0].percentiles.p2 ?? Number.NaN, s.bands[0].percentiles.p98 ?? Number.NaN),
      ];
      input = {
        ...input,
        expression: {
          text: c.req.query('expression') ?? '',
          formula,
          width: m.grid.width,
          height: m.grid.height,
          style: { bands: [1], ranges: exprRanges, colormap: style.colormap, resampling: style.resampling },
        },
      };
    }
    const xml = qgisProjectXml(input);
    const zip = zipArchive([{ name: `${m.id}.qgs`, data: new TextEncoder().encode(xml) }]);
    return c.body(zip as Uint8Array<ArrayBuffer>, 200, {
      ...headers,
      'Content-Type': QGZ_MIME,
      'Content-Disposition': `attachment; filename="${m.id}.qgz"`,
    });
  });

  return r;
}
