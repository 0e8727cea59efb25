/**
 * The tiles of a mosaic's COG, shared by the virtual COG and the materialised COG: the same grid per level, the
 * same render call, the same padding. This is where "the virtual and the materialised COG are bit-identical" holds.
 */
import type { Engine } from '../render/engine.ts';
import { selectItems } from '../render/mosaic.items.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { allocTyped, type DType, type Grid, type Resampling, type TypedArray } from '../render/types.ts';
import { sourceWarp } from '../render/warp.window.ts';
import { type CogLevel, type CogSpec, cogLevels } from './cog.layout.ts';
import { blockTile, type StoredBlock } from './cog.tiles.block.ts';

export interface CogTileOptions {
  readonly blockSize: number;
  /** resampling of the full-resolution level (default: the mosaic's) */
  readonly resampling?: Resampling;
  /** resampling of the overview levels, rendered from the sources at each level's resolution (default average) */
  readonly overviewResampling?: Resampling;
  /** a source block that cannot be decoded fails the tile (exports), instead of leaving its pixels empty */
  readonly strict?: boolean;
  /** false: render every tile, none taken as one source block (cog.tiles.block.ts); for tests comparing the two */
  readonly blockTiles?: boolean;
}

/**
 * Default overview resampling: average; mode for a categorical mosaic (one whose own resampling is 'mode':
 * land cover, classes), so overviews never invent classes.
 */
export function defaultOverviewResampling(mosaic: Mosaic): Resampling {
  return mosaic.resampling === 'mode' ? 'mode' : 'average';
}

/** How a COG of a mosaic stores its tiles; the rest of its spec comes from the mosaic. */
export type MosaicCogStorage = Pick<
  CogSpec,
  'blockSize' | 'compression' | 'predictor' | 'ghost' | 'bigTiff' | 'gdalMetadata' | 'photometric'
>;

/** The COG spec of a mosaic: its grid, bands, type and nodata (the same for every COG of it), stored as `storage` says. */
export function mosaicCogSpec(mosaic: Mosaic, storage: MosaicCogStorage): CogSpec {
  const g = mosaic.grid;
  return {
    width: g.width,
    height: g.height,
    bands: mosaic.bandCount,
    dtype: mosaic.dtype,
    transform: g.transform,
    epsg: g.crs.epsg,
    geographic: g.crs.geographic,
    nodata: mosaic.nodata,
    ...storage,
  };
}

export function mosaicCogLevels(mosaic: Mosaic, blockSize: number): CogLevel[] {
  return cogLevels(mosaic.grid.width, mosaic.grid.height, blockSize);
}

/** The grid of a whole level: same extent as level 0, pixel size scaled by the size ratio (GDAL's overview georeferencing). */
export function levelGrid(mosaic: Mosaic, level: CogLevel): Grid {
  const g = mosaic.grid;
  const sx = g.width / level.width;
  const sy = g.height / level.height;
  const t = g.transform;
  return {
    crs: g.crs,
    transform: [t[0], t[1] * sx, t[2] * sy, t[3], t[4] * sx, t[5] * sy],
    width: level.width,
    height: level.height,
  };
}

/** The grid of the part of tile (tx, ty) that lies inside its level (edge tiles are smaller). */
export function cogTileGrid(mosaic: Mosaic, level: CogLevel, tx: number, ty: number, blockSize: number): Grid {
  const lg = levelGrid(mosaic, level);
  const x0 = tx * blockSize;
  const y0 = ty * blockSize;
  const w = Math.min(blockSize, level.width - x0);
  const h = Math.min(blockSize, level.height - y0);
  const t = lg.transform;
  return {
    crs: lg.crs,
    transform: [t[0] + x0 * t[1] + y0 * t[2], t[1], t[2], t[3] + x0 * t[4] + y0 * t[5], t[4], t[5]],
    width: w,
    height: h,
  };
}

/** True when some source footprint touches the tile (a tile no source touches can be sparse). Metadata only. */
export function tileTouchesSources(mosaic: Mosaic, grid: Grid, resampling: Resampling): boolean {
  if (mosaic.items) return selectItems(mosaic.items, grid).length > 0;
  return mosaic.sources.some((s) => sourceWarp(grid, s.raster, resampling) !== undefined);
}

export interface CogTilePixels {
  /**
   * one array per band, blockSize * blockSize, edge tiles padded with the nodata value (or 0); empty when `samples`
   * holds the tile (see `tileBands`)
   */
  readonly bands: TypedArray[];
  /**
   * the tile's samples pixel-interleaved, when it is one source block as it is (cog.tiles.block.ts); the caller's.
   * Read `predicted` first: the first read of these undoes the source's predictor in its bytes.
   */
  readonly samples?: TypedArray;
  /** that block's bytes as its source stores them (when read from the file for this tile) */
  readonly stored?: StoredBlock;
  /** that block's samples with the source's predictor still applied, until `samples` is first read */
  readonly predicted?: { readonly bytes: Uint8Array; readonly predictor: number };
  /** blockSize * blockSize, 255 where a pixel holds data (padding is 0) */
  readonly mask: Uint8Array;
  /** pixels that hold data */
  readonly validCount: number;
  /**
   * Once the tile is encoded into `payload` and nothing keeps its pixels: let the next block decoded on this thread
   * reuse its decoded block's memory (a tile that is one source block; no-op unless that buffer is not `payload`'s)
   */
  recycle?(payload: Uint8Array): void;
}

/** Render tile (tx, ty) of `level` as the COG stores it. */
export async function renderCogTile(
  engine: Engine,
  mosaic: Mosaic,
  levels: readonly CogLevel[],
  level: number,
  tx: number,
  ty: number,
  options: CogTileOptions,
  signal?: AbortSignal,
): Promise<CogTilePixels> {
  const bs = options.blockSize;
  const lvl = levels[level];
  const grid = cogTileGrid(mosaic, lvl, tx, ty, bs);
  const resampling =
    level === 0
      ? (options.resampling ?? mosaic.resampling)
      : (options.overviewResampling ?? defaultOverviewResampling(mosaic));
  if (options.blockTiles !== false) {
    // any error (a changed source, a bad block): the render below meets it again and handles it as it does
    const block = await blockTile(mosaic, grid, resampling, bs, signal).catch((e) => {
      if (signal?.aborted) throw e;
      return undefined;
    });
    // (not spread: reading its samples would undo the predictor of its predicted bytes)
    if (block) return block;
  }
  const px = await engine.render(mosaic, grid, { resampling, signal, strict: options.strict });
  const fill = mosaic.nodata ?? 0;
  let validCount = px.validCount ?? -1;
  if (validCount < 0) {
    validCount = 0;
    for (let i = 0; i < px.mask.length; i++) if (px.mask[i]) validCount++;
  }
  if (grid.width === bs && grid.height === bs) return { bands: px.bands, mask: px.mask, validCount };
  const mask = new Uint8Array(bs * bs);
  for (let y = 0; y < grid.height; y++) mask.set(px.mask.subarray(y * grid.width, (y + 1) * grid.width), y * bs);
  const bands = px.bands.map((src) => {
    const out = allocTyped(mosaic.dtype, bs * bs);
    out.fill(fill);
    for (let y = 0; y < grid.height; y++) out.set(src.subarray(y * grid.width, (y + 1) * grid.width), y * bs);
    return out;
  });
  return { bands, mask, validCount };
}

/** The tile's bands, one array per band (split out of `samples` when the tile is one source block). */
export function tileBands(tile: CogTilePixels, dtype: DType, bandCount: number): TypedArray[] {
  const samples = tile.samples;
  if (!samples) return tile.bands;
  if (bandCount === 1) return [samples];
  const n = samples.length / bandCount;
  const bands: TypedArray[] = [];
  for (let b = 0; b < bandCount; b++) {
    const out = allocTyped(dtype, n);
    for (let i = 0, j = b; i < n; i++, j += bandCount) out[i] = samples[j];
    bands.push(out);
  }
  return bands;
}
