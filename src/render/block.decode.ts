/**
 * Block decompression that never produces more than a block declares. A tile's decoded size is known from its
 * header (block width x height x bits per pixel), so a stream that decodes to more is a lie (a decompression
 * bomb, or garbage) and fails with BlockDecodeError before the excess is allocated. Deflate (libdeflate into a
 * buffer of the declared size, or node:zlib) and zstd (node:zlib) run in libuv's threadpool, bounded; LZW and
 * PackBits decode in JavaScript into a buffer of the declared size and yield to the event loop every MiB of output.
 */
import * as zlib from 'node:zlib';
import { InflateError, inflateTile } from './deflate.ts';

const MiB = 1024 * 1024;
/** LZW / PackBits output between two yields to the event loop */
const YIELD_EVERY_BYTES = MiB;

/** A block whose bytes cannot be decoded into its declared size. The reader adds the source and block. */
export class BlockDecodeError extends Error {
  override readonly name = 'BlockDecodeError';
}

export interface BlockShape {
  readonly width: number;
  readonly height: number;
  /** bits per pixel of one block: the sum of BitsPerSample (chunky) or one sample's bits (planar) */
  readonly bitsPerPixel: number;
}

/** The bytes a block decodes to (rows padded to whole bytes, as TIFF stores them). */
export function declaredBlockBytes(shape: BlockShape): number {
  return Math.ceil((shape.width * shape.bitsPerPixel) / 8) * shape.height;
}

function tooLarge(what: string, declared: number): BlockDecodeError {
  return new BlockDecodeError(
    `its ${what} stream decodes to more than the ${declared} bytes the block declares (a decompression bomb or garbage)`,
  );
}

type ZlibCallback = (e: Error | null, r: Buffer) => void;
type ZstdZlib = { zstdDecompress?: (b: Uint8Array, o: object, cb: ZlibCallback) => void };
const zstdDecompress = (zlib as unknown as ZstdZlib).zstdDecompress;

export const zstdAvailable = zstdDecompress !== undefined;

function capped(run: (cb: ZlibCallback) => void, what: string, declared: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    run((e, r) => {
      if (!e) resolve(new Uint8Array(r.buffer, r.byteOffset, r.byteLength));
      else if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') reject(tooLarge(what, declared));
      else reject(new BlockDecodeError(`its ${what} stream is invalid: ${e.message}`));
    });
  });
}

/**
 * Inflate a zlib (deflate) stream of at most `declared` decoded bytes, in the threadpool: libdeflate where the
 * addon is built, node:zlib otherwise (deflate.ts).
 */
export async function inflateBounded(bytes: Uint8Array, declared: number): Promise<Uint8Array> {
  try {
    return await inflateTile(bytes, declared);
  } catch (e) {
    if (e instanceof InflateError && e.failure === 'too-large') throw tooLarge('deflate', declared);
    throw new BlockDecodeError(`its deflate stream is invalid: ${(e as Error).message}`);
  }
}

/** Decompress a zstd frame of at most `declared` decoded bytes, in the threadpool. */
export function zstdBounded(bytes: Uint8Array, declared: number): Promise<Uint8Array> {
  const z = zstdDecompress;
  if (!z) return Promise.reject(new BlockDecodeError('ZSTD needs Node.js 23.8 or later'));
  return capped((cb) => z(bytes, { maxOutputLength: Math.max(1, declared) }, cb), 'zstd', declared);
}

const yieldNow = () => new Promise<void>((r) => setImmediate(r));

/** PackBits (TIFF compression 32773) into exactly `declared` bytes at most. */
export async function packbitsBounded(bytes: Uint8Array, declared: number): Promise<Uint8Array> {
  const out = new Uint8Array(declared);
  let o = 0;
  let nextYield = YIELD_EVERY_BYTES;
  let i = 0;
  while (i < bytes.length) {
    const n = (bytes[i] << 24) >> 24; // int8
    i++;
    if (n >= 0) {
      const len = n + 1;
      if (o + len > declared) throw tooLarge('PackBits', declared);
      const take = Math.min(len, bytes.length - i);
      out.set(bytes.subarray(i, i + take), o);
      o += len;
      i += len;
    } else if (n !== -128) {
      const len = 1 - n;
      if (i >= bytes.length) break;
      if (o + len > declared) throw tooLarge('PackBits', declared);
      out.fill(bytes[i], o, o + len);
      o += len;
      i++;
    }
    if (o >= nextYield) {
      nextYield += YIELD_EVERY_BYTES;
      await yieldNow();
    }
  }
  return out;
}

const CLEAR = 256;
const EOI = 257;
const TABLE_SIZE = 4096;

/**
 * TIFF LZW (MSB-first codes, 9 to 12 bits, early change) into at most `declared` bytes. A stream that would
 * write past the declared size fails; a stream that ends early leaves the rest zero, as libtiff does.
 */
export async function lzwBounded(bytes: Uint8Array, declared: number): Promise<Uint8Array> {
  const out = new Uint8Array(declared);
  // each table entry is a run of `length` bytes already written to `out` at `start` (a string of the table is
  // always a prefix of what follows a previous occurrence, so it can be copied from the output itself)
  const start = new Int32Array(TABLE_SIZE);
  const length = new Int32Array(TABLE_SIZE);
  let next = 258;
  let width = 9;
  let bitPos = 0;
  const totalBits = bytes.length * 8;
  let o = 0;
  let prev = -1;
  let nextYield = YIELD_EVERY_BYTES;
  const read = (): number => {
    if (bitPos + width > totalBits) return EOI;
    let v = 0;
    for (let k = 0; k < width; k++) {
      const bit = bitPos + k;
      v = (v << 1) | ((bytes[bit >> 3] >> (7 - (bit & 7))) & 1);
    }
    bitPos += width;
    return v;
  };
  for (;;) {
    const code = read();
    if (code === EOI) break;
    if (code === CLEAR) {
      next = 258;
      width = 9;
      prev = -1;
      continue;
    }
    let at: number;
    let len: number;
    if (code < 256) {
      if (o + 1 > declared) throw tooLarge('LZW', declared);
      out[o] = code;
      at = o;
      len = 1;
    } else if (code < next && prev >= 0) {
      len = length[code];
      if (o + len > declared) throw tooLarge('LZW', declared);
      out.copyWithin(o, start[code], start[code] + len);
      at = o;
    } else if (code === next && prev >= 0) {
      // KwKwK: the previous string plus its own first byte
      const plen = prev < 256 ? 1 : length[prev];
      len = plen + 1;
      if (o + len > declared) throw tooLarge('LZW', declared);
      const pstart = prev < 256 ? -1 : start[prev];
      if (pstart < 0) out[o] = prev;
      else out.copyWithin(o, pstart, pstart + plen);
      out[o + plen] = out[o];
      at = o;
    } else {
      throw new BlockDecodeError(`its LZW stream has an invalid code ${code} (table holds ${next})`);
    }
    if (prev >= 0 && next < TABLE_SIZE) {
      // new entry: the previous string plus the first byte of this one; it sits right before `at` in the output
      const plen = prev < 256 ? 1 : length[prev];
      start[next] = at - plen;
      length[next] = plen + 1;
      next++;
    }
    o += len;
    prev = code;
    if (next + 1 >= 1 << width && width < 12) width++;
    if (o >= nextYield) {
      nextYield += YIELD_EVERY_BYTES;
      await yieldNow();
    }
  }
  return out;
}
