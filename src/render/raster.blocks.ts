/**
 * Block IO: the blocks under a window fetched (misses next to each other in the file merged into one range
 * request), decoded, cached, and copied into one typed array per band, plus the internal mask.
 */
import { declaredBlockBytes } from './block.decode.ts';
import { type BlockFailure, RenderError } from './errors.ts';
import { decodeBlockBytes } from './raster.decode.ts';
import type { LevelInternal, RasterCaches, RasterInfo, RasterWindow } from './raster.info.ts';
import type { Source } from './source.ts';
import { allocTyped, bytesPerSample, KiB, MiB, type TypedArray, typedFromBytes } from './types.ts';

const MERGE_GAP_BYTES = 16 * KiB;
const MAX_MERGED_BYTES = 32 * MiB;

/** What block reads work with: the raster's source, caches and metadata. */
export interface RasterIo {
  readonly source: Source;
  readonly caches: RasterCaches;
  readonly info: RasterInfo;
}

/**
 * Decoded blocks (bytes as stored, predictor undone) for the given block indices of a level.
 * Cached (`opts.cache` false: neither looked up nor kept); misses that sit next to each other in the file are
 * fetched with one range request; `opts.stored` collects the compressed bytes of the blocks decoded here, and
 * `opts.undo` (uncached reads only) leaves their predictor applied and collects how to undo it in place. A block that
 * cannot be read (an offset or byte count past the end of the file, an impossible size, a stream that does not
 * decode into the block's declared size) is in `failed` with a `corrupt` error naming the source and block;
 * the other blocks are still read. Source IO errors (unreachable, changed) are thrown.
 */
async function readBlocks(
  io: RasterIo,
  level: LevelInternal,
  levelKey: string,
  indices: number[],
  signal?: AbortSignal,
  opts: { cache?: boolean; stored?: Map<number, Uint8Array>; undo?: Map<number, () => void> } = {},
): Promise<{ blocks: Map<number, Uint8Array>; failed: Map<number, RenderError> }> {
  const { stored, undo } = opts;
  const cache = opts.cache !== false;
  // a block cached with its predictor applied would be read as samples by the next caller
  if (undo && cache) throw new RenderError('internal', 'a deferred predictor undo needs an uncached read');
  const out = new Map<number, Uint8Array>();
  const failed = new Map<number, RenderError>();
  const prefix = `${io.info.url}|${io.info.etag}|${levelKey}|`;
  const missing: { index: number; offset: number; count: number }[] = [];
  const size = io.info.size;
  const declared = declaredBlockBytes({
    width: level.blockWidth,
    height: level.blockHeight,
    bitsPerPixel: level.bitsPerSample * (io.info.interleave === 'band' || level.samples === 1 ? 1 : level.samples),
  });
  // a compressed block is never much larger than its decoded size; a count far above it is a lie
  const maxCount = declared * 2 + 64 * KiB;
  const bad = (index: number, why: string, cause?: unknown) =>
    failed.set(
      index,
      new RenderError('corrupt', `${io.info.url}: block ${index} of level ${levelKey} ${why}`, { cause }),
    );
  for (const index of indices) {
    const hit = cache ? io.caches.tiles.get(prefix + index) : undefined;
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
        const d = await decodeBlockBytes(decoder, bytes, undo !== undefined);
        ab = d.decoded;
        if (d.undo) undo?.set(index, d.undo);
      } catch (e) {
        if (signal?.aborted) throw e;
        bad(index, `cannot be decoded: ${(e as Error)?.message ?? e}`, e);
        return;
      }
      decoded = new Uint8Array(ab);
      stored?.set(index, bytes);
    }
    if (cache) io.caches.tiles.set(prefix + index, decoded);
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
        const r = await io.source.read(start, end - start, { signal, ifMatch: io.info.etag });
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
 * Read a window of `level` (number `levelIndex`, 0 = full resolution) into one typed array per band in `bands`
 * (0-based).
 * The window must lie inside the level. A block that cannot be read fails the read with its `corrupt` error,
 * unless `onBlockError` is given: then it is reported there, and its pixels are returned empty (filled with
 * nodata and 0 in the returned mask).
 */
export async function readWindow(
  io: RasterIo,
  level: LevelInternal,
  levelIndex: number,
  x0: number,
  y0: number,
  w: number,
  h: number,
  bands: readonly number[],
  signal?: AbortSignal,
  onBlockError?: (failure: BlockFailure) => void,
): Promise<RasterWindow> {
  if (x0 < 0 || y0 < 0 || w <= 0 || h <= 0 || x0 + w > level.width || y0 + h > level.height) {
    throw new RenderError('internal', `window ${x0},${y0} ${w}x${h} outside level ${levelIndex} of ${io.info.url}`);
  }
  const { dtype, bandCount, nodata } = io.info;
  const bx0 = Math.floor(x0 / level.blockWidth);
  const bx1 = Math.floor((x0 + w - 1) / level.blockWidth);
  const by0 = Math.floor(y0 / level.blockHeight);
  const by1 = Math.floor((y0 + h - 1) / level.blockHeight);
  const planarBand = io.info.interleave === 'band';
  const perBand = level.blocksAcross * level.blocksDown;
  const indices: number[] = [];
  for (let by = by0; by <= by1; by++)
    for (let bx = bx0; bx <= bx1; bx++) {
      const base = by * level.blocksAcross + bx;
      if (planarBand) for (const b of bands) indices.push(b * perBand + base);
      else indices.push(base);
    }
  const maskPromise = level.maskIfd
    ? readMask(io, level.maskIfd, levelIndex, x0, y0, w, h, signal, onBlockError)
    : undefined;
  const [{ blocks, failed }, internalMask] = await Promise.all([
    readBlocks(io, level, String(levelIndex), indices, signal),
    maskPromise,
  ]);
  if (failed.size > 0) {
    const first = [...failed.keys()].sort((a, b) => a - b)[0];
    if (!onBlockError) throw failed.get(first)!;
    for (const [block, error] of failed) onBlockError({ source: io.info.url, level: levelIndex, block, error });
  }
  const planes = wholeBlockPlanes(io, level, blocks, failed, x0, y0, w, h, bands);
  if (planes) return { bands: planes, mask: internalMask };
  const out = bands.map(() => allocTyped(dtype, w * h));
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
          const error = shortBlock(io, index, levelIndex);
          if (!onBlockError) throw error;
          if (!failed.has(index)) onBlockError({ source: io.info.url, level: levelIndex, block: index, error });
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

/** The error of a block that decoded to fewer pixels than its size. */
function shortBlock(io: RasterIo, index: number, levelIndex: number): RenderError {
  return new RenderError(
    'corrupt',
    `${io.info.url}: block ${index} of level ${levelIndex} decoded to fewer pixels than its size`,
  );
}

/** A whole block as stored in the file and as decoded. */
export interface WholeBlock {
  /**
   * pixel-interleaved samples, predictor undone; the caller's own (may be overwritten or transferred). The first
   * read undoes the predictor in the bytes `predicted` gave, which is then gone (unless `keepPredicted` was called).
   */
  readonly samples: Uint8Array;
  /** the compressed bytes as the file stores them (a view into the read buffer) */
  readonly stored?: Uint8Array;
  /**
   * the decoded bytes with the file's predictor still applied (only when it uses one), until `samples` is first
   * read: a COG tile taking the same predictor is compressed from these, and a block whose samples nobody reads
   * (its stored bytes kept) is never undone
   */
  readonly predicted?: Uint8Array;
  /** keep `predicted` past the first read of `samples` (a copy is made now, if needed) */
  keepPredicted(): void;
  /** the buffer `samples` and `predicted` are views of */
  readonly buffer: ArrayBufferLike;
  /** TIFF compression code and predictor of the stored bytes, and whether the file is little-endian */
  readonly compression: number;
  readonly predictor: number;
  readonly littleEndian: boolean;
}

/**
 * Whole block (bx, by) of a pixel-interleaved level (or of a one-band raster): every band's samples interleaved,
 * `blockWidth * blockHeight * bandCount` of them, and the bytes the file stores, always read from the file (the
 * block cache is neither used nor filled): the decoded bytes are the caller's. Undefined for a sparse block (no bytes in the file:
 * nodata). A block that cannot be read throws its `corrupt` error.
 */
export async function readWholeBlock(
  io: RasterIo,
  level: LevelInternal,
  levelIndex: number,
  bx: number,
  by: number,
  signal?: AbortSignal,
): Promise<WholeBlock | undefined> {
  const { url, interleave, bandCount, dtype } = io.info;
  if (
    !(bx >= 0 && by >= 0 && bx < level.blocksAcross && by < level.blocksDown) ||
    (interleave === 'band' && bandCount > 1)
  )
    throw new RenderError('internal', `block ${bx},${by} of level ${levelIndex} of ${url} is not one whole block`);
  const index = by * level.blocksAcross + bx;
  const stored = new Map<number, Uint8Array>();
  const undo = new Map<number, () => void>();
  const { blocks, failed } = await readBlocks(io, level, String(levelIndex), [index], signal, {
    cache: false,
    stored,
    undo,
  });
  const error = failed.get(index);
  if (error) throw error;
  const bytes = blocks.get(index)!;
  if (bytes.byteLength === 0) return undefined;
  const want = level.blockWidth * level.blockHeight * bandCount * bytesPerSample(dtype);
  if (bytes.byteLength < want) throw shortBlock(io, index, levelIndex);
  const view = bytes.byteLength === want ? bytes : bytes.subarray(0, want);
  let pending = undo.get(index);
  let kept: Uint8Array | undefined;
  return {
    get samples() {
      if (pending) {
        pending();
        pending = undefined;
      }
      return view;
    },
    get predicted() {
      return kept ?? (pending ? view : undefined);
    },
    keepPredicted() {
      if (pending && !kept) kept = view.slice();
    },
    buffer: view.buffer,
    stored: stored.get(index),
    compression: level.compression,
    predictor: level.predictor,
    littleEndian: level.littleEndian,
  };
}

/**
 * The window is exactly one whole block of one-sample planes (a single band, or planar bands) and every plane
 * decoded in full: its bands are the decoded blocks themselves, without a copy (shared with the block cache, so
 * read only). Otherwise undefined.
 */
function wholeBlockPlanes(
  io: RasterIo,
  level: LevelInternal,
  blocks: ReadonlyMap<number, Uint8Array>,
  failed: ReadonlyMap<number, unknown>,
  x0: number,
  y0: number,
  w: number,
  h: number,
  bands: readonly number[],
): TypedArray[] | undefined {
  const { blockWidth, blockHeight } = level;
  if (w !== blockWidth || h !== blockHeight || x0 % blockWidth !== 0 || y0 % blockHeight !== 0 || failed.size > 0)
    return undefined;
  const planarBand = io.info.interleave === 'band';
  if (!planarBand && io.info.bandCount !== 1) return undefined;
  const base = (y0 / blockHeight) * level.blocksAcross + x0 / blockWidth;
  const perBand = level.blocksAcross * level.blocksDown;
  const out: TypedArray[] = [];
  for (const band of bands) {
    const bytes = blocks.get(planarBand ? band * perBand + base : base);
    if (!bytes) return undefined;
    const src = typedFromBytes(io.info.dtype, bytes);
    if (src.length < w * h) return undefined;
    out.push(src.length === w * h ? src : src.subarray(0, w * h));
  }
  return out;
}

async function readMask(
  io: RasterIo,
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
  const { blocks, failed } = await readBlocks(io, level, `${levelIndex}m`, indices, signal);
  if (failed.size > 0) {
    // an unreadable mask block leaves its pixels masked out
    if (!onBlockError) throw [...failed.values()][0];
    for (const [block, error] of failed) onBlockError({ source: io.info.url, level: levelIndex, block, error });
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
