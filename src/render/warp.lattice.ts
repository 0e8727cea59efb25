/**
 * The warper's coordinate mapper: where each target pixel falls in a source, by an approximate transform with a
 * bounded error (MapperLattice) over the exact one (MapExact).
 */

/**
 * Default error bound of the approximate transform, in source pixels. gdalwarp's default (0.125, a linear fit per
 * row) moves nearest-neighbour picks on about 1% of the pixels against an exact transform; the biquadratic lattice
 * stays within 0.001 px for about 150 exact transforms per 256 x 256 tile, so renders agree with an exact warp.
 */
export const DEFAULT_MAX_ERROR_PX = 0.001;

/**
 * Maps target pixel positions to source pixel coordinates, in place: xs/ys hold target pixel coordinates on entry
 * and source pixel coordinates (NaN where the transform fails) on return; `n` entries are used.
 */
export type MapExact = (xs: Float64Array, ys: Float64Array, n: number) => void;

/** A lattice cell [a, b] x [c, d] and the exact transforms at its 3 x 3 nodes. */
interface Cell {
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly d: number;
  /** mid column and row: (a + b) >> 1 and (c + d) >> 1, or a / c for cells too thin to have one */
  readonly m: number;
  readonly n: number;
  /** source coordinates at the nodes, row-major: (a|m|b, c), (a|m|b, n), (a|m|b, d) */
  readonly u: Float64Array;
  readonly v: Float64Array;
  kids?: Cell[];
  /** nothing inside transforms */
  empty?: boolean;
  /** too irregular to interpolate: every position is transformed exactly */
  exact?: boolean;
}

const TOP_CELL_PX = 64;
/** Cells this small that still fail are transformed exactly, a row segment at a time. */
const EXACT_CELL_PX = 8;
/** Refinement that needs more exact transforms than this share of the positions gives up: every row is exact. */
const REFINE_BUDGET = 1 / 8;
/** Thrown inside refinement when the budget is spent. */
const OVER_BUDGET = Symbol('over budget');

/** Quadratic through (x0, f0), (x1, f1), (x2, f2) at x, in Newton form; linear or constant for thin cells. */
function quad(x: number, x0: number, x1: number, x2: number, f0: number, f1: number, f2: number): number {
  if (x2 === x0) return f0;
  if (x1 === x0) return f0 + ((f2 - f0) * (x - x0)) / (x2 - x0);
  const d1 = (f1 - f0) / (x1 - x0);
  const d2 = ((f2 - f1) / (x2 - x1) - d1) / (x2 - x0);
  return f0 + (x - x0) * (d1 + (x - x1) * d2);
}

/**
 * An approximate transform over a lattice of target positions (ox + i, oy + j), 0 <= i < nx, 0 <= j < ny, with a
 * bounded error. Exact transforms are computed at the corners, edge midpoints and centre of 64-pixel cells; a cell
 * is filled by biquadratic interpolation of those 9 nodes when that misses the exact transform at its four quarter
 * points (the centres of its would-be children) by at most `maxErrorPx` source pixels (|du| + |dv|); otherwise it
 * is split in four and refined; cells of 8 pixels that still fail are transformed exactly, and so is everything
 * when refining would cost more than an eighth of the exact transforms. A quadratic interpolant follows the curvature of map
 * projections (conformal ones bend one way along x and the other along y), so few exact transforms give errors
 * far below a pixel. Affine mappings (same CRS) are computed in closed form; `maxErrorPx <= 0` transforms every
 * position exactly.
 */
export class MapperLattice {
  private readonly exact: MapExact;
  private readonly ox: number;
  private readonly oy: number;
  private readonly nx: number;
  private readonly ny: number;
  private readonly maxErrorPx: number;
  private readonly xsRow: Float64Array;
  private readonly ysRow: Float64Array;
  private readonly pt = [new Float64Array(1), new Float64Array(1)] as const;
  private readonly cache = new Map<number, [number, number]>();
  private readonly guess = new Float64Array(2);
  private affine?: Float64Array;
  private cellsY: number[] = [];
  private cellsAcross = 0;
  private cells: Cell[] = [];
  /** every row transformed exactly (maxErrorPx <= 0, or a mapping too irregular to interpolate) */
  private allExact = false;
  private readonly budget: number;
  /** exact transforms computed (a measure of the mapping's cost) */
  exactCount = 0;

  constructor(exact: MapExact, ox: number, oy: number, nx: number, ny: number, maxErrorPx: number, affine: boolean) {
    this.exact = exact;
    this.ox = ox;
    this.oy = oy;
    this.nx = nx;
    this.ny = ny;
    this.maxErrorPx = maxErrorPx;
    this.xsRow = new Float64Array(nx);
    this.ysRow = new Float64Array(nx);
    this.budget = Math.max(256, nx * ny * REFINE_BUDGET);
    if (maxErrorPx <= 0) {
      this.allExact = true;
      return;
    }
    if (affine && this.setAffine()) return;
    try {
      this.build();
    } catch (e) {
      if (e !== OVER_BUDGET) throw e;
      this.cells = [];
      this.allExact = true;
    }
  }

  /** Exact transform of one lattice position (cached: neighbouring cells share nodes). */
  private point(i: number, j: number): [number, number] {
    const key = j * (this.nx + 1) + i;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const xs = this.pt[0];
    const ys = this.pt[1];
    xs[0] = this.ox + i;
    ys[0] = this.oy + j;
    this.exact(xs, ys, 1);
    if (++this.exactCount > this.budget) throw OVER_BUDGET;
    const p: [number, number] = [xs[0], ys[0]];
    this.cache.set(key, p);
    return p;
  }

  private setAffine(): boolean {
    const i1 = Math.max(1, this.nx - 1);
    const j1 = Math.max(1, this.ny - 1);
    const [u0, v0] = this.point(0, 0);
    const [ui, vi] = this.point(i1, 0);
    const [uj, vj] = this.point(0, j1);
    if (![u0, v0, ui, vi, uj, vj].every(Number.isFinite)) return false;
    this.affine = Float64Array.of(u0, (ui - u0) / i1, (uj - u0) / j1, v0, (vi - v0) / i1, (vj - v0) / j1);
    return true;
  }

  private build(): void {
    const breaks = (n: number): number[] => {
      const out: number[] = [];
      for (let k = 0; k < n - 1; k += TOP_CELL_PX) out.push(k);
      out.push(Math.max(0, n - 1));
      if (out.length === 1) out.push(out[0]);
      return out;
    };
    const bx = breaks(this.nx);
    const by = breaks(this.ny);
    // the cells' corners in one batch
    const xs = new Float64Array(bx.length * by.length);
    const ys = new Float64Array(bx.length * by.length);
    for (let q = 0; q < by.length; q++) {
      for (let p = 0; p < bx.length; p++) {
        xs[q * bx.length + p] = this.ox + bx[p];
        ys[q * bx.length + p] = this.oy + by[q];
      }
    }
    this.exact(xs, ys, xs.length);
    this.exactCount += xs.length;
    for (let k = 0; k < xs.length; k++)
      this.cache.set(by[Math.floor(k / bx.length)] * (this.nx + 1) + bx[k % bx.length], [xs[k], ys[k]]);
    this.cellsY = by;
    this.cellsAcross = bx.length - 1;
    for (let q = 0; q + 1 < by.length; q++) {
      for (let p = 0; p + 1 < bx.length; p++) {
        const cell = this.cell(bx[p], bx[p + 1], by[q], by[q + 1]);
        this.refine(cell);
        this.cells.push(cell);
      }
    }
  }

  /** A cell with the exact transforms of its 3 x 3 nodes. */
  private cell(a: number, b: number, c: number, d: number): Cell {
    const m = b - a >= 2 ? (a + b) >> 1 : a;
    const n = d - c >= 2 ? (c + d) >> 1 : c;
    const u = new Float64Array(9);
    const v = new Float64Array(9);
    const xsNodes = [a, m, b];
    const ysNodes = [c, n, d];
    for (let r = 0; r < 3; r++) {
      for (let k = 0; k < 3; k++) {
        const [pu, pv] = this.point(xsNodes[k], ysNodes[r]);
        u[r * 3 + k] = pu;
        v[r * 3 + k] = pv;
      }
    }
    return { a, b, c, d, m, n, u, v };
  }

  /** Biquadratic interpolation of the cell's nodes at (i, j), into out[0], out[1]. */
  private interpolate(cell: Cell, i: number, j: number, out: Float64Array): void {
    const { a, b, c, d, m, n, u, v } = cell;
    const u0 = quad(j, c, n, d, u[0], u[3], u[6]);
    const u1 = quad(j, c, n, d, u[1], u[4], u[7]);
    const u2 = quad(j, c, n, d, u[2], u[5], u[8]);
    const v0 = quad(j, c, n, d, v[0], v[3], v[6]);
    const v1 = quad(j, c, n, d, v[1], v[4], v[7]);
    const v2 = quad(j, c, n, d, v[2], v[5], v[8]);
    out[0] = quad(i, a, m, b, u0, u1, u2);
    out[1] = quad(i, a, m, b, v0, v1, v2);
  }

  /** Accept the cell when interpolation meets the exact transform at its quarter points, else split it in four. */
  private refine(cell: Cell): void {
    const { a, b, c, d, m, n, u } = cell;
    if (b - a < 2 && d - c < 2) return; // every position is a node
    const qx = [(a + m) >> 1, (m + b) >> 1];
    const qy = [(c + n) >> 1, (n + d) >> 1];
    const p = this.guess;
    let err = 0;
    let allNaN = u.every(Number.isNaN);
    for (const j of qy) {
      for (const i of qx) {
        const [eu, ev] = this.point(i, j);
        allNaN &&= Number.isNaN(eu);
        this.interpolate(cell, i, j, p);
        const e = Math.abs(p[0] - eu) + Math.abs(p[1] - ev);
        // NaN anywhere fails the test: the cell is split until its positions are all nodes
        err = e > err || Number.isNaN(e) ? e : err;
      }
    }
    if (err <= this.maxErrorPx) return;
    if (allNaN) {
      cell.empty = true;
      return;
    }
    if (b - a <= EXACT_CELL_PX && d - c <= EXACT_CELL_PX) {
      cell.exact = true;
      return;
    }
    const xsplit = m > a ? [a, m, b] : [a, b];
    const ysplit = n > c ? [c, n, d] : [c, d];
    const kids: Cell[] = [];
    for (let r = 0; r + 1 < ysplit.length; r++) {
      for (let k = 0; k + 1 < xsplit.length; k++)
        kids.push(this.cell(xsplit[k], xsplit[k + 1], ysplit[r], ysplit[r + 1]));
    }
    cell.kids = kids;
    for (const kid of kids) this.refine(kid);
  }

  /**
   * Row `j` when the mapping is affine: out = [u0, du, v0, dv], and `row` gives u0 + du * i and v0 + dv * i (those
   * very expressions) at position i. False when rows are computed another way.
   */
  linearRow(j: number, out: Float64Array): boolean {
    const af = this.affine;
    if (!af || this.allExact) return false;
    out[0] = af[0] + af[2] * j;
    out[1] = af[1];
    out[2] = af[3] + af[5] * j;
    out[3] = af[4];
    return true;
  }

  /** Source coordinates of lattice row `j` (0 <= j < ny) into outU[0..nx), outV[0..nx). */
  row(j: number, outU: Float64Array, outV: Float64Array): void {
    const nx = this.nx;
    if (this.allExact) {
      const xs = this.xsRow;
      const ys = this.ysRow;
      for (let i = 0; i < nx; i++) {
        xs[i] = this.ox + i;
        ys[i] = this.oy + j;
      }
      this.exact(xs, ys, nx);
      this.exactCount += nx;
      outU.set(xs);
      outV.set(ys);
      return;
    }
    const af = this.affine;
    if (af) {
      const u0 = af[0] + af[2] * j;
      const v0 = af[3] + af[5] * j;
      for (let i = 0; i < nx; i++) {
        outU[i] = u0 + af[1] * i;
        outV[i] = v0 + af[4] * i;
      }
      return;
    }
    const cy = this.cellsY;
    let q = 0;
    while (q + 2 < cy.length && j > cy[q + 1]) q++;
    const across = this.cellsAcross;
    for (let p = 0; p < across; p++) this.fill(this.cells[q * across + p], j, outU, outV);
  }

  private fill(cell: Cell, j: number, outU: Float64Array, outV: Float64Array): void {
    const kids = cell.kids;
    if (kids) {
      // kids are row-major, one or two rows of one or two cells
      const across = cell.m > cell.a ? 2 : 1;
      const first = kids.length > across && j > kids[0].d ? across : 0;
      for (let k = first; k < first + across; k++) this.fill(kids[k], j, outU, outV);
      return;
    }
    const { a, b, c, d, m, n, u, v } = cell;
    if (cell.empty) {
      for (let i = a; i <= b; i++) {
        outU[i] = Number.NaN;
        outV[i] = Number.NaN;
      }
      return;
    }
    if (cell.exact) {
      const xs = this.xsRow;
      const ys = this.ysRow;
      const len = b - a + 1;
      for (let k = 0; k < len; k++) {
        xs[k] = this.ox + a + k;
        ys[k] = this.oy + j;
      }
      this.exact(xs, ys, len);
      this.exactCount += len;
      for (let k = 0; k < len; k++) {
        outU[a + k] = xs[k];
        outV[a + k] = ys[k];
      }
      return;
    }
    // the three column values at row j (exact on the node rows), then a quadratic along the row
    let ua: number;
    let um: number;
    let ub: number;
    let va: number;
    let vm: number;
    let vb: number;
    const r = j === c ? 0 : j === d ? 6 : j === n ? 3 : -1;
    if (r >= 0) {
      ua = u[r];
      um = u[r + 1];
      ub = u[r + 2];
      va = v[r];
      vm = v[r + 1];
      vb = v[r + 2];
    } else {
      ua = quad(j, c, n, d, u[0], u[3], u[6]);
      um = quad(j, c, n, d, u[1], u[4], u[7]);
      ub = quad(j, c, n, d, u[2], u[5], u[8]);
      va = quad(j, c, n, d, v[0], v[3], v[6]);
      vm = quad(j, c, n, d, v[1], v[4], v[7]);
      vb = quad(j, c, n, d, v[2], v[5], v[8]);
    }
    outU[a] = ua;
    outV[a] = va;
    if (b === a) return;
    if (m === a) {
      // too thin for a mid column: every position is a node column
      outU[b] = ub;
      outV[b] = vb;
      return;
    }
    // Newton form: f(i) = fa + t * (d1 + (t - (m - a)) * d2), t = i - a
    const h1 = m - a;
    const h2 = b - m;
    const du1 = (um - ua) / h1;
    const dv1 = (vm - va) / h1;
    const du2 = ((ub - um) / h2 - du1) / (b - a);
    const dv2 = ((vb - vm) / h2 - dv1) / (b - a);
    for (let i = a + 1; i < b; i++) {
      const t = i - a;
      const s = t - h1;
      outU[i] = ua + t * (du1 + s * du2);
      outV[i] = va + t * (dv1 + s * dv2);
    }
    outU[m] = um;
    outV[m] = vm;
    outU[b] = ub;
    outV[b] = vb;
  }
}
