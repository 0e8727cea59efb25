/**
 * WebMercatorQuad tile matrix set (OGC TMS 2.0, the XYZ scheme of web maps): tile grids, tile bounds, tile ranges,
 * zoom <-> resolution. Tile 0/0/0 covers the whole square Web Mercator world; y grows southwards.
 */
import { crsFromEpsg } from './crs.ts';
import { RenderError } from './errors.ts';
import { transformBounds } from './transform.ts';
import { type Bounds, type Grid, gridBounds } from './types.ts';

/** Half the side of the square Web Mercator world in metres (pi * 6378137). */
export const WEB_MERCATOR_HALF_SIZE_M = 20037508.342789244;
/** Latitude of the top and bottom edges of the Web Mercator world. */
export const WEB_MERCATOR_MAX_LAT = 85.0511287798066;
export const TILE_MAX_ZOOM = 30;
export const TILE_SIZE_DEFAULT = 256;

/** An inclusive range of tiles at one zoom. */
export interface TileRange {
  readonly z: number;
  readonly minX: number;
  readonly minY: number;
  readonly maxX: number;
  readonly maxY: number;
}

export function isValidTile(z: number, x: number, y: number): boolean {
  if (!Number.isInteger(z) || !Number.isInteger(x) || !Number.isInteger(y)) return false;
  if (z < 0 || z > TILE_MAX_ZOOM) return false;
  const n = 2 ** z;
  return x >= 0 && x < n && y >= 0 && y < n;
}

/** Throws RenderError 'bad-request' unless z/x/y is a tile of WebMercatorQuad (z in 0..30). */
export function assertValidTile(z: number, x: number, y: number): void {
  if (isValidTile(z, x, y)) return;
  if (!Number.isInteger(z) || z < 0 || z > TILE_MAX_ZOOM) {
    throw new RenderError('bad-request', `tile zoom ${z} is outside 0..${TILE_MAX_ZOOM}`);
  }
  const last = 2 ** z - 1;
  throw new RenderError('bad-request', `tile ${z}/${x}/${y} does not exist: at zoom ${z}, x and y run 0..${last}`);
}

function assertTileSize(tileSize: number): void {
  if (!Number.isInteger(tileSize) || tileSize < 1 || tileSize > 4096) {
    throw new RenderError('bad-request', `tile size ${tileSize} must be an integer in 1..4096`);
  }
}

/** Metres per pixel of WebMercatorQuad at zoom z (at the equator, in EPSG:3857 units). */
export function resolutionAtZoom(z: number, tileSize = TILE_SIZE_DEFAULT): number {
  return (2 * WEB_MERCATOR_HALF_SIZE_M) / (tileSize * 2 ** z);
}

export type ZoomStrategy = 'auto' | 'upper' | 'lower';

/**
 * The zoom for a resolution in EPSG:3857 metres per pixel, like GDAL's COG driver ZOOM_LEVEL_STRATEGY: 'upper'
 * takes the zoom whose resolution is just finer than (or equal to) resMeters, 'lower' the one just coarser (or
 * equal), 'auto' whichever of the two is closer on a logarithmic scale. Clamped to 0..30.
 */
export function zoomForResolution(
  resMeters: number,
  tileSize = TILE_SIZE_DEFAULT,
  strategy: ZoomStrategy = 'auto',
): number {
  if (!(resMeters > 0) || !Number.isFinite(resMeters)) {
    throw new RenderError('bad-request', `resolution ${resMeters} must be a positive number of metres`);
  }
  // exact zoom (fractional): resolutionAtZoom(zf) === resMeters
  const zf = Math.log2((2 * WEB_MERCATOR_HALF_SIZE_M) / (tileSize * resMeters));
  const rounded = Math.round(zf);
  // treat float noise around an exact zoom as that zoom
  const near = Math.abs(zf - rounded) < 1e-9 ? rounded : zf;
  let z: number;
  if (strategy === 'upper') z = Math.ceil(near);
  else if (strategy === 'lower') z = Math.floor(near);
  else z = Math.round(near);
  return Math.min(TILE_MAX_ZOOM, Math.max(0, z));
}

/** The EPSG:3857 bounds of a tile [minx, miny, maxx, maxy]. */
export function tileBoundsMercator(z: number, x: number, y: number): Bounds {
  assertValidTile(z, x, y);
  const span = (2 * WEB_MERCATOR_HALF_SIZE_M) / 2 ** z;
  const minx = -WEB_MERCATOR_HALF_SIZE_M + x * span;
  const maxy = WEB_MERCATOR_HALF_SIZE_M - y * span;
  return [minx, maxy - span, minx + span, maxy];
}

/** The EPSG:3857 grid of a tile: tileSize x tileSize pixels, north up. */
export function xyzTileGrid(z: number, x: number, y: number, tileSize = TILE_SIZE_DEFAULT): Grid {
  assertTileSize(tileSize);
  const [minx, , , maxy] = tileBoundsMercator(z, x, y);
  const res = resolutionAtZoom(z, tileSize);
  return {
    crs: crsFromEpsg(3857),
    transform: [minx, res, 0, maxy, 0, -res],
    width: tileSize,
    height: tileSize,
  };
}

function tileLon(x: number, n: number): number {
  return (x / n) * 360 - 180;
}

function tileLat(y: number, n: number): number {
  return (Math.atan(Math.sinh(Math.PI * (1 - (2 * y) / n))) * 180) / Math.PI;
}

/** The WGS 84 bounds of a tile [west, south, east, north] in degrees. */
export function tileBoundsWgs84(z: number, x: number, y: number): Bounds {
  assertValidTile(z, x, y);
  const n = 2 ** z;
  return [tileLon(x, n), tileLat(y + 1, n), tileLon(x + 1, n), tileLat(y, n)];
}

/** Fractional tile coordinates of a longitude/latitude at zoom z (not clamped). */
function tileFraction(lon: number, lat: number, z: number): [number, number] {
  const n = 2 ** z;
  const clampedLat = Math.min(WEB_MERCATOR_MAX_LAT, Math.max(-WEB_MERCATOR_MAX_LAT, lat));
  const phi = (clampedLat * Math.PI) / 180;
  const fx = ((lon + 180) / 360) * n;
  const fy = ((1 - Math.log(Math.tan(phi) + 1 / Math.cos(phi)) / Math.PI) / 2) * n;
  return [fx, fy];
}

/** The tile [x, y] at zoom z that contains a longitude/latitude (clamped into the tile matrix). */
export function lonLatToTile(lon: number, lat: number, z: number): [number, number] {
  if (!Number.isInteger(z) || z < 0 || z > TILE_MAX_ZOOM) {
    throw new RenderError('bad-request', `tile zoom ${z} is outside 0..${TILE_MAX_ZOOM}`);
  }
  if (!Number.isFinite(lon) || !Number.isFinite(lat)) {
    throw new RenderError('bad-request', `longitude/latitude ${lon}, ${lat} must be finite numbers`);
  }
  const n = 2 ** z;
  const [fx, fy] = tileFraction(lon, lat, z);
  return [Math.min(n - 1, Math.max(0, Math.floor(fx))), Math.min(n - 1, Math.max(0, Math.floor(fy)))];
}

/**
 * The inclusive range of tiles at zoom z that intersect WGS 84 bounds [west, south, east, north]. Bounds that only
 * touch a tile edge do not include the tile beyond it. Latitudes are clamped to the Web Mercator world.
 */
export function tilesForBounds(boundsWgs84: Bounds, z: number): TileRange {
  if (!Number.isInteger(z) || z < 0 || z > TILE_MAX_ZOOM) {
    throw new RenderError('bad-request', `tile zoom ${z} is outside 0..${TILE_MAX_ZOOM}`);
  }
  const [west, south, east, north] = boundsWgs84;
  if (![west, south, east, north].every(Number.isFinite) || west > east || south > north) {
    throw new RenderError('bad-request', `bounds [${boundsWgs84.join(', ')}] are not [west, south, east, north]`);
  }
  const n = 2 ** z;
  const clampX = (v: number): number => Math.min(n - 1, Math.max(0, v));
  // a tolerance of a millionth of a tile keeps edges that coincide with tile edges from spilling over
  const eps = 1e-6;
  const [fx0, fy0] = tileFraction(Math.max(-180, west), north, z);
  const [fx1, fy1] = tileFraction(Math.min(180, east), south, z);
  const minX = clampX(Math.floor(fx0 + eps));
  const minY = clampX(Math.floor(fy0 + eps));
  const maxX = clampX(Math.max(Math.floor(fx0 + eps), Math.ceil(fx1 - eps) - 1));
  const maxY = clampX(Math.max(Math.floor(fy0 + eps), Math.ceil(fy1 - eps) - 1));
  return { z, minX, minY, maxX, maxY };
}

/** The WGS 84 bounds [west, south, east, north] of any grid, by densified edges (see transformBounds). */
export function wgs84Bounds(grid: Grid): Bounds {
  return transformBounds(gridBounds(grid), grid.crs, crsFromEpsg(4326));
}
