/**
 * Decoders: geotiff.js's block decoders, with deflate (libdeflate or node:zlib), zstd (node:zlib), LZW and PackBits
 * bounded by the block's declared size (block.decode.ts), predictors undone by predictor.ts, and webp by the
 * encoder's sharp; the names of the TIFF compressions and the ones cogmill reads. Part of the reader (the one
 * import site of geotiff).
 */
import { addDecoder, BaseDecoder } from 'geotiff';
import {
  declaredBlockBytes,
  inflateBounded,
  lzwBounded,
  packbitsBounded,
  zstdAvailable,
  zstdBounded,
} from './block.decode.ts';
import { decodeImage } from './encode.ts';
import { undoPredictorInPlace } from './predictor.ts';

export function toArrayBuffer(b: Uint8Array): ArrayBuffer {
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

/**
 * geotiff.js's decode with our predictor undo (predictor.ts: one typed loop per sample width over the whole
 * block, instead of a typed view and a generic loop per row).
 */
abstract class DecoderPredicted extends BaseDecoder {
  /** The compressed bytes as they are: a view into a larger read is not copied out first. */
  abstract decodeBytes(bytes: Uint8Array): Promise<ArrayBuffer>;

  override decodeBlock(buffer: ArrayBuffer): Promise<ArrayBuffer> {
    return this.decodeBytes(new Uint8Array(buffer));
  }

  override decode(buffer: ArrayBuffer): Promise<ArrayBuffer> {
    return this.decodeView(new Uint8Array(buffer));
  }

  /** The block decoded, predictor undone. */
  async decodeView(bytes: Uint8Array): Promise<ArrayBuffer> {
    const { decoded, undo } = await this.decodeDeferred(bytes);
    undo?.();
    return decoded;
  }

  /**
   * The block decoded with its predictor still applied, and `undo` (none without a predictor) to undo it in place:
   * a caller that can use the predicted bytes as they are (a COG tile taking the same predictor) reads them first
   * and undoes after, instead of copying them aside.
   */
  async decodeDeferred(bytes: Uint8Array): Promise<DeferredDecode> {
    const decoded = await this.decodeBytes(bytes);
    const p = this.parameters as unknown as {
      tileWidth: number;
      tileHeight: number;
      predictor: number;
      planarConfiguration: number;
      bitsPerSample: number | ArrayLike<number>;
    };
    if (!p.predictor || p.predictor === 1) return { decoded };
    const bits = typeof p.bitsPerSample === 'number' ? [p.bitsPerSample] : Array.from(p.bitsPerSample);
    if (bits.some((b) => b % 8 !== 0 || b !== bits[0]) || ![8, 16, 32, 64].includes(bits[0])) {
      throw new Error(`predictor ${p.predictor} needs whole-byte samples of one size, not ${bits.join(', ')} bits`);
    }
    const shape = {
      width: p.tileWidth,
      height: p.tileHeight,
      bytesPerSample: bits[0] / 8,
      samplesPerPixel: p.planarConfiguration === 2 ? 1 : bits.length,
    };
    return { decoded, undo: () => void undoPredictorInPlace(decoded, p.predictor, shape) };
  }
}

/** A decoded block whose predictor (if any) is still applied; `undo` undoes it in place (call it once). */
export interface DeferredDecode {
  readonly decoded: ArrayBuffer;
  readonly undo?: () => void;
}

/** Decoders that never produce more than the block declares (see block.decode.ts). */
class DecoderDeflateBounded extends DecoderPredicted {
  override async decodeBytes(bytes: Uint8Array): Promise<ArrayBuffer> {
    return toArrayBuffer(await inflateBounded(bytes, declaredBytesOf(this)));
  }
}

class DecoderZstdBounded extends DecoderPredicted {
  override async decodeBytes(bytes: Uint8Array): Promise<ArrayBuffer> {
    return toArrayBuffer(await zstdBounded(bytes, declaredBytesOf(this)));
  }
}

class DecoderLzwBounded extends DecoderPredicted {
  override async decodeBytes(bytes: Uint8Array): Promise<ArrayBuffer> {
    return toArrayBuffer(await lzwBounded(bytes, declaredBytesOf(this)));
  }
}

class DecoderPackbitsBounded extends DecoderPredicted {
  override async decodeBytes(bytes: Uint8Array): Promise<ArrayBuffer> {
    return toArrayBuffer(await packbitsBounded(bytes, declaredBytesOf(this)));
  }
}

class DecoderWebpSharp extends BaseDecoder {
  override async decodeBlock(buffer: ArrayBuffer): Promise<ArrayBuffer> {
    const { data } = await decodeImage(new Uint8Array(buffer));
    return toArrayBuffer(data);
  }
}

/**
 * Decode one block's compressed bytes with the level's decoder: cogmill's own decoders take the bytes as they are
 * (often a view into a read of several blocks), geotiff.js's take a copy of them as an ArrayBuffer of their own.
 * `deferUndo`: the predictor is left applied and returned as `undo` (cogmill's decoders; geotiff.js's undo it).
 */
export async function decodeBlockBytes(
  decoder: BaseDecoder,
  bytes: Uint8Array,
  deferUndo = false,
): Promise<{ decoded: ArrayBufferLike; undo?: () => void }> {
  if (decoder instanceof DecoderPredicted) {
    return deferUndo ? decoder.decodeDeferred(bytes) : { decoded: await decoder.decodeView(bytes) };
  }
  return { decoded: (await decoder.decode(toArrayBuffer(bytes))) as ArrayBufferLike };
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

export const COMPRESSION_NAMES: Record<number, string> = {
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
export const SUPPORTED_COMPRESSIONS = new Set([1, 5, 7, 8, 32773, 32946, 50000, 50001]);
