/**
 * COG tile payloads: band interleaving, TIFF predictors, and the compressions GDAL reads in a GeoTIFF
 * (deflate through libdeflate as GDAL does, or node:zlib where the addon is not built: src/render/deflate.ts;
 * zstd through node:zlib; our own LZW coder; JPEG and WebP through the image encoder).
 *
 * Compression runs on the libuv thread pool, so a pipeline that keeps a few tiles in flight uses every core.
 */
import zlib from 'node:zlib';
import { deflateTile, predictor2Native } from '../render/deflate.ts';
import { encodeImage } from '../render/encode.ts';
import { bytesPerSample, type DType, type TypedArray } from '../render/types.ts';
import {
  type CogCompression,
  CogLayoutError,
  type CogPredictor,
  DEFAULT_COG_BLOCK_SIZE,
  TIFF_PHOTOMETRIC,
} from './cog.layout.ts';

export interface TileEncodeOptions {
  readonly dtype: DType;
  readonly bands: number;
  /** Default 512. */
  readonly blockSize?: number;
  readonly compression: CogCompression;
  readonly predictor: CogPredictor;
  /** deflate 1..12 (default 6), zstd 1..22 (default 9), like GDAL's ZLEVEL / ZSTD_LEVEL. */
  readonly level?: number;
  /** jpeg / webp quality 1..100 (default 75, like GDAL's JPEG_QUALITY / WEBP_LEVEL). */
  readonly quality?: number;
  /** lossless webp */
  readonly lossless?: boolean;
  /**
   * The caller gives the band arrays up: a single band is then encoded in place (the predictor overwrites it)
   * instead of being copied first.
   */
  readonly consume?: boolean;
}

export const DEFAULT_DEFLATE_LEVEL = 6;
export const DEFAULT_ZSTD_LEVEL = 9;
export const DEFAULT_LOSSY_QUALITY = 75;

/** Whether this Node.js has zstd in node:zlib (Node >= 22.15 / 23.8). */
export function zstdAvailable(): boolean {
  return typeof zlib.zstdCompress === 'function';
}

function encodeError(message: string): CogLayoutError {
  return new CogLayoutError('bad-request', `tile encoding: ${message}`);
}

const TYPED_FOR_DTYPE: Record<DType, new (length: number) => TypedArray> = {
  uint8: Uint8Array,
  int8: Int8Array,
  uint16: Uint16Array,
  int16: Int16Array,
  uint32: Uint32Array,
  int32: Int32Array,
  float32: Float32Array,
  float64: Float64Array,
};

/**
 * Copy a `width x height` window into a new `blockSize x blockSize` array of the same type, the rest filled with
 * `fill` (0, or the nodata value). Edge tiles are always stored full size.
 */
export function edgePad<T extends TypedArray>(src: T, width: number, height: number, blockSize: number, fill = 0): T {
  if (width > blockSize || height > blockSize || src.length < width * height) {
    throw encodeError(
      `cannot pad a ${width} x ${height} window (${src.length} samples) to ${blockSize} x ${blockSize}`,
    );
  }
  const Ctor = src.constructor as new (length: number) => T;
  const out = new Ctor(blockSize * blockSize);
  if (fill !== 0) out.fill(fill as never);
  for (let y = 0; y < height; y++) out.set(src.subarray(y * width, y * width + width) as never, y * blockSize);
  return out;
}

/**
 * Pixel-interleave one array per band into a new array: b0 b1 b2 b0 b1 b2 ... With `inPlace`, a single band is
 * returned as it is (the caller gave it up).
 */
export function interleaveTile(
  pixels: readonly TypedArray[],
  dtype: DType,
  bands: number,
  blockSize: number,
  inPlace = false,
): TypedArray {
  const n = blockSize * blockSize;
  const Ctor = TYPED_FOR_DTYPE[dtype];
  if (pixels.length !== bands) throw encodeError(`expected ${bands} band arrays, got ${pixels.length}`);
  for (let b = 0; b < bands; b++) {
    const p = pixels[b];
    if (!(p instanceof Ctor))
      throw encodeError(`band ${b + 1} is a ${p.constructor.name}, expected ${Ctor.name} for ${dtype}`);
    if (p.length !== n)
      throw encodeError(`band ${b + 1} has ${p.length} samples, expected ${blockSize} x ${blockSize}`);
  }
  if (bands === 1 && inPlace) return pixels[0];
  const out = new Ctor(n * bands);
  if (bands === 1) {
    out.set(pixels[0] as never);
    return out;
  }
  for (let b = 0; b < bands; b++) {
    const p = pixels[b];
    for (let i = 0, j = b; i < n; i++, j += bands) out[j] = p[i];
  }
  return out;
}

function bytesOf(a: TypedArray): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function unsignedView(a: TypedArray): Uint8Array | Uint16Array | Uint32Array {
  switch (a.BYTES_PER_ELEMENT) {
    case 1:
      return new Uint8Array(a.buffer, a.byteOffset, a.length);
    case 2:
      return new Uint16Array(a.buffer, a.byteOffset, a.length);
    default:
      return new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4);
  }
}

/** Horizontal differencing per sample in place (TIFF predictor 2), modulo the sample width. */
function horizontalDiff(samples: TypedArray, bands: number, blockSize: number): void {
  const rowLen = blockSize * bands;
  if (predictor2Native(bytesOf(samples), rowLen, blockSize, bands, samples.BYTES_PER_ELEMENT, false)) return;
  const u = unsignedView(samples);
  if (samples.BYTES_PER_ELEMENT === 8) {
    for (let r = 0; r < blockSize; r++) {
      const base = r * rowLen;
      for (let i = base + rowLen - 1; i >= base + bands; i--) {
        const k = 2 * i;
        const m = 2 * (i - bands);
        const lo = u[k] - u[m];
        u[k] = lo;
        u[k + 1] = u[k + 1] - u[m + 1] - (lo < 0 ? 1 : 0);
      }
    }
    return;
  }
  for (let r = 0; r < blockSize; r++) {
    const base = r * rowLen;
    for (let i = base + rowLen - 1; i >= base + bands; i--) u[i] -= u[i - bands];
  }
}

function horizontalUndiff(samples: TypedArray, bands: number, blockSize: number): void {
  const rowLen = blockSize * bands;
  const u = unsignedView(samples);
  if (samples.BYTES_PER_ELEMENT === 8) {
    for (let r = 0; r < blockSize; r++) {
      const base = r * rowLen;
      for (let i = base + bands; i < base + rowLen; i++) {
        const k = 2 * i;
        const m = 2 * (i - bands);
        const lo = u[k] + u[m];
        u[k] = lo;
        u[k + 1] = u[k + 1] + u[m + 1] + (lo > 0xffffffff ? 1 : 0);
      }
    }
    return;
  }
  for (let r = 0; r < blockSize; r++) {
    const base = r * rowLen;
    for (let i = base + bands; i < base + rowLen; i++) u[i] += u[i - bands];
  }
}

/**
 * Floating point predictor (TIFF Technical Note 3, as libtiff does it): per row, bytes are regrouped by
 * significance (most significant byte of every sample first), then differenced bytewise with a stride of one pixel.
 */
function floatingPointDiff(src: Uint8Array, bands: number, blockSize: number, sampleBytes: number): Uint8Array {
  const words = blockSize * bands;
  const rowBytes = words * sampleBytes;
  const out = new Uint8Array(src.length);
  for (let base = 0; base < src.length; base += rowBytes) {
    for (let b = 0; b < sampleBytes; b++) {
      const plane = base + (sampleBytes - 1 - b) * words;
      for (let i = 0, s = base + b; i < words; i++, s += sampleBytes) out[plane + i] = src[s];
    }
    for (let j = base + rowBytes - 1; j >= base + bands; j--) out[j] -= out[j - bands];
  }
  return out;
}

function floatingPointUndiff(src: Uint8Array, bands: number, blockSize: number, sampleBytes: number): Uint8Array {
  const words = blockSize * bands;
  const rowBytes = words * sampleBytes;
  const acc = src.slice();
  const out = new Uint8Array(src.length);
  for (let base = 0; base < src.length; base += rowBytes) {
    for (let j = base + bands; j < base + rowBytes; j++) acc[j] += acc[j - bands];
    for (let b = 0; b < sampleBytes; b++) {
      const plane = base + (sampleBytes - 1 - b) * words;
      for (let i = 0, s = base + b; i < words; i++, s += sampleBytes) out[s] = acc[plane + i];
    }
  }
  return out;
}

function checkTileBytes(bytes: Uint8Array, bands: number, blockSize: number, sampleBytes: number): void {
  if (bytes.length !== blockSize * blockSize * bands * sampleBytes) {
    throw encodeError(`expected ${blockSize * blockSize * bands * sampleBytes} tile bytes, got ${bytes.length}`);
  }
}

/**
 * Apply a TIFF predictor to pixel-interleaved samples. Predictor 2 works in place on `samples`; predictor 3
 * returns new bytes. Returns the little-endian bytes to compress.
 */
export function applyPredictor(
  samples: TypedArray,
  predictor: CogPredictor,
  bands: number,
  blockSize: number,
): Uint8Array {
  checkTileBytes(bytesOf(samples), bands, blockSize, samples.BYTES_PER_ELEMENT);
  if (predictor === 2) horizontalDiff(samples, bands, blockSize);
  if (predictor === 3) {
    if (!(samples instanceof Float32Array || samples instanceof Float64Array)) {
      throw encodeError('predictor 3 needs float32 or float64 samples');
    }
    return floatingPointDiff(bytesOf(samples), bands, blockSize, samples.BYTES_PER_ELEMENT);
  }
  return bytesOf(samples);
}

/** Inverse of `applyPredictor`: decompressed tile bytes in, pixel-interleaved little-endian sample bytes out (new). */
export function undoPredictor(
  bytes: Uint8Array,
  predictor: CogPredictor,
  dtype: DType,
  bands: number,
  blockSize: number,
): Uint8Array {
  const sampleBytes = bytesPerSample(dtype);
  checkTileBytes(bytes, bands, blockSize, sampleBytes);
  if (predictor === 3) return floatingPointUndiff(bytes, bands, blockSize, sampleBytes);
  const out = bytes.slice();
  if (predictor === 2) {
    const Ctor = TYPED_FOR_DTYPE[dtype] as unknown as new (buffer: ArrayBuffer) => TypedArray;
    horizontalUndiff(new Ctor(out.buffer as ArrayBuffer), bands, blockSize);
  }
  return out;
}

const LZW_CLEAR = 256;
const LZW_EOI = 257;
const LZW_FIRST = 258;
/** libtiff resets the table when the next free code would be 4094, so codes never exceed 12 bits. */
const LZW_RESET_AT = 4094;
const LZW_HASH_BITS = 13;
const LZW_HASH_SIZE = 1 << LZW_HASH_BITS;

/**
 * TIFF LZW (MSB-first codes of 9..12 bits, Clear 256, EOI 257, code width grows one code early), emitting the same
 * code stream as libtiff minus its optional ratio-driven resets.
 */
export function lzwEncode(input: Uint8Array): Uint8Array {
  const out = new Uint8Array(Math.ceil(input.length * 1.51) + 16);
  let op = 0;
  let bitBuf = 0;
  let bitCount = 0;
  const put = (code: number, nbits: number): void => {
    bitBuf = (bitBuf << nbits) | code;
    bitCount += nbits;
    while (bitCount >= 8) {
      bitCount -= 8;
      out[op++] = (bitBuf >>> bitCount) & 0xff;
    }
    bitBuf &= (1 << bitCount) - 1;
  };
  // Open-addressing hash of (prefix code << 8 | next byte) -> code.
  const keys = new Int32Array(LZW_HASH_SIZE).fill(-1);
  const codes = new Uint16Array(LZW_HASH_SIZE);
  const mask = LZW_HASH_SIZE - 1;

  let nbits = 9;
  let maxCode = 511;
  let next = LZW_FIRST;
  put(LZW_CLEAR, nbits);
  if (input.length === 0) {
    put(LZW_EOI, nbits);
  } else {
    let ent = input[0];
    for (let i = 1; i < input.length; i++) {
      const c = input[i];
      const key = (ent << 8) | c;
      let h = Math.imul(key, 0x9e3779b1) >>> (32 - LZW_HASH_BITS);
      let found = -1;
      while (keys[h] !== -1) {
        if (keys[h] === key) {
          found = codes[h];
          break;
        }
        h = (h + 1) & mask;
      }
      if (found >= 0) {
        ent = found;
        continue;
      }
      put(ent, nbits);
      keys[h] = key;
      codes[h] = next++;
      ent = c;
      if (next === LZW_RESET_AT) {
        put(LZW_CLEAR, nbits);
        keys.fill(-1);
        nbits = 9;
        maxCode = 511;
        next = LZW_FIRST;
      } else if (next > maxCode) {
        nbits++;
        maxCode = (1 << nbits) - 1;
      }
    }
    put(ent, nbits);
    // The decoder adds one more entry when it reads the last code, and may widen before reading EOI.
    if (next + 1 === LZW_RESET_AT) {
      put(LZW_CLEAR, nbits);
      nbits = 9;
    } else if (next + 1 > maxCode) {
      nbits++;
    }
    put(LZW_EOI, nbits);
  }
  if (bitCount > 0) out[op++] = (bitBuf << (8 - bitCount)) & 0xff;
  return out.slice(0, op);
}

function jpegFrame(
  jpeg: Uint8Array,
): { width: number; height: number; components: number; sampling0: number } | undefined {
  let i = 2;
  while (i + 4 <= jpeg.length && jpeg[i] === 0xff) {
    const marker = jpeg[i + 1];
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof && i + 12 <= jpeg.length) {
      return {
        height: (jpeg[i + 5] << 8) | jpeg[i + 6],
        width: (jpeg[i + 7] << 8) | jpeg[i + 8],
        components: jpeg[i + 9],
        sampling0: jpeg[i + 11],
      };
    }
    i += 2 + ((jpeg[i + 2] << 8) | jpeg[i + 3]);
  }
  return undefined;
}

async function encodeJpeg(bytes: Uint8Array, bands: number, blockSize: number, quality: number): Promise<Uint8Array> {
  const jpeg = await encodeImage(bytes, blockSize, blockSize, bands === 3 ? 3 : 1, 'jpg', { quality });
  const frame = jpegFrame(jpeg);
  // libtiff decodes a JPEG tile only if it matches the IFD: tile size, component count and (YCbCr) 2x2 sampling.
  const samplingOk = bands === 1 || frame?.sampling0 === 0x22;
  if (!frame || frame.width !== blockSize || frame.height !== blockSize || frame.components !== bands || !samplingOk) {
    const got = frame ? `${frame.width} x ${frame.height}, ${frame.components} component(s)` : 'no frame header';
    throw new CogLayoutError(
      'unsupported',
      `the image encoder made a JPEG (${got}) that cannot be a ${bands}-band ${
        bands === 3 ? `YCbCr (photometric ${TIFF_PHOTOMETRIC.ycbcr}, 4:2:0)` : 'grayscale'
      } ${blockSize} x ${blockSize} TIFF tile; use deflate/zstd for this mosaic`,
    );
  }
  return jpeg;
}

/**
 * Encode one tile: `pixels` holds one `blockSize * blockSize` array per band (edge tiles padded, see `edgePad`).
 * The band arrays are not modified (unless `consume` says they may be), and may be reused once the promise settles.
 */
export async function encodeTile(pixels: readonly TypedArray[], options: TileEncodeOptions): Promise<Uint8Array> {
  const blockSize = options.blockSize ?? DEFAULT_COG_BLOCK_SIZE;
  return encodeSamples(interleaveTile(pixels, options.dtype, options.bands, blockSize, options.consume), options);
}

/**
 * Encode one tile given as pixel-interleaved samples (blockSize^2 x bands, as the COG stores them). The samples are
 * given up: predictor 2 overwrites them.
 */
export async function encodeSamples(samples: TypedArray, options: TileEncodeOptions): Promise<Uint8Array> {
  const { dtype, bands, compression, predictor } = options;
  const blockSize = options.blockSize ?? DEFAULT_COG_BLOCK_SIZE;
  const Ctor = TYPED_FOR_DTYPE[dtype];
  if (!(samples instanceof Ctor)) throw encodeError(`samples are a ${samples.constructor.name}, expected ${Ctor.name}`);
  if (samples.length !== blockSize * blockSize * bands)
    throw encodeError(`expected ${blockSize * blockSize * bands} samples, got ${samples.length}`);
  if (predictor !== 1 && compression !== 'deflate' && compression !== 'lzw' && compression !== 'zstd') {
    throw encodeError(`predictor ${predictor} only works with deflate, lzw or zstd, not '${compression}'`);
  }
  return compressBytes(applyPredictor(samples, predictor, bands, blockSize), options);
}

/**
 * Encode one tile given as the bytes `applyPredictor` makes of it (the samples with the predictor applied): a
 * source block decoded without undoing that same predictor.
 */
export function encodePredicted(bytes: Uint8Array, options: TileEncodeOptions): Promise<Uint8Array> {
  const blockSize = options.blockSize ?? DEFAULT_COG_BLOCK_SIZE;
  checkTileBytes(bytes, options.bands, blockSize, bytesPerSample(options.dtype));
  if (options.predictor === 3) throw encodeError('predicted bytes take predictor 1 or 2');
  return compressBytes(bytes, options);
}

async function compressBytes(bytes: Uint8Array, options: TileEncodeOptions): Promise<Uint8Array> {
  const { dtype, bands, compression } = options;
  const blockSize = options.blockSize ?? DEFAULT_COG_BLOCK_SIZE;
  switch (compression) {
    case 'none':
      return bytes;
    case 'deflate': {
      return deflateTile(bytes, options.level ?? DEFAULT_DEFLATE_LEVEL);
    }
    case 'zstd': {
      if (!zstdAvailable()) {
        throw new CogLayoutError('unsupported', 'zstd needs Node.js >= 22.15 (node:zlib zstdCompress); use deflate');
      }
      const level = options.level ?? DEFAULT_ZSTD_LEVEL;
      const out = await new Promise<Buffer>((resolve, reject) =>
        zlib.zstdCompress(
          bytes,
          {
            params: { [zlib.constants.ZSTD_c_compressionLevel]: level },
            pledgedSrcSize: bytes.length,
            chunkSize: Math.max(64 * 1024, bytes.length + 1024),
          },
          (err, result) => (err ? reject(err) : resolve(result)),
        ),
      );
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    }
    case 'lzw':
      return lzwEncode(bytes);
    case 'jpeg':
      if (dtype !== 'uint8' || (bands !== 1 && bands !== 3)) {
        throw encodeError(`jpeg needs uint8 data with 1 or 3 bands, got ${bands} x ${dtype}`);
      }
      return encodeJpeg(bytes, bands, blockSize, options.quality ?? DEFAULT_LOSSY_QUALITY);
    case 'webp':
      if (dtype !== 'uint8' || bands !== 3)
        throw encodeError(`webp needs uint8 data with 3 bands, got ${bands} x ${dtype}`);
      return encodeImage(bytes, blockSize, blockSize, 3, 'webp', {
        quality: options.quality ?? DEFAULT_LOSSY_QUALITY,
        lossless: options.lossless ?? false,
      });
  }
}
