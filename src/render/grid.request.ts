/**
 * The grids image requests ask for, worked out from the mosaic's metadata alone: whether a tile touches the mosaic,
 * the zoom range tiles are offered at, the grid of a preview and of a crop.
 */
import { crsFromEpsg } from './crs.ts';
import type { Mosaic } from './mosaic.ts';
import { zoomForResolution } from './tilematrix.ts';
import { transformBounds } from './transform.ts';
import { type Bounds, type Crs, type Grid, gridBounds } from './types.ts';

export function overlaps(a: Bounds, b: Bounds): boolean {
  return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
}

/** Bounds grown by 1% (+ a hair): densified bounds may miss a sliver of a curved edge. */
export function padded(b: Bounds): Bounds {
  const pad = 0.01 * Math.max(b[2] - b[0], b[3] - b[1]) + 1e-9;
  return [b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad];
}

/** The mosaic's WGS 84 bounds, padded. */
export function paddedWgs84(m: Mosaic): Bounds {
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
