/**
 * Coordinate transforms between CRSs (proj4 is the projection library; this is one of its two import sites),
 * bounds transformation with densified edges, and the approximate per-row pixel mapper the warper uses.
 */
import proj4 from 'proj4';
import { lookupCrsRecord } from './crs.db.ts';
import { RenderError } from './errors.ts';
import type { Bounds, Crs, GeoTransform, Grid } from './types.ts';

/** Maps coordinates from one CRS to another. Points that cannot be transformed become NaN; it never throws. */
export interface Transformer {
  readonly from: Crs;
  readonly to: Crs;
  /** true when both CRSs are the same system: coordinates pass through unchanged */
  readonly identity: boolean;
  /** Transform xs[i], ys[i] in place. */
  forward(xs: Float64Array, ys: Float64Array): void;
  /** Transform one point. */
  point(x: number, y: number): [number, number];
}

type Proj = InstanceType<typeof proj4.Proj>;
type Step = readonly [Proj, Proj];

const WGS84_LONGLAT = '+proj=longlat +datum=WGS84 +no_defs';
const DATUM_TOKENS = /\+(?:datum|ellps|a|b|rf|towgs84|nadgrids)=\S+/g;
const NULL_SHIFT = /\+datum=(?:WGS84|NAD83)\b|\+towgs84=0,0,0(?:,0,0,0,0)?(?:\s|$)|\+nadgrids=@null\b/;

/**
 * Which datum a CRS sits on, for deciding whether a shift is needed: 'wgs84' for every datum that coincides with
 * WGS 84 through a null transformation (WGS 84 itself, NAD83, zero towgs84 such as ETRS89 or GDA2020, and Web
 * Mercator's @null grid), as PROJ treats them; otherwise the base geographic CRS of the table (so that all NAD27
 * zones, whose regional shifts differ, share one datum), or else the datum-defining tokens of the definition.
 */
function datumClass(crs: Crs): string {
  if (NULL_SHIFT.test(crs.proj4)) return 'wgs84';
  const record = lookupCrsRecord(crs.epsg);
  if (record && record.proj4 === crs.proj4) return `geog:${record.geogName}`;
  return (crs.proj4.match(DATUM_TOKENS) ?? []).sort().join(' ');
}

/** A definition with its datum shift removed (ellipsoid kept), so proj4 applies no datum step at all. */
function withoutShift(def: string): string {
  return def
    .replace(/ \+(?:towgs84|nadgrids)=\S+/g, '')
    .replace('+datum=WGS84', '+ellps=WGS84')
    .replace('+datum=NAD83', '+ellps=GRS80')
    .replace('+datum=NAD27', '+ellps=clrk66');
}

/** Largest latitude of the square Web Mercator world. */
const MERCATOR_MAX_LAT = 85.0511287798066;

function isIdentity(from: Crs, to: Crs): boolean {
  return from.epsg === to.epsg || from.proj4 === to.proj4;
}

/**
 * A transformer from one CRS to another. Equal EPSG codes (or identical definitions) take an identity fast path.
 * Otherwise proj4 is used: within one datum without any shift; between two datums neither of which is WGS 84, in
 * two explicit steps through WGS 84 longitude/latitude (each of which proj4 runs without per-point set-up).
 */
export function createTransformer(from: Crs, to: Crs): Transformer {
  if (isIdentity(from, to)) {
    return {
      from,
      to,
      identity: true,
      forward() {},
      point: (x, y) => [x, y],
    };
  }
  let steps: Step[];
  try {
    const fromClass = datumClass(from);
    const toClass = datumClass(to);
    if (fromClass === toClass) {
      // one datum: carry longitude/latitude over unchanged, as PROJ does for a null transformation
      steps = [[new proj4.Proj(withoutShift(from.proj4)), new proj4.Proj(withoutShift(to.proj4))]];
    } else if (from.proj4.includes('+datum=WGS84') || to.proj4.includes('+datum=WGS84')) {
      steps = [[new proj4.Proj(from.proj4), new proj4.Proj(to.proj4)]];
    } else {
      // proj4 would build a WGS 84 definition for every point here; do the two steps explicitly instead
      const wgs84 = new proj4.Proj(WGS84_LONGLAT);
      const src = fromClass === 'wgs84' ? withoutShift(from.proj4) : from.proj4;
      const dst = toClass === 'wgs84' ? withoutShift(to.proj4) : to.proj4;
      steps = [
        [new proj4.Proj(src), wgs84],
        [wgs84, new proj4.Proj(dst)],
      ];
    }
  } catch (cause) {
    throw new RenderError('internal', `cannot set up the transform EPSG:${from.epsg} -> EPSG:${to.epsg}`, { cause });
  }
  const fromGeographic = from.geographic;
  const nSteps = steps.length;
  const run = (x: number, y: number, out: [number, number]): void => {
    if (!Number.isFinite(x) || !Number.isFinite(y) || (fromGeographic && (y > 90 || y < -90))) {
      out[0] = Number.NaN;
      out[1] = Number.NaN;
      return;
    }
    try {
      for (let s = 0; s < nSteps; s++) {
        const step = steps[s];
        const p = proj4.transform(step[0], step[1], { x, y });
        if (!p || !Number.isFinite(p.x) || !Number.isFinite(p.y)) {
          out[0] = Number.NaN;
          out[1] = Number.NaN;
          return;
        }
        x = p.x;
        y = p.y;
      }
      out[0] = x;
      out[1] = y;
    } catch {
      out[0] = Number.NaN;
      out[1] = Number.NaN;
    }
  };
  const scratch: [number, number] = [0, 0];
  return {
    from,
    to,
    identity: false,
    forward(xs, ys) {
      const n = Math.min(xs.length, ys.length);
      for (let i = 0; i < n; i++) {
        run(xs[i], ys[i], scratch);
        xs[i] = scratch[0];
        ys[i] = scratch[1];
      }
    },
    point(x, y) {
      const out: [number, number] = [0, 0];
      run(x, y, out);
      return out;
    },
  };
}

/**
 * Transform bounds [minx, miny, maxx, maxy] from one CRS to another: every edge is densified with `densify`
 * intermediate points, all points are transformed, and the result is the box of those that succeed (as GDAL's
 * OCTTransformBounds does). Towards a geographic CRS, a pole inside the source bounds extends the result to that
 * pole and to all longitudes. Bounds that cross the antimeridian come out as a wide box (never an inverted one).
 * Throws RenderError 'unsupported' when no point of the bounds can be transformed.
 */
export function transformBounds(bounds: Bounds, from: Crs, to: Crs, densify = 21): Bounds {
  let [x0, y0, x1, y1] = bounds;
  if (![x0, y0, x1, y1].every(Number.isFinite) || x0 > x1 || y0 > y1) {
    throw new RenderError('bad-request', `bounds [${bounds.join(', ')}] are not [minx, miny, maxx, maxy]`);
  }
  if (isIdentity(from, to)) return [x0, y0, x1, y1];
  if (from.geographic) {
    if (y0 > 90 || y1 < -90) {
      throw new RenderError('unsupported', `bounds [${bounds.join(', ')}] lie beyond the poles`);
    }
    // Mercator has no pole: keep to its square world when the bounds reach into it
    const maxLat =
      to.proj4.includes('+proj=merc') && y0 < MERCATOR_MAX_LAT && y1 > -MERCATOR_MAX_LAT ? MERCATOR_MAX_LAT : 90;
    y0 = Math.max(y0, -maxLat);
    y1 = Math.min(y1, maxLat);
  }
  const segments = Math.max(1, Math.floor(densify) + 1);
  const n = 4 * segments;
  const xs = new Float64Array(n);
  const ys = new Float64Array(n);
  for (let i = 0; i < segments; i++) {
    const t = i / segments;
    const dx = (x1 - x0) * t;
    const dy = (y1 - y0) * t;
    xs[i] = x0 + dx; // bottom edge, left to right
    ys[i] = y0;
    xs[segments + i] = x1; // right edge, bottom to top
    ys[segments + i] = y0 + dy;
    xs[2 * segments + i] = x1 - dx; // top edge, right to left
    ys[2 * segments + i] = y1;
    xs[3 * segments + i] = x0; // left edge, top to bottom
    ys[3 * segments + i] = y1 - dy;
  }
  const tr = createTransformer(from, to);
  tr.forward(xs, ys);
  let minx = Number.POSITIVE_INFINITY;
  let miny = Number.POSITIVE_INFINITY;
  let maxx = Number.NEGATIVE_INFINITY;
  let maxy = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) {
    const x = xs[i];
    const y = ys[i];
    if (Number.isNaN(x) || Number.isNaN(y)) continue;
    if (x < minx) minx = x;
    if (x > maxx) maxx = x;
    if (y < miny) miny = y;
    if (y > maxy) maxy = y;
  }
  if (minx > maxx) {
    throw new RenderError(
      'unsupported',
      `bounds [${bounds.join(', ')}] in EPSG:${from.epsg} have no point that can be expressed in EPSG:${to.epsg}`,
    );
  }
  if (to.geographic) {
    const back = createTransformer(to, from);
    for (const lat of [90, -90]) {
      const [px, py] = back.point(0, lat);
      if (Number.isNaN(px) || !(px >= x0 && px <= x1 && py >= y0 && py <= y1)) continue;
      minx = -180;
      maxx = 180;
      if (lat > 0) maxy = 90;
      else miny = -90;
    }
  }
  return [minx, miny, maxx, maxy];
}

/**
 * Map one row of a target grid into continuous source pixel coordinates, as GDAL's approximate transformer does.
 * For each target pixel centre (col + 0.5, row + 0.5): outU[col] = source column, outV[col] = source row (source
 * pixel k covers [k, k + 1)). `tr` maps target CRS -> source CRS; `sourceInverseGt` maps source CRS -> source
 * pixels. A span is computed exactly at its ends and middle; when linear interpolation through the ends misses
 * the exact middle by at most `maxErrorPx` source pixels (|du| + |dv|), the span is filled by interpolation
 * (piecewise through the middle), otherwise it is split in two and refined. An identity transform is a pure affine
 * composition. Pixels whose transform fails get NaN. `maxErrorPx <= 0` computes every pixel exactly.
 */
export function mapRowToSource(
  target: Grid,
  row: number,
  sourceInverseGt: GeoTransform,
  tr: Transformer,
  outU: Float64Array,
  outV: Float64Array,
  maxErrorPx = 0.125,
): void {
  const n = target.width;
  if (outU.length < n || outV.length < n) {
    throw new RenderError('internal', `mapRowToSource: output rows hold ${outU.length}/${outV.length} < ${n} pixels`);
  }
  const gt = target.transform;
  const yPix = row + 0.5;
  // target CRS coordinates of pixel centre c: X = ax + bx * c, Y = ay + by * c
  const ax = gt[0] + 0.5 * gt[1] + yPix * gt[2];
  const ay = gt[3] + 0.5 * gt[4] + yPix * gt[5];
  const bx = gt[1];
  const by = gt[4];
  const [i0, i1, i2, i3, i4, i5] = sourceInverseGt;

  if (tr.identity) {
    const au = i0 + ax * i1 + ay * i2;
    const av = i3 + ax * i4 + ay * i5;
    const bu = bx * i1 + by * i2;
    const bv = bx * i4 + by * i5;
    for (let c = 0; c < n; c++) {
      outU[c] = au + bu * c;
      outV[c] = av + bv * c;
    }
    return;
  }

  const exact = (c: number): void => {
    const p = tr.point(ax + bx * c, ay + by * c);
    const x = p[0];
    const y = p[1];
    outU[c] = i0 + x * i1 + y * i2;
    outV[c] = i3 + x * i4 + y * i5;
  };

  if (maxErrorPx <= 0 || n <= 3) {
    for (let c = 0; c < n; c++) exact(c);
    return;
  }

  // Refine the open span (c0, c1); outU/outV at c0 and c1 hold exact values.
  const refine = (c0: number, c1: number): void => {
    if (c1 - c0 < 2) return;
    const m = (c0 + c1) >> 1;
    exact(m);
    const u0 = outU[c0];
    const v0 = outV[c0];
    const u1 = outU[c1];
    const v1 = outV[c1];
    const um = outU[m];
    const vm = outV[m];
    const t = (m - c0) / (c1 - c0);
    // NaN anywhere makes the comparison false: the span is split until every pixel is exact
    const err = Math.abs(u0 + (u1 - u0) * t - um) + Math.abs(v0 + (v1 - v0) * t - vm);
    if (err <= maxErrorPx) {
      const ku = (um - u0) / (m - c0);
      const kv = (vm - v0) / (m - c0);
      for (let c = c0 + 1; c < m; c++) {
        outU[c] = u0 + ku * (c - c0);
        outV[c] = v0 + kv * (c - c0);
      }
      const lu = (u1 - um) / (c1 - m);
      const lv = (v1 - vm) / (c1 - m);
      for (let c = m + 1; c < c1; c++) {
        outU[c] = um + lu * (c - m);
        outV[c] = vm + lv * (c - m);
      }
      return;
    }
    refine(c0, m);
    refine(m, c1);
  };

  exact(0);
  exact(n - 1);
  refine(0, n - 1);
}
