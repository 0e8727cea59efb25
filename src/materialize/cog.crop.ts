/**
 * A crop as a GeoTIFF: the data values of a grid (bands as they are, or band math as float32) in a small COG
 * (deflate, 512 px blocks) whose overviews are rendered by the engine at each level's resolution, written in
 * memory by cog.write.ts. A request and its answer are plain data, like the tile pipeline's.
 */
import type { Engine } from '../render/engine.ts';
import { RenderError } from '../render/errors.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { type Style, styleInputBands, styleValues } from '../render/style.ts';
import {
  allocTyped,
  type DType,
  dtypeRange,
  type Grid,
  gridBounds,
  isFloat,
  type TypedArray,
} from '../render/types.ts';
import { cogLevels } from './cog.layout.ts';
import { type CogLevelBands, cogBytesOfLevels } from './cog.write.ts';

export const CROP_COG_BLOCK_SIZE = 512;
export const GEOTIFF_MIME = 'image/tiff; application=geotiff';

/** A validated crop request. Plain data: it can be posted to a worker thread. */
export interface CropCogRequest {
  readonly mosaicId: string;
  /** the mosaic's etag the request was validated against */
  readonly mosaicEtag: string;
  readonly grid: Grid;
  /** bands or band math, nodata override, resampling (rescale and colormap do not apply to data) */
  readonly style: Style;
  /** catalogue mosaics: only the items whose time overlaps this interval (ms since 1970) */
  readonly datetime?: readonly [number, number];
}

export interface CropCogDeps {
  readonly engine: Pick<Engine, 'render'>;
  /** the mosaic of a request, by id (throws when there is none) */
  readonly mosaic: (id: string) => Mosaic;
}

/** Values of one level: one array per band of the output dtype, invalid pixels set to `fill`. */
interface CropLevel extends CogLevelBands {
  readonly bands: TypedArray[];
  readonly invalid: number;
}

function representable(dtype: DType, v: number): boolean {
  if (isFloat(dtype)) return true;
  const [lo, hi] = dtypeRange(dtype);
  return Number.isInteger(v) && v >= lo && v <= hi;
}

/**
 * The GeoTIFF of a crop. The levels are rendered one after another: the request holds one render slot of the
 * app-wide limit. Nodata: the request's, else the mosaic's, else NaN for floats, else 0 when a pixel has no value.
 */
export async function cropCog(deps: CropCogDeps, request: CropCogRequest, signal?: AbortSignal): Promise<Uint8Array> {
  const { grid, style } = request;
  const m = deps.mosaic(request.mosaicId);
  if (m.etag !== request.mosaicEtag) {
    throw new RenderError('changed', `mosaic ${m.id} changed while the request was served; send it again`);
  }
  const bands = styleInputBands(style, m.bandCount, { image: false });
  const dtype: DType = style.expression ? 'float32' : m.dtype;
  let nodata = style.nodata ?? m.nodata;
  if (nodata !== undefined && !representable(dtype, nodata)) {
    throw new RenderError(
      'bad-request',
      `nodata ${nodata} cannot be stored in ${dtype} data; give nodata= a value ${dtype} can hold`,
    );
  }
  if (nodata === undefined && isFloat(dtype)) nodata = Number.NaN;
  const fill = nodata ?? 0;
  const [x0, y0, x1, y1] = gridBounds(grid);
  const levels: CropLevel[] = [];
  for (const l of cogLevels(grid.width, grid.height, CROP_COG_BLOCK_SIZE)) {
    const g: Grid =
      l.level === 0
        ? grid
        : {
            crs: grid.crs,
            transform: [x0, (x1 - x0) / l.width, 0, y1, 0, -(y1 - y0) / l.height],
            width: l.width,
            height: l.height,
          };
    const pixels = await deps.engine.render(m, g, {
      resampling: style.resampling,
      bands: bands.map((b) => b - 1),
      signal,
      datetime: request.datetime,
    });
    const values = styleValues(pixels, style);
    const n = g.width * g.height;
    let invalid = 0;
    for (let i = 0; i < n; i++) if (!values.mask[i]) invalid++;
    const out = values.bands.map((src) => {
      const a = allocTyped(dtype, n);
      for (let i = 0; i < n; i++) a[i] = values.mask[i] ? src[i] : fill;
      return a;
    });
    levels.push({ width: g.width, height: g.height, bands: out, invalid });
  }
  if (nodata === undefined && levels.some((d) => d.invalid > 0)) nodata = 0;
  return cogBytesOfLevels(
    {
      width: grid.width,
      height: grid.height,
      dtype,
      transform: grid.transform,
      epsg: grid.crs.epsg,
      geographic: grid.crs.geographic,
      nodata,
    },
    levels,
    { compression: 'deflate', blockSize: CROP_COG_BLOCK_SIZE, photometric: 'minisblack', bigTiff: undefined },
  );
}
