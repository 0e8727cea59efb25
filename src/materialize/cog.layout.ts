/**
 * The byte layout of a Cloud Optimized GeoTIFF, exactly as GDAL's COG driver lays it out (pure: no IO).
 * Over 500 lines because the tag set, the header size and the header values must agree byte for byte: they are
 * built from one field list here rather than kept in step across files.
 *
 *   TIFF/BigTIFF header | ghost area | IFD full res, IFD overview 1..n (each followed by its out-of-line values)
 *   | TileOffsets/TileByteCounts arrays of every IFD | tiles: smallest overview first, full resolution last,
 *   row-major within a level, each `u32le(size) | payload | last 4 payload bytes` when leader/trailer is on.
 *
 * The header's size depends only on the spec (tag set and tile counts); its values only on the payload sizes in
 * file order. So tiles can be compressed and shipped first and the header built at the very end.
 */
import { crsFromEpsg, GEOTIFF_TAGS, geoKeysForCrs } from '../render/crs.ts';
import { roomAround } from '../render/deflate.ts';
import { CogmillError } from '../render/errors.ts';
import { bytesPerSample, DTYPES, type DType, type GeoTransform, isFloat } from '../render/types.ts';
import { formatGdalNodata, GEO_TAG, geoTransformTags } from './tiff.geo.ts';

export const COG_COMPRESSIONS = ['none', 'deflate', 'lzw', 'zstd', 'jpeg', 'webp'] as const;
export type CogCompression = (typeof COG_COMPRESSIONS)[number];
export type CogPredictor = 1 | 2 | 3;
export type CogPhotometric = 'minisblack' | 'rgb';

export const DEFAULT_COG_BLOCK_SIZE = 512;
/** GDAL keeps every IFD and the GeoTIFF/GDAL tags inside this many bytes so one read gets them all. */
export const COG_HEADER_READ_BYTES = 16 * 1024;
/** Largest byte offset a classic TIFF can address. */
export const CLASSIC_TIFF_MAX_OFFSET = 0xffffffff;

export interface CogSpec {
  readonly width: number;
  readonly height: number;
  readonly bands: number;
  readonly dtype: DType;
  /** Tile width and height in pixels, a multiple of 16. Default 512. */
  readonly blockSize?: number;
  readonly compression: CogCompression;
  /** 1 none, 2 horizontal differencing, 3 floating point. Only with deflate, lzw and zstd. */
  readonly predictor: CogPredictor;
  readonly transform: GeoTransform;
  readonly epsg: number;
  readonly geographic: boolean;
  readonly nodata?: number;
  /** A full `<GDALMetadata>...</GDALMetadata>` document (statistics, band descriptions), full resolution only. */
  readonly gdalMetadata?: string;
  /** Default: 'rgb' for 3 or 4 uint8 bands (as GDAL does), else 'minisblack'. 3-band JPEG is always YCbCr. */
  readonly photometric?: CogPhotometric;
  readonly ghost: { readonly leaderTrailer: boolean };
  /** Force BigTIFF on or off. Default: BigTIFF when the largest file this spec can produce passes 4 GiB. */
  readonly bigTiff?: boolean;
}

/** One resolution level. Level 0 is full resolution, level i is the i-th overview (each half the previous). */
export interface CogLevel {
  readonly level: number;
  readonly width: number;
  readonly height: number;
  readonly tilesX: number;
  readonly tilesY: number;
  readonly tileCount: number;
}

export interface CogLevelLayout extends CogLevel {
  /** File index of this level's tile (0, 0); its tiles follow row-major. */
  readonly fileIndexStart: number;
  /** Byte offset of this level's IFD. */
  readonly ifdOffset: number;
}

export interface CogTileRef {
  readonly level: number;
  readonly tx: number;
  readonly ty: number;
}

export const TIFF_TYPE = { byte: 1, ascii: 2, short: 3, long: 4, rational: 5, double: 12, long8: 16 } as const;
export type TiffType = (typeof TIFF_TYPE)[keyof typeof TIFF_TYPE];
const TIFF_TYPE_BYTES: Record<TiffType, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 12: 8, 16: 8 };

export const TIFF_TAG = {
  newSubfileType: 254,
  imageWidth: 256,
  imageLength: 257,
  bitsPerSample: 258,
  compression: 259,
  photometric: 262,
  samplesPerPixel: 277,
  planarConfiguration: 284,
  predictor: 317,
  tileWidth: 322,
  tileLength: 323,
  tileOffsets: 324,
  tileByteCounts: 325,
  extraSamples: 338,
  sampleFormat: 339,
  yCbCrSubsampling: 530,
  referenceBlackWhite: 532,
} as const;

/** TIFF Compression tag values; GDAL writes 8 (Adobe deflate) for DEFLATE. */
export const TIFF_COMPRESSION: Record<CogCompression, number> = {
  none: 1,
  lzw: 5,
  jpeg: 7,
  deflate: 8,
  zstd: 50000,
  webp: 50001,
};

export const TIFF_PHOTOMETRIC = { minisblack: 1, rgb: 2, ycbcr: 6 } as const;
export type TiffPhotometric = (typeof TIFF_PHOTOMETRIC)[keyof typeof TIFF_PHOTOMETRIC];

export type CogFieldValue =
  | { readonly kind: 'numbers'; readonly values: readonly number[] }
  | { readonly kind: 'bytes'; readonly bytes: Uint8Array }
  | { readonly kind: 'tileOffsets' }
  | { readonly kind: 'tileByteCounts' };

/** One IFD entry. Rational values are stored flattened as numerator, denominator pairs. */
export interface CogField {
  readonly tag: number;
  readonly type: TiffType;
  readonly count: number;
  readonly value: CogFieldValue;
  /** Byte offset of the out-of-line value, or -1 when the value sits inside the entry. */
  readonly valueOffset: number;
}

export interface CogIfd {
  readonly level: number;
  readonly offset: number;
  readonly fields: readonly CogField[];
}

export interface CogLayout {
  readonly spec: CogSpec;
  readonly blockSize: number;
  readonly bigTiff: boolean;
  readonly photometric: TiffPhotometric;
  /** Level 0 (full resolution) first. */
  readonly levels: readonly CogLevelLayout[];
  readonly tileCount: number;
  /** Bytes before the first tile: header, ghost area, IFDs and their values, tile offset/byte count arrays. */
  readonly headerBytes: number;
  /** End of the last IFD's values; the tile offset/byte count arrays start here. */
  readonly ifdBytesEnd: number;
  /** Bytes around each non-sparse payload: 8 with leader/trailer, else 0. */
  readonly tileFrameBytes: number;
  /** Bytes between a tile's start and its payload: 4 with leader/trailer, else 0. */
  readonly tileLeaderBytes: number;
  /** Size of one uncompressed, pixel-interleaved tile. */
  readonly rawTileBytes: number;
  /** The ghost area text (GDAL structural metadata), without its even-offset padding byte. */
  readonly ghost: string;
  readonly ifds: readonly CogIfd[];
  /** Position of tile (tx, ty) of `level` in file order. */
  tileIndexInFile(level: number, tx: number, ty: number): number;
  /** Inverse of `tileIndexInFile`. */
  tileAtFileIndex(index: number): CogTileRef;
}

/** A COG spec that cannot be laid out, or tile sizes that do not fit it. */
export class CogLayoutError extends CogmillError {
  override readonly name = 'CogLayoutError';
}

/** Resolution levels as GDAL's COG driver makes them: halve (floor) until both sides are <= the block size. */
export function cogLevels(width: number, height: number, blockSize: number): CogLevel[] {
  const levels: CogLevel[] = [];
  let w = width;
  let h = height;
  for (let level = 0; ; level++) {
    const tilesX = Math.ceil(w / blockSize);
    const tilesY = Math.ceil(h / blockSize);
    levels.push({ level, width: w, height: h, tilesX, tilesY, tileCount: tilesX * tilesY });
    if (w <= blockSize && h <= blockSize) break;
    w = Math.max(1, Math.floor(w / 2));
    h = Math.max(1, Math.floor(h / 2));
  }
  return levels;
}

/** Bytes of one uncompressed pixel-interleaved tile. */
export function rawTileBytes(spec: CogSpec): number {
  const bs = spec.blockSize ?? DEFAULT_COG_BLOCK_SIZE;
  return bs * bs * spec.bands * bytesPerSample(spec.dtype);
}

/** An upper bound for one tile's payload size (exact for 'none'). */
export function maxTilePayloadBytes(spec: CogSpec): number {
  const raw = rawTileBytes(spec);
  switch (spec.compression) {
    case 'none':
      return raw;
    case 'deflate':
    case 'zstd':
      return raw + Math.ceil(raw / 256) + 1024;
    default:
      return Math.ceil(raw * 1.5) + 1024;
  }
}

/** The ghost area GDAL writes after the TIFF header; declares only what the file really does. */
export function ghostArea(leaderTrailer: boolean): string {
  let body = 'LAYOUT=IFDS_BEFORE_DATA\nBLOCK_ORDER=ROW_MAJOR\n';
  if (leaderTrailer) body += 'BLOCK_LEADER=SIZE_AS_UINT4\nBLOCK_TRAILER=LAST_4_BYTES_REPEATED\n';
  // The trailing space leaves room for GDAL to flip the flag to YES in place.
  body += 'KNOWN_INCOMPATIBLE_EDITION=NO\n ';
  return `GDAL_STRUCTURAL_METADATA_SIZE=${String(body.length).padStart(6, '0')} bytes\n${body}`;
}

function specError(message: string): CogLayoutError {
  return new CogLayoutError('bad-request', `COG spec: ${message}`);
}

function isPositiveInt(n: number): boolean {
  return Number.isInteger(n) && n > 0;
}

function resolvePhotometric(spec: CogSpec): TiffPhotometric {
  if (spec.compression === 'jpeg' && spec.bands === 3) return TIFF_PHOTOMETRIC.ycbcr;
  const wanted =
    spec.photometric ?? (spec.dtype === 'uint8' && (spec.bands === 3 || spec.bands === 4) ? 'rgb' : 'minisblack');
  if (wanted === 'rgb' && spec.bands < 3)
    throw specError(`photometric 'rgb' needs at least 3 bands, got ${spec.bands}`);
  if (spec.compression === 'webp' && wanted !== 'rgb') throw specError("webp compression needs photometric 'rgb'");
  return wanted === 'rgb' ? TIFF_PHOTOMETRIC.rgb : TIFF_PHOTOMETRIC.minisblack;
}

function validateSpec(spec: CogSpec, blockSize: number): void {
  if (!isPositiveInt(spec.width) || !isPositiveInt(spec.height)) {
    throw specError(`width and height must be positive integers, got ${spec.width} x ${spec.height}`);
  }
  if (!isPositiveInt(spec.bands) || spec.bands > 65535) throw specError(`bands must be 1..65535, got ${spec.bands}`);
  if (!DTYPES.includes(spec.dtype)) throw specError(`unknown dtype '${spec.dtype}' (use one of ${DTYPES.join(', ')})`);
  if (!isPositiveInt(blockSize) || blockSize % 16 !== 0 || blockSize > 4096) {
    throw specError(`blockSize must be a multiple of 16 between 16 and 4096, got ${blockSize}`);
  }
  if (!COG_COMPRESSIONS.includes(spec.compression)) {
    throw specError(`unknown compression '${spec.compression}' (use one of ${COG_COMPRESSIONS.join(', ')})`);
  }
  if (spec.predictor !== 1 && spec.predictor !== 2 && spec.predictor !== 3) {
    throw specError(`predictor must be 1, 2 or 3, got ${spec.predictor}`);
  }
  const predictive = spec.compression === 'deflate' || spec.compression === 'lzw' || spec.compression === 'zstd';
  if (spec.predictor !== 1 && !predictive) {
    throw specError(`predictor ${spec.predictor} only works with deflate, lzw or zstd, not '${spec.compression}'`);
  }
  if (spec.predictor === 3 && !isFloat(spec.dtype)) {
    throw specError(`predictor 3 is the floating point predictor; use predictor 2 for ${spec.dtype}`);
  }
  if (spec.compression === 'jpeg' && (spec.dtype !== 'uint8' || (spec.bands !== 1 && spec.bands !== 3))) {
    throw specError(`jpeg compression needs uint8 data with 1 or 3 bands, got ${spec.bands} x ${spec.dtype}`);
  }
  if (spec.compression === 'webp' && (spec.dtype !== 'uint8' || spec.bands !== 3)) {
    throw specError(`webp compression needs uint8 data with 3 bands, got ${spec.bands} x ${spec.dtype}`);
  }
  if (spec.transform.length !== 6 || !spec.transform.every(Number.isFinite)) {
    throw specError('transform must be 6 finite numbers');
  }
  if (spec.transform[1] * spec.transform[5] - spec.transform[2] * spec.transform[4] === 0) {
    throw specError('transform is not invertible');
  }
  if (!isPositiveInt(spec.epsg) || spec.epsg > 65535) throw specError(`epsg must be an EPSG code, got ${spec.epsg}`);
  if (spec.gdalMetadata?.includes('\0')) throw specError('gdalMetadata must not contain NUL characters');
}

interface MutableField {
  tag: number;
  type: TiffType;
  count: number;
  value: CogFieldValue;
  valueOffset: number;
}

const textEncoder = new TextEncoder();

function asciiValue(text: string): { count: number; value: CogFieldValue } {
  const encoded = textEncoder.encode(text);
  const bytes = new Uint8Array(encoded.length + 1);
  bytes.set(encoded);
  return { count: bytes.length, value: { kind: 'bytes', bytes } };
}

function numbersField(tag: number, type: TiffType, values: readonly number[]): MutableField {
  const count = type === TIFF_TYPE.rational ? values.length / 2 : values.length;
  return { tag, type, count, value: { kind: 'numbers', values }, valueOffset: -1 };
}

function shortOrLong(n: number): TiffType {
  return n <= 0xffff ? TIFF_TYPE.short : TIFF_TYPE.long;
}

function sampleFormat(dtype: DType): number {
  if (isFloat(dtype)) return 3;
  return dtype.startsWith('int') ? 2 : 1;
}

/** Fields of one IFD, in tag order. */
function ifdFields(
  spec: CogSpec,
  level: CogLevel,
  blockSize: number,
  photometric: TiffPhotometric,
  bigTiff: boolean,
): MutableField[] {
  const T = TIFF_TAG;
  const bands = spec.bands;
  const fields: MutableField[] = [];
  if (level.level > 0) fields.push(numbersField(254, TIFF_TYPE.long, [1]));
  fields.push(numbersField(T.imageWidth, shortOrLong(level.width), [level.width]));
  fields.push(numbersField(T.imageLength, shortOrLong(level.height), [level.height]));
  fields.push(numbersField(T.bitsPerSample, TIFF_TYPE.short, new Array(bands).fill(bytesPerSample(spec.dtype) * 8)));
  fields.push(numbersField(T.compression, TIFF_TYPE.short, [TIFF_COMPRESSION[spec.compression]]));
  fields.push(numbersField(T.photometric, TIFF_TYPE.short, [photometric]));
  fields.push(numbersField(T.samplesPerPixel, TIFF_TYPE.short, [bands]));
  fields.push(numbersField(T.planarConfiguration, TIFF_TYPE.short, [1]));
  if (spec.compression === 'deflate' || spec.compression === 'lzw' || spec.compression === 'zstd') {
    fields.push(numbersField(T.predictor, TIFF_TYPE.short, [spec.predictor]));
  }
  fields.push(numbersField(T.tileWidth, shortOrLong(blockSize), [blockSize]));
  fields.push(numbersField(T.tileLength, shortOrLong(blockSize), [blockSize]));
  fields.push({
    tag: T.tileOffsets,
    type: bigTiff ? TIFF_TYPE.long8 : TIFF_TYPE.long,
    count: level.tileCount,
    value: { kind: 'tileOffsets' },
    valueOffset: -1,
  });
  fields.push({
    tag: T.tileByteCounts,
    type: maxTilePayloadBytes(spec) > 0xffffffff ? TIFF_TYPE.long8 : TIFF_TYPE.long,
    count: level.tileCount,
    value: { kind: 'tileByteCounts' },
    valueOffset: -1,
  });
  const colorSamples = photometric === TIFF_PHOTOMETRIC.minisblack ? 1 : 3;
  if (bands > colorSamples) {
    fields.push(numbersField(T.extraSamples, TIFF_TYPE.short, new Array(bands - colorSamples).fill(0)));
  }
  fields.push(numbersField(T.sampleFormat, TIFF_TYPE.short, new Array(bands).fill(sampleFormat(spec.dtype))));
  if (photometric === TIFF_PHOTOMETRIC.ycbcr) {
    // JPEG tiles are 4:2:0; libjpeg converts them back to RGB when GDAL reads.
    fields.push(numbersField(T.yCbCrSubsampling, TIFF_TYPE.short, [2, 2]));
    fields.push(
      numbersField(T.referenceBlackWhite, TIFF_TYPE.rational, [0, 1, 255, 1, 128, 1, 255, 1, 128, 1, 255, 1]),
    );
  }
  if (level.level === 0) {
    for (const t of geoTransformTags(spec.transform)) fields.push(numbersField(t.tag, TIFF_TYPE.double, t.values));
    const geoKeys = geoKeysForCrs(crsFromEpsg(spec.epsg));
    fields.push(numbersField(GEOTIFF_TAGS.geoKeyDirectory, TIFF_TYPE.short, geoKeys.directory));
    if (geoKeys.doubles.length > 0)
      fields.push(numbersField(GEOTIFF_TAGS.geoDoubleParams, TIFF_TYPE.double, geoKeys.doubles));
    if (geoKeys.ascii !== '') {
      fields.push({
        tag: GEOTIFF_TAGS.geoAsciiParams,
        type: TIFF_TYPE.ascii,
        ...asciiValue(geoKeys.ascii),
        valueOffset: -1,
      });
    }
    if (spec.gdalMetadata !== undefined) {
      fields.push({
        tag: GEO_TAG.gdalMetadata,
        type: TIFF_TYPE.ascii,
        ...asciiValue(spec.gdalMetadata),
        valueOffset: -1,
      });
    }
  }
  if (spec.nodata !== undefined) {
    fields.push({
      tag: GEO_TAG.gdalNodata,
      type: TIFF_TYPE.ascii,
      ...asciiValue(formatGdalNodata(spec.nodata)),
      valueOffset: -1,
    });
  }
  return fields.sort((a, b) => a.tag - b.tag);
}

/** libtiff writes baseline values first, then GDAL's private tags, then the GeoTIFF tags. */
function valueWriteRank(tag: number): number {
  if (tag < 32768) return 0;
  if (tag === GEO_TAG.gdalMetadata || tag === GEO_TAG.gdalNodata) return 1;
  return 2;
}

function fieldBytes(f: { type: TiffType; count: number }): number {
  return f.count * TIFF_TYPE_BYTES[f.type];
}

/** Plan the whole file structure of a COG from its spec alone. */
export function layoutCog(spec: CogSpec): CogLayout {
  const blockSize = spec.blockSize ?? DEFAULT_COG_BLOCK_SIZE;
  validateSpec(spec, blockSize);
  const bigTiff = spec.bigTiff ?? needsBigTiff(spec, maxTilePayloadBytes(spec) * totalTiles(spec, blockSize));
  if (!bigTiff && maxTilePayloadBytes(spec) > CLASSIC_TIFF_MAX_OFFSET) {
    throw specError('a tile of this size cannot be addressed in classic TIFF; use bigTiff: true');
  }
  const photometric = resolvePhotometric(spec);
  const levels = cogLevels(spec.width, spec.height, blockSize);
  const inlineBytes = bigTiff ? 8 : 4;
  const ghost = ghostArea(spec.ghost.leaderTrailer);

  let cursor = (bigTiff ? 16 : 8) + ghost.length;
  const ifdFieldsList: MutableField[][] = [];
  const ifdOffsets: number[] = [];
  for (const level of levels) {
    cursor += cursor % 2;
    ifdOffsets.push(cursor);
    const fields = ifdFields(spec, level, blockSize, photometric, bigTiff);
    cursor += bigTiff ? 8 + 20 * fields.length + 8 : 2 + 12 * fields.length + 4;
    const outOfLine = fields
      .filter((f) => f.value.kind !== 'tileOffsets' && f.value.kind !== 'tileByteCounts' && fieldBytes(f) > inlineBytes)
      .sort((a, b) => valueWriteRank(a.tag) - valueWriteRank(b.tag) || a.tag - b.tag);
    for (const f of outOfLine) {
      cursor += cursor % 2;
      f.valueOffset = cursor;
      cursor += fieldBytes(f);
    }
    ifdFieldsList.push(fields);
  }
  const ifdBytesEnd = cursor;
  // Like GDAL: all tile offset/byte count arrays after the last IFD, unpadded, in IFD order.
  for (const fields of ifdFieldsList) {
    for (const f of fields) {
      if ((f.value.kind === 'tileOffsets' || f.value.kind === 'tileByteCounts') && fieldBytes(f) > inlineBytes) {
        f.valueOffset = cursor;
        cursor += fieldBytes(f);
      }
    }
  }
  const headerBytes = cursor;

  const levelLayouts: CogLevelLayout[] = [];
  let start = 0;
  for (let i = levels.length - 1; i >= 0; i--) {
    levelLayouts[i] = { ...levels[i], fileIndexStart: start, ifdOffset: ifdOffsets[i] };
    start += levels[i].tileCount;
  }
  const tileCount = start;
  const ifds: CogIfd[] = levels.map((l, i) => ({ level: l.level, offset: ifdOffsets[i], fields: ifdFieldsList[i] }));
  const frame = spec.ghost.leaderTrailer ? 8 : 0;

  return {
    spec,
    blockSize,
    bigTiff,
    photometric,
    levels: levelLayouts,
    tileCount,
    headerBytes,
    ifdBytesEnd,
    tileFrameBytes: frame,
    tileLeaderBytes: frame / 2,
    rawTileBytes: rawTileBytes(spec),
    ghost,
    ifds,
    tileIndexInFile(level: number, tx: number, ty: number): number {
      const l = levelLayouts[level];
      if (l === undefined || !(tx >= 0 && tx < l.tilesX && ty >= 0 && ty < l.tilesY)) {
        throw new CogLayoutError('bad-request', `no tile (${tx}, ${ty}) at level ${level} of this COG`);
      }
      return l.fileIndexStart + ty * l.tilesX + tx;
    },
    tileAtFileIndex(index: number): CogTileRef {
      if (!Number.isInteger(index) || index < 0 || index >= tileCount) {
        throw new CogLayoutError('bad-request', `tile index ${index} is outside 0..${tileCount - 1}`);
      }
      for (const l of levelLayouts) {
        const j = index - l.fileIndexStart;
        if (j >= 0 && j < l.tileCount) return { level: l.level, tx: j % l.tilesX, ty: Math.floor(j / l.tilesX) };
      }
      throw new CogLayoutError('internal', `tile index ${index} maps to no level`);
    },
  };
}

function totalTiles(spec: CogSpec, blockSize: number): number {
  let n = 0;
  for (const l of cogLevels(spec.width, spec.height, blockSize)) n += l.tileCount;
  return n;
}

/**
 * Whether a COG of this spec holding `totalTilePayloadBytes` of tile payloads must be BigTIFF: classic TIFF until
 * the file passes 4 GiB (leader/trailer bytes counted for every tile, so the answer is safe with sparse tiles).
 */
export function needsBigTiff(spec: CogSpec, totalTilePayloadBytes: number): boolean {
  const blockSize = spec.blockSize ?? DEFAULT_COG_BLOCK_SIZE;
  const tiles = totalTiles(spec, blockSize);
  const classic = layoutCog({ ...spec, bigTiff: false });
  return classic.headerBytes + totalTilePayloadBytes + tiles * classic.tileFrameBytes > CLASSIC_TIFF_MAX_OFFSET;
}

function checkByteCounts(layout: CogLayout, tileByteCounts: ArrayLike<number>): void {
  if (tileByteCounts.length !== layout.tileCount) {
    throw new CogLayoutError(
      'bad-request',
      `expected ${layout.tileCount} tile byte counts (one per tile in file order), got ${tileByteCounts.length}`,
    );
  }
}

/** File offset of each tile's payload, in file order; 0 for sparse tiles (byte count 0). */
export function tileDataOffsets(layout: CogLayout, tileByteCounts: ArrayLike<number>): Float64Array {
  checkByteCounts(layout, tileByteCounts);
  const offsets = new Float64Array(layout.tileCount);
  let cursor = layout.headerBytes;
  const lead = layout.tileLeaderBytes;
  const frame = layout.tileFrameBytes;
  for (let i = 0; i < offsets.length; i++) {
    const n = tileByteCounts[i];
    if (!(Number.isInteger(n) && n >= 0)) {
      throw new CogLayoutError('bad-request', `tile byte count ${i} must be a non-negative integer, got ${n}`);
    }
    if (n === 0) continue;
    offsets[i] = cursor + lead;
    cursor += n + frame;
  }
  return offsets;
}

/** Total file size: header plus every non-sparse tile with its leader/trailer. */
export function fileSize(layout: CogLayout, tileByteCounts: ArrayLike<number>): number {
  checkByteCounts(layout, tileByteCounts);
  let size = layout.headerBytes;
  for (let i = 0; i < tileByteCounts.length; i++) {
    const n = tileByteCounts[i];
    if (n > 0) size += n + layout.tileFrameBytes;
  }
  return size;
}

function writeU64(view: DataView, pos: number, value: number): void {
  view.setUint32(pos, value % 0x100000000, true);
  view.setUint32(pos + 4, Math.floor(value / 0x100000000), true);
}

function writeNumbers(view: DataView, pos: number, type: TiffType, values: readonly number[]): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    switch (type) {
      case TIFF_TYPE.byte:
      case TIFF_TYPE.ascii:
        view.setUint8(pos + i, v);
        break;
      case TIFF_TYPE.short:
        view.setUint16(pos + 2 * i, v, true);
        break;
      case TIFF_TYPE.long:
      case TIFF_TYPE.rational:
        view.setUint32(pos + 4 * i, v, true);
        break;
      case TIFF_TYPE.double:
        view.setFloat64(pos + 8 * i, v, true);
        break;
      case TIFF_TYPE.long8:
        writeU64(view, pos + 8 * i, v);
        break;
    }
  }
}

function writeTileArray(
  view: DataView,
  pos: number,
  type: TiffType,
  source: ArrayLike<number>,
  start: number,
  count: number,
): void {
  if (type === TIFF_TYPE.long8) {
    for (let j = 0; j < count; j++) writeU64(view, pos + 8 * j, source[start + j]);
  } else {
    for (let j = 0; j < count; j++) view.setUint32(pos + 4 * j, source[start + j], true);
  }
}

/**
 * The exact bytes of the header area (`layout.headerBytes` long) for these payload sizes in file order
 * (0 = sparse tile: offset 0, byte count 0, no space in the file).
 */
export function buildHeader(layout: CogLayout, tileByteCounts: ArrayLike<number>): Uint8Array {
  const offsets = tileDataOffsets(layout, tileByteCounts);
  const bytes = new Uint8Array(layout.headerBytes);
  const view = new DataView(bytes.buffer);
  const big = layout.bigTiff;
  if (!big) {
    for (let i = 0; i < offsets.length; i++) {
      if (offsets[i] + tileByteCounts[i] > CLASSIC_TIFF_MAX_OFFSET) {
        throw new CogLayoutError(
          'too-large',
          `the tiles end past 4 GiB (tile ${i} ends at byte ${offsets[i] + tileByteCounts[i]}); plan the COG with bigTiff: true`,
        );
      }
    }
  }
  view.setUint16(0, 0x4949, true);
  if (big) {
    view.setUint16(2, 43, true);
    view.setUint16(4, 8, true);
    view.setUint16(6, 0, true);
    writeU64(view, 8, layout.ifds[0].offset);
  } else {
    view.setUint16(2, 42, true);
    view.setUint32(4, layout.ifds[0].offset, true);
  }
  bytes.set(textEncoder.encode(layout.ghost), big ? 16 : 8);

  const entryBytes = big ? 20 : 12;
  const inlineBytes = big ? 8 : 4;
  layout.ifds.forEach((ifd, i) => {
    const level = layout.levels[ifd.level];
    let pos = ifd.offset;
    if (big) writeU64(view, pos, ifd.fields.length);
    else view.setUint16(pos, ifd.fields.length, true);
    pos += big ? 8 : 2;
    for (const f of ifd.fields) {
      view.setUint16(pos, f.tag, true);
      view.setUint16(pos + 2, f.type, true);
      if (big) writeU64(view, pos + 4, f.count);
      else view.setUint32(pos + 4, f.count, true);
      const valuePos = pos + (big ? 12 : 8);
      let target = valuePos;
      if (fieldBytes(f) > inlineBytes) {
        if (big) writeU64(view, valuePos, f.valueOffset);
        else view.setUint32(valuePos, f.valueOffset, true);
        target = f.valueOffset;
      }
      switch (f.value.kind) {
        case 'numbers':
          writeNumbers(view, target, f.type, f.value.values);
          break;
        case 'bytes':
          bytes.set(f.value.bytes, target);
          break;
        case 'tileOffsets':
          writeTileArray(view, target, f.type, offsets, level.fileIndexStart, level.tileCount);
          break;
        case 'tileByteCounts':
          writeTileArray(view, target, f.type, tileByteCounts, level.fileIndexStart, level.tileCount);
          break;
      }
      pos += entryBytes;
    }
    const next = i + 1 < layout.ifds.length ? layout.ifds[i + 1].offset : 0;
    if (big) writeU64(view, pos, next);
    else view.setUint32(pos, next, true);
  });
  return bytes;
}

/** A payload as stored in the file: with `u32le(size)` leader and last-4-bytes trailer when the layout uses them. */
export function frameTile(layout: CogLayout, payload: Uint8Array): Uint8Array {
  if (layout.tileFrameBytes === 0) return payload;
  return framedPayload(payload);
}

/**
 * A payload with its `u32le(size)` leader and last-4-bytes trailer (an empty one stays empty): written around it in
 * its own buffer when the compressor left room there (deflate.ts roomAround), else in a new buffer.
 */
export function framedPayload(payload: Uint8Array): Uint8Array {
  if (payload.length === 0) return payload;
  if (roomAround(payload) >= 4) {
    const out = new Uint8Array(payload.buffer, payload.byteOffset - 4, payload.length + 8);
    new DataView(out.buffer, out.byteOffset).setUint32(0, payload.length, true);
    const tail = Math.min(4, payload.length);
    out.fill(0, payload.length + 4, out.length - tail);
    out.copyWithin(out.length - tail, 4 + payload.length - tail, 4 + payload.length);
    return out;
  }
  const out = new Uint8Array(payload.length + 8);
  new DataView(out.buffer).setUint32(0, payload.length, true);
  out.set(payload, 4);
  const tail = payload.subarray(Math.max(0, payload.length - 4));
  out.set(tail, out.length - tail.length);
  return out;
}

/**
 * A whole COG in memory from its payloads in file order (`undefined` or empty = sparse). For small files and
 * tests; large files stream the framed tiles and write `buildHeader` last.
 */
export function assembleCog(layout: CogLayout, payloads: readonly (Uint8Array | undefined)[]): Uint8Array {
  const counts = payloads.map((p) => p?.length ?? 0);
  const header = buildHeader(layout, counts);
  const out = new Uint8Array(fileSize(layout, counts));
  out.set(header, 0);
  let cursor = header.length;
  for (const p of payloads) {
    if (p === undefined || p.length === 0) continue;
    const framed = frameTile(layout, p);
    out.set(framed, cursor);
    cursor += framed.length;
  }
  return out;
}
