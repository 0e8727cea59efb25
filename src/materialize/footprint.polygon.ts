/**
 * A reprojected source's footprint as a polygon in the mosaic's CRS, with a bound on how far the true (curved)
 * footprint can be from it. The virtual COG's plan uses it to decide, without rendering, which tiles of the edge
 * band between a footprint's inner and outer boxes hold data: surely yes when a point deep inside the polygon lies
 * in the tile, surely no when the tile (grown by the resampling reach) misses the polygon (grown by the bound);
 * only the few tiles in between take the exact per-tile test.
 */
import type { Transformer } from '../render/transform.ts';
import type { Bounds } from '../render/types.ts';

export interface FootprintPolygon {
  /** closed ring (last vertex = first), mosaic CRS */
  readonly xs: Float64Array;
  readonly ys: Float64Array;
  /** the true footprint's boundary lies within this distance of the ring's (mosaic CRS units) */
  readonly tolerance: number;
}

/**
 * Densify the edges of `srcBounds` (source CRS) with `pointsPerEdge` segments each, map them with `tr` (source ->
 * mosaic CRS). The tolerance is twice the largest distance of a segment's mapped midpoint from its chord, plus a
 * millionth of the extent. Undefined when a point cannot be mapped.
 */
export function footprintPolygon(
  srcBounds: Bounds,
  tr: Transformer,
  pointsPerEdge: number,
): FootprintPolygon | undefined {
  const [x0, y0, x1, y1] = srcBounds;
  const corners = [
    [x0, y0],
    [x0, y1],
    [x1, y1],
    [x1, y0],
  ];
  const n = 4 * pointsPerEdge;
  const xs = new Float64Array(n + 1);
  const ys = new Float64Array(n + 1);
  const mx = new Float64Array(n);
  const my = new Float64Array(n);
  for (let e = 0; e < 4; e++) {
    const [ax, ay] = corners[e];
    const [bx, by] = corners[(e + 1) % 4];
    for (let i = 0; i < pointsPerEdge; i++) {
      const k = e * pointsPerEdge + i;
      const t = i / pointsPerEdge;
      const tm = (i + 0.5) / pointsPerEdge;
      xs[k] = ax + (bx - ax) * t;
      ys[k] = ay + (by - ay) * t;
      mx[k] = ax + (bx - ax) * tm;
      my[k] = ay + (by - ay) * tm;
    }
  }
  xs[n] = xs[0];
  ys[n] = ys[0];
  tr.forward(xs, ys);
  tr.forward(mx, my);
  let deviation = 0;
  let minX = Infinity;
  let maxX = -Infinity;
  let minY = Infinity;
  let maxY = -Infinity;
  for (let k = 0; k < n; k++) {
    if (!Number.isFinite(xs[k]) || !Number.isFinite(ys[k]) || !Number.isFinite(mx[k]) || !Number.isFinite(my[k])) {
      return undefined;
    }
    deviation = Math.max(deviation, segmentDistance(mx[k], my[k], xs[k], ys[k], xs[k + 1], ys[k + 1]));
    minX = Math.min(minX, xs[k]);
    maxX = Math.max(maxX, xs[k]);
    minY = Math.min(minY, ys[k]);
    maxY = Math.max(maxY, ys[k]);
  }
  return { xs, ys, tolerance: 2 * deviation + 1e-6 * Math.max(maxX - minX, maxY - minY) };
}

function segmentDistance(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const dx = bx - ax;
  const dy = by - ay;
  const len2 = dx * dx + dy * dy;
  const t = len2 > 0 ? Math.min(1, Math.max(0, ((px - ax) * dx + (py - ay) * dy) / len2)) : 0;
  return Math.hypot(px - (ax + t * dx), py - (ay + t * dy));
}

/** Even-odd point in polygon. */
export function insidePolygon(p: FootprintPolygon, x: number, y: number): boolean {
  const { xs, ys } = p;
  let inside = false;
  for (let k = 0; k + 1 < xs.length; k++) {
    const ya = ys[k];
    const yb = ys[k + 1];
    if (ya > y !== yb > y) {
      const xi = xs[k] + ((y - ya) / (yb - ya)) * (xs[k + 1] - xs[k]);
      if (x < xi) inside = !inside;
    }
  }
  return inside;
}

/** Distance from (x, y) to the polygon's boundary. */
export function boundaryDistance(p: FootprintPolygon, x: number, y: number): number {
  const { xs, ys } = p;
  let d = Infinity;
  for (let k = 0; k + 1 < xs.length; k++) d = Math.min(d, segmentDistance(x, y, xs[k], ys[k], xs[k + 1], ys[k + 1]));
  return d;
}

/** Whether segment a-b meets the box (Liang-Barsky clipping). */
function segmentMeetsBox(ax: number, ay: number, bx: number, by: number, box: Bounds): boolean {
  let t0 = 0;
  let t1 = 1;
  const dx = bx - ax;
  const dy = by - ay;
  const clip = (p: number, q: number): boolean => {
    if (p === 0) return q >= 0;
    const r = q / p;
    if (p < 0) {
      if (r > t1) return false;
      if (r > t0) t0 = r;
    } else {
      if (r < t0) return false;
      if (r < t1) t1 = r;
    }
    return true;
  };
  return clip(-dx, ax - box[0]) && clip(dx, box[2] - ax) && clip(-dy, ay - box[1]) && clip(dy, box[3] - ay) && t0 <= t1;
}

/** Whether the polygon (its area) meets the box. */
export function polygonMeetsBox(p: FootprintPolygon, box: Bounds): boolean {
  const { xs, ys } = p;
  if (insidePolygon(p, (box[0] + box[2]) / 2, (box[1] + box[3]) / 2)) return true;
  for (let k = 0; k + 1 < xs.length; k++) {
    if (segmentMeetsBox(xs[k], ys[k], xs[k + 1], ys[k + 1], box)) return true;
  }
  return false;
}

/**
 * Classify a tile (box `tile`, mosaic CRS) against a footprint: 'in' when some point at least `depth` inside the
 * true footprint lies in the tile shrunk by `depth`; 'out' when the tile grown by `reach` misses the true
 * footprint; 'edge' otherwise (the caller decides exactly).
 */
export function classifyTile(p: FootprintPolygon, tile: Bounds, depth: number, reach: number): 'in' | 'out' | 'edge' {
  const tol = p.tolerance;
  const grown: Bounds = [tile[0] - reach - tol, tile[1] - reach - tol, tile[2] + reach + tol, tile[3] + reach + tol];
  if (!polygonMeetsBox(p, grown)) return 'out';
  const need = depth + tol;
  const s: Bounds = [tile[0] + need, tile[1] + need, tile[2] - need, tile[3] - need];
  if (s[0] > s[2] || s[1] > s[3]) return 'edge';
  const candidates = [
    [(s[0] + s[2]) / 2, (s[1] + s[3]) / 2],
    [s[0], s[1]],
    [s[2], s[1]],
    [s[0], s[3]],
    [s[2], s[3]],
  ];
  for (const [x, y] of candidates) {
    if (insidePolygon(p, x, y) && boundaryDistance(p, x, y) >= need) return 'in';
  }
  return 'edge';
}
