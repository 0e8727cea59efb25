/**
 * Coordinate reference systems by EPSG code: lookup in the offline table, parsing of request strings, reading
 * GeoTIFF GeoKeys (as geotiff.js parses them) and writing GeoKeys the way GDAL does for an EPSG CRS.
 */
import { CRS_ALIASES, CRS_FAMILIES, CRS_SINGLES, type CrsRecord, lookupCrsRecord } from './crs.db.ts';
import { RenderError } from './errors.ts';
import type { Crs } from './types.ts';

/** GeoTIFF "user-defined" marker for codes. */
const USER_DEFINED = 32767;

function describeSupported(): string {
  const families = CRS_FAMILIES.map((f) => f.label).join('; ');
  const singles = Object.keys(CRS_SINGLES)
    .map((c) => `EPSG:${c}`)
    .join(', ');
  return `supported are ${families}; and ${singles} (EPSG:900913 and EPSG:3785 are read as EPSG:3857)`;
}

function toCrs(epsg: number, record: CrsRecord): Crs {
  return Object.freeze({
    epsg,
    proj4: record.proj4,
    name: record.name,
    geographic: record.proj4.startsWith('+proj=longlat'),
  });
}

function recordOf(code: number): CrsRecord {
  const record = lookupCrsRecord(code);
  if (!record) {
    throw new RenderError('unsupported', `EPSG:${code} is not a CRS cogmill knows; ${describeSupported()}`);
  }
  return record;
}

/** The CRS of an EPSG code, from the offline table. Throws RenderError 'unsupported' for a code the table lacks. */
export function crsFromEpsg(code: number): Crs {
  const epsg = Object.hasOwn(CRS_ALIASES, code) ? CRS_ALIASES[code] : code;
  return toCrs(epsg, recordOf(epsg));
}

const EPSG_CODE = /^(?:epsg:)?(\d{1,9})$/i;
const EPSG_URN = /^urn:ogc:def:crs:epsg:[^:]*:(\d{1,9})$/i;
const EPSG_URI = /^https?:\/\/www\.opengis\.net\/def\/crs\/epsg\/[^/]+\/(\d{1,9})$/i;
const CRS84 =
  /^(?:ogc:crs84|crs:84|urn:ogc:def:crs:ogc:[^:]*:crs84|https?:\/\/www\.opengis\.net\/def\/crs\/ogc\/[^/]+\/crs84)$/i;

/**
 * Parse a CRS as written in a request or a config file: `EPSG:32633`, `epsg:32633`, `32633`,
 * `urn:ogc:def:crs:EPSG::32633`, `http://www.opengis.net/def/crs/EPSG/0/32633`, or `OGC:CRS84` / `CRS:84`
 * (both read as EPSG:4326; cogmill always uses longitude, latitude order for geographic coordinates).
 */
export function parseCrs(text: string): Crs {
  const s = String(text).trim();
  if (CRS84.test(s)) return crsFromEpsg(4326);
  const m = EPSG_CODE.exec(s) ?? EPSG_URN.exec(s) ?? EPSG_URI.exec(s);
  if (!m) {
    throw new RenderError(
      'bad-request',
      `cannot read CRS '${s.slice(0, 80)}': write it as EPSG:<code> (e.g. EPSG:3857), urn:ogc:def:crs:EPSG::<code> or OGC:CRS84`,
    );
  }
  return crsFromEpsg(Number(m[1]));
}

/** `urn:ogc:def:crs:EPSG::3857` */
export function crsUrn(crs: Crs): string {
  return `urn:ogc:def:crs:EPSG::${crs.epsg}`;
}

/** `EPSG:3857` */
export function crsAuthority(crs: Crs): string {
  return `EPSG:${crs.epsg}`;
}

/** `http://www.opengis.net/def/crs/EPSG/0/3857` (the form OGC API and TileJSON consumers expect) */
export function crsUri(crs: Crs): string {
  return `http://www.opengis.net/def/crs/EPSG/0/${crs.epsg}`;
}

/** True when two CRSs are the same EPSG system. */
export function crsEquals(a: Crs, b: Crs): boolean {
  return a.epsg === b.epsg;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading GeoKeys

function keyNumber(geoKeys: Readonly<Record<string, unknown>>, name: string): number | undefined {
  let v = geoKeys[name];
  if (ArrayBuffer.isView(v) || Array.isArray(v)) v = (v as ArrayLike<unknown>)[0];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function keyText(geoKeys: Readonly<Record<string, unknown>>, name: string): string | undefined {
  const v = geoKeys[name];
  return typeof v === 'string' && v.trim() !== '' ? v.trim().replace(/\|$/, '') : undefined;
}

/** Geographic CRS codes by geodetic datum code, for files that give only the datum. */
const GEOG_BY_DATUM: Readonly<Record<number, number>> = {
  6326: 4326,
  6258: 4258,
  6269: 4269,
  6267: 4267,
  6283: 4283,
  1168: 7844,
  6674: 4674,
  6167: 4167,
  6171: 4171,
  6619: 4619,
  6277: 4277,
};

/** Ellipsoid codes that identify WGS 84 well enough for rendering when nothing else is given. */
const WGS84_ELLIPSOID = 7030;

/**
 * UTM zone families by base geographic CRS: EPSG code = offset + zone, for the zone range the family covers.
 * Used for files that spell UTM as a user-defined projected CRS with an EPSG conversion code (ProjectionGeoKey
 * 16001-16060 north, 16101-16160 south) on a known geographic CRS.
 */
const UTM_BY_GEOG: Readonly<Record<number, { north?: [number, number, number]; south?: [number, number, number] }>> = {
  4326: { north: [32600, 1, 60], south: [32700, 1, 60] },
  4258: { north: [25800, 28, 38] },
  4269: { north: [26900, 1, 23] },
  4267: { north: [26700, 3, 22] },
  4283: { south: [28300, 48, 58] },
  7844: { south: [7800, 46, 59] },
  4674: { north: [31954, 11, 22], south: [31960, 17, 25] },
};

function utmFromConversion(projection: number | undefined, geogCode: number | undefined): number | undefined {
  if (projection === undefined || geogCode === undefined) return undefined;
  const family = UTM_BY_GEOG[geogCode];
  if (!family) return undefined;
  let range: [number, number, number] | undefined;
  let zone = 0;
  if (projection >= 16001 && projection <= 16060) {
    range = family.north;
    zone = projection - 16000;
  } else if (projection >= 16101 && projection <= 16160) {
    range = family.south;
    zone = projection - 16100;
  }
  if (!range || zone < range[1] || zone > range[2]) return undefined;
  return range[0] + zone;
}

function geogCodeOf(geoKeys: Readonly<Record<string, unknown>>): number | undefined {
  const geographic = keyNumber(geoKeys, 'GeographicTypeGeoKey');
  if (geographic !== undefined && geographic > 0 && geographic !== USER_DEFINED) return geographic;
  const datum = keyNumber(geoKeys, 'GeogGeodeticDatumGeoKey');
  if (datum !== undefined && Object.hasOwn(GEOG_BY_DATUM, datum)) return GEOG_BY_DATUM[datum];
  if (keyNumber(geoKeys, 'GeogEllipsoidGeoKey') === WGS84_ELLIPSOID) return 4326;
  return undefined;
}

function retagHint(kind: string, citation: string | undefined): string {
  const cited = citation ? ` ('${citation.slice(0, 120)}')` : '';
  return (
    `source uses a user-defined ${kind} CRS${cited}; cogmill needs an EPSG code: ` +
    're-tag it with gdal_edit.py -a_srs EPSG:XXXX'
  );
}

/**
 * The CRS of a GeoTIFF from its parsed GeoKeys (geotiff.js `image.getGeoKeys()`: keys such as
 * `GTModelTypeGeoKey`, `ProjectedCSTypeGeoKey`, `GeographicTypeGeoKey`). Throws RenderError 'unsupported' when the
 * file has no CRS, a user-defined one that cannot be identified, or an EPSG code outside the table.
 */
export function crsFromGeoKeys(geoKeys: Readonly<Record<string, unknown>> | null | undefined): Crs {
  if (!geoKeys || Object.keys(geoKeys).length === 0) {
    throw new RenderError(
      'unsupported',
      'source has no GeoKeys (no CRS); cogmill needs an EPSG code: tag it with gdal_edit.py -a_srs EPSG:XXXX',
    );
  }
  const model = keyNumber(geoKeys, 'GTModelTypeGeoKey');
  const projected = keyNumber(geoKeys, 'ProjectedCSTypeGeoKey');
  if (model === 3) {
    throw new RenderError(
      'unsupported',
      'source uses a geocentric (ECEF) model; cogmill renders projected or geographic rasters only: ' +
        'warp it with gdalwarp -t_srs EPSG:XXXX',
    );
  }
  if (model === 1 || (model === undefined && projected !== undefined)) {
    if (projected !== undefined && projected > 0 && projected !== USER_DEFINED) return crsFromEpsg(projected);
    const utm = utmFromConversion(keyNumber(geoKeys, 'ProjectionGeoKey'), geogCodeOf(geoKeys));
    if (utm !== undefined) return crsFromEpsg(utm);
    const citation = keyText(geoKeys, 'PCSCitationGeoKey') ?? keyText(geoKeys, 'GTCitationGeoKey');
    throw new RenderError('unsupported', retagHint('projected', citation));
  }
  if (model === 2 || (model === undefined && keyNumber(geoKeys, 'GeographicTypeGeoKey') !== undefined)) {
    const geographic = geogCodeOf(geoKeys);
    if (geographic !== undefined) return crsFromEpsg(geographic);
    const citation = keyText(geoKeys, 'GeogCitationGeoKey') ?? keyText(geoKeys, 'GTCitationGeoKey');
    throw new RenderError('unsupported', retagHint('geographic', citation));
  }
  throw new RenderError(
    'unsupported',
    `source GeoKeys name no CRS (GTModelTypeGeoKey=${model ?? 'missing'}); cogmill needs an EPSG code: ` +
      'tag it with gdal_edit.py -a_srs EPSG:XXXX',
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Writing GeoKeys

/** GeoTIFF tag numbers the GeoKeys refer to. */
export const GEOTIFF_TAGS = {
  geoKeyDirectory: 34735,
  geoDoubleParams: 34736,
  geoAsciiParams: 34737,
} as const;

const KEY = {
  GTModelType: 1024,
  GTRasterType: 1025,
  GTCitation: 1026,
  GeographicType: 2048,
  GeogCitation: 2049,
  GeogAngularUnits: 2054,
  GeogSemiMajorAxis: 2057,
  GeogInvFlattening: 2059,
  ProjectedCSType: 3072,
  ProjLinearUnits: 3076,
} as const;

const MODEL_PROJECTED = 1;
const MODEL_GEOGRAPHIC = 2;
const RASTER_PIXEL_IS_AREA = 1;
const ANGULAR_DEGREE = 9102;
const LINEAR_METRE = 9001;

/** [semi-major axis in metres, inverse flattening] by proj4 ellipsoid name. */
const ELLIPSOIDS: Readonly<Record<string, readonly [number, number]>> = {
  WGS84: [6378137, 298.257223563],
  GRS80: [6378137, 298.257222101],
  airy: [6377563.396, 299.3249646],
  bessel: [6377397.155, 299.1528128],
  clrk66: [6378206.4, 294.9786982138982],
  intl: [6378388, 297],
};
const DATUM_ELLIPSOID: Readonly<Record<string, string>> = { WGS84: 'WGS84', NAD83: 'GRS80', NAD27: 'clrk66' };

/** The ellipsoid of a proj4 definition, when it is one of ELLIPSOIDS. */
function ellipsoidOf(proj4: string): readonly [number, number] | undefined {
  const ellps = /\+ellps=(\S+)/.exec(proj4)?.[1];
  const datum = /\+datum=(\S+)/.exec(proj4)?.[1];
  const name = ellps ?? (datum ? DATUM_ELLIPSOID[datum] : undefined);
  return name ? ELLIPSOIDS[name] : undefined;
}

/** GeoKeys ready to write as GeoTIFF tags. */
export interface GeoKeysTiff {
  /** GeoKeyDirectoryTag (34735) SHORT values: header then one 4-tuple per key, keys ascending */
  readonly directory: number[];
  /** GeoDoubleParamsTag (34736) DOUBLE values; empty means: do not write the tag */
  readonly doubles: number[];
  /** GeoAsciiParamsTag (34737) text, each value ending in '|', without the NUL a TIFF ASCII field ends with */
  readonly ascii: string;
}

/**
 * GeoKeys for an EPSG CRS, as GDAL (3.x, GeoTIFF 1.0 keys) writes them: model type, PixelIsArea, the EPSG code,
 * citations, angular/linear units, and for geographic systems the ellipsoid's semi-major axis and inverse
 * flattening.
 */
export function geoKeysForCrs(crs: Crs): GeoKeysTiff {
  const geogName = recordOf(crs.epsg).geogName;
  // [key, tag location (0 = inline value), count, value or offset]
  const keys: [number, number, number, number][] = [];
  const doubles: number[] = [];
  let ascii = '';
  const addAscii = (key: number, text: string): void => {
    keys.push([key, GEOTIFF_TAGS.geoAsciiParams, text.length + 1, ascii.length]);
    ascii += `${text}|`;
  };
  if (crs.geographic) {
    const ellipsoid = ellipsoidOf(crs.proj4);
    keys.push([KEY.GTModelType, 0, 1, MODEL_GEOGRAPHIC]);
    keys.push([KEY.GTRasterType, 0, 1, RASTER_PIXEL_IS_AREA]);
    keys.push([KEY.GeographicType, 0, 1, crs.epsg]);
    addAscii(KEY.GeogCitation, geogName);
    keys.push([KEY.GeogAngularUnits, 0, 1, ANGULAR_DEGREE]);
    if (ellipsoid) {
      // GDAL stores the inverse flattening first, then the semi-major axis (an ellipsoid cogmill has no numbers
      // for is left to the EPSG code)
      const [a, rf] = ellipsoid;
      doubles.push(rf, a);
      keys.push([KEY.GeogSemiMajorAxis, GEOTIFF_TAGS.geoDoubleParams, 1, 1]);
      keys.push([KEY.GeogInvFlattening, GEOTIFF_TAGS.geoDoubleParams, 1, 0]);
    }
  } else {
    keys.push([KEY.GTModelType, 0, 1, MODEL_PROJECTED]);
    keys.push([KEY.GTRasterType, 0, 1, RASTER_PIXEL_IS_AREA]);
    addAscii(KEY.GTCitation, crs.name);
    addAscii(KEY.GeogCitation, geogName);
    keys.push([KEY.GeogAngularUnits, 0, 1, ANGULAR_DEGREE]);
    keys.push([KEY.ProjectedCSType, 0, 1, crs.epsg]);
    keys.push([KEY.ProjLinearUnits, 0, 1, LINEAR_METRE]);
  }
  keys.sort((p, q) => p[0] - q[0]);
  const directory = [1, 1, 0, keys.length];
  for (const k of keys) directory.push(...k);
  return { directory, doubles, ascii };
}
