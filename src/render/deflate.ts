/**
 * Deflate (zlib format, TIFF compression 8) for tiles, the one import site of cogmill's native deflate addon
 * (native/deflate: libdeflate, the library GDAL's libtiff links). With the addon, a tile compressed here at level
 * N is byte for byte what GDAL writes at ZLEVEL=N (libtiff hands zlib levels 6..9 to libdeflate one level up, and
 * so do we: `libdeflateLevel`); inflating is ~2x faster than node:zlib.
 *
 * Where the addon cannot be built (no compiler or no libdeflate-dev at install time), node:zlib takes over: the
 * default strategy at one level above the one asked for (level 6 -> 7), which measures within 1% of libdeflate's
 * size on the imagery in bench/deflate.bench.ts, at about 1.3x node:zlib's level-6 time. Both run on libuv's
 * thread pool. `deflateEngine()` says which one is in use.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import zlib from 'node:zlib';

export type DeflateEngine = 'libdeflate' | 'zlib';

interface NativeDeflate {
  compress(input: Uint8Array, level: number, cb: (err: Error | undefined, out: Buffer) => void): void;
  /** on the calling thread (absent from addons built before it) */
  compressSync?(input: Uint8Array, level: number, room?: number): Uint8Array;
  decompressSync?(input: Uint8Array, declaredBytes: number, into?: ArrayBuffer): Uint8Array | 'too-large' | 'bad-data';
  decompress(
    input: Uint8Array,
    declaredBytes: number,
    cb: (err: Error | undefined, out: Buffer | undefined, status: string) => void,
  ): void;
  /** (absent from addons built before it) */
  histogram8?(samples: Uint8Array, bands: number, counts: Uint32Array, predictedRowPixels?: number): void;
  /** (absent from addons built before it) */
  predictor2?(
    bytes: Uint8Array,
    rowSamples: number,
    rows: number,
    stride: number,
    bytesPerSample: number,
    undo: boolean,
  ): void;
}

const ADDON_PATH = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../native/deflate/build/Release/cogmill_deflate.node',
);

let addon: NativeDeflate | null | undefined;
let forced: DeflateEngine | undefined;

function native(): NativeDeflate | null {
  if (forced === 'zlib') return null;
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)(ADDON_PATH) as NativeDeflate;
    } catch {
      addon = null;
    }
  }
  return addon;
}

let inflateHere = false;

/**
 * Inflate on the calling thread instead of libuv's pool, from now on in this thread (a worker thread only; the main
 * thread never blocks on it). For threads that do one tile at a time: the materialisation workers (RGB COG
 * 3.05 -> 2.9 s). Tile-serving workers keep the pool: they hold two requests, and a blocked thread made the second
 * one wait (RGB z14 p99 133-141 -> 160-174 ms).
 */
export function inflateOnThisThread(on: boolean): void {
  inflateHere = on && !isMainThread;
}

/** Decoded blocks handed back as no longer used (recycleDecoded), reused by the next inflate on this thread. */
const spares: ArrayBuffer[] = [];
const MAX_SPARES = 4;
/** Bytes the spares may hold together: a source's huge blocks do not stay allocated after its job. */
const MAX_SPARE_BYTES = 16 * 1024 * 1024;

/**
 * Give back the buffer of a decoded block that nothing uses any more: the next `inflateTile` on this thread of a
 * block of the same size decodes into it. A materialisation thread allocated a new buffer per tile (786 KB for an
 * RGB tile), zeroed, and V8 ran a full collection for every ~64 MB of them. The caller must be its only user (the
 * tile job, once the tile is encoded and its bytes are not the payload). Detached or shared buffers are ignored.
 */
export function recycleDecoded(buffer: ArrayBufferLike): void {
  if (!inflateHere || !(buffer instanceof ArrayBuffer) || buffer.byteLength === 0 || spares.length >= MAX_SPARES)
    return;
  const held = spares.reduce((sum, b) => sum + b.byteLength, 0);
  if (held + buffer.byteLength <= MAX_SPARE_BYTES && !spares.includes(buffer)) spares.push(buffer);
}

function spareOf(bytes: number): ArrayBuffer | undefined {
  const i = spares.findIndex((b) => b.byteLength === bytes);
  return i < 0 ? undefined : spares.splice(i, 1)[0];
}

/** Which engine compresses and inflates tiles in this process. */
export function deflateEngine(): DeflateEngine {
  return native() ? 'libdeflate' : 'zlib';
}

/**
 * Use node:zlib even where the addon is built ('zlib'), or the best available ('libdeflate'); for comparisons
 * and for the tests of the fallback. Per process (each worker thread has its own).
 */
export function useDeflateEngine(engine: DeflateEngine): void {
  forced = engine === 'zlib' ? 'zlib' : undefined;
}

/**
 * The libdeflate level for a zlib-style level (ZLEVEL), as libtiff maps it: libdeflate's levels 1..12 are not
 * zlib's, and libtiff asks for one level more for 6..9 (so GDAL's default ZLEVEL 6 is libdeflate's 7); 10..12 are
 * libdeflate-only levels (GDAL accepts them with libdeflate).
 */
export function libdeflateLevel(level: number): number {
  const l = Math.min(12, Math.max(0, Math.round(level)));
  return l >= 6 && l <= 9 ? l + 1 : l;
}

/** The node:zlib level used for a requested level when the addon is missing (see the module comment). */
export function zlibFallbackLevel(level: number): number {
  return level >= 1 && level < 9 ? level + 1 : Math.min(9, Math.max(0, level));
}

function asBytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Free bytes left around a tile compressed on a worker thread (a COG tile's leader and trailer). */
const ROOM = 4;
const roomy = new WeakSet<Uint8Array>();

/**
 * Free bytes before and after `bytes` in its buffer that nothing else uses (0 unless `deflateTile` made it on a
 * worker thread): a caller may write its framing there instead of copying the tile (cog.layout.ts framedPayload).
 */
export function roomAround(bytes: Uint8Array): number {
  return roomy.has(bytes) ? ROOM : 0;
}

/** zlib-format deflate of a whole tile at `level` (1..9, like GDAL's ZLEVEL; libdeflate also takes 10..12). */
export function deflateTile(bytes: Uint8Array, level: number): Promise<Uint8Array> {
  const n = native();
  // a worker thread compresses on its own thread: no round trip through libuv's pool and no copy of the output
  // (the main thread never blocks on it)
  if (n?.compressSync && !isMainThread) {
    try {
      const out = n.compressSync(bytes, libdeflateLevel(level), ROOM);
      // (an addon built before `room` ignores it: the view then starts at 0)
      if (out.byteOffset === ROOM) roomy.add(out);
      return Promise.resolve(out);
    } catch (e) {
      return Promise.reject(e);
    }
  }
  if (n) {
    return new Promise((resolve, reject) =>
      n.compress(bytes, libdeflateLevel(level), (err, out) => (err ? reject(err) : resolve(asBytes(out)))),
    );
  }
  return new Promise((resolve, reject) =>
    zlib.deflate(
      bytes,
      { level: zlibFallbackLevel(level), chunkSize: Math.max(64 * 1024, bytes.length + 1024) },
      (err, out) => (err ? reject(err) : resolve(asBytes(out))),
    ),
  );
}

/**
 * TIFF horizontal differencing (predictor 2) in place, in C: `rows` rows of `rowSamples` little-endian samples of
 * `bytesPerSample` bytes, each minus the sample `stride` before it in its row, or (`undo`) the running sums back.
 * Returns false, having done nothing, where the addon is missing: the caller's own loop then runs. 2-5x faster
 * than the typed JavaScript loops (256 blocks of 512 x 512: RGB 8-bit undo 115 -> 51 ms, one band 107 -> 22 ms);
 * the same bytes (a test compares both).
 */
export function predictor2Native(
  bytes: Uint8Array,
  rowSamples: number,
  rows: number,
  stride: number,
  bytesPerSample: number,
  undo: boolean,
): boolean {
  const fn = native()?.predictor2;
  if (!fn || bytes.byteOffset % bytesPerSample !== 0) return false;
  fn(bytes, rowSamples, rows, stride, bytesPerSample, undo);
  return true;
}

/**
 * Add the counts of each value of each band of pixel-interleaved 8-bit samples (1-4 bands) to
 * counts[band * 256 + value], in C; false, having done nothing, where the addon is missing (the caller counts).
 * Band statistics of 8-bit tiles: RGB 192M samples 170 -> ~40 ms. With `predictedRowPixels` the samples still carry
 * predictor 2 in rows of that many pixels: they are counted as undone, and left as they are (false also where the
 * addon predates that argument).
 */
export function histogram8Native(
  samples: Uint8Array,
  bands: number,
  counts: Uint32Array,
  predictedRowPixels?: number,
): boolean {
  const fn = native()?.histogram8;
  if (!fn) return false;
  if (predictedRowPixels === undefined) {
    fn(samples, bands, counts);
    return true;
  }
  // an addon built before the fourth argument ignores it: it is asked on a one-pixel row first (a difference of
  // 1 then 1 counts as values 1 and 2 only where the argument is understood)
  if (predictedAware === undefined) {
    const probe = new Uint32Array(256);
    fn(new Uint8Array([1, 1]), 1, probe, 2);
    predictedAware = probe[2] === 1;
  }
  if (!predictedAware) return false;
  fn(samples, bands, counts, predictedRowPixels);
  return true;
}
let predictedAware: boolean | undefined;

/** Why `inflateTile` could not give the bytes: the stream decodes to more than declared, or is not deflate. */
export type InflateFailure = 'too-large' | 'invalid';

export class InflateError extends Error {
  override readonly name = 'InflateError';
  readonly failure: InflateFailure;
  constructor(failure: InflateFailure, message: string) {
    super(message);
    this.failure = failure;
  }
}

function inflateZlib(bytes: Uint8Array, declaredBytes: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) =>
    zlib.inflate(
      bytes,
      { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: Math.max(1, declaredBytes) },
      (err, out) => {
        if (!err) resolve(asBytes(out));
        else if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
          reject(new InflateError('too-large', `decodes to more than the ${declaredBytes} bytes declared`));
        else reject(new InflateError('invalid', err.message));
      },
    ),
  );
}

/**
 * Inflate a zlib stream of at most `declaredBytes` decoded bytes (a block's size from its header) on the thread
 * pool. Never allocates more than declared; a stream that decodes to more fails with `too-large`. A truncated
 * stream gives what it holds (as libtiff reads it): libdeflate refuses those, node:zlib then decodes them.
 */
export function inflateTile(bytes: Uint8Array, declaredBytes: number): Promise<Uint8Array> {
  const n = native();
  if (!n) return inflateZlib(bytes, declaredBytes);
  // a thread that asked for it inflates on its own thread, into a buffer of the declared size (no round trip, no copy)
  if (n.decompressSync && inflateHere) {
    let out: ReturnType<NonNullable<NativeDeflate['decompressSync']>>;
    try {
      const spare = spareOf(declaredBytes);
      out = spare ? n.decompressSync(bytes, declaredBytes, spare) : n.decompressSync(bytes, declaredBytes);
    } catch (e) {
      return Promise.reject(e);
    }
    if (typeof out !== 'string') return Promise.resolve(out);
    if (out === 'too-large')
      return Promise.reject(new InflateError('too-large', `decodes to more than the ${declaredBytes} bytes declared`));
    return inflateZlib(bytes, declaredBytes);
  }
  return new Promise((resolve, reject) =>
    n.decompress(bytes, declaredBytes, (err, out, status) => {
      if (err) reject(err);
      else if (out && (status === 'ok' || status === 'short')) resolve(asBytes(out));
      else if (status === 'too-large')
        reject(new InflateError('too-large', `decodes to more than the ${declaredBytes} bytes declared`));
      else inflateZlib(bytes, declaredBytes).then(resolve, reject);
    }),
  );
}
