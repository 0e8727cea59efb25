/**
 * The spatial index of a catalogue mosaic: an R-tree (flatbush) of the items' longitude/latitude boxes, then an
 * exact test of each candidate against its own grid (the window's bounds in the item's CRS against the asset's
 * pixel extent). Both are metadata only: finding the sources under a window costs no request.
 *
 * Also the writer of a mosaic index (`cogmill index`): the headers of plain GeoTIFFs read once and written as a
 * STAC ItemCollection with `proj:*` and `raster:bands`, so the same lazy path opens them later without a request.
 */
import Flatbush from 'flatbush';
import { crsFromEpsg } from './crs.ts';
import type { RasterInfo } from './raster.info.ts';
import { type CatalogAsset, type CatalogItem, stacTransformOf } from './stac.ts';
import { transformBounds } from './transform.ts';
import { type Bounds, type Crs, type Grid, gridBounds } from './types.ts';

/** Source pixels a footprint is grown by: the reach of the widest resampling kernel (cubic). */
export const FOOTPRINT_MARGIN_PX = 2;

export class FootprintIndex {
  private readonly tree: Flatbush | undefined;
  readonly size: number;

  constructor(boxes: readonly Bounds[]) {
    this.size = boxes.length;
    if (boxes.length === 0) return;
    const tree = new Flatbush(boxes.length);
    for (const b of boxes) tree.add(b[0], b[1], b[2], b[3]);
    tree.finish();
    this.tree = tree;
  }

  /** Indices (ascending) of the boxes that intersect `b` (longitude/latitude). */
  search(b: Bounds): number[] {
    if (!this.tree) return [];
    return this.tree.search(b[0], b[1], b[2], b[3]).sort((x, y) => x - y);
  }
}

/** The asset that carries an item's grid: the first of `assets` with proj:* fields, else any. */
export function gridAsset(item: CatalogItem, assets: readonly string[]): CatalogAsset | undefined {
  for (const a of assets) {
    const x = item.assets[a];
    if (x?.transform && x.epsg !== undefined) return x;
  }
  return Object.values(item.assets).find((x) => x.transform && x.epsg !== undefined);
}

/** An asset's extent in its own CRS (undefined when the catalogue does not give its grid). */
export function assetBounds(a: CatalogAsset): Bounds | undefined {
  if (!a.transform || a.width === undefined || a.height === undefined || a.epsg === undefined) return undefined;
  return gridBounds({ crs: crsFromEpsg(a.epsg), transform: a.transform, width: a.width, height: a.height });
}

/**
 * The items whose footprint touches `grid`, in catalogue order: the R-tree gives candidates by longitude/latitude
 * box, then each candidate with a known grid is kept only when the window, in its CRS, overlaps its extent grown
 * by FOOTPRINT_MARGIN_PX pixels. Pure (coordinate math only).
 */
export function itemsUnder(
  items: readonly CatalogItem[],
  index: FootprintIndex,
  grid: Grid,
  assets: readonly string[],
): number[] {
  const wgs84 = crsFromEpsg(4326);
  const native = gridBounds(grid);
  let box: Bounds;
  try {
    box = transformBounds(native, grid.crs, wgs84);
  } catch {
    return [];
  }
  // a little slack: item boxes are rounded by their writers
  const e = 1e-6;
  const candidates = index.search([box[0] - e, box[1] - e, box[2] + e, box[3] + e]);
  const inCrs = new Map<number, Bounds | null>();
  const windowIn = (crs: Crs): Bounds | null => {
    let b = inCrs.get(crs.epsg);
    if (b === undefined) {
      try {
        b = crs.epsg === grid.crs.epsg ? native : transformBounds(native, grid.crs, crs);
      } catch {
        b = null;
      }
      inCrs.set(crs.epsg, b);
    }
    return b;
  };
  const out: number[] = [];
  for (const i of candidates) {
    const a = gridAsset(items[i], assets);
    const ab = a ? assetBounds(a) : undefined;
    if (!a || !ab) {
      out.push(i);
      continue;
    }
    const w = windowIn(crsFromEpsg(a.epsg!));
    if (!w) continue;
    const t = a.transform!;
    const mx = FOOTPRINT_MARGIN_PX * Math.hypot(t[1], t[4]);
    const my = FOOTPRINT_MARGIN_PX * Math.hypot(t[2], t[5]);
    if (w[0] < ab[2] + mx && w[2] > ab[0] - mx && w[1] < ab[3] + my && w[3] > ab[1] - my) out.push(i);
  }
  return out;
}

/** A STAC Item describing one GeoTIFF from its parsed header (what `cogmill index` writes per source). */
export function indexItem(id: string, href: string, info: RasterInfo): Record<string, unknown> {
  const grid = { crs: info.crs, transform: info.transform, width: info.width, height: info.height };
  const b = transformBounds(gridBounds(grid), info.crs, crsFromEpsg(4326));
  const [w, s, e, n] = b.map((v) => Math.round(v * 1e9) / 1e9);
  return {
    type: 'Feature',
    stac_version: '1.1.0',
    stac_extensions: [
      'https://stac-extensions.github.io/projection/v2.0.0/schema.json',
      'https://stac-extensions.github.io/raster/v1.1.0/schema.json',
    ],
    id,
    bbox: [w, s, e, n],
    geometry: {
      type: 'Polygon',
      coordinates: [
        [
          [w, s],
          [e, s],
          [e, n],
          [w, n],
          [w, s],
        ],
      ],
    },
    properties: {
      datetime: null,
      start_datetime: '1970-01-01T00:00:00Z',
      end_datetime: '1970-01-01T00:00:00Z',
    },
    assets: {
      data: {
        href,
        type: 'image/tiff; application=geotiff',
        roles: ['data'],
        'proj:code': `EPSG:${info.crs.epsg}`,
        'proj:shape': [info.height, info.width],
        'proj:transform': stacTransformOf(info.transform),
        'file:size': info.size,
        'raster:bands': Array.from({ length: info.bandCount }, () => ({
          data_type: info.dtype,
          ...(info.nodata !== undefined ? { nodata: Number.isNaN(info.nodata) ? 'nan' : info.nodata } : {}),
        })),
      },
    },
    links: [],
  };
}
