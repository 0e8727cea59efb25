import { histogram8Native } from '../render/deflate.ts';
import type { Mosaic } from '../render/mosaic.ts';
import type { StatisticsService } from '../render/statistics.ts';

/**
 * Band statistics as GDAL keeps them in the GDAL_METADATA tag (STATISTICS_MINIMUM/MAXIMUM/MEAN/STDDEV/
 * VALID_PERCENT per band), accumulated tile by tile. The XML is padded to a length fixed in advance, because the
 * COG header's size must be known before the statistics are.
 */

export interface BandAccumulator {
  count: number;
  sum: number;
  sumSq: number;
  min: number;
  max: number;
}

export function newAccumulators(bands: number): BandAccumulator[] {
  return Array.from({ length: bands }, () => ({
    count: 0,
    sum: 0,
    sumSq: 0,
    min: Number.POSITIVE_INFINITY,
    max: Number.NEGATIVE_INFINITY,
  }));
}

/** Add the valid pixels of one tile (mask 255 = valid; `validCount` of them, as the tile's renderer counted). */
export function accumulate(
  acc: BandAccumulator[],
  bands: ArrayLike<number>[],
  mask: Uint8Array,
  validCount: number,
): void {
  for (let b = 0; b < bands.length; b++) accumulateSamples(acc[b], bands[b], 0, 1, mask, validCount);
}

/** `accumulate` for a tile given pixel-interleaved (`bands` samples per pixel). */
export function accumulateInterleaved(
  acc: BandAccumulator[],
  samples: ArrayLike<number>,
  bands: number,
  mask: Uint8Array,
  validCount: number,
): void {
  if (samples instanceof Uint8Array && bands > 1 && bands <= 4 && validCount === mask.length) {
    // every pixel valid (the common case): one pass over the samples, a histogram per band side by side
    const h = countsFor(bands * 256);
    countBytes(h, samples, bands);
    for (let b = 0; b < bands; b++) sumCounts(acc[b], h, b << 8, 256, 0);
    return;
  }
  for (let b = 0; b < bands; b++) accumulateSamples(acc[b], samples, b, bands, mask, validCount);
}

/**
 * All-valid pixel-interleaved 8-bit samples (1-4 bands) given with predictor 2 still applied, in rows of
 * `rowPixels` pixels: counted as their values, without undoing the predictor in the bytes (a tile compressed from
 * those bytes then never needs its samples). False, having done nothing, where the addon cannot (the caller reads
 * the samples instead).
 */
export function accumulatePredicted8(
  acc: BandAccumulator[],
  predicted: Uint8Array,
  bands: number,
  rowPixels: number,
): boolean {
  if (bands < 1 || bands > 4) return false;
  const h = countsFor(bands * 256);
  if (!histogram8Native(predicted, bands, h, rowPixels)) return false;
  for (let b = 0; b < bands; b++) sumCounts(acc[b], h, b << 8, 256, 0);
  return true;
}

/** One band's samples: data[start], data[start + stride], ... for the pixels of `mask`. */
function accumulateSamples(
  a: BandAccumulator,
  data: ArrayLike<number>,
  start: number,
  stride: number,
  mask: Uint8Array,
  validCount: number,
): void {
  const all = validCount === mask.length;
  if (data instanceof Uint8Array || data instanceof Uint16Array)
    accumulateByCounts(a, data, start, stride, mask, all, 0);
  else if (data instanceof Int8Array) accumulateByCounts(a, data, start, stride, mask, all, 128);
  else if (data instanceof Int16Array) accumulateByCounts(a, data, start, stride, mask, all, 32768);
  else accumulateBand(a, data, start, stride, mask);
}

/** Counts per value of this thread's 8- and 16-bit tiles (zeroed again after each use). */
let valueCounts = new Uint32Array(0);

/**
 * 8- and 16-bit integers: one count per pixel, then the sums from the counts. Exact (a tile's sum of squares
 * stays below 2^53) and 1.3-4x cheaper than four floating point chains per pixel (bench: 512 x 512 tiles).
 */
function accumulateByCounts(
  a: BandAccumulator,
  data: Uint8Array | Uint16Array | Int8Array | Int16Array,
  start: number,
  stride: number,
  mask: Uint8Array,
  all: boolean,
  offset: number,
): void {
  const size = data instanceof Uint8Array || data instanceof Int8Array ? 256 : 65536;
  const h = countsFor(size);
  const n = mask.length;
  if (stride === 1 && all && offset === 0 && size === 256) countBytes(h, (data as Uint8Array).subarray(0, n), 1);
  else if (stride === 1) {
    if (all) for (let i = 0; i < n; i++) h[data[i] + offset]++;
    else for (let i = 0; i < n; i++) if (mask[i] !== 0) h[data[i] + offset]++;
  } else if (all) {
    for (let i = 0, s = start; i < n; i++, s += stride) h[data[s] + offset]++;
  } else {
    for (let i = 0, s = start; i < n; i++, s += stride) if (mask[i] !== 0) h[data[s] + offset]++;
  }
  sumCounts(a, h, 0, size, offset);
}

/** This thread's zeroed counts, at least `size` long and room for countBytes's four tables of one band. */
function countsFor(size: number): Uint32Array {
  const want = Math.max(size, 1024);
  if (valueCounts.length < want) valueCounts = new Uint32Array(want);
  return valueCounts;
}

/**
 * The counts per band of all-valid pixel-interleaved 8-bit samples (1-4 bands) into h[band * 256 + value] (h zero,
 * as countsFor gives it): in C where the addon is built. Without it one band is counted into four tables by pixel
 * position, added up at the end, so that a run of one value (categorical data) does not make each increment wait
 * for the one before it (64M land-cover pixels: 77 -> 44 ms; noise 48 -> 41 ms); pixels of several bands already
 * alternate between tables.
 */
function countBytes(h: Uint32Array, samples: Uint8Array, bands: number): void {
  if (histogram8Native(samples, bands, h)) return;
  const n = samples.length;
  if (bands === 1) {
    const m = n & ~3;
    let i = 0;
    for (; i < m; i += 4) {
      h[samples[i]]++;
      h[256 + samples[i + 1]]++;
      h[512 + samples[i + 2]]++;
      h[768 + samples[i + 3]]++;
    }
    for (; i < n; i++) h[samples[i]]++;
    for (let k = 0; k < 256; k++) {
      h[k] += h[256 + k] + h[512 + k] + h[768 + k];
      h[256 + k] = 0;
      h[512 + k] = 0;
      h[768 + k] = 0;
    }
  } else if (bands === 3) {
    for (let i = 0; i < n; i += 3) {
      h[samples[i]]++;
      h[256 + samples[i + 1]]++;
      h[512 + samples[i + 2]]++;
    }
  } else {
    for (let i = 0; i < n; i += bands) for (let b = 0; b < bands; b++) h[(b << 8) + samples[i + b]]++;
  }
}

/** Add the counts h[at .. at + size) (value k - offset at at + k) to `a`, and zero them. */
function sumCounts(a: BandAccumulator, h: Uint32Array, at: number, size: number, offset: number): void {
  let count = 0;
  let sum = 0;
  let sumSq = 0;
  let min = a.min;
  let max = a.max;
  for (let k = 0; k < size; k++) {
    const c = h[at + k];
    if (c === 0) continue;
    h[at + k] = 0;
    const v = k - offset;
    count += c;
    sum += c * v;
    sumSq += c * v * v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  a.count += count;
  a.sum += sum;
  a.sumSq += sumSq;
  a.min = min;
  a.max = max;
}

function accumulateBand(
  a: BandAccumulator,
  data: ArrayLike<number>,
  start: number,
  stride: number,
  mask: Uint8Array,
): void {
  let count = a.count;
  let sum = a.sum;
  let sumSq = a.sumSq;
  let min = a.min;
  let max = a.max;
  const n = mask.length;
  for (let i = 0, s = start; i < n; i++, s += stride) {
    if (mask[i] === 0) continue;
    const v = data[s];
    if (Number.isNaN(v)) continue;
    count++;
    sum += v;
    sumSq += v * v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  a.count = count;
  a.sum = sum;
  a.sumSq = sumSq;
  a.min = min;
  a.max = max;
}

export function merge(into: BandAccumulator[], from: readonly BandAccumulator[]): void {
  for (let b = 0; b < into.length; b++) {
    const a = into[b];
    const f = from[b];
    a.count += f.count;
    a.sum += f.sum;
    a.sumSq += f.sumSq;
    a.min = Math.min(a.min, f.min);
    a.max = Math.max(a.max, f.max);
  }
}

/** Bytes reserved for the GDAL_METADATA document of `bands` bands. */
export function statisticsXmlBytes(bands: number): number {
  return 64 + bands * 420;
}

function num(v: number): string {
  return Number.isFinite(v) ? String(Number(v.toPrecision(17))) : '0';
}

/** The GDAL_METADATA document, padded with spaces to exactly statisticsXmlBytes(bands) (ASCII). */
export function statisticsXml(acc: readonly BandAccumulator[], totalPixels: number): string {
  const items: string[] = [];
  acc.forEach((a, b) => {
    if (a.count === 0) return;
    const mean = a.sum / a.count;
    const std = Math.sqrt(Math.max(0, a.sumSq / a.count - mean * mean));
    const pct = totalPixels > 0 ? (100 * a.count) / totalPixels : 0;
    items.push(
      `<Item name="STATISTICS_MAXIMUM" sample="${b}">${num(a.max)}</Item>`,
      `<Item name="STATISTICS_MEAN" sample="${b}">${num(mean)}</Item>`,
      `<Item name="STATISTICS_MINIMUM" sample="${b}">${num(a.min)}</Item>`,
      `<Item name="STATISTICS_STDDEV" sample="${b}">${num(std)}</Item>`,
      `<Item name="STATISTICS_VALID_PERCENT" sample="${b}">${num(Number(pct.toFixed(4)))}</Item>`,
    );
  });
  const xml = `<GDALMetadata>\n${items.map((i) => `  ${i}\n`).join('')}</GDALMetadata>\n`;
  const size = statisticsXmlBytes(acc.length);
  if (xml.length > size) throw new RangeError('statistics document larger than reserved');
  return xml.padEnd(size, ' ');
}

/** Approximate statistics of one band (from a sample, as the tiles' stretch uses them) and its name. */
export interface BandSummary {
  readonly min: number | null;
  readonly max: number | null;
  readonly mean: number | null;
  readonly std: number | null;
  readonly validPercent: number;
  readonly description?: string;
}

/**
 * GDAL's band statistics items of a summary, in the order GDAL writes them: STATISTICS_APPROXIMATE=YES says they
 * come from a sample (GDAL and QGIS use them as they are, and recompute exact ones only when asked to).
 */
export function statisticsItems(b: BandSummary): [string, string][] {
  if (b.min === null || b.max === null || b.mean === null || b.std === null) return [];
  return [
    ['STATISTICS_APPROXIMATE', 'YES'],
    ['STATISTICS_MAXIMUM', num(b.max)],
    ['STATISTICS_MEAN', num(b.mean)],
    ['STATISTICS_MINIMUM', num(b.min)],
    ['STATISTICS_STDDEV', num(b.std)],
    ['STATISTICS_VALID_PERCENT', num(Number(b.validPercent.toFixed(4)))],
  ];
}

function xmlText(s: string): string {
  return s.replace(/[&<>"]/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[ch]!);
}

/** A GDAL_METADATA document (TIFF tag 42112) with every band's statistics items and description. */
export function gdalMetadataDocument(bands: readonly BandSummary[]): string {
  const items: string[] = [];
  bands.forEach((b, k) => {
    if (b.description)
      items.push(`<Item name="DESCRIPTION" sample="${k}" role="description">${xmlText(b.description)}</Item>`);
    for (const [name, value] of statisticsItems(b)) items.push(`<Item name="${name}" sample="${k}">${value}</Item>`);
  });
  return `<GDALMetadata>\n${items.map((i) => `  ${i}\n`).join('')}</GDALMetadata>\n`;
}

/**
 * Above this many sources (and for catalogue mosaics, whose items open per window), opening a virtual view does not
 * compute statistics: the sample would open every source. The views then carry the band names only.
 */
export const VIRTUAL_STATISTICS_MAX_SOURCES = 1000;

/**
 * The band summaries the virtual views carry (GDAL_METADATA in the virtual COG, `<Metadata>` in the VRT): the
 * statistics the tiles' default stretch comes from (same service, same sample), so QGIS's own defaults (min/max,
 * or a 2-98 % cumulative cut of a histogram over [min, max]) start from the same numbers.
 */
export async function mosaicBandSummaries(
  statistics: Pick<StatisticsService, 'get'>,
  mosaic: Mosaic,
): Promise<BandSummary[]> {
  if (mosaic.items !== undefined || mosaic.sources.length > VIRTUAL_STATISTICS_MAX_SOURCES) {
    return mosaic.bandNames.map((description) => ({
      min: null,
      max: null,
      mean: null,
      std: null,
      validPercent: 0,
      description,
    }));
  }
  const s = await statistics.get(mosaic);
  return s.bands.map((b, k) => ({
    min: b.min,
    max: b.max,
    mean: b.mean,
    std: b.std,
    validPercent: b.validPercent,
    description: mosaic.bandNames[k],
  }));
}
