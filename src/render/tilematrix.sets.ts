/**
 * OGC Two Dimensional Tile Matrix Sets (OGC 17-083r4, TMS 2.0): WebMercatorQuad, WorldCRS84Quad and the native
 * set of a mosaic, with the tile grids the engine renders and the JSON documents `/tileMatrixSets/{id}` serves.
 *
 * - WebMercatorQuad: EPSG:3857, tile 0/0/0 covers the square Mercator world (the XYZ scheme of web maps).
 * - WorldCRS84Quad: longitude/latitude (OGC:CRS84, rendered in EPSG:4326 with longitude first), two tiles of
 *   0.703125 degree pixels at level 0.
 * - native: the mosaic's own CRS and lattice. Its finest level is the mosaic's pixel grid (same origin, same
 *   pixel size: a tile of it is a window of the mosaic, so QGIS shows source pixels unresampled); each coarser
 *   level doubles the pixel size from the same top-left corner, up to the level where the mosaic fits one tile.
 *   Offered for north-up mosaics with square pixels (TMS 2.0 has one cell size per level).
 *
 * Level ids are "0" (coarsest) to the finest level's number. Tile rows grow southwards (cornerOfOrigin topLeft).
 * `pointOfOrigin` in the JSON and `TopLeftCorner` in WMTS follow the CRS's axis order (latitude first for EPSG
 * geographic systems, northing first for the few projected ones EPSG defines so); the engine always works in
 * x/easting, y/northing order.
 */
import { crsFromEpsg, crsUri, crsUrn } from './crs.ts';
import { RenderError } from './errors.ts';
import type { Mosaic } from './mosaic.ts';
import { transformBounds } from './transform.ts';
import { type Bounds, type Crs, type Grid, gridBounds } from './types.ts';

/** OGC scale denominators assume 0.28 mm pixels. */
export const OGC_PIXEL_SIZE_M = 0.00028;
/** Metres per degree on the WGS 84 equator (what OGC's well-known scale sets use for degrees). */
export const METRES_PER_DEGREE = (2 * Math.PI * 6378137) / 360;
const WEB_MERCATOR_HALF_SIZE_M = Math.PI * 6378137;
/** Levels listed in the JSON documents of the world-wide sets (as OGC's published definitions: 0..24). */
export const WORLD_SET_LEVELS_LISTED = 25;
/** Deepest level of the world-wide sets a tile request may ask for. */
export const WORLD_SET_MAX_LEVEL = 30;
export const TMS_TILE_SIZE = 256;

/** Identifiers of the sets: two world-wide ones, and the per-mosaic native set. */
export const TMS_IDS = ['WebMercatorQuad', 'WorldCRS84Quad', 'native'] as const;
export type TmsId = (typeof TMS_IDS)[number];
export const WORLD_TMS_IDS = ['WebMercatorQuad', 'WorldCRS84Quad'] as const;

/** EPSG projected systems whose first axis is the northing (checked against GDAL's EPSGTreatsAsNorthingEasting). */
const NORTHING_FIRST = new Set([
  3034, 3035, 31287, 3416, 2180, 3006, 2193, 3040, 3041, 3042, 3043, 3044, 3045, 3046, 3047, 3048, 3049, 3050, 3051,
]);

/** True when a CRS's authority axis order puts y (latitude, northing) first. */
export function crsAxisYFirst(crs: Crs): boolean {
  return crs.geographic || NORTHING_FIRST.has(crs.epsg);
}

/** Metres per CRS unit: degrees at the equator for geographic systems, else from the proj4 units. */
export function metresPerUnit(crs: Crs): number {
  if (crs.geographic) return METRES_PER_DEGREE;
  const toMeter = /\+to_meter=([0-9.eE+-]+)/.exec(crs.proj4);
  if (toMeter) return Number(toMeter[1]);
  if (crs.proj4.includes('+units=us-ft')) return 1200 / 3937;
  if (crs.proj4.includes('+units=ft')) return 0.3048;
  return 1;
}

/** One level of a set. */
export interface TileMatrix {
  readonly id: string;
  /** CRS units per pixel */
  readonly cellSize: number;
  readonly scaleDenominator: number;
  /** top-left corner, x (easting/longitude) then y */
  readonly originX: number;
  readonly originY: number;
  readonly tileWidth: number;
  readonly tileHeight: number;
  readonly matrixWidth: number;
  readonly matrixHeight: number;
}

export interface TileMatrixSet {
  readonly id: TmsId;
  readonly title: string;
  /** the registered OGC URI of a well-known set */
  readonly uri?: string;
  readonly crs: Crs;
  /** the CRS as the JSON and WMTS name it */
  readonly crsUri: string;
  readonly crsUrn: string;
  readonly orderedAxes: readonly [string, string];
  /** the CRS's first axis is y (latitude or northing): pointOfOrigin and TopLeftCorner are written y x */
  readonly axisYFirst: boolean;
  readonly wellKnownScaleSet?: string;
  readonly tileMatrices: readonly TileMatrix[];
  /** levels a tile request may ask for (0..maxLevel); beyond tileMatrices.length they follow the same rule */
  readonly maxLevel: number;
  /** the matrix of any level 0..maxLevel */
  matrix(level: number): TileMatrix;
}

function scaleOf(cellSize: number, crs: Crs): number {
  return (cellSize * metresPerUnit(crs)) / OGC_PIXEL_SIZE_M;
}

function worldSet(
  id: 'WebMercatorQuad' | 'WorldCRS84Quad',
  tileSize: number,
  maxLevel: number,
): Omit<TileMatrixSet, 'tileMatrices' | 'matrix'> & { matrixAt(z: number): TileMatrix } {
  if (id === 'WebMercatorQuad') {
    const crs = crsFromEpsg(3857);
    return {
      id,
      title: 'Google Maps Compatible for the World',
      uri: 'http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad',
      crs,
      crsUri: crsUri(crs),
      crsUrn: crsUrn(crs),
      orderedAxes: ['X', 'Y'],
      axisYFirst: false,
      wellKnownScaleSet: tileSize === 256 ? 'http://www.opengis.net/def/wkss/OGC/1.0/GoogleMapsCompatible' : undefined,
      maxLevel,
      matrixAt: (z) => {
        const cellSize = (2 * WEB_MERCATOR_HALF_SIZE_M) / (tileSize * 2 ** z);
        return {
          id: String(z),
          cellSize,
          scaleDenominator: scaleOf(cellSize, crs),
          originX: -WEB_MERCATOR_HALF_SIZE_M,
          originY: WEB_MERCATOR_HALF_SIZE_M,
          tileWidth: tileSize,
          tileHeight: tileSize,
          matrixWidth: 2 ** z,
          matrixHeight: 2 ** z,
        };
      },
    };
  }
  const crs = crsFromEpsg(4326);
  return {
    id,
    title: 'CRS84 for the World',
    uri: 'http://www.opengis.net/def/tilematrixset/OGC/1.0/WorldCRS84Quad',
    crs,
    crsUri: 'http://www.opengis.net/def/crs/OGC/1.3/CRS84',
    crsUrn: 'urn:ogc:def:crs:OGC:1.3:CRS84',
    orderedAxes: ['Lon', 'Lat'],
    axisYFirst: false,
    wellKnownScaleSet: tileSize === 256 ? 'http://www.opengis.net/def/wkss/OGC/1.0/GoogleCRS84Quad' : undefined,
    maxLevel,
    matrixAt: (z) => {
      const cellSize = 180 / (tileSize * 2 ** z);
      return {
        id: String(z),
        cellSize,
        scaleDenominator: scaleOf(cellSize, crs),
        originX: -180,
        originY: 90,
        tileWidth: tileSize,
        tileHeight: tileSize,
        matrixWidth: 2 ** (z + 1),
        matrixHeight: 2 ** z,
      };
    },
  };
}

function finish(
  base: Omit<TileMatrixSet, 'tileMatrices' | 'matrix'> & { matrixAt(z: number): TileMatrix },
  listed: number,
): TileMatrixSet {
  const { matrixAt, ...rest } = base;
  const tileMatrices = Array.from({ length: Math.min(listed, base.maxLevel + 1) }, (_, z) => matrixAt(z));
  return Object.freeze({
    ...rest,
    tileMatrices,
    matrix: (z: number) => {
      if (!Number.isInteger(z) || z < 0 || z > base.maxLevel) {
        throw new RenderError('bad-request', `tile matrix ${z} is not a level of ${base.id}: use 0..${base.maxLevel}`);
      }
      return tileMatrices[z] ?? matrixAt(z);
    },
  });
}

/** A world-wide set: WebMercatorQuad or WorldCRS84Quad (256 px tiles unless told). */
export function worldTileMatrixSet(
  id: 'WebMercatorQuad' | 'WorldCRS84Quad',
  opts: { tileSize?: number; maxLevel?: number } = {},
): TileMatrixSet {
  const tileSize = opts.tileSize ?? TMS_TILE_SIZE;
  return finish(worldSet(id, tileSize, opts.maxLevel ?? WORLD_SET_MAX_LEVEL), WORLD_SET_LEVELS_LISTED);
}

/** Why a mosaic has no native set, or undefined when it has one. */
export function nativeSetUnavailable(grid: Grid): string | undefined {
  const gt = grid.transform;
  if (gt[2] !== 0 || gt[4] !== 0 || !(gt[1] > 0) || !(gt[5] < 0)) {
    return 'the mosaic grid is not north-up (rotated or south-up): OGC tile matrices cannot follow it';
  }
  if (Math.abs(gt[1] + gt[5]) > 1e-9 * gt[1]) {
    return `the mosaic's pixels are not square (${gt[1]} x ${-gt[5]}): a tile matrix has one cell size`;
  }
  return undefined;
}

/** Number of the finest native level: coarser levels halve until the whole grid fits one tile. */
export function nativeFinestLevel(width: number, height: number, tileSize = TMS_TILE_SIZE): number {
  let level = 0;
  while (Math.max(width, height) > tileSize * 2 ** level) level++;
  return level;
}

/**
 * The native set of a mosaic's grid (see the file comment), or undefined when the grid is rotated, south-up or has
 * non-square pixels (`nativeSetUnavailable` says why).
 */
export function nativeTileMatrixSet(grid: Grid, title: string, tileSize = TMS_TILE_SIZE): TileMatrixSet | undefined {
  if (nativeSetUnavailable(grid)) return undefined;
  const gt = grid.transform;
  const finest = nativeFinestLevel(grid.width, grid.height, tileSize);
  const crs = grid.crs;
  const matrixAt = (z: number): TileMatrix => {
    const factor = 2 ** (finest - z);
    const cellSize = gt[1] * factor;
    return {
      id: String(z),
      cellSize,
      scaleDenominator: scaleOf(cellSize, crs),
      originX: gt[0],
      originY: gt[3],
      tileWidth: tileSize,
      tileHeight: tileSize,
      matrixWidth: Math.ceil(grid.width / factor / tileSize),
      matrixHeight: Math.ceil(grid.height / factor / tileSize),
    };
  };
  const yFirst = crsAxisYFirst(crs);
  const axes: readonly [string, string] = crs.geographic ? ['Lat', 'Lon'] : yFirst ? ['N', 'E'] : ['E', 'N'];
  return finish(
    {
      id: 'native',
      title: `${title}: native grid (${crs.name})`,
      crs,
      crsUri: crsUri(crs),
      crsUrn: crsUrn(crs),
      orderedAxes: axes,
      axisYFirst: yFirst,
      maxLevel: finest,
      matrixAt,
    },
    finest + 1,
  );
}

/** The set `id` for a mosaic: the two world-wide sets, or its native one (404-style RenderError when it has none). */
export function tileMatrixSetFor(
  id: string,
  mosaic: Pick<Mosaic, 'grid' | 'title' | 'id'>,
  tileSize = TMS_TILE_SIZE,
): TileMatrixSet {
  if (id === 'WebMercatorQuad' || id === 'WorldCRS84Quad') return worldTileMatrixSet(id, { tileSize });
  if (id === 'native') {
    const set = nativeTileMatrixSet(mosaic.grid, mosaic.title || mosaic.id, tileSize);
    if (!set) {
      throw new RenderError(
        'not-found',
        `mosaic ${mosaic.id} has no native tile matrix set: ${nativeSetUnavailable(mosaic.grid)}`,
      );
    }
    return set;
  }
  throw new RenderError(
    'not-found',
    `tile matrix set "${id.slice(0, 40)}" is unknown; use one of ${TMS_IDS.join(', ')}`,
  );
}

/** True when x/y is a tile of the matrix. */
export function isTileOf(m: TileMatrix, x: number, y: number): boolean {
  return Number.isInteger(x) && Number.isInteger(y) && x >= 0 && y >= 0 && x < m.matrixWidth && y < m.matrixHeight;
}

/** The grid of tile x/y of level z (in the set's CRS, x/y axis order), tileWidth x tileHeight pixels. */
export function tmsTileGrid(set: TileMatrixSet, z: number, x: number, y: number): Grid {
  const m = set.matrix(z);
  if (!isTileOf(m, x, y)) {
    throw new RenderError(
      'bad-request',
      `tile ${z}/${x}/${y} is not in ${set.id}: at level ${z}, x runs 0..${m.matrixWidth - 1} and y 0..${m.matrixHeight - 1}`,
    );
  }
  const spanX = m.cellSize * m.tileWidth;
  const spanY = m.cellSize * m.tileHeight;
  return {
    crs: set.crs,
    transform: [m.originX + x * spanX, m.cellSize, 0, m.originY - y * spanY, 0, -m.cellSize],
    width: m.tileWidth,
    height: m.tileHeight,
  };
}

/** Bounds of a tile in the set's CRS (x/y order). */
export function tmsTileBounds(set: TileMatrixSet, z: number, x: number, y: number): Bounds {
  return gridBounds(tmsTileGrid(set, z, x, y));
}

/** An inclusive range of tiles at one level. */
export interface TmsTileRange {
  readonly z: number;
  readonly minX: number;
  readonly minY: number;
  readonly maxX: number;
  readonly maxY: number;
}

/**
 * The tiles of level z that intersect bounds given in the set's CRS (x/y order), clamped to the matrix. Bounds
 * that only touch a tile edge (within a millionth of a tile) leave out the tile beyond it. Undefined when the
 * bounds miss the matrix.
 */
export function tmsTilesForBounds(set: TileMatrixSet, z: number, b: Bounds): TmsTileRange | undefined {
  const m = set.matrix(z);
  const spanX = m.cellSize * m.tileWidth;
  const spanY = m.cellSize * m.tileHeight;
  const eps = 1e-6;
  const fx0 = (b[0] - m.originX) / spanX;
  const fx1 = (b[2] - m.originX) / spanX;
  const fy0 = (m.originY - b[3]) / spanY;
  const fy1 = (m.originY - b[1]) / spanY;
  const minX = Math.max(0, Math.floor(fx0 + eps));
  const minY = Math.max(0, Math.floor(fy0 + eps));
  const maxX = Math.min(m.matrixWidth - 1, Math.ceil(fx1 - eps) - 1);
  const maxY = Math.min(m.matrixHeight - 1, Math.ceil(fy1 - eps) - 1);
  if (maxX < minX || maxY < minY) return undefined;
  return { z, minX, minY, maxX, maxY };
}

/** A mosaic's bounds in the set's CRS (x/y order), clipped to what the set's CRS can hold. */
export function boundsInSet(set: TileMatrixSet, grid: Grid): Bounds {
  return transformBounds(gridBounds(grid), grid.crs, set.crs);
}

/**
 * The finest level to offer for a mosaic: the first whose pixels are at least as fine as the mosaic's at its
 * location (every source pixel visible); for the native set its finest level.
 */
export function finestUsefulLevel(set: TileMatrixSet, grid: Grid, maxLevel = set.maxLevel): number {
  if (set.id === 'native') return set.maxLevel;
  const b = boundsInSet(set, grid);
  const res = Math.min((b[2] - b[0]) / grid.width, (b[3] - b[1]) / grid.height);
  for (let z = 0; z <= maxLevel; z++) if (set.matrix(z).cellSize <= res * (1 + 1e-9)) return z;
  return maxLevel;
}

/** A pair in the CRS's axis order. */
export function axisOrdered(set: TileMatrixSet, x: number, y: number): [number, number] {
  return set.axisYFirst ? [y, x] : [x, y];
}

/** The OGC TMS 2.0 JSON document of a set. `links` are added by the caller (they need the base URL). */
export function tileMatrixSetJson(set: TileMatrixSet, links: readonly Record<string, string | boolean>[] = []) {
  return {
    id: set.id,
    title: set.title,
    ...(set.uri ? { uri: set.uri } : {}),
    crs: set.crsUri,
    orderedAxes: set.orderedAxes,
    ...(set.wellKnownScaleSet ? { wellKnownScaleSet: set.wellKnownScaleSet } : {}),
    ...(links.length ? { links } : {}),
    tileMatrices: set.tileMatrices.map((m) => ({
      id: m.id,
      scaleDenominator: m.scaleDenominator,
      cellSize: m.cellSize,
      cornerOfOrigin: 'topLeft',
      pointOfOrigin: axisOrdered(set, m.originX, m.originY),
      tileWidth: m.tileWidth,
      tileHeight: m.tileHeight,
      matrixWidth: m.matrixWidth,
      matrixHeight: m.matrixHeight,
    })),
  };
}
