/**
 * OGC API - Tiles tile matrix set documents (OGC TMS 2.0 JSON, as TiTiler serves them):
 *
 *   /tileMatrixSets                          the world-wide sets: WebMercatorQuad, WorldCRS84Quad
 *   /tileMatrixSets/{tms}                    one of them
 *   /mosaics/{id}/tileMatrixSets             the sets a mosaic's tiles come in: the world-wide ones and its native grid
 *   /mosaics/{id}/tileMatrixSets/{tms}       one of them; `native` is the mosaic's own grid
 *
 * Tiles of every set: `/mosaics/{id}/tiles/{tms}/{z}/{x}/{y}.{png|webp|jpg}`.
 */
import { type Context, Hono } from 'hono';
import type { Mosaic } from '../render/mosaic.ts';
import {
  nativeSetUnavailable,
  type TileMatrixSet,
  tileMatrixSetFor,
  tileMatrixSetJson,
  WORLD_TMS_IDS,
  worldTileMatrixSet,
} from '../render/tilematrix.sets.ts';
import type { AppDeps } from './deps.ts';
import { RequestError } from './errors.ts';
import type { AppEnv } from './request.ts';
import { baseUrl, MOSAIC_ID } from './urls.ts';

const REL_TILING_SCHEME = 'http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme';
const TMS_ID = '[A-Za-z0-9_-]{1,64}';

function summary(set: TileMatrixSet, href: string) {
  return {
    id: set.id,
    title: set.title,
    ...(set.uri ? { uri: set.uri } : {}),
    crs: set.crsUri,
    links: [{ href, rel: REL_TILING_SCHEME, type: 'application/json', title: `${set.id} tile matrix set` }],
  };
}

export function tileMatrixSetRoutes(deps: AppDeps): Hono<AppEnv> {
  const { config, catalog } = deps;
  const r = new Hono<AppEnv>();
  const cache = (c: Context<AppEnv>) => c.header('Cache-Control', config.server.cacheControl);

  r.get('/tileMatrixSets', (c) => {
    const base = baseUrl(c, config);
    cache(c);
    return c.json({
      tileMatrixSets: WORLD_TMS_IDS.map((id) => summary(worldTileMatrixSet(id), `${base}/tileMatrixSets/${id}`)),
    });
  });

  r.get(`/tileMatrixSets/:tms{${TMS_ID}}`, (c) => {
    const id = c.req.param('tms');
    const base = baseUrl(c, config);
    if (!(WORLD_TMS_IDS as readonly string[]).includes(id)) {
      throw new RequestError(
        'not-found',
        id === 'native'
          ? `the native tile matrix set belongs to a mosaic: ${base}/mosaics/{id}/tileMatrixSets/native`
          : `tile matrix set "${id}" is unknown; use ${WORLD_TMS_IDS.join(' or ')} (or a mosaic's native set)`,
      );
    }
    const set = worldTileMatrixSet(id as (typeof WORLD_TMS_IDS)[number]);
    cache(c);
    return c.json(
      tileMatrixSetJson(set, [{ href: `${base}/tileMatrixSets/${id}`, rel: 'self', type: 'application/json' }]),
    );
  });

  const setsOf = (m: Mosaic): TileMatrixSet[] => {
    const sets = WORLD_TMS_IDS.map((id) => worldTileMatrixSet(id));
    return nativeSetUnavailable(m.grid) ? sets : [...sets, tileMatrixSetFor('native', m)];
  };

  r.get(`/mosaics/:id{${MOSAIC_ID}}/tileMatrixSets`, (c) => {
    const m = catalog.get(c.req.param('id'));
    const base = `${baseUrl(c, config)}/mosaics/${encodeURIComponent(m.id)}`;
    cache(c);
    return c.json({
      tileMatrixSets: setsOf(m).map((s) => ({
        ...summary(s, `${base}/tileMatrixSets/${s.id}`),
        tiles: `${base}/tiles/${s.id}/{z}/{x}/{y}.png`,
      })),
    });
  });

  r.get(`/mosaics/:id{${MOSAIC_ID}}/tileMatrixSets/:tms{${TMS_ID}}`, (c) => {
    const m = catalog.get(c.req.param('id'));
    const set = tileMatrixSetFor(c.req.param('tms'), m);
    const base = `${baseUrl(c, config)}/mosaics/${encodeURIComponent(m.id)}`;
    cache(c);
    return c.json(
      tileMatrixSetJson(set, [
        { href: `${base}/tileMatrixSets/${set.id}`, rel: 'self', type: 'application/json' },
        { href: `${base}/tiles/${set.id}/{z}/{x}/{y}.png`, rel: 'item', type: 'image/png', templated: true },
      ]),
    );
  });

  return r;
}
