/**
 * GeoTIFF / COG reading: the one import site of `geotiff`.
 *
 * geotiff.js parses the IFDs (through a block cache over our Source, so a COG header costs one or two requests);
 * tile bytes are fetched by us (adjacent tiles merged into one range request, decoded tiles kept in a bytes-bounded
 * cache) and decoded by geotiff.js decoders, with deflate / zstd / webp backed by native code.
 */

import { addDecoder, BaseDecoder, GeoTIFF, getDecoder, globals, type ImageFileDirectory } from 'geotiff';
import type { LRUCache } from 'lru-cache';
import {
  declaredBlockBytes,
  inflateBounded,
  lzwBounded,
  packbitsBounded,
  zstdAvailable,
  zstdBounded,
} from './block.decode.ts';
import { crsFromGeoKeys } from './crs.ts';
import { decodeImage } from './encode.ts';
import { type BlockFailure, CogmillError, RenderError, SourceError } from './errors.ts';
import { parseGeoKeyDirectory } from './geokeys.ts';
import { readGdalNodata } from './nodata.ts';
import type { Source } from './source.ts';
import {
  allocTyped,
  type Crs,
  type DType,
  type GeoTransform,
  KiB,
  MiB,
  type TypedArray,
  typedFromBytes,
} from './types.ts';

// ---------------------------------------------------------------------------------------------------------------
// decoders

function toArrayBuffer(b: Uint8Array): ArrayBuffer {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength
    ? (b.buffer as ArrayBuffer)
    : (b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
}

/** The decoded size of one block, from the decoder's parameters (the IFD's block size and bits per sample). */
function declaredBytesOf(decoder: BaseDecoder): number {
  const p = decoder.parameters as unknown as {
    tileWidth: number;
    tileHeight: number;
    planarConfiguration: number;
    bitsPerSample: number | ArrayLike<number>;
  };
  const bits = typeof p.bitsPerSample === 'number' ? [p.bitsPerSample] : Array.from(p.bitsPerSample);
  const bitsPerPixel = p.planarConfiguration === 2 ? bits[0] : bits.reduce((x, y) => x + y, 0);
  return declaredBlockBytes({ width: p.tileWidth, height: p.tileHeight, bitsPerPixel });
}

/** Decoders that never produce more than the block declares (see block.decode.ts). */
class DecoderDeflateBounded extends BaseDecoder {
  override async decodeBlock(buffer: ArrayBuffer): Promise<ArrayBuffer> {
    return toArrayBuffer(await inflateBounded(new Uint8Array(buffer), declaredBytesOf(this)));
  }
}

class DecoderZstdBounded extends BaseDecoder {
  override async decodeBlock(buffer: ArrayBuffer): Promise<ArrayBuffer> {
    return toArrayBuffer(await zstdBounded(new Uint8Array(buffer), declaredBytesOf(this)));
  }
}

class DecoderLzwBounded extends BaseDecoder {
  override async decodeBlock(buffer: ArrayBuffer): Promise<ArrayBuffer> {
    return toArrayBuffer(await lzwBounded(new Uint8Array(buffer), declaredBytesOf(this)));
  }
}

class DecoderPackbitsBounded extends BaseDecoder {
  override async decodeBlock(buffer: ArrayBuffer): Promise<ArrayBuffer> {
    return toArrayBuffer(await packbitsBounded(new Uint8Array(buffer), declaredBytesOf(this)));
  }
}

class DecoderWebpSharp extends BaseDecoder {
  override async decodeBlock(buffer: ArrayBuffer): Promise<ArrayBuffer> {
    const { data } = await decodeImage(new Uint8Array(buffer));
    return toArrayBuffer(data);
  }
}

let decodersRegistered = false;
/** Register native-backed decoders with geotiff.js (idempotent). */
export function registerDecoders(): void {
  if (decodersRegistered) return;
  decodersRegistered = true;
  const as = (c: unknown) => async () => c as typeof BaseDecoder;
  addDecoder([8, 32946], as(DecoderDeflateBounded), undefined, false);
  if (zstdAvailable) addDecoder(50000, as(DecoderZstdBounded), undefined, false);
  addDecoder(5, as(DecoderLzwBounded), undefined, false);
  addDecoder(32773, as(DecoderPackbitsBounded), undefined, false);
  addDecoder(50001, async () => DecoderWebpSharp as unknown as typeof BaseDecoder, undefined, false);
}

const COMPRESSION_NAMES: Record<number, string> = {
  1: 'none',
  5: 'lzw',
  6: 'ojpeg',
  7: 'jpeg',
  8: 'deflate',
  32773: 'packbits',
  32946: 'deflate',
  34887: 'lerc',
  50000: 'zstd',
  50001: 'webp',
};
const SUPPORTED_COMPRESSIONS = new Set([1, 5, 7, 8, 32773, 32946, 50000, 50001]);

// ---------------------------------------------------------------------------------------------------------------
// the byte adapter geotiff.js parses through

const HEADER_BLOCK_BYTES = 64 * KiB;

export interface RasterCaches {
  /** header blocks: `${url}|${etag}|${block}` -> bytes */
  readonly header: LRUCache<string, Uint8Array>;
  /** decoded tiles: `${url}|${etag}|${level}|${index}` -> decoded tile bytes */
  readonly tiles: LRUCache<string, Uint8Array>;
}

class HeaderReader {
  size = Number.NaN;
  etag = '';
  readonly source: Source;
  readonly cache: LRUCache<string, Uint8Array>;
  readonly signal?: AbortSignal;
  constructor(source: Source, cache: LRUCache<string, Uint8Array>, signal?: AbortSignal) {
    this.source = source;
    this.cache = cache;
    this.signal = signal;
  }

  private async block(index: number): Promise<Uint8Array> {
    const key = `${this.source.url}|${this.etag}|${index}`;
    if (this.etag) {
      const hit = this.cache.get(key);
      if (hit) return hit;
    }
    const r = await this.source.read(index * HEADER_BLOCK_BYTES, HEADER_BLOCK_BYTES, {
      signal: this.signal,
      ifMatch: this.etag || undefined,
    });
    if (!this.etag) {
      this.etag = r.etag;
      this.size = r.size;
    }
    this.cache.set(`${this.source.url}|${this.etag}|${index}`, r.bytes);
    return r.bytes;
  }

  /** geotiff.js BaseSource.fetch */
  async fetch(slices: { offset: number; length: number }[]): Promise<ArrayBuffer[]> {
    const out: ArrayBuffer[] = [];
    for (const { offset, length } of slices) {
      if (!Number.isFinite(offset) || !Number.isFinite(length) || offset < 0 || length < 0 || length > 256 * MiB) {
        throw new RenderError('corrupt', `${this.source.url}: TIFF structure points at an impossible byte range`);
      }
      if (Number.isFinite(this.size) && offset >= this.size) {
        throw new RenderError(
          'corrupt',
          `${this.source.url}: TIFF structure points past the end of the file (truncated?)`,
        );
      }
      const end = Number.isFinite(this.size) ? Math.min(offset + length, this.size) : offset + length;
      const buf = new Uint8Array(Math.max(0, end - offset));
      const first = Math.floor(offset / HEADER_BLOCK_BYTES);
      const last = Math.floor((Math.max(end, offset + 1) - 1) / HEADER_BLOCK_BYTES);
      if (last - first > 64) {
        // a big array (tile offsets of a huge image): one direct read
        const r = await this.source.read(offset, end - offset, {
          signal: this.signal,
          ifMatch: this.etag || undefined,
        });
        buf.set(r.bytes.subarray(0, buf.length));
      } else {
        for (let b = first; b <= last; b++) {
          const block = await this.block(b);
          const blockStart = b * HEADER_BLOCK_BYTES;
          const from = Math.max(offset, blockStart);
          const to = Math.min(end, blockStart + block.byteLength);
          if (to > from) buf.set(block.subarray(from - blockStart, to - blockStart), from - offset);
        }
      }
      out.push(buf.buffer);
    }
    return out;
  }

  get fileSize(): number | null {
    return Number.isFinite(this.size) ? this.size : null;
  }
  async fetchSlice(slice: { offset: number; length: number }) {
    const [data] = await this.fetch([slice]);
    return { ...slice, data };
  }
  async close(): Promise<void> {}
}

/** Byte size of each TIFF field type. */
const FIELD_SIZE: Record<number, number> = {
  1: 1,
  2: 1,
  3: 2,
  4: 4,
  5: 8,
  6: 1,
  7: 1,
  8: 2,
  9: 4,
  10: 8,
  11: 4,
  12: 8,
  13: 4,
  16: 8,
  17: 8,
  18: 8,
};

/**
 * Walk the IFD chain before geotiff.js does, and refuse what would make a parser allocate or loop without bound:
 * unknown field types, arrays larger than the file, offsets past the end, IFD loops, too many IFDs.
 */
async function preflight(reader: HeaderReader, url: string): Promise<void> {
  const head = new Uint8Array((await reader.fetch([{ offset: 0, length: 16 }]))[0]);
  if (head.byteLength < 8) throw new RenderError('corrupt', `${url} is too short to be a TIFF`);
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const bo = dv.getUint16(0, false);
  if (bo !== 0x4949 && bo !== 0x4d4d) throw new RenderError('corrupt', `${url} is not a TIFF (bad byte-order mark)`);
  const le = bo === 0x4949;
  const magic = dv.getUint16(2, le);
  if (magic !== 42 && magic !== 43)
    throw new RenderError('corrupt', `${url} is not a TIFF (bad magic number ${magic})`);
  const big = magic === 43;
  const size = reader.size;
  const u64 = (d: DataView, o: number) =>
    d.getUint32(o + (le ? 4 : 0), le) * 2 ** 32 + d.getUint32(o + (le ? 0 : 4), le);
  let next = big ? u64(dv, 8) : dv.getUint32(4, le);
  const seen = new Set<number>();
  let count = 0;
  while (next !== 0) {
    if (seen.has(next)) throw new RenderError('corrupt', `${url}: the IFD chain loops back on itself`);
    seen.add(next);
    if (++count > MAX_IFDS) throw new RenderError('corrupt', `${url}: more than ${MAX_IFDS} IFDs`);
    if (next >= size)
      throw new RenderError('corrupt', `${url}: an IFD offset points past the end of the file (truncated?)`);
    const cntBytes = new Uint8Array((await reader.fetch([{ offset: next, length: big ? 8 : 2 }]))[0]);
    if (cntBytes.byteLength < (big ? 8 : 2)) throw new RenderError('corrupt', `${url}: truncated IFD`);
    const cdv = new DataView(cntBytes.buffer, cntBytes.byteOffset, cntBytes.byteLength);
    const n = big ? u64(cdv, 0) : cdv.getUint16(0, le);
    const entrySize = big ? 20 : 12;
    if (n === 0 || n > 4096) throw new RenderError('corrupt', `${url}: an IFD with ${n} entries`);
    const ifdLen = (big ? 8 : 2) + n * entrySize + (big ? 8 : 4);
    const ifd = new Uint8Array((await reader.fetch([{ offset: next, length: ifdLen }]))[0]);
    if (ifd.byteLength < ifdLen) throw new RenderError('corrupt', `${url}: truncated IFD`);
    const idv = new DataView(ifd.buffer, ifd.byteOffset, ifd.byteLength);
    for (let i = 0; i < n; i++) {
      const e = (big ? 8 : 2) + i * entrySize;
      const type = idv.getUint16(e + 2, le);
      const cnt = big ? u64(idv, e + 4) : idv.getUint32(e + 4, le);
      const fs = FIELD_SIZE[type];
      if (!fs) throw new RenderError('corrupt', `${url}: tag ${idv.getUint16(e, le)} has unknown field type ${type}`);
      const bytes = cnt * fs;
      if (bytes > (big ? 8 : 4)) {
        const off = big ? u64(idv, e + 12) : idv.getUint32(e + 8, le);
        if (off + bytes > size) {
          throw new RenderError(
            'corrupt',
            `${url}: tag ${idv.getUint16(e, le)} claims ${cnt} values past the end of the file`,
          );
        }
      }
    }
    next = big ? u64(idv, ifdLen - 8) : idv.getUint32(ifdLen - 4, le);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// raster model

export interface RasterLevel {
  readonly width: number;
  readonly height: number;
  readonly blockWidth: number;
  readonly blockHeight: number;
  readonly blocksAcross: number;
  readonly blocksDown: number;
  readonly tiled: boolean;
  /** full-resolution pixels per pixel of this level */
  readonly factorX: number;
  readonly factorY: number;
}

export interface RasterInfo {
  readonly url: string;
  readonly size: number;
  readonly etag: string;
  readonly width: number;
  readonly height: number;
  readonly bandCount: number;
  readonly dtype: DType;
  readonly nodata: number | undefined;
  readonly transform: GeoTransform;
  readonly crs: Crs;
  readonly blockWidth: number;
  readonly blockHeight: number;
  readonly compression: string;
  readonly interleave: 'pixel' | 'band';
  readonly photometric: 'minisblack' | 'rgb' | 'palette' | 'ycbcr' | 'other';
  readonly hasMask: boolean;
  /** full resolution first, then overviews, finest to coarsest */
  readonly levels: readonly RasterLevel[];
  readonly bandDescriptions: readonly string[];
  /** what was read differently from what the file says, as GDAL would (e.g. a GDAL_NODATA that is not a number) */
  readonly warnings: readonly string[];
}

/** Pixels of a window of one level: one typed array per requested band; `mask` when the file has an internal mask. */
export interface RasterWindow {
  readonly bands: TypedArray[];
  readonly mask?: Uint8Array;
}

interface LevelInternal extends RasterLevel {
  readonly ifd: ImageFileDirectory;
  readonly compression: number;
  readonly decoder: Promise<BaseDecoder>;
  readonly maskIfd?: LevelInternal;
  readonly offsetsTag: number;
  readonly countsTag: number;
  readonly bitsPerSample: number;
  readonly samples: number;
}

const MAX_DIMENSION = 2 ** 31 - 1;
const MAX_BLOCKS = 2 ** 26;
const MAX_IFDS = 64;
const MERGE_GAP_BYTES = 16 * KiB;
const MAX_MERGED_BYTES = 32 * MiB;

function dtypeOf(format: number, bits: number, url: string): DType {
  const key = `${format}:${bits}`;
  const table: Record<string, DType> = {
    '1:8': 'uint8',
    '2:8': 'int8',
    '1:16': 'uint16',
    '2:16': 'int16',
    '1:32': 'uint32',
    '2:32': 'int32',
    '3:32': 'float32',
    '3:64': 'float64',
  };
  const t = table[key];
  if (!t) {
    const kind = format === 3 ? 'float' : format === 2 ? 'signed integer' : 'unsigned integer';
    throw new RenderError('unsupported', `${url}: ${bits}-bit ${kind} samples are not supported`);
  }
  return t;
}

function first(v: unknown): number {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (v && typeof v === 'object' && 'length' in v) return Number((v as ArrayLike<number>)[0]);
  return Number.NaN;
}

function tagLength(ifd: ImageFileDirectory, tag: number): number {
  const internal = ifd as unknown as {
    deferredArrays: Map<number, { length: number }>;
    actualizedFields: Map<number, unknown>;
  };
  const d = internal.deferredArrays.get(tag);
  if (d) return d.length;
  const v = internal.actualizedFields.get(tag);
  if (v && typeof v === 'object' && 'length' in v) return (v as ArrayLike<number>).length;
  return typeof v === 'number' ? 1 : 0;
}

function geotransformOf(ifd: ImageFileDirectory, geoKeys: Record<string, unknown>, url: string): GeoTransform {
  const scale = ifd.getValue('ModelPixelScale') as ArrayLike<number> | undefined;
  const tie = ifd.getValue('ModelTiepoint') as ArrayLike<number> | undefined;
  const mt = ifd.getValue('ModelTransformation') as ArrayLike<number> | undefined;
  let gt: [number, number, number, number, number, number];
  if (mt && mt.length >= 16) {
    gt = [mt[3], mt[0], mt[1], mt[7], mt[4], mt[5]];
  } else if (scale && tie && scale.length >= 2 && tie.length >= 6) {
    gt = [tie[3] - tie[0] * scale[0], scale[0], 0, tie[4] + tie[1] * scale[1], 0, -scale[1]];
  } else {
    throw new RenderError(
      'unsupported',
      `${url} has no georeferencing (no ModelPixelScale/ModelTiepoint or ModelTransformation)`,
    );
  }
  if (geoKeys.GTRasterTypeGeoKey === 2) {
    // PixelIsPoint: the tie point is a pixel centre; GDAL shifts by half a pixel
    gt[0] -= gt[1] / 2 + gt[2] / 2;
    gt[3] -= gt[4] / 2 + gt[5] / 2;
  }
  if (!gt.every(Number.isFinite) || gt[1] * gt[5] - gt[2] * gt[4] === 0) {
    throw new RenderError('corrupt', `${url} has an invalid geotransform`);
  }
  return gt;
}

/** An opened GeoTIFF: its metadata and window reads. Parse once, keep it (the engine caches Raster objects). */
export class Raster {
  readonly info: RasterInfo;
  private readonly source: Source;
  private readonly caches: RasterCaches;
  private readonly levelsInternal: LevelInternal[];

  private constructor(info: RasterInfo, source: Source, caches: RasterCaches, levels: LevelInternal[]) {
    this.info = info;
    this.source = source;
    this.caches = caches;
    this.levelsInternal = levels;
  }

  /** Open and parse a GeoTIFF. Errors are SourceError (IO) or RenderError (content), never raw exceptions. */
  static async open(source: Source, caches: RasterCaches, signal?: AbortSignal): Promise<Raster> {
    registerDecoders();
    const reader = new HeaderReader(source, caches.header, signal);
    try {
      return await Raster.parse(source, caches, reader);
    } catch (e) {
      if (e instanceof CogmillError) throw e;
      if (signal?.aborted) throw e;
      const msg = (e as Error)?.message ?? String(e);
      throw new RenderError('corrupt', `${source.url} is not a readable GeoTIFF: ${msg}`, { cause: e });
    }
  }

  private static async parse(source: Source, caches: RasterCaches, reader: HeaderReader): Promise<Raster> {
    const url = source.url;
    await preflight(reader, url);
    const tiff = await GeoTIFF.fromSource(reader as never);
    const ifds: ImageFileDirectory[] = [];
    const seen = new Set<number>();
    for (let i = 0; i < MAX_IFDS; i++) {
      const image = await tiff.getImage(i).catch((e: Error) => {
        if (e?.name === 'GeoTIFFImageIndexError' || /No image at index/i.test(e?.message ?? '')) return undefined;
        throw e;
      });
      if (!image) break;
      const ifd = image.getFileDirectory();
      ifds.push(ifd);
      const next = Number(ifd.nextIFDByteOffset);
      if (!next) break;
      if (seen.has(next)) throw new RenderError('corrupt', `${url}: the IFD chain loops back on itself`);
      seen.add(next);
    }
    if (ifds.length === 0) throw new RenderError('corrupt', `${url} contains no image`);

    const mainIfd = ifds[0];
    const subfile = (ifd: ImageFileDirectory) => first(ifd.getValue('NewSubfileType') ?? 0) || 0;
    const isMask = (ifd: ImageFileDirectory) =>
      (subfile(ifd) & 4) !== 0 && first(ifd.getValue('PhotometricInterpretation')) === 4;

    const samples = first(mainIfd.getValue('SamplesPerPixel') ?? 1) || 1;
    const bits = first(mainIfd.getValue('BitsPerSample'));
    const format = first(mainIfd.getValue('SampleFormat') ?? 1) || 1;
    const dtype = dtypeOf(format, bits, url);
    const photometricCode = first(mainIfd.getValue('PhotometricInterpretation') ?? 1);
    if (photometricCode === 6 && first(mainIfd.getValue('Compression')) !== 7) {
      throw new RenderError('unsupported', `${url}: YCbCr photometric without JPEG compression is not supported`);
    }
    const geoKeys =
      parseGeoKeyDirectory(
        mainIfd.getValue('GeoKeyDirectory') as ArrayLike<number> | undefined,
        (tag) => mainIfd.getValue(tag as never),
        globals.geoKeyNames as unknown as Record<number, string>,
        url,
      ) ?? {};
    const crs = crsFromGeoKeys(geoKeys);
    const transform = geotransformOf(mainIfd, geoKeys, url);
    const nodataReading = readGdalNodata(mainIfd.getValue('GDAL_NODATA'));
    const nodata = nodataReading.value;
    const warnings = nodataReading.warning ? [nodataReading.warning] : [];

    const fullW = first(mainIfd.getValue('ImageWidth'));
    const fullH = first(mainIfd.getValue('ImageLength'));

    const makeLevel = (ifd: ImageFileDirectory, mask: boolean): LevelInternal => {
      const width = first(ifd.getValue('ImageWidth'));
      const height = first(ifd.getValue('ImageLength'));
      if (!(width >= 1 && height >= 1 && width <= MAX_DIMENSION && height <= MAX_DIMENSION)) {
        throw new RenderError('corrupt', `${url}: image size ${width} x ${height} is impossible`);
      }
      const tiled = ifd.hasTag('TileWidth');
      const blockWidth = tiled ? first(ifd.getValue('TileWidth')) : width;
      const rps = first(ifd.getValue('RowsPerStrip'));
      const blockHeight = tiled
        ? first(ifd.getValue('TileLength'))
        : Number.isFinite(rps) && rps > 0
          ? Math.min(rps, height)
          : height;
      if (!(blockWidth >= 1 && blockHeight >= 1 && blockWidth <= 65536 && blockHeight <= MAX_DIMENSION)) {
        throw new RenderError('corrupt', `${url}: block size ${blockWidth} x ${blockHeight} is impossible`);
      }
      const blocksAcross = Math.ceil(width / blockWidth);
      const blocksDown = Math.ceil(height / blockHeight);
      const lvlSamples = mask ? 1 : samples;
      const planar = first(ifd.getValue('PlanarConfiguration') ?? 1) === 2 ? 2 : 1;
      const expected = blocksAcross * blocksDown * (planar === 2 ? lvlSamples : 1);
      if (expected > MAX_BLOCKS) {
        throw new RenderError(
          'too-large',
          `${url}: ${width} x ${height} pixels in ${expected} blocks is more than cogmill reads`,
        );
      }
      if (blockWidth * blockHeight * lvlSamples * 8 > 1024 * MiB) {
        throw new RenderError(
          'too-large',
          `${url}: blocks of ${blockWidth} x ${blockHeight} pixels are too large to decode`,
        );
      }
      const offsetsTag = tiled ? 324 : 273;
      const countsTag = tiled ? 325 : 279;
      const nOffsets = tagLength(ifd, offsetsTag);
      const nCounts = tagLength(ifd, countsTag);
      if (nOffsets < expected || nCounts < expected) {
        throw new RenderError(
          'corrupt',
          `${url}: ${expected} blocks expected but the file lists ${Math.min(nOffsets, nCounts)}`,
        );
      }
      const compression = first(ifd.getValue('Compression') ?? 1) || 1;
      if (!SUPPORTED_COMPRESSIONS.has(compression)) {
        const name = COMPRESSION_NAMES[compression] ?? `code ${compression}`;
        throw new RenderError(
          'unsupported',
          `${url}: compression ${name} is not supported (supported: none, deflate, lzw, packbits, jpeg, zstd, webp); convert it with gdal_translate -co COMPRESS=DEFLATE`,
        );
      }
      const lvlBits = first(ifd.getValue('BitsPerSample'));
      const bitsPerSample = ifd.getValue('BitsPerSample') as unknown;
      const params: Record<string, unknown> = {
        tileWidth: blockWidth,
        tileHeight: blockHeight,
        planarConfiguration: planar,
        bitsPerSample: bitsPerSample ?? 1,
        predictor: first((ifd.getValue as (t: string) => unknown)('Predictor') ?? 1) || 1,
      };
      const decoder = (async () => {
        if (compression === 7) params.JPEGTables = await ifd.loadValue('JPEGTables');
        return getDecoder(compression, params as never);
      })();
      decoder.catch(() => {});
      return {
        ifd,
        width,
        height,
        blockWidth,
        blockHeight,
        blocksAcross,
        blocksDown,
        tiled,
        factorX: fullW / width,
        factorY: fullH / height,
        compression,
        decoder,
        offsetsTag,
        countsTag,
        bitsPerSample: lvlBits,
        samples: lvlSamples,
      };
    };

    const images = ifds.filter((ifd) => !isMask(ifd));
    const masks = ifds.filter(isMask);
    const levels: LevelInternal[] = [];
    for (const ifd of images) {
      if (levels.length > 0) {
        if ((subfile(ifd) & 1) === 0) continue; // another page, not an overview
        if (first(ifd.getValue('SamplesPerPixel') ?? 1) !== samples) continue;
      }
      const lvl = makeLevel(ifd, false);
      const maskIfd = masks.find(
        (m) => first(m.getValue('ImageWidth')) === lvl.width && first(m.getValue('ImageLength')) === lvl.height,
      );
      levels.push(maskIfd ? { ...lvl, maskIfd: makeLevel(maskIfd, true) } : lvl);
    }
    levels.sort((a, b) => b.width - a.width);

    const planar = first(mainIfd.getValue('PlanarConfiguration') ?? 1) === 2 ? 'band' : 'pixel';
    const photometric =
      photometricCode === 2
        ? 'rgb'
        : photometricCode === 1 || photometricCode === 0
          ? 'minisblack'
          : photometricCode === 3
            ? 'palette'
            : photometricCode === 6
              ? 'ycbcr'
              : 'other';
    if (photometric === 'palette') {
      // palette images are read as their index values, like gdal with -expand not given
    }
    const info: RasterInfo = {
      url,
      size: reader.size,
      etag: reader.etag,
      width: fullW,
      height: fullH,
      bandCount: samples,
      dtype,
      nodata,
      transform,
      crs,
      blockWidth: levels[0].blockWidth,
      blockHeight: levels[0].blockHeight,
      compression: COMPRESSION_NAMES[levels[0].compression] ?? String(levels[0].compression),
      interleave: planar,
      photometric,
      hasMask: levels[0].maskIfd !== undefined,
      levels: levels.map(
        ({ width, height, blockWidth, blockHeight, blocksAcross, blocksDown, tiled, factorX, factorY }) => ({
          width,
          height,
          blockWidth,
          blockHeight,
          blocksAcross,
          blocksDown,
          tiled,
          factorX,
          factorY,
        }),
      ),
      bandDescriptions: [],
      warnings,
    };
    return new Raster(info, source, caches, levels);
  }

  get url(): string {
    return this.info.url;
  }

  /**
   * Decoded blocks (bytes as stored, predictor undone) for the given block indices of a level.
   * Cached; misses that sit next to each other in the file are fetched with one range request. A block that
   * cannot be read (an offset or byte count past the end of the file, an impossible size, a stream that does not
   * decode into the block's declared size) is in `failed` with a `corrupt` error naming the source and block;
   * the other blocks are still read. Source IO errors (unreachable, changed) are thrown.
   */
  private async blocks(
    level: LevelInternal,
    levelKey: string,
    indices: number[],
    signal?: AbortSignal,
  ): Promise<{ blocks: Map<number, Uint8Array>; failed: Map<number, RenderError> }> {
    const out = new Map<number, Uint8Array>();
    const failed = new Map<number, RenderError>();
    const prefix = `${this.info.url}|${this.info.etag}|${levelKey}|`;
    const missing: { index: number; offset: number; count: number }[] = [];
    const size = this.info.size;
    const declared = declaredBlockBytes({
      width: level.blockWidth,
      height: level.blockHeight,
      bitsPerPixel: level.bitsPerSample * (this.info.interleave === 'band' || level.samples === 1 ? 1 : level.samples),
    });
    // a compressed block is never much larger than its decoded size; a count far above it is a lie
    const maxCount = declared * 2 + 64 * KiB;
    const bad = (index: number, why: string, cause?: unknown) =>
      failed.set(
        index,
        new RenderError('corrupt', `${this.info.url}: block ${index} of level ${levelKey} ${why}`, { cause }),
      );
    for (const index of indices) {
      const hit = this.caches.tiles.get(prefix + index);
      if (hit) {
        out.set(index, hit);
        continue;
      }
      const offset = Number(await level.ifd.loadValueIndexed(level.offsetsTag, index));
      const count = Number(await level.ifd.loadValueIndexed(level.countsTag, index));
      if (!Number.isFinite(offset) || !Number.isFinite(count) || offset < 0 || count < 0) {
        bad(index, 'has an invalid offset or size');
      } else if (count > 0 && offset > 0 && Number.isFinite(size) && offset + count > size) {
        bad(index, `lies past the end of the file (${count} bytes at offset ${offset}; the file has ${size})`);
      } else if (count > maxCount) {
        bad(index, `claims ${count} bytes for a block that decodes to ${declared}`);
      } else {
        missing.push({ index, offset, count });
      }
    }
    if (missing.length === 0) return { blocks: out, failed };

    const decoder = await level.decoder;
    const decodeOne = async (index: number, bytes: Uint8Array | undefined): Promise<void> => {
      let decoded: Uint8Array;
      if (!bytes || bytes.byteLength === 0) {
        decoded = new Uint8Array(0); // sparse block: reads as nodata
      } else {
        let ab: ArrayBufferLike;
        try {
          ab = await decoder.decode(toArrayBuffer(bytes));
        } catch (e) {
          if (signal?.aborted) throw e;
          bad(index, `cannot be decoded: ${(e as Error)?.message ?? e}`, e);
          return;
        }
        decoded = new Uint8Array(ab);
      }
      this.caches.tiles.set(prefix + index, decoded);
      out.set(index, decoded);
    };

    const present = missing.filter((m) => m.count > 0 && m.offset > 0).sort((a, b) => a.offset - b.offset);
    for (const m of missing) if (!(m.count > 0 && m.offset > 0)) await decodeOne(m.index, undefined);
    let i = 0;
    const work: Promise<void>[] = [];
    while (i < present.length) {
      let j = i;
      let end = present[i].offset + present[i].count;
      while (
        j + 1 < present.length &&
        present[j + 1].offset - end <= MERGE_GAP_BYTES &&
        present[j + 1].offset + present[j + 1].count - present[i].offset <= MAX_MERGED_BYTES
      ) {
        j++;
        end = Math.max(end, present[j].offset + present[j].count);
      }
      const run = present.slice(i, j + 1);
      const start = run[0].offset;
      work.push(
        (async () => {
          const r = await this.source.read(start, end - start, { signal, ifMatch: this.info.etag });
          for (const m of run) {
            if (m.offset - start + m.count > r.bytes.byteLength) {
              bad(m.index, 'lies past the end of the file (truncated?)');
              continue;
            }
            await decodeOne(m.index, r.bytes.subarray(m.offset - start, m.offset - start + m.count));
          }
        })(),
      );
      i = j + 1;
    }
    await Promise.all(work);
    return { blocks: out, failed };
  }

  /**
   * Read a window of `level` (0 = full resolution) into one typed array per band in `bands` (0-based).
   * The window must lie inside the level. A block that cannot be read fails the read with its `corrupt` error,
   * unless `onBlockError` is given: then it is reported there, and its pixels are returned empty (filled with
   * nodata and 0 in the returned mask).
   */
  async readWindow(
    levelIndex: number,
    x0: number,
    y0: number,
    w: number,
    h: number,
    bands: readonly number[],
    signal?: AbortSignal,
    onBlockError?: (failure: BlockFailure) => void,
  ): Promise<RasterWindow> {
    const level = this.levelsInternal[levelIndex];
    if (!level) throw new RenderError('internal', `level ${levelIndex} does not exist in ${this.info.url}`);
    if (x0 < 0 || y0 < 0 || w <= 0 || h <= 0 || x0 + w > level.width || y0 + h > level.height) {
      throw new RenderError('internal', `window ${x0},${y0} ${w}x${h} outside level ${levelIndex} of ${this.info.url}`);
    }
    const { dtype, bandCount, nodata } = this.info;
    const out = bands.map(() => allocTyped(dtype, w * h));
    const bx0 = Math.floor(x0 / level.blockWidth);
    const bx1 = Math.floor((x0 + w - 1) / level.blockWidth);
    const by0 = Math.floor(y0 / level.blockHeight);
    const by1 = Math.floor((y0 + h - 1) / level.blockHeight);
    const planarBand = this.info.interleave === 'band';
    const perBand = level.blocksAcross * level.blocksDown;
    const indices: number[] = [];
    for (let by = by0; by <= by1; by++)
      for (let bx = bx0; bx <= bx1; bx++) {
        const base = by * level.blocksAcross + bx;
        if (planarBand) for (const b of bands) indices.push(b * perBand + base);
        else indices.push(base);
      }
    const maskPromise = level.maskIfd
      ? this.readMask(level.maskIfd, levelIndex, x0, y0, w, h, signal, onBlockError)
      : undefined;
    const [{ blocks, failed }, internalMask] = await Promise.all([
      this.blocks(level, String(levelIndex), indices, signal),
      maskPromise,
    ]);
    if (failed.size > 0) {
      const first = [...failed.keys()].sort((a, b) => a - b)[0];
      if (!onBlockError) throw failed.get(first)!;
      for (const [block, error] of failed) onBlockError({ source: this.info.url, level: levelIndex, block, error });
    }
    let mask = internalMask;
    const fill = nodata ?? 0;
    for (let by = by0; by <= by1; by++) {
      for (let bx = bx0; bx <= bx1; bx++) {
        const base = by * level.blocksAcross + bx;
        const tx0 = bx * level.blockWidth;
        const ty0 = by * level.blockHeight;
        const cx0 = Math.max(x0, tx0);
        const cx1 = Math.min(x0 + w, tx0 + level.blockWidth, level.width);
        const cy0 = Math.max(y0, ty0);
        const cy1 = Math.min(y0 + h, ty0 + level.blockHeight, level.height);
        for (let k = 0; k < bands.length; k++) {
          const band = bands[k];
          const index = planarBand ? band * perBand + base : base;
          const bytes = blocks.get(index);
          const dst = out[k];
          const stride = planarBand ? 1 : bandCount;
          const off = planarBand ? 0 : band;
          if (!bytes || bytes.byteLength === 0) {
            for (let y = cy0; y < cy1; y++) dst.fill(fill, (y - y0) * w + (cx0 - x0), (y - y0) * w + (cx1 - x0));
            if (failed.has(index)) {
              // an unreadable block: its pixels are not data, whatever the nodata value
              mask ??= new Uint8Array(w * h).fill(255);
              for (let y = cy0; y < cy1; y++) mask.fill(0, (y - y0) * w + (cx0 - x0), (y - y0) * w + (cx1 - x0));
            }
            continue;
          }
          const src = typedFromBytes(dtype, bytes);
          const lastSample = ((cy1 - 1 - ty0) * level.blockWidth + (cx1 - 1 - tx0)) * stride + off;
          if (lastSample >= src.length) {
            const error = new RenderError(
              'corrupt',
              `${this.info.url}: block ${index} of level ${levelIndex} decoded to fewer pixels than its size`,
            );
            if (!onBlockError) throw error;
            if (!failed.has(index)) onBlockError({ source: this.info.url, level: levelIndex, block: index, error });
            failed.set(index, error);
            for (let y = cy0; y < cy1; y++) dst.fill(fill, (y - y0) * w + (cx0 - x0), (y - y0) * w + (cx1 - x0));
            mask ??= new Uint8Array(w * h).fill(255);
            for (let y = cy0; y < cy1; y++) mask.fill(0, (y - y0) * w + (cx0 - x0), (y - y0) * w + (cx1 - x0));
            continue;
          }
          for (let y = cy0; y < cy1; y++) {
            let si = ((y - ty0) * level.blockWidth + (cx0 - tx0)) * stride + off;
            let di = (y - y0) * w + (cx0 - x0);
            const de = di + (cx1 - cx0);
            if (stride === 1) {
              dst.set(src.subarray(si, si + (cx1 - cx0)), di);
            } else {
              for (; di < de; di++, si += stride) dst[di] = src[si];
            }
          }
        }
      }
    }
    return { bands: out, mask };
  }

  private async readMask(
    level: LevelInternal,
    levelIndex: number,
    x0: number,
    y0: number,
    w: number,
    h: number,
    signal?: AbortSignal,
    onBlockError?: (failure: BlockFailure) => void,
  ): Promise<Uint8Array> {
    const mask = new Uint8Array(w * h);
    const bx0 = Math.floor(x0 / level.blockWidth);
    const bx1 = Math.floor((x0 + w - 1) / level.blockWidth);
    const by0 = Math.floor(y0 / level.blockHeight);
    const by1 = Math.floor((y0 + h - 1) / level.blockHeight);
    const indices: number[] = [];
    for (let by = by0; by <= by1; by++) for (let bx = bx0; bx <= bx1; bx++) indices.push(by * level.blocksAcross + bx);
    const { blocks, failed } = await this.blocks(level, `${levelIndex}m`, indices, signal);
    if (failed.size > 0) {
      // an unreadable mask block leaves its pixels masked out
      if (!onBlockError) throw [...failed.values()][0];
      for (const [block, error] of failed) onBlockError({ source: this.info.url, level: levelIndex, block, error });
      for (const index of failed.keys()) blocks.delete(index);
    }
    const rowBytes = level.bitsPerSample === 1 ? Math.ceil(level.blockWidth / 8) : level.blockWidth;
    for (let by = by0; by <= by1; by++) {
      for (let bx = bx0; bx <= bx1; bx++) {
        const bytes = blocks.get(by * level.blocksAcross + bx);
        const tx0 = bx * level.blockWidth;
        const ty0 = by * level.blockHeight;
        for (let y = Math.max(y0, ty0); y < Math.min(y0 + h, ty0 + level.blockHeight); y++) {
          for (let x = Math.max(x0, tx0); x < Math.min(x0 + w, tx0 + level.blockWidth); x++) {
            let v = 0;
            if (bytes && bytes.byteLength > 0) {
              const c = x - tx0;
              const r = y - ty0;
              v =
                level.bitsPerSample === 1
                  ? (bytes[r * rowBytes + (c >> 3)] >> (7 - (c & 7))) & 1
                  : bytes[r * rowBytes + c];
            }
            mask[(y - y0) * w + (x - x0)] = v ? 255 : 0;
          }
        }
      }
    }
    return mask;
  }
}

export { SourceError };
