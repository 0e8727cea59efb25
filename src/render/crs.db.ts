/**
 * The offline EPSG table: EPSG code -> proj4 definition, EPSG name and base geographic CRS name.
 *
 * Zone families (UTM and its national variants) are generated from their zone number; national grids are written
 * out from their EPSG parameters. Where a datum needs a shift to WGS 84, `+towgs84` holds the Helmert parameters
 * (position-vector convention) of the transformation PROJ prefers for the CRS's area when no grid files are present,
 * so results agree with GDAL. Datums that coincide with WGS 84 at the metre level (ETRS89, NAD83, GDA94, GDA2020,
 * SIRGAS 2000, ...) carry a null `+towgs84=0,0,0,0,0,0,0`, so that they still shift correctly against other datums.
 * Pure data: no proj4 import here.
 */

export interface CrsRecord {
  /** EPSG name, e.g. 'WGS 84 / UTM zone 33N' */
  readonly name: string;
  readonly proj4: string;
  /** name of the base geographic CRS (what GDAL writes as GeogCitationGeoKey), e.g. 'WGS 84' */
  readonly geogName: string;
}

/** A run of EPSG codes generated from one pattern, e.g. the 60 WGS 84 / UTM north zones. */
export interface CrsFamily {
  readonly label: string;
  readonly first: number;
  readonly last: number;
  readonly record: (code: number) => CrsRecord;
}

const WGS84 = '+datum=WGS84';
const NAD83 = '+datum=NAD83';
const GRS80_NULL_SHIFT = '+ellps=GRS80 +towgs84=0,0,0,0,0,0,0';

function utm(zone: number, south: boolean, datum: string): string {
  return `+proj=utm +zone=${zone}${south ? ' +south' : ''} ${datum} +units=m +no_defs`;
}

/**
 * NAD27 has no single shift to WGS 84: PROJ uses the NADCON grids, or without them the most accurate regional
 * Helmert set whose area holds the point. Per zone we take the set PROJ picks in the zone's main region: Alaska
 * mainland (EPSG:1176) for zones 3-9, CONUS west of the Mississippi (EPSG:1175) for 10-15, CONUS (EPSG:1173) for
 * 16-19, eastern Canada (EPSG:1181) for 20-22. Elsewhere (Mexico, the Caribbean, western Canada, the Aleutians) the
 * regional sets differ by metres to 100+ m, and NAD27 positions are only as good as that.
 */
function nad27Shift(zone: number): string {
  if (zone <= 9) return '+ellps=clrk66 +towgs84=-5,135,172,0,0,0,0';
  if (zone <= 15) return '+ellps=clrk66 +towgs84=-8,159,175,0,0,0,0';
  if (zone <= 19) return '+ellps=clrk66 +towgs84=-8,160,176,0,0,0,0';
  return '+ellps=clrk66 +towgs84=-22,160,190,0,0,0,0';
}

export const CRS_FAMILIES: readonly CrsFamily[] = [
  {
    label: 'WGS 84 / UTM zone 1N-60N (EPSG:32601-32660)',
    first: 32601,
    last: 32660,
    record: (code) => {
      const zone = code - 32600;
      return { name: `WGS 84 / UTM zone ${zone}N`, proj4: utm(zone, false, WGS84), geogName: 'WGS 84' };
    },
  },
  {
    label: 'WGS 84 / UTM zone 1S-60S (EPSG:32701-32760)',
    first: 32701,
    last: 32760,
    record: (code) => {
      const zone = code - 32700;
      return { name: `WGS 84 / UTM zone ${zone}S`, proj4: utm(zone, true, WGS84), geogName: 'WGS 84' };
    },
  },
  {
    label: 'ETRS89 / UTM zone 28N-38N (EPSG:25828-25838)',
    first: 25828,
    last: 25838,
    record: (code) => {
      const zone = code - 25800;
      return { name: `ETRS89 / UTM zone ${zone}N`, proj4: utm(zone, false, GRS80_NULL_SHIFT), geogName: 'ETRS89' };
    },
  },
  {
    label: 'ETRS89 / UTM zone 28N-37N (N-E), TM38, TM39 (EPSG:3040-3051)',
    first: 3040,
    last: 3051,
    record: (code) => {
      const zone = code - 3012;
      const name = zone <= 37 ? `ETRS89 / UTM zone ${zone}N (N-E)` : `ETRS89 / TM${zone}`;
      return { name, proj4: utm(zone, false, GRS80_NULL_SHIFT), geogName: 'ETRS89' };
    },
  },
  {
    label: 'NAD83 / UTM zone 1N-23N (EPSG:26901-26923)',
    first: 26901,
    last: 26923,
    record: (code) => {
      const zone = code - 26900;
      return { name: `NAD83 / UTM zone ${zone}N`, proj4: utm(zone, false, NAD83), geogName: 'NAD83' };
    },
  },
  {
    label: 'NAD27 / UTM zone 3N-22N (EPSG:26703-26722)',
    first: 26703,
    last: 26722,
    record: (code) => {
      const zone = code - 26700;
      return { name: `NAD27 / UTM zone ${zone}N`, proj4: utm(zone, false, nad27Shift(zone)), geogName: 'NAD27' };
    },
  },
  {
    label: 'GDA94 / MGA zone 48-58 (EPSG:28348-28358)',
    first: 28348,
    last: 28358,
    record: (code) => {
      const zone = code - 28300;
      return { name: `GDA94 / MGA zone ${zone}`, proj4: utm(zone, true, GRS80_NULL_SHIFT), geogName: 'GDA94' };
    },
  },
  {
    label: 'GDA2020 / MGA zone 46-59 (EPSG:7846-7859)',
    first: 7846,
    last: 7859,
    record: (code) => {
      const zone = code - 7800;
      return { name: `GDA2020 / MGA zone ${zone}`, proj4: utm(zone, true, GRS80_NULL_SHIFT), geogName: 'GDA2020' };
    },
  },
  {
    label: 'SIRGAS 2000 / UTM zone 11N-22N (EPSG:31965-31976)',
    first: 31965,
    last: 31976,
    record: (code) => {
      const zone = code - 31954;
      return {
        name: `SIRGAS 2000 / UTM zone ${zone}N`,
        proj4: utm(zone, false, GRS80_NULL_SHIFT),
        geogName: 'SIRGAS 2000',
      };
    },
  },
  {
    label: 'SIRGAS 2000 / UTM zone 17S-25S (EPSG:31977-31985)',
    first: 31977,
    last: 31985,
    record: (code) => {
      const zone = code - 31960;
      return {
        name: `SIRGAS 2000 / UTM zone ${zone}S`,
        proj4: utm(zone, true, GRS80_NULL_SHIFT),
        geogName: 'SIRGAS 2000',
      };
    },
  },
];

function geog(name: string, datum: string): CrsRecord {
  return { name, proj4: `+proj=longlat ${datum} +no_defs`, geogName: name };
}

function proj(name: string, geogName: string, proj4: string): CrsRecord {
  return { name, proj4: `${proj4} +units=m +no_defs`, geogName };
}

/** Single CRSs: geographic systems, world projections, polar projections and national grids. */
export const CRS_SINGLES: Readonly<Record<number, CrsRecord>> = {
  // geographic
  4326: geog('WGS 84', WGS84),
  4258: geog('ETRS89', GRS80_NULL_SHIFT),
  4269: geog('NAD83', NAD83),
  4267: geog('NAD27', '+ellps=clrk66 +towgs84=-8,160,176,0,0,0,0'),
  4283: geog('GDA94', GRS80_NULL_SHIFT),
  7844: geog('GDA2020', GRS80_NULL_SHIFT),
  4674: geog('SIRGAS 2000', GRS80_NULL_SHIFT),
  4167: geog('NZGD2000', GRS80_NULL_SHIFT),
  4171: geog('RGF93 v1', GRS80_NULL_SHIFT),
  4619: geog('SWEREF99', GRS80_NULL_SHIFT),
  4277: geog('OSGB36', '+ellps=airy +towgs84=446.448,-125.157,542.06,0.15,0.247,0.842,-20.489'),
  4150: geog('CH1903+', '+ellps=bessel +towgs84=674.374,15.056,405.346,0,0,0,0'),
  4312: geog('MGI', '+ellps=bessel +towgs84=577.326,90.129,463.919,5.137,1.474,5.297,2.4232'),

  // world and polar projections on WGS 84
  3857: proj(
    'WGS 84 / Pseudo-Mercator',
    'WGS 84',
    '+proj=merc +a=6378137 +b=6378137 +lat_ts=0 +lon_0=0 +x_0=0 +y_0=0 +k=1 +nadgrids=@null',
  ),
  3395: proj('WGS 84 / World Mercator', 'WGS 84', `+proj=merc +lon_0=0 +k=1 +x_0=0 +y_0=0 ${WGS84}`),
  32662: proj('WGS 84 / Plate Carree', 'WGS 84', `+proj=eqc +lat_ts=0 +lat_0=0 +lon_0=0 +x_0=0 +y_0=0 ${WGS84}`),
  4087: proj(
    'WGS 84 / World Equidistant Cylindrical',
    'WGS 84',
    `+proj=eqc +lat_ts=0 +lat_0=0 +lon_0=0 +x_0=0 +y_0=0 ${WGS84}`,
  ),
  6933: proj('WGS 84 / NSIDC EASE-Grid 2.0 Global', 'WGS 84', `+proj=cea +lat_ts=30 +lon_0=0 +x_0=0 +y_0=0 ${WGS84}`),
  8857: proj('WGS 84 / Equal Earth Greenwich', 'WGS 84', `+proj=eqearth +lon_0=0 +x_0=0 +y_0=0 ${WGS84}`),
  3413: proj(
    'WGS 84 / NSIDC Sea Ice Polar Stereographic North',
    'WGS 84',
    `+proj=stere +lat_0=90 +lat_ts=70 +lon_0=-45 +x_0=0 +y_0=0 ${WGS84}`,
  ),
  3031: proj(
    'WGS 84 / Antarctic Polar Stereographic',
    'WGS 84',
    `+proj=stere +lat_0=-90 +lat_ts=-71 +lon_0=0 +x_0=0 +y_0=0 ${WGS84}`,
  ),
  3976: proj(
    'WGS 84 / NSIDC Sea Ice Polar Stereographic South',
    'WGS 84',
    `+proj=stere +lat_0=-90 +lat_ts=-70 +lon_0=0 +x_0=0 +y_0=0 ${WGS84}`,
  ),
  3996: proj(
    'WGS 84 / IBCAO Polar Stereographic',
    'WGS 84',
    `+proj=stere +lat_0=90 +lat_ts=75 +lon_0=0 +x_0=0 +y_0=0 ${WGS84}`,
  ),
  3575: proj('WGS 84 / North Pole LAEA Europe', 'WGS 84', `+proj=laea +lat_0=90 +lon_0=10 +x_0=0 +y_0=0 ${WGS84}`),

  // Europe
  3035: proj(
    'ETRS89-extended / LAEA Europe',
    'ETRS89',
    `+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 ${GRS80_NULL_SHIFT}`,
  ),
  3034: proj(
    'ETRS89-extended / LCC Europe',
    'ETRS89',
    `+proj=lcc +lat_0=52 +lon_0=10 +lat_1=35 +lat_2=65 +x_0=4000000 +y_0=2800000 ${GRS80_NULL_SHIFT}`,
  ),
  27700: proj(
    'OSGB36 / British National Grid',
    'OSGB36',
    '+proj=tmerc +lat_0=49 +lon_0=-2 +k=0.9996012717 +x_0=400000 +y_0=-100000 +ellps=airy' +
      ' +towgs84=446.448,-125.157,542.06,0.15,0.247,0.842,-20.489',
  ),
  2157: proj(
    'IRENET95 / Irish Transverse Mercator',
    'IRENET95',
    `+proj=tmerc +lat_0=53.5 +lon_0=-8 +k=0.99982 +x_0=600000 +y_0=750000 ${GRS80_NULL_SHIFT}`,
  ),
  2154: proj(
    'RGF93 v1 / Lambert-93',
    'RGF93 v1',
    `+proj=lcc +lat_0=46.5 +lon_0=3 +lat_1=49 +lat_2=44 +x_0=700000 +y_0=6600000 ${GRS80_NULL_SHIFT}`,
  ),
  28992: proj(
    'Amersfoort / RD New',
    'Amersfoort',
    '+proj=sterea +lat_0=52.1561605555556 +lon_0=5.38763888888889 +k=0.9999079 +x_0=155000 +y_0=463000' +
      ' +ellps=bessel +towgs84=565.4171,50.3319,465.5524,-0.398957388243134,0.343987817378283,-1.87740163998045,4.0725',
  ),
  31370: proj(
    'BD72 / Belgian Lambert 72',
    'BD72',
    '+proj=lcc +lat_0=90 +lon_0=4.36748666666667 +lat_1=51.1666672333333 +lat_2=49.8333339' +
      ' +x_0=150000.013 +y_0=5400088.438 +ellps=intl' +
      ' +towgs84=-106.8686,52.2978,-103.7239,0.3366,-0.457,1.8422,-1.2747',
  ),
  2056: proj(
    'CH1903+ / LV95',
    'CH1903+',
    '+proj=somerc +lat_0=46.9524055555556 +lon_0=7.43958333333333 +k_0=1 +x_0=2600000 +y_0=1200000' +
      ' +ellps=bessel +towgs84=674.374,15.056,405.346,0,0,0,0',
  ),
  31287: proj(
    'MGI / Austria Lambert',
    'MGI',
    '+proj=lcc +lat_0=47.5 +lon_0=13.3333333333333 +lat_1=49 +lat_2=46 +x_0=400000 +y_0=400000' +
      ' +ellps=bessel +towgs84=577.326,90.129,463.919,5.137,1.474,5.297,2.4232',
  ),
  3416: proj(
    'ETRS89 / Austria Lambert',
    'ETRS89',
    `+proj=lcc +lat_0=47.5 +lon_0=13.3333333333333 +lat_1=49 +lat_2=46 +x_0=400000 +y_0=400000 ${GRS80_NULL_SHIFT}`,
  ),
  5514: proj(
    'S-JTSK / Krovak East North',
    'S-JTSK',
    '+proj=krovak +lat_0=49.5 +lon_0=24.8333333333333 +alpha=30.2881397527778 +k=0.9999 +x_0=0 +y_0=0' +
      ' +ellps=bessel +towgs84=572.213,85.334,461.94,4.9732,1.529,5.2484,3.5378',
  ),
  2180: proj(
    'ETRF2000-PL / CS92',
    'ETRF2000-PL',
    `+proj=tmerc +lat_0=0 +lon_0=19 +k=0.9993 +x_0=500000 +y_0=-5300000 ${GRS80_NULL_SHIFT}`,
  ),
  3006: proj('SWEREF99 TM', 'SWEREF99', `+proj=utm +zone=33 ${GRS80_NULL_SHIFT}`),
  3067: proj('ETRS89 / TM35FIN(E,N)', 'ETRS89', `+proj=utm +zone=35 ${GRS80_NULL_SHIFT}`),
  3763: proj(
    'ETRS89 / Portugal TM06',
    'ETRS89',
    `+proj=tmerc +lat_0=39.6682583333333 +lon_0=-8.13310833333333 +k=1 +x_0=0 +y_0=0 ${GRS80_NULL_SHIFT}`,
  ),
  2100: proj(
    'GGRS87 / Greek Grid',
    'GGRS87',
    '+proj=tmerc +lat_0=0 +lon_0=24 +k=0.9996 +x_0=500000 +y_0=0 +ellps=GRS80 +towgs84=-199.87,74.79,246.62,0,0,0,0',
  ),

  // North America
  5070: proj(
    'NAD83 / Conus Albers',
    'NAD83',
    `+proj=aea +lat_0=23 +lon_0=-96 +lat_1=29.5 +lat_2=45.5 +x_0=0 +y_0=0 ${NAD83}`,
  ),
  3310: proj(
    'NAD83 / California Albers',
    'NAD83',
    `+proj=aea +lat_0=0 +lon_0=-120 +lat_1=34 +lat_2=40.5 +x_0=0 +y_0=-4000000 ${NAD83}`,
  ),

  // Oceania
  3577: proj(
    'GDA94 / Australian Albers',
    'GDA94',
    `+proj=aea +lat_0=0 +lon_0=132 +lat_1=-18 +lat_2=-36 +x_0=0 +y_0=0 ${GRS80_NULL_SHIFT}`,
  ),
  2193: proj(
    'NZGD2000 / New Zealand Transverse Mercator 2000',
    'NZGD2000',
    `+proj=tmerc +lat_0=0 +lon_0=173 +k=0.9996 +x_0=1600000 +y_0=10000000 ${GRS80_NULL_SHIFT}`,
  ),
};

/** Codes that name the same CRS as another code (deprecated or unofficial spellings of Web Mercator). */
export const CRS_ALIASES: Readonly<Record<number, number>> = {
  900913: 3857,
  3785: 3857,
};

/** The record of an EPSG code, or undefined when the table does not know it. Aliases are not resolved here. */
export function lookupCrsRecord(code: number): CrsRecord | undefined {
  if (!Number.isInteger(code)) return undefined;
  if (Object.hasOwn(CRS_SINGLES, code)) return CRS_SINGLES[code];
  for (const family of CRS_FAMILIES) {
    if (code >= family.first && code <= family.last) return family.record(code);
  }
  return undefined;
}

/** Every code the table knows (aliases excluded), ascending. */
export function knownEpsgCodes(): number[] {
  const codes = Object.keys(CRS_SINGLES).map(Number);
  for (const family of CRS_FAMILIES) {
    for (let code = family.first; code <= family.last; code++) codes.push(code);
  }
  return codes.sort((a, b) => a - b);
}
