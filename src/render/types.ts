/** Core value types shared by every layer. Pure data: no IO here. */

import type { BlockFailure } from './errors.ts';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

export const DTYPES = ['uint8', 'int8', 'uint16', 'int16', 'uint32', 'int32', 'float32', 'float64'] as const;
export type DType = (typeof DTYPES)[number];

export type TypedArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array;

export const RESAMPLINGS = ['nearest', 'bilinear', 'cubic', 'average', 'mode'] as const;
export type Resampling = (typeof RESAMPLINGS)[number];

export const COMPOSITES = ['first', 'last', 'min', 'max', 'mean', 'median', 'count'] as const;
export type Composite = (typeof COMPOSITES)[number];

/** GDAL-style affine geotransform: x = gt[0] + col*gt[1] + row*gt[2]; y = gt[3] + col*gt[4] + row*gt[5]. */
export type GeoTransform = readonly [number, number, number, number, number, number];

/** [minx, miny, maxx, maxy] */
export type Bounds = readonly [number, number, number, number];

/** A coordinate reference system, always identified by an EPSG code (resolved offline to a proj4 definition). */
export interface Crs {
  readonly epsg: number;
  readonly proj4: string;
  readonly name: string;
  /** true for geographic (degrees) systems */
  readonly geographic: boolean;
}

/** A raster grid: a CRS, a geotransform and a size in pixels. A render window is a Grid. */
export interface Grid {
  readonly crs: Crs;
  readonly transform: GeoTransform;
  readonly width: number;
  readonly height: number;
}

/**
 * Rendered pixels: one typed array per band (row-major, width*height), plus a validity mask
 * (255 = valid, 0 = nodata / outside every source).
 */
export interface Pixels {
  readonly width: number;
  readonly height: number;
  readonly dtype: DType;
  readonly bands: TypedArray[];
  readonly mask: Uint8Array;
  /** pixels whose mask is not 0, when the renderer counted them as it went */
  readonly validCount?: number;
}

export function bytesPerSample(dtype: DType): number {
  switch (dtype) {
    case 'uint8':
    case 'int8':
      return 1;
    case 'uint16':
    case 'int16':
      return 2;
    case 'uint32':
    case 'int32':
    case 'float32':
      return 4;
    case 'float64':
      return 8;
  }
}

export function allocTyped(dtype: DType, length: number): TypedArray {
  switch (dtype) {
    case 'uint8':
      return new Uint8Array(length);
    case 'int8':
      return new Int8Array(length);
    case 'uint16':
      return new Uint16Array(length);
    case 'int16':
      return new Int16Array(length);
    case 'uint32':
      return new Uint32Array(length);
    case 'int32':
      return new Int32Array(length);
    case 'float32':
      return new Float32Array(length);
    case 'float64':
      return new Float64Array(length);
  }
}

/** View raw little-endian bytes as a typed array of `dtype` (copies only when unaligned). */
export function typedFromBytes(dtype: DType, bytes: Uint8Array): TypedArray {
  const size = bytesPerSample(dtype);
  let buf = bytes;
  if (bytes.byteOffset % size !== 0) buf = bytes.slice();
  const n = Math.floor(buf.byteLength / size);
  switch (dtype) {
    case 'uint8':
      return new Uint8Array(buf.buffer, buf.byteOffset, n);
    case 'int8':
      return new Int8Array(buf.buffer, buf.byteOffset, n);
    case 'uint16':
      return new Uint16Array(buf.buffer, buf.byteOffset, n);
    case 'int16':
      return new Int16Array(buf.buffer, buf.byteOffset, n);
    case 'uint32':
      return new Uint32Array(buf.buffer, buf.byteOffset, n);
    case 'int32':
      return new Int32Array(buf.buffer, buf.byteOffset, n);
    case 'float32':
      return new Float32Array(buf.buffer, buf.byteOffset, n);
    case 'float64':
      return new Float64Array(buf.buffer, buf.byteOffset, n);
  }
}

export function isFloat(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float64';
}

/** [min, max] representable by an integer dtype; infinite for floats. */
export function dtypeRange(dtype: DType): readonly [number, number] {
  switch (dtype) {
    case 'uint8':
      return [0, 255];
    case 'int8':
      return [-128, 127];
    case 'uint16':
      return [0, 65535];
    case 'int16':
      return [-32768, 32767];
    case 'uint32':
      return [0, 4294967295];
    case 'int32':
      return [-2147483648, 2147483647];
    default:
      return [Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY];
  }
}

/** Apply a geotransform to a (col, row) pixel coordinate. */
export function applyTransform(gt: GeoTransform, col: number, row: number): [number, number] {
  return [gt[0] + col * gt[1] + row * gt[2], gt[3] + col * gt[4] + row * gt[5]];
}

/** Inverse of an affine geotransform. Throws on a singular transform. */
export function invertTransform(gt: GeoTransform): GeoTransform {
  const det = gt[1] * gt[5] - gt[2] * gt[4];
  if (det === 0 || !Number.isFinite(det)) throw new RangeError('geotransform is not invertible');
  const inv1 = gt[5] / det;
  const inv2 = -gt[2] / det;
  const inv4 = -gt[4] / det;
  const inv5 = gt[1] / det;
  return [-gt[0] * inv1 - gt[3] * inv2, inv1, inv2, -gt[0] * inv4 - gt[3] * inv5, inv4, inv5];
}

export function gridBounds(grid: Grid): Bounds {
  const gt = grid.transform;
  const xs: number[] = [];
  const ys: number[] = [];
  for (const [c, r] of [
    [0, 0],
    [grid.width, 0],
    [0, grid.height],
    [grid.width, grid.height],
  ] as const) {
    const [x, y] = applyTransform(gt, c, r);
    xs.push(x);
    ys.push(y);
  }
  return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
}

export interface RenderOptions {
  readonly resampling?: Resampling;
  readonly composite?: Composite;
  /** 0-based mosaic band indices (default: all) */
  readonly bands?: readonly number[];
  readonly signal?: AbortSignal;
  /**
   * Max error of the approximate transform, in source pixels (default DEFAULT_MAX_ERROR_PX). 0 transforms every
   * pixel exactly.
   */
  readonly maxErrorPx?: number;
  /**
   * For tests: send every pixel through the kernels, without the copies of renderMosaic's shortcuts (aligned
   * sources, single-pixel boxes). The result is the same either way.
   */
  readonly generalPath?: boolean;
  /**
   * A source whose window (all chunks together) would take more bytes than this is read chunk by chunk instead
   * of at once (default 64 MiB, gdalwarp's warp memory). The pixels are the same either way.
   */
  readonly sourceReadMaxBytes?: number;
  /**
   * A source block that cannot be decoded: without this the render fails with its `corrupt` error; with it, the
   * failure is reported here and the block's pixels are left empty.
   */
  readonly onBlockError?: (failure: BlockFailure) => void;
}

export interface RenderStats {
  sourcesRead: number;
  sourcesSkipped: number;
  pixelsSampled: number;
  /** source pixels read (level pixels, summed over reads) */
  sourcePixelsRead?: number;
  /** the largest source window read at once, in pixels (bounds the memory of a render) */
  largestSourceWindowPixels?: number;
}

/** The extent in pixels [c0, r0, c1, r1] (fractional, unclamped) of `b`: its four corners through `inv`. */
export function pixelExtent(inv: GeoTransform, b: Bounds): Bounds {
  let c0 = Infinity;
  let c1 = -Infinity;
  let r0 = Infinity;
  let r1 = -Infinity;
  for (const [x, y] of [
    [b[0], b[1]],
    [b[0], b[3]],
    [b[2], b[1]],
    [b[2], b[3]],
  ] as const) {
    const [c, r] = applyTransform(inv, x, y);
    c0 = Math.min(c0, c);
    c1 = Math.max(c1, c);
    r0 = Math.min(r0, r);
    r1 = Math.max(r1, r);
  }
  return [c0, r0, c1, r1];
}
