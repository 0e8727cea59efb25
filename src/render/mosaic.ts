/**
 * A mosaic: ordered rasters on one native grid, with a compositing rule and a resampling method.
 * Building the native grid is pure (given the rasters' metadata), so it is unit-testable.
 */
import { createHash } from 'node:crypto';
import { crsFromEpsg } from './crs.ts';
import { RenderError } from './errors.ts';
import type { FootprintIndex } from './mosaic.index.ts';
import type { RasterInfo } from './raster.info.ts';
import type { Raster } from './raster.ts';
import type { CatalogItem, StacQuery } from './stac.ts';
import { transformBounds } from './transform.ts';
import {
  type Bounds,
  type Composite,
  type Crs,
  type DType,
  type GeoTransform,
  type Grid,
  gridBounds,
  type Resampling,
} from './types.ts';

export interface MosaicSpec {
  readonly id: string;
  readonly title?: string;
  /** source locations, already expanded: local paths, http(s):// URLs, s3://bucket/key */
  readonly sources: readonly string[];
  /** EPSG code of the native grid (default: the first source's) */
  readonly crs?: number;
  /** pixel size [x, y] in CRS units (default: the first source's, or its equivalent in the target CRS) */
  readonly resolution?: readonly [number, number];
  /** [minx, miny, maxx, maxy] in the native CRS (default: union of the sources) */
  readonly bounds?: Bounds;
  /** 1-based source bands to expose (default: all bands of the first source) */
  readonly bands?: readonly number[];
  readonly nodata?: number;
  readonly dtype?: DType;
  readonly composite?: Composite;
  readonly resampling?: Resampling;
  /** block size of the virtual COG and default for materialisation */
  readonly blockSize?: number;
  /** a catalogue mosaic: its items come from here, and `sources` is empty */
  readonly catalogue?: MosaicCatalogueSpec;
  /** assets stacked as bands (one band per single-band asset); default: the items' only raster asset */
  readonly assets?: readonly string[];
  /** cut time into calendar periods a client picks with `datetime` (P1D, P1W, P1M, P1Y) */
  readonly period?: string;
  /** with a period: one band set per period that holds items (see mosaicBandRefs) */
  readonly periodBands?: boolean;
}

/** Catalogue mosaics (mosaic.items.ts): the items, their footprint index and the bands taken from their assets. */
export interface MosaicBandRef {
  readonly asset: string;
  /** 0-based band of the asset */
  readonly band: number;
  readonly name: string;
  /** a band of one period's set (periodBands): only items whose time overlaps [startMs, endMs] */
  readonly period?: { readonly id: string; readonly startMs: number; readonly endMs: number };
}

export interface MosaicItems {
  /** in compositing order (sortby applied) */
  readonly items: readonly CatalogItem[];
  readonly index: FootprintIndex;
  readonly bands: readonly MosaicBandRef[];
  /** distinct assets of `bands`, in band order */
  readonly assets: readonly string[];
  readonly period?: MosaicPeriodUnit;
}

export const PERIOD_UNITS = ['P1D', 'P1W', 'P1M', 'P1Y'] as const;
export type MosaicPeriodUnit = (typeof PERIOD_UNITS)[number];

/** Where a catalogue mosaic's items come from: a document (ItemCollection, stac-geoparquet, mosaic index) or a search. */
export interface MosaicCatalogueSpec extends StacQuery {
  /** ItemCollection JSON / stac-geoparquet / mosaic index: file, http(s):// or s3:// */
  readonly items?: string;
  /** a STAC API `/search` endpoint */
  readonly search?: string;
  readonly method?: 'GET' | 'POST';
  readonly limit?: number;
  readonly maxItems?: number;
  /**
   * Set by the catalog for definitions from configuration or the command line: the catalogue's place and its
   * assets' folders are allowed like configured roots and prefixes. Otherwise every asset must be allowed already.
   */
  readonly trusted?: boolean;
}

export interface MosaicSource {
  readonly index: number;
  readonly location: string;
  raster: Raster;
}

/** A source of a mosaic that could not be opened (the mosaic is served without it). */
export interface MosaicBrokenSource {
  /** position in the mosaic's list of sources (after expansion) */
  readonly index: number;
  readonly location: string;
  /** file name or URL without credentials: how clients see it */
  readonly name: string;
  readonly kind: string;
  /** why, without server paths */
  readonly reason: string;
}

export interface Mosaic {
  readonly id: string;
  readonly title: string;
  readonly spec: MosaicSpec;
  readonly grid: Grid;
  readonly dtype: DType;
  /** 0-based indices of the source bands the mosaic exposes */
  readonly bandIndices: readonly number[];
  readonly bandCount: number;
  readonly bandNames: readonly string[];
  readonly nodata: number | undefined;
  readonly composite: Composite;
  readonly resampling: Resampling;
  readonly blockSize: number;
  readonly sources: MosaicSource[];
  /** sources that could not be opened (sources.onSourceError: skip); empty when every source opened */
  broken?: readonly MosaicBrokenSource[];
  /** a catalogue mosaic's items and their spatial index (then `sources` is empty: rasters open per window) */
  readonly items?: MosaicItems;
  readonly boundsWgs84: Bounds;
  /** changes when the definition or any source changes */
  etag: string;
  lastModified: Date;
}

export const MAX_GRID_DIMENSION = 10_000_000;

/** What the native grid needs to know of a source. */
export type RasterGridInfo = Pick<RasterInfo, 'crs' | 'transform' | 'width' | 'height'>;

function sourceBoundsIn(info: RasterGridInfo, crs: Crs): Bounds {
  const b = gridBounds({ crs: info.crs, transform: info.transform, width: info.width, height: info.height });
  return info.crs.epsg === crs.epsg ? b : transformBounds(b, info.crs, crs);
}

/** The native grid of a mosaic from its spec and its rasters' metadata (pure). */
export function nativeGrid(spec: MosaicSpec, infos: readonly RasterGridInfo[]): Grid {
  if (infos.length === 0) throw new RenderError('bad-request', `mosaic ${spec.id} has no sources`);
  const ref = infos[0];
  const crs = spec.crs !== undefined ? crsFromEpsg(spec.crs) : ref.crs;
  let resX: number;
  let resY: number;
  if (spec.resolution) {
    [resX, resY] = spec.resolution;
  } else if (ref.crs.epsg === crs.epsg) {
    resX = Math.hypot(ref.transform[1], ref.transform[4]);
    resY = Math.hypot(ref.transform[2], ref.transform[5]);
  } else {
    // same number of pixels across the reference source's extent
    const b = sourceBoundsIn(ref, crs);
    const diag = Math.hypot(b[2] - b[0], b[3] - b[1]) / Math.hypot(ref.width, ref.height);
    resX = diag;
    resY = diag;
  }
  if (!(resX > 0 && resY > 0 && Number.isFinite(resX) && Number.isFinite(resY))) {
    throw new RenderError('bad-request', `mosaic ${spec.id}: resolution ${resX}, ${resY} is not positive`);
  }
  let bounds: Bounds;
  if (spec.bounds) {
    bounds = spec.bounds;
  } else {
    let [minx, miny, maxx, maxy] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const info of infos) {
      const b = sourceBoundsIn(info, crs);
      if (!b.every(Number.isFinite)) continue;
      minx = Math.min(minx, b[0]);
      miny = Math.min(miny, b[1]);
      maxx = Math.max(maxx, b[2]);
      maxy = Math.max(maxy, b[3]);
    }
    if (!Number.isFinite(minx))
      throw new RenderError('bad-request', `mosaic ${spec.id}: no source can be placed in EPSG:${crs.epsg}`);
    // snap outward to the reference source's pixel lattice when it is in the same CRS (keeps nearest exact)
    const ox = ref.crs.epsg === crs.epsg && !spec.resolution ? ref.transform[0] : 0;
    const oy = ref.crs.epsg === crs.epsg && !spec.resolution ? ref.transform[3] : 0;
    const snap = (v: number, o: number, r: number, up: boolean) => {
      const k = (v - o) / r;
      const rk = Math.round(k);
      const kk = Math.abs(k - rk) < 1e-6 ? rk : up ? Math.ceil(k) : Math.floor(k);
      return o + kk * r;
    };
    bounds = [
      snap(minx, ox, resX, false),
      snap(miny, oy, resY, false),
      snap(maxx, ox, resX, true),
      snap(maxy, oy, resY, true),
    ];
  }
  const width = Math.round((bounds[2] - bounds[0]) / resX);
  const height = Math.round((bounds[3] - bounds[1]) / resY);
  if (!(width >= 1 && height >= 1))
    throw new RenderError('bad-request', `mosaic ${spec.id}: bounds give an empty grid`);
  if (width > MAX_GRID_DIMENSION || height > MAX_GRID_DIMENSION) {
    throw new RenderError(
      'too-large',
      `mosaic ${spec.id}: grid of ${width} x ${height} pixels exceeds ${MAX_GRID_DIMENSION} per side`,
    );
  }
  const transform: GeoTransform = [bounds[0], resX, 0, bounds[3], 0, -resY];
  return { crs, transform, width, height };
}

export function mosaicEtag(spec: MosaicSpec, infos: readonly RasterInfo[]): string {
  const h = createHash('sha256');
  h.update(JSON.stringify(spec));
  for (const i of infos) h.update(`\n${i.url}|${i.etag}|${i.size}`);
  return `"${h.digest('base64url').slice(0, 27)}"`;
}

/** Assemble a mosaic from its spec and opened rasters (pure apart from the rasters it holds). */
export function buildMosaic(spec: MosaicSpec, rasters: readonly Raster[]): Mosaic {
  const infos = rasters.map((r) => r.info);
  const grid = nativeGrid(spec, infos);
  const ref = infos[0];
  const bandIndices = spec.bands ? spec.bands.map((b) => b - 1) : Array.from({ length: ref.bandCount }, (_, i) => i);
  for (const info of infos) {
    const bad = bandIndices.find((b) => b < 0 || b >= info.bandCount);
    if (bad !== undefined) {
      throw new RenderError(
        'bad-request',
        `mosaic ${spec.id}: band ${bad + 1} does not exist in ${info.url} (it has ${info.bandCount})`,
      );
    }
  }
  const wgs = transformBounds(gridBounds(grid), grid.crs, crsFromEpsg(4326));
  const blockSize = spec.blockSize ?? 512;
  return {
    id: spec.id,
    title: spec.title ?? spec.id,
    spec,
    grid,
    dtype: spec.dtype ?? ref.dtype,
    bandIndices,
    bandCount: bandIndices.length,
    bandNames: bandIndices.map((b) => ref.bandDescriptions[b] || `b${b + 1}`),
    nodata: spec.nodata ?? ref.nodata,
    composite: spec.composite ?? 'first',
    resampling: spec.resampling ?? 'nearest',
    blockSize,
    sources: rasters.map((raster, index) => ({ index, location: spec.sources[index], raster })),
    boundsWgs84: wgs,
    etag: mosaicEtag(spec, infos),
    lastModified: new Date(),
  };
}
