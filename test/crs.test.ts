import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { fromFile } from 'geotiff';
import { CRS_FAMILIES, CRS_SINGLES, knownEpsgCodes, lookupCrsRecord } from '../src/render/crs.db.ts';
import {
  crsAuthority,
  crsEquals,
  crsFromEpsg,
  crsFromGeoKeys,
  crsUri,
  crsUrn,
  GEOTIFF_TAGS,
  geoKeysForCrs,
  parseCrs,
} from '../src/render/crs.ts';
import { RenderError } from '../src/render/errors.ts';

const run = promisify(execFile);
const PYTHON_GDAL = '/usr/bin/python3';
const TOOL_TIMEOUT_MS = 120_000;

function isRenderError(kind: string, pattern?: RegExp) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof RenderError, `expected a RenderError, got ${e}`);
    assert.equal(e.kind, kind, e.message);
    if (pattern) assert.match(e.message, pattern);
    return true;
  };
}

interface GdalCrsInfo {
  name: string;
  geog: string | null;
  geographic: boolean;
  proj4: string;
}

/** Name, base geographic CRS name and proj4 export of every code, from GDAL's EPSG database (one process). */
async function gdalCrsInfo(codes: number[]): Promise<Record<string, GdalCrsInfo>> {
  const script = [
    'import sys, json',
    'from osgeo import osr',
    'osr.UseExceptions()',
    'out = {}',
    'for code in json.loads(sys.argv[1]):',
    '    s = osr.SpatialReference(); s.ImportFromEPSG(code)',
    '    out[code] = {"name": s.GetName(), "geog": s.GetAttrValue("GEOGCS") if s.IsProjected() else s.GetName(),',
    '                 "geographic": bool(s.IsGeographic()), "proj4": s.ExportToProj4()}',
    'print(json.dumps(out))',
  ].join('\n');
  const { stdout } = await run(PYTHON_GDAL, ['-c', script, JSON.stringify(codes)], {
    timeout: TOOL_TIMEOUT_MS,
    maxBuffer: 16 * 1024 * 1024,
  });
  return JSON.parse(stdout);
}

/** proj4 parameters as a map (flags map to ''). */
function proj4Params(def: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const tok of def.trim().split(/\s+/)) {
    const [k, v = ''] = tok.replace(/^\+/, '').split('=');
    m.set(k, v);
  }
  return m;
}

/** The projection parameters GDAL's proj4 export and ours must share (the datum is checked by transforms). */
const PROJECTION_KEYS = ['proj', 'zone', 'south', 'lat_0', 'lon_0', 'lat_1', 'lat_2', 'lat_ts', 'k', 'k_0'].concat([
  'x_0',
  'y_0',
  'alpha',
  'units',
]);
const DEFAULTS: Record<string, string> = { lat_0: '0', lon_0: '0', x_0: '0', y_0: '0', k: '1', k_0: '1', lat_ts: '0' };

describe('EPSG table', () => {
  it('names, base geographic CRSs and projection parameters agree with GDAL for every code', async () => {
    const codes = knownEpsgCodes();
    assert.ok(codes.length > 250, `${codes.length} codes`);
    const gdal = await gdalCrsInfo(codes);
    for (const code of codes) {
      const ours = lookupCrsRecord(code)!;
      const crs = crsFromEpsg(code);
      const g = gdal[code];
      assert.equal(ours.name, g.name, `EPSG:${code} name`);
      // GDAL has no WKT1 for Equal Earth, hence no GEOGCS
      if (g.geog !== null) assert.equal(ours.geogName, g.geog, `EPSG:${code} base geographic CRS`);
      assert.equal(crs.geographic, g.geographic, `EPSG:${code} geographic`);
      const a = proj4Params(ours.proj4);
      const b = proj4Params(g.proj4);
      for (const key of PROJECTION_KEYS) {
        const va = a.get(key) ?? DEFAULTS[key];
        const vb = b.get(key) ?? DEFAULTS[key];
        if (va === vb) continue;
        assert.ok(
          va !== undefined && vb !== undefined && Math.abs(Number(va) - Number(vb)) < 1e-12,
          `EPSG:${code} +${key}: ours ${va}, GDAL ${vb}`,
        );
      }
      // same ellipsoid (proj4 spells NAD83 as a datum where GDAL spells GRS80, and the reverse)
      const ellps = (m: Map<string, string>): string =>
        m.get('ellps') ??
        ({ WGS84: 'WGS84', NAD83: 'GRS80', NAD27: 'clrk66' } as Record<string, string>)[m.get('datum') ?? ''] ??
        `a=${m.get('a')}`;
      assert.equal(ellps(a), ellps(b), `EPSG:${code} ellipsoid`);
    }
  });

  it('has zone families that match their labels and names that fit in GeoTIFF ASCII params', () => {
    for (const family of CRS_FAMILIES) {
      assert.ok(family.label.includes(`EPSG:${family.first}-${family.last}`), family.label);
    }
    for (const code of knownEpsgCodes()) {
      const r = lookupCrsRecord(code)!;
      for (const text of [r.name, r.geogName]) assert.match(text, /^[\x20-\x7b\x7d\x7e]+$/, `EPSG:${code} '${text}'`);
    }
    assert.ok(Object.keys(CRS_SINGLES).length >= 40);
  });
});

describe('crsFromEpsg', () => {
  it('resolves zone families and national grids', () => {
    const utm = crsFromEpsg(32633);
    assert.deepEqual(utm, {
      epsg: 32633,
      proj4: '+proj=utm +zone=33 +datum=WGS84 +units=m +no_defs',
      name: 'WGS 84 / UTM zone 33N',
      geographic: false,
    });
    assert.ok(Object.isFrozen(utm));
    assert.equal(crsFromEpsg(32760).name, 'WGS 84 / UTM zone 60S');
    assert.match(crsFromEpsg(32760).proj4, /\+zone=60 \+south /);
    assert.equal(crsFromEpsg(3050).name, 'ETRS89 / TM38');
    assert.equal(crsFromEpsg(31977).name, 'SIRGAS 2000 / UTM zone 17S');
    assert.equal(crsFromEpsg(7846).name, 'GDA2020 / MGA zone 46');
    assert.equal(crsFromEpsg(27700).name, 'OSGB36 / British National Grid');
    assert.match(crsFromEpsg(27700).proj4, /\+towgs84=446\.448,-125\.157,542\.06,0\.15,0\.247,0\.842,-20\.489/);
    assert.equal(crsFromEpsg(4326).geographic, true);
  });

  it('reads 900913 and 3785 as EPSG:3857', () => {
    for (const code of [900913, 3785]) {
      const crs = crsFromEpsg(code);
      assert.equal(crs.epsg, 3857);
      assert.equal(crs.name, 'WGS 84 / Pseudo-Mercator');
    }
  });

  it('refuses codes outside the table, naming the code and the supported families', () => {
    for (const code of [32661, 26724, 2263, 0, -1, 1.5]) {
      assert.throws(() => crsFromEpsg(code), isRenderError('unsupported', new RegExp(`EPSG:${code} `)));
    }
    assert.throws(() => crsFromEpsg(32661), isRenderError('unsupported', /WGS 84 \/ UTM zone 1N-60N.*EPSG:27700/));
  });
});

describe('parseCrs and identifiers', () => {
  it('accepts the usual spellings', () => {
    for (const text of [
      'EPSG:32633',
      'epsg:32633',
      ' 32633 ',
      'urn:ogc:def:crs:EPSG::32633',
      'urn:ogc:def:crs:EPSG:9.8.15:32633',
      'http://www.opengis.net/def/crs/EPSG/0/32633',
    ]) {
      assert.equal(parseCrs(text).epsg, 32633, text);
    }
    for (const text of [
      'OGC:CRS84',
      'CRS:84',
      'urn:ogc:def:crs:OGC:1.3:CRS84',
      'http://www.opengis.net/def/crs/OGC/1.3/CRS84',
    ]) {
      assert.equal(parseCrs(text).epsg, 4326, text);
    }
    assert.equal(parseCrs('EPSG:900913').epsg, 3857);
  });

  it('rejects what is not a CRS identifier as a bad request, unknown codes as unsupported', () => {
    for (const text of [
      '',
      'EPSG:',
      'EPSG:abc',
      'foo',
      '+proj=utm +zone=33',
      'EPSG:3857;drop',
      'urn:ogc:def:crs:EPSG::',
    ]) {
      assert.throws(() => parseCrs(text), isRenderError('bad-request', /EPSG:<code>/), text);
    }
    assert.throws(() => parseCrs('EPSG:1234'), isRenderError('unsupported', /EPSG:1234/));
  });

  it('writes URNs, authority codes and URIs', () => {
    const crs = crsFromEpsg(3857);
    assert.equal(crsUrn(crs), 'urn:ogc:def:crs:EPSG::3857');
    assert.equal(crsAuthority(crs), 'EPSG:3857');
    assert.equal(crsUri(crs), 'http://www.opengis.net/def/crs/EPSG/0/3857');
    assert.equal(parseCrs(crsUrn(crsFromEpsg(2056))).epsg, 2056);
    assert.equal(crsEquals(crsFromEpsg(900913), crsFromEpsg(3857)), true);
    assert.equal(crsEquals(crsFromEpsg(4326), crsFromEpsg(4258)), false);
  });
});

/** GeoTIFF files written by GDAL, read back with geotiff.js (the reader cogmill uses). */
describe('GeoKeys against GDAL-written GeoTIFFs', () => {
  let dir = '';
  const files = new Map<string, string>();
  // EPSG codes, and PROJ strings GDAL writes as user-defined CRSs
  const SRS: Record<string, string> = {
    e4326: 'EPSG:4326',
    e4258: 'EPSG:4258',
    e4269: 'EPSG:4269',
    e4267: 'EPSG:4267',
    e4277: 'EPSG:4277',
    e4150: 'EPSG:4150',
    e32633: 'EPSG:32633',
    e32760: 'EPSG:32760',
    e3857: 'EPSG:3857',
    e27700: 'EPSG:27700',
    e2056: 'EPSG:2056',
    e5514: 'EPSG:5514',
    e3035: 'EPSG:3035',
    e6933: 'EPSG:6933',
    e28992: 'EPSG:28992',
    e3413: 'EPSG:3413',
    e7855: 'EPSG:7855',
    e3050: 'EPSG:3050',
    utmProj: '+proj=utm +zone=33 +datum=WGS84 +units=m +no_defs',
    lonlatWgs84Ellps: '+proj=longlat +ellps=WGS84 +no_defs',
    tmercCustom: '+proj=tmerc +lat_0=0 +lon_0=10 +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs',
    utmGrs80: '+proj=utm +zone=33 +ellps=GRS80 +units=m +no_defs',
    none: '',
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cogmill-crs-'));
    const script = [
      'import sys, json',
      'from osgeo import gdal',
      'gdal.UseExceptions()',
      'd = json.loads(sys.argv[1])',
      'for name, srs in d["srs"].items():',
      '    ds = gdal.GetDriverByName("GTiff").Create(d["dir"] + "/" + name + ".tif", 2, 2, 1)',
      '    ds.SetGeoTransform([0, 1, 0, 2, 0, -1])',
      '    if srs: ds.SetProjection(srs)',
      '    ds = None',
    ].join('\n');
    await run(PYTHON_GDAL, ['-c', script, JSON.stringify({ dir, srs: SRS })], { timeout: TOOL_TIMEOUT_MS });
    for (const name of Object.keys(SRS)) files.set(name, join(dir, `${name}.tif`));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function readKeys(name: string) {
    const tiff = await fromFile(files.get(name)!);
    try {
      const image = await tiff.getImage();
      const fd = image.getFileDirectory();
      const raw = (tag: string): unknown => fd.getValue(tag as never);
      return {
        geoKeys: image.getGeoKeys() as Record<string, unknown> | null,
        directory: Array.from((raw('GeoKeyDirectory') as ArrayLike<number>) ?? []),
        doubles: raw('GeoDoubleParams') ? Array.from(raw('GeoDoubleParams') as ArrayLike<number>) : [],
        ascii: (raw('GeoAsciiParams') as string | undefined) ?? '',
      };
    } finally {
      tiff.close();
    }
  }

  it('geoKeysForCrs writes exactly the keys GDAL writes for an EPSG CRS', async () => {
    for (const name of Object.keys(SRS).filter((n) => n.startsWith('e'))) {
      const code = Number(name.slice(1));
      const gdal = await readKeys(name);
      const ours = geoKeysForCrs(crsFromEpsg(code));
      assert.deepEqual(ours.directory, gdal.directory, `EPSG:${code} GeoKeyDirectory`);
      assert.deepEqual(ours.doubles, gdal.doubles, `EPSG:${code} GeoDoubleParams`);
      assert.equal(`${ours.ascii}\0`, gdal.ascii, `EPSG:${code} GeoAsciiParams`);
    }
    assert.deepEqual(GEOTIFF_TAGS, { geoKeyDirectory: 34735, geoDoubleParams: 34736, geoAsciiParams: 34737 });
  });

  it('crsFromGeoKeys reads GDAL-written EPSG CRSs', async () => {
    for (const name of Object.keys(SRS).filter((n) => n.startsWith('e'))) {
      const code = Number(name.slice(1));
      const { geoKeys } = await readKeys(name);
      assert.equal(crsFromGeoKeys(geoKeys).epsg, code, name);
    }
  });

  it('crsFromGeoKeys identifies what GDAL writes for PROJ strings it recognises', async () => {
    // GDAL identifies this one as EPSG:32633
    assert.equal(crsFromGeoKeys((await readKeys('utmProj')).geoKeys).epsg, 32633);
    // user-defined geographic CRS on the WGS 84 ellipsoid (GeogEllipsoidGeoKey 7030): rendered as WGS 84
    const lonlat = (await readKeys('lonlatWgs84Ellps')).geoKeys!;
    assert.equal(lonlat.GeographicTypeGeoKey, 32767);
    assert.equal(crsFromGeoKeys(lonlat).epsg, 4326);
  });

  it('crsFromGeoKeys refuses user-defined and missing CRSs with a re-tagging hint', async () => {
    const custom = (await readKeys('tmercCustom')).geoKeys!;
    assert.equal(custom.ProjectedCSTypeGeoKey, 32767);
    assert.throws(
      () => crsFromGeoKeys(custom),
      isRenderError('unsupported', /user-defined projected CRS.*EPSG code.*gdal_edit\.py -a_srs EPSG:XXXX/),
    );
    // UTM zone 33 on an unnamed GRS80 datum: the zone is known but the datum is not
    const grs80 = (await readKeys('utmGrs80')).geoKeys!;
    assert.equal(grs80.ProjectionGeoKey, 16033);
    assert.throws(() => crsFromGeoKeys(grs80), isRenderError('unsupported', /user-defined projected CRS/));
    const none = (await readKeys('none')).geoKeys;
    assert.equal(none, null);
    assert.throws(() => crsFromGeoKeys(none), isRenderError('unsupported', /no GeoKeys.*gdal_edit\.py/));
  });

  it('crsFromGeoKeys handles key sets GDAL does not write', () => {
    // UTM spelled as a user-defined PCS with an EPSG conversion code on a known geographic CRS
    const utm = {
      GTModelTypeGeoKey: 1,
      ProjectedCSTypeGeoKey: 32767,
      ProjectionGeoKey: 16133,
      GeographicTypeGeoKey: 4326,
    };
    assert.equal(crsFromGeoKeys(utm).epsg, 32733);
    assert.equal(crsFromGeoKeys({ ...utm, ProjectionGeoKey: 16032, GeographicTypeGeoKey: 4258 }).epsg, 25832);
    // model type missing
    assert.equal(crsFromGeoKeys({ ProjectedCSTypeGeoKey: 2056 }).epsg, 2056);
    assert.equal(crsFromGeoKeys({ GeographicTypeGeoKey: 4269 }).epsg, 4269);
    // geographic user-defined with a known datum
    assert.equal(
      crsFromGeoKeys({ GTModelTypeGeoKey: 2, GeographicTypeGeoKey: 32767, GeogGeodeticDatumGeoKey: 6258 }).epsg,
      4258,
    );
    assert.throws(() => crsFromGeoKeys({ GTModelTypeGeoKey: 3 }), isRenderError('unsupported', /geocentric/));
    assert.throws(() => crsFromGeoKeys({}), isRenderError('unsupported', /no GeoKeys/));
    assert.throws(() => crsFromGeoKeys({ GTRasterTypeGeoKey: 1 }), isRenderError('unsupported', /name no CRS/));
    assert.throws(
      () => crsFromGeoKeys({ GTModelTypeGeoKey: 2, GeographicTypeGeoKey: 32767, GeogCitationGeoKey: 'Mars 2000|' }),
      isRenderError('unsupported', /user-defined geographic CRS \('Mars 2000'\)/),
    );
    assert.throws(
      () => crsFromGeoKeys({ GTModelTypeGeoKey: 1, ProjectedCSTypeGeoKey: 2263 }),
      isRenderError('unsupported', /EPSG:2263/),
    );
  });
});
