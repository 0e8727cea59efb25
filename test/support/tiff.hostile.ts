/**
 * Hostile TIFFs for tests, built byte by byte: a classic little-endian tiled GeoTIFF whose tile payloads, byte
 * counts, offsets, GDAL_NODATA string and GeoKey directory are whatever the test says, including lies. Also the
 * compressors needed to make decompression bombs (deflate, zstd, LZW, PackBits) without holding the bomb's
 * decoded bytes in memory.
 */
import { once } from 'node:events';
import * as zlib from 'node:zlib';

export const COMPRESSION = { none: 1, lzw: 5, deflate: 8, packbits: 32773, zstd: 50000 } as const;

export interface HostileTiffSpec {
  readonly width: number;
  readonly height: number;
  readonly tileSize: number;
  /** 8 or 16 (unsigned) */
  readonly bitsPerSample?: 8 | 16;
  readonly samples?: number;
  readonly compression: number;
  /** payload of each tile, row-major (`undefined`: sparse, offset 0 and byte count 0) */
  readonly tiles: readonly (Uint8Array | undefined)[];
  /** replace individual byte counts (a lying TileByteCounts entry), by tile index */
  readonly byteCounts?: Readonly<Record<number, number>>;
  /** replace individual offsets, by tile index */
  readonly offsets?: Readonly<Record<number, number>>;
  /** GDAL_NODATA as written (any string, garbage included) */
  readonly nodata?: string;
  readonly epsg?: number;
  /** raw GeoKeyDirectory SHORTs (default: a projected CRS of `epsg`) */
  readonly geoKeys?: readonly number[];
  /** upper-left corner and pixel size (default: 300000, 5000000, 10 m) */
  readonly origin?: readonly [number, number];
  readonly pixelSize?: number;
}

interface Entry {
  tag: number;
  type: number;
  values: readonly number[] | string;
}

const TYPE_SIZE: Record<number, number> = { 2: 1, 3: 2, 4: 4, 12: 8 };

/** The bytes of a tiled GeoTIFF as `spec` describes it (lies included). */
export function hostileTiff(spec: HostileTiffSpec): Uint8Array {
  const bits = spec.bitsPerSample ?? 8;
  const samples = spec.samples ?? 1;
  const across = Math.ceil(spec.width / spec.tileSize);
  const down = Math.ceil(spec.height / spec.tileSize);
  if (spec.tiles.length !== across * down) throw new Error(`${across * down} tiles needed, ${spec.tiles.length} given`);
  const [ox, oy] = spec.origin ?? [300000, 5000000];
  const res = spec.pixelSize ?? 10;
  const entries: Entry[] = [
    { tag: 256, type: 4, values: [spec.width] },
    { tag: 257, type: 4, values: [spec.height] },
    { tag: 258, type: 3, values: new Array(samples).fill(bits) },
    { tag: 259, type: 3, values: [spec.compression] },
    { tag: 262, type: 3, values: [1] },
    { tag: 277, type: 3, values: [samples] },
    { tag: 284, type: 3, values: [1] },
    { tag: 322, type: 3, values: [spec.tileSize] },
    { tag: 323, type: 3, values: [spec.tileSize] },
    { tag: 324, type: 4, values: new Array(across * down).fill(0) },
    { tag: 325, type: 4, values: new Array(across * down).fill(0) },
    { tag: 339, type: 3, values: new Array(samples).fill(1) },
    { tag: 33550, type: 12, values: [res, res, 0] },
    { tag: 33922, type: 12, values: [0, 0, 0, ox, oy, 0] },
    {
      tag: 34735,
      type: 3,
      values: spec.geoKeys ?? [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, spec.epsg ?? 32632],
    },
  ];
  if (spec.nodata !== undefined) entries.push({ tag: 42113, type: 2, values: `${spec.nodata}\0` });
  entries.sort((a, b) => a.tag - b.tag);

  const valueBytes = (e: Entry) =>
    typeof e.values === 'string' ? Buffer.byteLength(e.values, 'latin1') : e.values.length * TYPE_SIZE[e.type];
  const ifdStart = 8;
  const ifdSize = 2 + entries.length * 12 + 4;
  let extra = ifdStart + ifdSize;
  const extraAt = new Map<Entry, number>();
  for (const e of entries) {
    const n = valueBytes(e);
    if (n > 4) {
      extraAt.set(e, extra);
      extra += n + (n & 1);
    }
  }
  let dataAt = extra;
  const offsets: number[] = [];
  const counts: number[] = [];
  for (let i = 0; i < spec.tiles.length; i++) {
    const t = spec.tiles[i];
    offsets.push(t && t.byteLength > 0 ? dataAt : 0);
    counts.push(t ? t.byteLength : 0);
    if (t) dataAt += t.byteLength;
  }
  for (const [k, v] of Object.entries(spec.byteCounts ?? {})) counts[Number(k)] = v;
  for (const [k, v] of Object.entries(spec.offsets ?? {})) offsets[Number(k)] = v;
  for (const e of entries) {
    if (e.tag === 324) e.values = offsets;
    if (e.tag === 325) e.values = counts;
  }

  const out = new Uint8Array(dataAt);
  const dv = new DataView(out.buffer);
  out.set([0x49, 0x49], 0);
  dv.setUint16(2, 42, true);
  dv.setUint32(4, ifdStart, true);
  dv.setUint16(ifdStart, entries.length, true);
  const put = (at: number, e: Entry) => {
    if (typeof e.values === 'string') {
      out.set(Buffer.from(e.values, 'latin1'), at);
      return;
    }
    const size = TYPE_SIZE[e.type];
    e.values.forEach((v, i) => {
      const o = at + i * size;
      if (e.type === 3) dv.setUint16(o, v, true);
      else if (e.type === 4) dv.setUint32(o, v >>> 0, true);
      else if (e.type === 12) dv.setFloat64(o, v, true);
    });
  };
  entries.forEach((e, i) => {
    const at = ifdStart + 2 + i * 12;
    dv.setUint16(at, e.tag, true);
    dv.setUint16(at + 2, e.type, true);
    dv.setUint32(at + 4, typeof e.values === 'string' ? valueBytes(e) : e.values.length, true);
    const where = extraAt.get(e);
    if (where === undefined) put(at + 8, e);
    else {
      dv.setUint32(at + 8, where, true);
      put(where, e);
    }
  });
  dv.setUint32(ifdStart + ifdSize - 4, 0, true);
  let p = extra;
  for (const t of spec.tiles) {
    if (!t) continue;
    out.set(t, p);
    p += t.byteLength;
  }
  return out;
}

/** Bytes of a tile of `size` x `size` samples of `value` (8-bit). */
export function flatTile(size: number, value: number, bytesPerSample = 1): Uint8Array {
  return new Uint8Array(size * size * bytesPerSample).fill(value);
}

// ---------------------------------------------------------------------------------------------------------------
// bombs: compressed streams that decode to far more than a tile

const MiB = 1024 * 1024;

/** zlib stream of `decodedBytes` zero bytes, compressed in pieces (the decoded bytes are never held). */
export async function deflateBomb(decodedBytes: number): Promise<Uint8Array> {
  return streamBomb(zlib.createDeflate({ level: 9 }), decodedBytes);
}

/** zstd frame of `decodedBytes` zero bytes. */
export async function zstdBomb(decodedBytes: number): Promise<Uint8Array> {
  const z = zlib as unknown as { createZstdCompress: () => zlib.Deflate };
  return streamBomb(z.createZstdCompress(), decodedBytes);
}

async function streamBomb(stream: zlib.Deflate, decodedBytes: number): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  const zero = Buffer.alloc(MiB);
  for (let left = decodedBytes; left > 0; left -= MiB) {
    if (!stream.write(left >= MiB ? zero : zero.subarray(0, left))) await once(stream, 'drain');
  }
  stream.end();
  await once(stream, 'end');
  return new Uint8Array(Buffer.concat(chunks));
}

/** PackBits runs of 128 zero bytes (2 bytes each): `decodedBytes / 64` bytes that decode to `decodedBytes`. */
export function packbitsBomb(decodedBytes: number): Uint8Array {
  const runs = Math.ceil(decodedBytes / 128);
  const out = new Uint8Array(runs * 2);
  for (let i = 0; i < runs; i++) out[i * 2] = 0x81; // -127: repeat the next byte 128 times
  return out;
}

/**
 * TIFF LZW (MSB-first codes, early change) of `decodedBytes` zero bytes: the string of zeros grows by one with
 * every code, and the table is cleared when full, so each 12-bit code stands for up to ~3,800 bytes.
 */
export function lzwBomb(decodedBytes: number): Uint8Array {
  return lzwEncodeZeros(decodedBytes);
}

function lzwEncodeZeros(decodedBytes: number): Uint8Array {
  const bytes: number[] = [];
  let acc = 0;
  let accBits = 0;
  const emit = (code: number, width: number) => {
    acc = (acc << width) | code;
    accBits += width;
    while (accBits >= 8) {
      bytes.push((acc >>> (accBits - 8)) & 0xff);
      accBits -= 8;
      acc &= (1 << accBits) - 1;
    }
  };
  const CLEAR = 256;
  const EOI = 257;
  let left = decodedBytes;
  emit(CLEAR, 9);
  while (left > 0) {
    // table restarts: next code 258, width 9; code 0 emits one zero, then code 258 = "00", 259 = "000", ...
    let next = 258;
    let width = 9;
    emit(0, width);
    left -= 1;
    let len = 1;
    while (left > 0 && next < 4093) {
      // the code for a run of len + 1 zeros is the one being defined now (KwKwK case) or already defined
      const take = Math.min(len + 1, left);
      if (take < len + 1) {
        // the tail: single zeros
        for (let i = 0; i < take; i++) {
          emit(0, width);
          next++;
          if (next + 1 >= 1 << width && width < 12) width++;
        }
        left -= take;
        break;
      }
      emit(next, width);
      left -= take;
      len = take;
      next++;
      if (next + 1 >= 1 << width && width < 12) width++;
    }
    if (left > 0) emit(CLEAR, width);
    else {
      emit(EOI, width);
      break;
    }
  }
  if (accBits > 0) bytes.push((acc << (8 - accBits)) & 0xff);
  return new Uint8Array(bytes);
}

/** TIFF LZW of arbitrary bytes (a plain, honest encoder for round-trip checks). */
export function lzwEncode(data: Uint8Array): Uint8Array {
  const bytes: number[] = [];
  let acc = 0;
  let accBits = 0;
  const emit = (code: number, width: number) => {
    acc = (acc << width) | code;
    accBits += width;
    while (accBits >= 8) {
      bytes.push((acc >>> (accBits - 8)) & 0xff);
      accBits -= 8;
      acc &= (1 << accBits) - 1;
    }
  };
  let table = new Map<string, number>();
  let next = 258;
  let width = 9;
  emit(256, width);
  let w = '';
  for (const b of data) {
    const wc = w === '' ? String(b) : `${w},${b}`;
    if (w === '' || table.has(wc)) {
      w = wc;
      continue;
    }
    emit(w.includes(',') ? table.get(w)! : Number(w), width);
    table.set(wc, next++);
    if (next + 1 > 1 << width) {
      if (width < 12) width++;
    }
    if (next >= 4093) {
      emit(256, width);
      table = new Map();
      next = 258;
      width = 9;
    }
    w = String(b);
  }
  if (w !== '') {
    emit(w.includes(',') ? table.get(w)! : Number(w), width);
    next++;
    if (next + 1 > 1 << width && width < 12) width++;
  }
  emit(257, width);
  if (accBits > 0) bytes.push((acc << (8 - accBits)) & 0xff);
  return new Uint8Array(bytes);
}

/** A `width` x `height` uint16 GeoTIFF of seeded noise (1..60000, nodata 0) in 256 px deflate tiles: slow to sort. */
export function noiseTiff(width: number, height: number, seed0: number): Uint8Array {
  const tiles: Uint8Array[] = [];
  let seed = seed0;
  for (let i = 0; i < (width / 256) * (height / 256); i++) {
    const t = new Uint16Array(256 * 256);
    for (let k = 0; k < t.length; k++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      t[k] = 1 + (seed % 60000);
    }
    tiles.push(new Uint8Array(zlib.deflateSync(new Uint8Array(t.buffer), { level: 1 })));
  }
  return hostileTiff({ width, height, tileSize: 256, bitsPerSample: 16, compression: 8, tiles, nodata: '0' });
}
