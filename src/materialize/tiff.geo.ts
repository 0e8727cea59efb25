/**
 * GeoTIFF and GDAL private tags, built the way GDAL's GTiff driver writes them. Pure: values in, tag values out.
 * The GeoKeys (34735-34737) come from render/crs.ts's geoKeysForCrs, the one GeoKey writer.
 */
import type { GeoTransform } from '../render/types.ts';

/** Tag numbers of the GeoTIFF and GDAL private tags cogmill writes. */
export const GEO_TAG = {
  modelPixelScale: 33550,
  modelTiepoint: 33922,
  modelTransformation: 34264,
  gdalMetadata: 42112,
  gdalNodata: 42113,
} as const;

export interface GeoTransformTag {
  readonly tag: number;
  readonly values: readonly number[];
}

/** True when the transform has no rotation and rows go south: it can be written as pixel scale + tiepoint. */
export function isNorthUp(gt: GeoTransform): boolean {
  return gt[2] === 0 && gt[4] === 0 && gt[5] < 0;
}

/**
 * The georeferencing tags for a GDAL geotransform, as GDAL writes them for PixelIsArea rasters:
 * ModelPixelScale + ModelTiepoint for north-up grids, ModelTransformation otherwise.
 */
export function geoTransformTags(gt: GeoTransform): GeoTransformTag[] {
  if (isNorthUp(gt)) {
    return [
      { tag: GEO_TAG.modelPixelScale, values: [gt[1], -gt[5], 0] },
      { tag: GEO_TAG.modelTiepoint, values: [0, 0, 0, gt[0], gt[3], 0] },
    ];
  }
  return [
    {
      tag: GEO_TAG.modelTransformation,
      values: [gt[1], gt[2], 0, gt[0], gt[4], gt[5], 0, gt[3], 0, 0, 0, 0, 0, 0, 0, 1],
    },
  ];
}

/** The GDAL_NODATA tag text, formatted like GDAL: "nan", else C's `%.18g`. */
export function formatGdalNodata(value: number): string {
  return Number.isNaN(value) ? 'nan' : formatPrintfG(value, 18);
}

function stripFractionZeros(s: string): string {
  if (!s.includes('.')) return s;
  return s.replace(/0+$/, '').replace(/\.$/, '');
}

/** C `printf("%.<precision>g", value)` for finite and non-finite doubles (glibc spelling: inf, -inf, nan). */
export function formatPrintfG(value: number, precision: number): string {
  if (Number.isNaN(value)) return 'nan';
  if (value === Number.POSITIVE_INFINITY) return 'inf';
  if (value === Number.NEGATIVE_INFINITY) return '-inf';
  if (value === 0) return Object.is(value, -0) ? '-0' : '0';
  const p = Math.max(1, precision);
  const [mantissa, expText] = value.toExponential(p - 1).split('e');
  const exponent = Number(expText);
  if (exponent < -4 || exponent >= p) {
    const abs = Math.abs(exponent);
    return `${stripFractionZeros(mantissa)}e${exponent < 0 ? '-' : '+'}${abs < 10 ? '0' : ''}${abs}`;
  }
  return stripFractionZeros(value.toFixed(p - 1 - exponent));
}
