/**
 * Decoders: geotiff.js's block decoders, with deflate / zstd backed by node:zlib and webp by the encoder's sharp;
 * deflate, zstd, LZW and PackBits bounded by the block's declared size (block.decode.ts); the names of the TIFF compressions and the ones cogmill reads. Part of the reader (the one import site of geotiff).
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
