/**
 * Statistics of a mosaic (or of a WGS 84 bbox of it): min, max, mean, standard deviation, percentiles and a
 * histogram per band or per expression output. Computed on a sampling grid in the mosaic's native CRS whose
 * longest side is at most `sampleSize` pixels, so the engine reads the source overview that matches (GDAL's
 * "approximate statistics"); a small mosaic is sampled at full resolution. Nearest resampling keeps the values
 * real data values. Results are cached per mosaic etag and request.
 */
import { LRUCache } from 'lru-cache';
import { crsFromEpsg } from './crs.ts';
import type { Engine } from './engine.ts';
import { RenderError } from './errors.ts';
import type { Mosaic } from './mosaic.ts';
import type { Expression } from './style.expression.ts';
import { styleValues } from './style.ts';
import { transformBounds } from './transform.ts';
import { type Bounds, type Grid, gridBounds } from './types.ts';

/** Percentiles reported for every band (and used for the default stretch: 2nd to 98th). */
export const STATISTICS_PERCENTILES = [1, 2, 5, 25, 50, 75, 95, 98, 99] as const;
export const DEFAULT_HISTOGRAM_BINS = 20;
export const MAX_HISTOGRAM_BINS = 1000;
/** histogram bins of one answer, all bands together (bands x bins): 413 above it (ask for fewer bands) */
export const MAX_HISTOGRAM_CELLS = 65_536;
/** values sorted or counted between two yields to the event loop */
export const YIELD_EVERY = 1 << 18;
export const DEFAULT_STATISTICS_SAMPLE_SIZE = 1024;

export interface Histogram {
  /** `bins` counts; bin i holds values in [edges[i], edges[i + 1]) and the last bin includes its upper edge */
  readonly counts: number[];
  readonly edges: number[];
}

export interface BandStatistics {
  readonly band: string;
  /** valid samples */
  readonly count: number;
  /** percentage of the sampling grid that is valid */
  readonly validPercent: number;
  readonly min: number | null;
  readonly max: number | null;
  readonly mean: number | null;
  /** population standard deviation */
  readonly std: number | null;
  /** `p2`, `p98`, ... (linear interpolation between closest ranks, as numpy's default) */
  readonly percentiles: Record<string, number | null>;
  readonly histogram: Histogram;
}

export interface MosaicStatistics {
  /** the WGS 84 bbox asked for, or null for the whole mosaic */
  readonly bbox: Bounds | null;
  /** the sampling grid: size, pixel size in the native CRS, and the decimation against the mosaic's pixels */
  readonly sample: {
    readonly width: number;
    readonly height: number;
    readonly resolution: [number, number];
    readonly decimation: number;
  };
  readonly bands: BandStatistics[];
}

export interface StatisticsRequest {
  readonly bboxWgs84?: Bounds;
  readonly bins?: number;
  /** 1-based mosaic bands (default: all); ignored with an expression */
  readonly bands?: readonly number[];
  readonly expression?: Expression;
  /** extra nodata value masked before statistics (see styleValues) */
  readonly nodata?: number;
  readonly signal?: AbortSignal;
}

/**
 * The sampling grid: the mosaic's native grid restricted to `boundsNative` (snapped outwards to its pixels) and
 * decimated so that the longest side is at most `sampleSize` and the area at most `maxPixels`.
 */
export function statisticsGrid(
  grid: Grid,
  boundsNative: Bounds | undefined,
  sampleSize: number,
  maxPixels: number,
): { grid: Grid; decimation: number } {
  const gt = grid.transform;
  const resX = gt[1];
  const resY = -gt[5];
  let c0 = 0;
  let r0 = 0;
  let c1 = grid.width;
  let r1 = grid.height;
  if (boundsNative) {
    c0 = Math.max(0, Math.floor((boundsNative[0] - gt[0]) / resX + 1e-9));
    c1 = Math.min(grid.width, Math.ceil((boundsNative[2] - gt[0]) / resX - 1e-9));
    r0 = Math.max(0, Math.floor((gt[3] - boundsNative[3]) / resY + 1e-9));
    r1 = Math.min(grid.height, Math.ceil((gt[3] - boundsNative[1]) / resY - 1e-9));
    if (c1 <= c0 || r1 <= r0)
      throw new RenderError('bad-request', 'bbox does not overlap the mosaic; GET /mosaics/{id} gives its boundsWgs84');
  }
  const w0 = c1 - c0;
  const h0 = r1 - r0;
  const decimation = Math.max(1, Math.max(w0, h0) / sampleSize, Math.sqrt((w0 * h0) / maxPixels));
  const width = Math.max(1, Math.round(w0 / decimation));
  const height = Math.max(1, Math.round(h0 / decimation));
  const x0 = gt[0] + c0 * resX;
  const y0 = gt[3] - r0 * resY;
  return {
    grid: { crs: grid.crs, transform: [x0, (w0 * resX) / width, 0, y0, 0, -(h0 * resY) / height], width, height },
    decimation,
  };
}

function percentile(sorted: Float64Array, p: number): number {
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

/** Statistics of the valid values of one band. */
export function bandStatistics(
  name: string,
  values: ArrayLike<number>,
  mask: Uint8Array,
  bins: number,
): BandStatistics {
  const { sorted, sum } = validValues(values, mask);
  sorted.sort();
  return summarise(name, sorted, sum, mask.length, bins);
}

/**
 * The same as `bandStatistics`, computed in slices with a yield to the event loop between them (a sort of a
 * million values takes ~100 ms: done at once it would stall every other request for that long).
 */
export async function bandStatisticsYielding(
  name: string,
  values: ArrayLike<number>,
  mask: Uint8Array,
  bins: number,
): Promise<BandStatistics> {
  const n = mask.length;
  let count = 0;
  await sliced(n, (from, to) => {
    for (let i = from; i < to; i++) if (mask[i]) count++;
  });
  const sorted = new Float64Array(count);
  let k = 0;
  let sum = 0;
  await sliced(n, (from, to) => {
    for (let i = from; i < to; i++) {
      if (!mask[i]) continue;
      const v = values[i];
      sorted[k++] = v;
      sum += v;
    }
  });
  await sortYielding(sorted);
  if (count === 0) return summarise(name, sorted, sum, n, bins);
  const mean = sum / count;
  let ss = 0;
  await sliced(count, (from, to) => {
    for (let i = from; i < to; i++) ss += (sorted[i] - mean) ** 2;
  });
  const min = sorted[0];
  const max = sorted[count - 1];
  const counts = new Array<number>(bins).fill(0);
  const width = max > min ? (max - min) / bins : 1;
  await sliced(count, (from, to) => {
    for (let i = from; i < to; i++) {
      let b = Math.floor((sorted[i] - min) / width);
      if (b >= bins) b = bins - 1;
      counts[b]++;
    }
  });
  return summarise(name, sorted, sum, n, bins, { ss, counts });
}

/** Run `step` over [0, n) in slices of YIELD_EVERY, yielding to the event loop between them. */
async function sliced(n: number, step: (from: number, to: number) => void): Promise<void> {
  for (let from = 0; from < n; from += YIELD_EVERY) {
    step(from, Math.min(n, from + YIELD_EVERY));
    if (from + YIELD_EVERY < n) await yieldNow();
  }
}

const yieldNow = () => new Promise<void>((r) => setImmediate(r));

/**
 * Sort ascending: sorted runs of YIELD_EVERY / 8 values, then merged pairwise, yielding to the event loop after
 * every YIELD_EVERY values sorted or moved (a merge of two long runs is itself cut into slices, so no slice
 * moves more than that however long the array). `onSlice`, when given, hears how many values each slice handled.
 */
export async function sortYielding(a: Float64Array, onSlice?: (values: number) => void): Promise<void> {
  const run = YIELD_EVERY >> 3;
  if (a.length <= run) {
    a.sort();
    onSlice?.(a.length);
    return;
  }
  let done = 0;
  const slice = async () => {
    onSlice?.(done);
    done = 0;
    await yieldNow();
  };
  for (let i = 0; i < a.length; i += run) {
    const sub = a.subarray(i, Math.min(a.length, i + run));
    sub.sort();
    done += sub.length;
    if (done >= YIELD_EVERY) await slice();
  }
  let src: Float64Array = a;
  let dst: Float64Array = new Float64Array(a.length);
  for (let width = run; width < a.length; width *= 2) {
    for (let lo = 0; lo < a.length; lo += 2 * width) {
      const mid = Math.min(a.length, lo + width);
      const hi = Math.min(a.length, lo + 2 * width);
      let i = lo;
      let j = mid;
      let k = lo;
      while (k < hi) {
        const stop = Math.min(hi, k + (YIELD_EVERY - done));
        const from = k;
        while (k < stop && i < mid && j < hi) dst[k++] = src[i] <= src[j] ? src[i++] : src[j++];
        while (k < stop && i < mid) dst[k++] = src[i++];
        while (k < stop && j < hi) dst[k++] = src[j++];
        done += k - from;
        if (done >= YIELD_EVERY) await slice();
      }
    }
    [src, dst] = [dst, src];
  }
  if (src !== a) a.set(src);
  onSlice?.(done);
}

function validValues(values: ArrayLike<number>, mask: Uint8Array): { sorted: Float64Array; sum: number } {
  const n = mask.length;
  let count = 0;
  for (let i = 0; i < n; i++) if (mask[i]) count++;
  const sorted = new Float64Array(count);
  let k = 0;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    if (!mask[i]) continue;
    const v = values[i];
    sorted[k++] = v;
    sum += v;
  }
  return { sorted, sum };
}

function summarise(
  name: string,
  sorted: Float64Array,
  sum: number,
  n: number,
  bins: number,
  done?: { ss: number; counts: number[] },
): BandStatistics {
  const count = sorted.length;
  const validPercent = n ? Math.round((count / n) * 10000) / 100 : 0;
  if (count === 0) {
    const none: Record<string, null> = {};
    for (const p of STATISTICS_PERCENTILES) none[`p${p}`] = null;
    return {
      band: name,
      count,
      validPercent,
      min: null,
      max: null,
      mean: null,
      std: null,
      percentiles: none,
      histogram: { counts: [], edges: [] },
    };
  }
  const mean = sum / count;
  const min = sorted[0];
  const max = sorted[count - 1];
  let ss = done?.ss ?? 0;
  let counts = done?.counts;
  if (!done) {
    for (let i = 0; i < count; i++) ss += (sorted[i] - mean) ** 2;
    counts = new Array<number>(bins).fill(0);
    const width = max > min ? (max - min) / bins : 1;
    for (let i = 0; i < count; i++) {
      let b = Math.floor((sorted[i] - min) / width);
      if (b >= bins) b = bins - 1;
      counts[b]++;
    }
  }
  const percentiles: Record<string, number> = {};
  for (const p of STATISTICS_PERCENTILES) percentiles[`p${p}`] = percentile(sorted, p);
  const edges = Array.from({ length: bins + 1 }, (_, i) =>
    max > min ? min + ((max - min) * i) / bins : min + i / bins,
  );
  return {
    band: name,
    count,
    validPercent,
    min,
    max,
    mean,
    std: Math.sqrt(ss / count),
    percentiles,
    histogram: { counts: counts ?? [], edges },
  };
}

export interface StatisticsSettings {
  /** longest side of the sampling grid */
  readonly sampleSize: number;
  /** largest sampling grid, in pixels */
  readonly maxPixels: number;
  /** cached results */
  readonly maxEntries: number;
}

/** Computes and caches statistics; one per app, built by whoever owns the engine. */
export class StatisticsService {
  private readonly engine: Pick<Engine, 'render'>;
  private readonly settings: StatisticsSettings;
  private readonly cache: LRUCache<string, Promise<MosaicStatistics>>;

  constructor(engine: Pick<Engine, 'render'>, settings: Partial<StatisticsSettings> = {}) {
    this.engine = engine;
    this.settings = {
      sampleSize: DEFAULT_STATISTICS_SAMPLE_SIZE,
      maxPixels: 2048 * 2048,
      maxEntries: 1000,
      ...settings,
    };
    this.cache = new LRUCache({ max: this.settings.maxEntries });
  }

  /** Statistics of a mosaic; identical concurrent requests share one computation; failures are not cached. */
  get(mosaic: Mosaic, req: StatisticsRequest = {}): Promise<MosaicStatistics> {
    const bins = req.bins ?? DEFAULT_HISTOGRAM_BINS;
    if (!Number.isInteger(bins) || bins < 1 || bins > MAX_HISTOGRAM_BINS) {
      throw new RenderError('bad-request', `bins must be an integer between 1 and ${MAX_HISTOGRAM_BINS} (got ${bins})`);
    }
    const bands = req.expression ? req.expression.bands : (req.bands ?? mosaic.bandNames.map((_, i) => i + 1));
    const outputs = req.expression ? req.expression.outputs.length : bands.length;
    if (outputs * bins > MAX_HISTOGRAM_CELLS) {
      throw new RenderError(
        'too-large',
        `statistics of ${outputs} bands x ${bins} bins is more than ${MAX_HISTOGRAM_CELLS} histogram bins; ask for fewer bands (bands=1,2,...) or fewer bins`,
      );
    }
    const key = [
      mosaic.id,
      mosaic.etag,
      req.bboxWgs84?.join(',') ?? '',
      bins,
      req.expression ? `e:${req.expression.canonical}` : `b:${bands.join(',')}`,
      req.nodata ?? '',
    ].join('|');
    const hit = this.cache.get(key);
    if (hit) return hit;
    const p = this.compute(mosaic, bands, bins, req);
    this.cache.set(key, p);
    p.catch(() => {
      if (this.cache.get(key) === p) this.cache.delete(key);
    });
    return p;
  }

  private async compute(
    mosaic: Mosaic,
    bands: readonly number[],
    bins: number,
    req: StatisticsRequest,
  ): Promise<MosaicStatistics> {
    let boundsNative: Bounds | undefined;
    if (req.bboxWgs84) {
      const b = req.bboxWgs84;
      if (!b.every(Number.isFinite) || b[0] >= b[2] || b[1] >= b[3]) {
        throw new RenderError(
          'bad-request',
          `bbox ${b.join(',')} must be minx,miny,maxx,maxy in WGS 84 degrees with min < max`,
        );
      }
      boundsNative = transformBounds(b, crsFromEpsg(4326), mosaic.grid.crs);
      const mb = gridBounds(mosaic.grid);
      if (
        boundsNative[0] >= mb[2] ||
        boundsNative[2] <= mb[0] ||
        boundsNative[1] >= mb[3] ||
        boundsNative[3] <= mb[1]
      ) {
        throw new RenderError(
          'bad-request',
          `bbox ${b.join(',')} does not overlap the mosaic (its WGS 84 bounds are ${mosaic.boundsWgs84.map((v) => v.toFixed(6)).join(',')})`,
        );
      }
    }
    // every band read costs the sampling grid's pixels: the grid shrinks as the bands grow, so one request reads
    // at most maxPixels x 4 samples whatever the band count
    const { grid, decimation } = statisticsGrid(
      mosaic.grid,
      boundsNative,
      this.settings.sampleSize,
      Math.max(1, Math.min(this.settings.maxPixels, (this.settings.maxPixels * 4) / Math.max(1, bands.length))),
    );
    const pixels = await this.engine.render(mosaic, grid, {
      resampling: 'nearest',
      bands: bands.map((b) => b - 1),
      signal: req.signal,
    });
    const values = styleValues(pixels, { expression: req.expression, nodata: req.nodata });
    const names = req.expression
      ? values.bands.map((_, i) => (values.bands.length === 1 ? 'expression' : `expression${i + 1}`))
      : bands.map((b) => mosaic.bandNames[b - 1]);
    return {
      bbox: req.bboxWgs84 ?? null,
      sample: {
        width: grid.width,
        height: grid.height,
        resolution: [grid.transform[1], -grid.transform[5]],
        decimation: Math.round(decimation * 1000) / 1000,
      },
      bands: await statisticsOfBands(names, values.bands, values.mask, bins),
    };
  }
}

async function statisticsOfBands(
  names: readonly string[],
  bands: readonly ArrayLike<number>[],
  mask: Uint8Array,
  bins: number,
): Promise<BandStatistics[]> {
  const out: BandStatistics[] = [];
  for (let i = 0; i < bands.length; i++) out.push(await bandStatisticsYielding(names[i], bands[i], mask, bins));
  return out;
}
