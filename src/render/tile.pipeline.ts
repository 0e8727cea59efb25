/**
 * The tile pipeline: one image of a mosaic (an XYZ/WMTS tile, a preview, an image crop) from a validated request:
 *
 *   render (the mosaic's pixels on the request's grid) -> values (bands or band math, nodata override)
 *   -> stretch (the request's rescale, or the mosaic's 2nd-98th percentile) -> image (gray, RGB, colormap)
 *   -> encode (PNG / WebP / JPEG)
 *
 * No HTTP here. A request and its answer are plain data (a structured clone copies them), so a worker thread can
 * run the pipeline; the routes parse and validate a request, answer ETags and keep the tile cache, then call `run`.
 */
import { encodeImage, IMAGE_MIME, type ImageFormat } from './encode.ts';
import type { Engine } from './engine.ts';
import { RenderError } from './errors.ts';
import type { Mosaic } from './mosaic.ts';
import type { StatisticsService } from './statistics.ts';
import { fixedRanges, stretchFromPercentiles, styleImage } from './style.stretch.ts';
import { type Style, styleInputBands, styleValues } from './style.ts';
import type { Grid } from './types.ts';

/** A validated request for one image. Plain data: it can be posted to a worker thread. */
export interface TileRequest {
  readonly mosaicId: string;
  /** the mosaic's etag the request was validated (and its ETag computed) against */
  readonly mosaicEtag: string;
  /** the image's grid, in the CRS of its tile matrix set (or of the crop) */
  readonly grid: Grid;
  readonly format: ImageFormat;
  readonly style: Style;
  /** catalogue mosaics: only the items whose time overlaps this interval (ms since 1970) */
  readonly datetime?: readonly [number, number];
  /** false when the grid does not touch the mosaic: the answer is a transparent image and nothing is rendered */
  readonly inside: boolean;
  /** [min, max] per output band when already resolved (`withStretch`): the pipeline then needs no statistics */
  readonly ranges?: readonly (readonly [number, number])[];
}

/** An encoded image and what the HTTP layer needs to know about it. Plain data. */
export interface TileImage {
  readonly body: Uint8Array;
  readonly contentType: string;
  /** no valid pixel: the image is fully transparent (black for JPEG) */
  readonly empty: boolean;
  /** milliseconds spent per step (`render`, `stretch`, `encode`), for the request's summary line and metrics */
  readonly timings: Readonly<Record<string, number>>;
}

export interface TilePipelineDeps {
  readonly engine: Pick<Engine, 'render'>;
  /** the mosaic statistics the default stretch comes from */
  readonly statistics: Pick<StatisticsService, 'get'>;
  /** the mosaic of a request, by id (throws when there is none) */
  readonly mosaic: (id: string) => Mosaic;
}

/** Empty images kept per format and size, up to this many pixels. */
const MAX_KEPT_EMPTY_PIXELS = 512 * 512;

/** True when some pixel of a validity mask is set. */
function anyValid(mask: Uint8Array): boolean {
  for (let i = 0; i < mask.length; i++) if (mask[i] !== 0) return true;
  return false;
}

export class TilePipeline {
  private readonly deps: TilePipelineDeps;
  private readonly emptyImages = new Map<string, Promise<Uint8Array>>();

  constructor(deps: TilePipelineDeps) {
    this.deps = deps;
  }

  /** Render, style and encode the image of `request`. `signal` stops the render (client gone, deadline). */
  async run(request: TileRequest, signal?: AbortSignal): Promise<TileImage> {
    const { grid, format, style } = request;
    const timings: Record<string, number> = {};
    const contentType = IMAGE_MIME[format];
    if (!request.inside) {
      return { body: await this.emptyImage(format, grid.width, grid.height), contentType, empty: true, timings };
    }
    const m = this.deps.mosaic(request.mosaicId);
    if (m.etag !== request.mosaicEtag) {
      throw new RenderError('changed', `mosaic ${m.id} changed while the request was served; send it again`);
    }
    const bands = styleInputBands(style, m.bandCount).map((b) => b - 1);
    const pixels = await timed(timings, 'render', () =>
      this.deps.engine.render(m, grid, {
        resampling: style.resampling,
        bands,
        signal,
        datetime: request.datetime,
      }),
    );
    const values = styleValues(pixels, style);
    if (!anyValid(values.mask)) {
      return { body: await this.emptyImage(format, grid.width, grid.height), contentType, empty: true, timings };
    }
    const ranges = request.ranges ?? (await timed(timings, 'stretch', () => this.stretchOf(m, style)));
    const img = styleImage(values, ranges, style.colormap);
    const body = await timed(timings, 'encode', () =>
      encodeImage(img.data, img.width, img.height, img.channels, format),
    );
    return { body, contentType, empty: false, timings };
  }

  /**
   * `request` with its stretch resolved: a pipeline in a worker thread then needs no statistics (they are computed
   * and cached once, here). Requests outside the mosaic need none.
   */
  async withStretch(request: TileRequest, timings?: Record<string, number>): Promise<TileRequest> {
    if (!request.inside || request.ranges) return request;
    const m = this.deps.mosaic(request.mosaicId);
    if (m.etag !== request.mosaicEtag) {
      throw new RenderError('changed', `mosaic ${m.id} changed while the request was served; send it again`);
    }
    const ranges = await timed(timings ?? {}, 'stretch', () => this.stretchOf(m, request.style));
    return { ...request, ranges };
  }

  /** A fully transparent image (black for JPEG), made once per format and size. */
  private emptyImage(format: ImageFormat, width: number, height: number): Promise<Uint8Array> {
    const key = `${format}:${width}x${height}`;
    let p = this.emptyImages.get(key);
    if (!p) {
      const made = encodeImage(new Uint8Array(width * height * 2), width, height, 2, format);
      if (width * height <= MAX_KEPT_EMPTY_PIXELS) {
        this.emptyImages.set(key, made);
        made.catch(() => this.emptyImages.delete(key));
      }
      p = made;
    }
    return p;
  }

  /** [min, max] per output band: the request's rescale, 0..255 for 8-bit bands, else the 2nd-98th percentile. */
  private async stretchOf(m: Mosaic, style: Style): Promise<readonly (readonly [number, number])[]> {
    const fixed = fixedRanges(style, m.dtype);
    if (fixed) return fixed;
    // shared by every request of this mosaic: never cancelled by one of them
    const s = await this.deps.statistics.get(m, {
      bands: style.expression ? undefined : styleInputBands(style, m.bandCount),
      expression: style.expression,
      nodata: style.nodata,
    });
    return s.bands.map((b) => stretchFromPercentiles(b.percentiles.p2 ?? Number.NaN, b.percentiles.p98 ?? Number.NaN));
  }
}

/** Run `fn`, adding its duration in milliseconds to `timings[name]`. */
async function timed<T>(timings: Record<string, number>, name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    timings[name] = (timings[name] ?? 0) + (performance.now() - t0);
  }
}
