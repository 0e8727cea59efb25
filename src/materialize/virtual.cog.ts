/**
 * The virtual COG of a mosaic: a Cloud Optimized GeoTIFF whose bytes exist only when asked for.
 *
 * Its layout follows from the mosaic's metadata alone: tiles are uncompressed and fixed-size (no leader/trailer),
 * tiles no source footprint touches are sparse (offset 0, byte count 0, no bytes in the file), so every offset is
 * known before a pixel is rendered. The file is `header | tile payloads in file order`, with no gaps, and a byte
 * range maps to the header and the tiles it overlaps. Reading a range renders only those tiles, through the shared
 * tile renderer (`renderCogTile`, the same one the materialised COG uses, so both decode to the same pixels),
 * into a bytes-bounded cache; concurrent reads of one tile share one render.
 *
 * The header may carry a GDAL_METADATA document (`VirtualCogOptions.gdalMetadata`): the server writes the band
 * statistics of the tiles' default stretch and the band names there, so GDAL and QGIS read STATISTICS_* without
 * touching a pixel. They come from the statistics service (one sample render per mosaic version, shared with the
 * tiles), so the layout is still known before any tile of the COG is rendered.
 */
import { createHash } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Engine } from '../render/engine.ts';
import { RenderError } from '../render/errors.ts';
import type { Mosaic } from '../render/mosaic.ts';
import type { Resampling } from '../render/types.ts';
import {
  buildHeader,
  type CogLayout,
  type CogLevel,
  type CogSpec,
  fileSize,
  layoutCog,
  needsBigTiff,
  TIFF_TYPE,
} from './cog.layout.ts';
import { type CogTileOptions, defaultOverviewResampling, mosaicCogLevels, mosaicCogSpec } from './cog.tiles.ts';
import { presentTiles } from './virtual.cog.sparse.ts';
import { type VirtualCogTileArgs, virtualCogTileBytes } from './virtual.cog.task.ts';

/** Bumped when the bytes the same mosaic produces change (so ETags change with it). */
const VIRTUAL_COG_FORMAT = 1;

/**
 * The tile payloads start at a multiple of this: GDAL's /vsicurl/ reads in 16 KiB chunks aligned on 16 KiB, and
 * every raw tile size (256, 512 or 1024 pixels square) is a multiple of 16 KiB, so a chunk never straddles two
 * tiles and reading one tile renders exactly one tile.
 */
export const TILE_DATA_ALIGNMENT_BYTES = 16 * 1024;

export interface VirtualCogOptions {
  /** tile size in pixels (default: the mosaic's block size) */
  readonly blockSize?: number;
  /** resampling of the full-resolution level (default: the mosaic's) */
  readonly resampling?: Resampling;
  /** resampling of the overviews (default: average, mode for categorical mosaics) */
  readonly overviewResampling?: Resampling;
  /** a GDAL_METADATA document (band statistics and descriptions) written in the header */
  readonly gdalMetadata?: string;
}

/** Everything about a virtual COG that is known without rendering: pure function of the mosaic's metadata. */
export interface VirtualCogFile {
  readonly mosaicId: string;
  readonly mosaicEtag: string;
  readonly layout: CogLayout;
  readonly levels: readonly CogLevel[];
  readonly tileOptions: CogTileOptions;
  /** payload bytes per tile in file order: the raw tile size, or 0 for a sparse tile */
  readonly byteCounts: Uint32Array;
  /** file indices of the non-sparse tiles, in file order (the k-th payload in the file is tile present[k]) */
  readonly present: Int32Array;
  /** where the first tile payload starts: the header, then zeros up to a multiple of TILE_DATA_ALIGNMENT_BYTES */
  readonly dataStart: number;
  /** exact size of the file in bytes */
  readonly size: number;
  /** strong entity tag: changes with the mosaic (definition or any source) and every layout parameter */
  readonly etag: string;
  /** tiles that took the exact per-tile footprint test while planning (the rest were decided on footprints) */
  readonly exactTileTests: number;
}

/** One piece of a byte range: part of the header, or part of one tile's payload. */
export type VirtualCogSegment =
  | { readonly kind: 'header'; readonly from: number; readonly to: number }
  | {
      readonly kind: 'tile';
      readonly fileIndex: number;
      readonly level: number;
      readonly tx: number;
      readonly ty: number;
      /** byte offsets inside the tile payload, `to` exclusive */
      readonly from: number;
      readonly to: number;
    };

/** The virtual COG's spec: raw tiles (no compression, no leader/trailer), so every offset is known up front. */
function virtualCogSpec(mosaic: Mosaic, blockSize: number, bigTiff?: boolean, gdalMetadata?: string): CogSpec {
  return mosaicCogSpec(mosaic, {
    blockSize,
    compression: 'none',
    predictor: 1,
    ghost: { leaderTrailer: false },
    bigTiff,
    gdalMetadata,
  });
}

/**
 * The virtual COG file of a mosaic: the layout, which tiles are sparse (metadata only), the file size and the ETag.
 * BigTIFF only when the file passes 4 GiB.
 */
export function virtualCogFile(
  mosaic: Mosaic,
  options: VirtualCogOptions = {},
  how: { exhaustive?: boolean } = {},
): VirtualCogFile {
  const blockSize = options.blockSize ?? mosaic.blockSize;
  const tileOptions: CogTileOptions = {
    blockSize,
    resampling: options.resampling ?? mosaic.resampling,
    overviewResampling: options.overviewResampling ?? defaultOverviewResampling(mosaic),
  };
  const levels = mosaicCogLevels(mosaic, blockSize);
  // Tile order and counts do not depend on BigTIFF, so the sparse pattern is computed once on a first layout.
  const first = layoutCog(virtualCogSpec(mosaic, blockSize, undefined, options.gdalMetadata));
  const { present: isPresent, exactTests } = presentTiles(mosaic, first, levels, tileOptions, how.exhaustive ?? false);
  const byteCounts = new Uint32Array(first.tileCount);
  let presentCount = 0;
  for (let i = 0; i < isPresent.length; i++) {
    if (!isPresent[i]) continue;
    byteCounts[i] = first.rawTileBytes;
    presentCount++;
  }
  const padFor = (l: CogLayout) =>
    (TILE_DATA_ALIGNMENT_BYTES - (l.headerBytes % TILE_DATA_ALIGNMENT_BYTES)) % TILE_DATA_ALIGNMENT_BYTES;
  // the padding is at most 16 KiB: count it as payload so the BigTIFF decision stays safe
  const bigTiff = needsBigTiff(first.spec, presentCount * first.rawTileBytes + TILE_DATA_ALIGNMENT_BYTES);
  const layout =
    bigTiff === first.bigTiff ? first : layoutCog(virtualCogSpec(mosaic, blockSize, bigTiff, options.gdalMetadata));
  const present = new Int32Array(presentCount);
  for (let i = 0, k = 0; i < byteCounts.length; i++) if (byteCounts[i] > 0) present[k++] = i;
  const pad = padFor(layout);
  const size = fileSize(layout, byteCounts) + pad;
  const h = createHash('sha256');
  h.update(
    JSON.stringify([
      VIRTUAL_COG_FORMAT,
      mosaic.etag,
      blockSize,
      tileOptions.resampling,
      tileOptions.overviewResampling,
      layout.bigTiff,
      size,
      options.gdalMetadata ?? '',
    ]),
  );
  return {
    mosaicId: mosaic.id,
    mosaicEtag: mosaic.etag,
    layout,
    levels,
    tileOptions,
    byteCounts,
    present,
    dataStart: layout.headerBytes + pad,
    size,
    etag: `"vcog-${h.digest('base64url').slice(0, 27)}"`,
    exactTileTests: exactTests,
  };
}

/**
 * The bytes before the first tile: `buildHeader`'s header, then zeros up to `dataStart`, with every non-sparse
 * tile offset moved by that padding (the layout has no alignment option, so the offsets are shifted here).
 */
export function virtualCogHeader(file: VirtualCogFile): Uint8Array {
  const { layout } = file;
  const pad = file.dataStart - layout.headerBytes;
  const out = new Uint8Array(file.dataStart);
  out.set(buildHeader(layout, file.byteCounts));
  if (pad === 0) return out;
  const view = new DataView(out.buffer);
  const big = layout.bigTiff;
  for (const ifd of layout.ifds) {
    const index = ifd.fields.findIndex((f) => f.value.kind === 'tileOffsets');
    const field = ifd.fields[index];
    const count = layout.levels[ifd.level].tileCount;
    const entry = ifd.offset + (big ? 8 : 2) + index * (big ? 20 : 12);
    const at = field.valueOffset >= 0 ? field.valueOffset : entry + (big ? 12 : 8);
    const wide = field.type === TIFF_TYPE.long8;
    for (let j = 0; j < count; j++) {
      if (wide) {
        const p = at + 8 * j;
        const v = view.getUint32(p, true) + view.getUint32(p + 4, true) * 2 ** 32;
        if (v === 0) continue;
        view.setUint32(p, (v + pad) % 2 ** 32, true);
        view.setUint32(p + 4, Math.floor((v + pad) / 2 ** 32), true);
      } else {
        const p = at + 4 * j;
        const v = view.getUint32(p, true);
        if (v !== 0) view.setUint32(p, v + pad, true);
      }
    }
  }
  return out;
}

/** The header and tile pieces covering bytes [offset, offset + length) of a planned virtual COG (pure). */
export function virtualCogSegments(file: VirtualCogFile, offset: number, length: number): VirtualCogSegment[] {
  const out: VirtualCogSegment[] = [];
  const end = Math.min(file.size, offset + length);
  if (!(offset >= 0) || !(length >= 0) || offset >= end) return out;
  const headerBytes = file.dataStart;
  const raw = file.layout.rawTileBytes;
  let pos = offset;
  if (pos < headerBytes) {
    const to = Math.min(end, headerBytes);
    out.push({ kind: 'header', from: pos, to });
    pos = to;
  }
  while (pos < end) {
    const k = Math.floor((pos - headerBytes) / raw);
    const tileStart = headerBytes + k * raw;
    const to = Math.min(end, tileStart + raw);
    const fileIndex = file.present[k];
    const ref = file.layout.tileAtFileIndex(fileIndex);
    out.push({
      kind: 'tile',
      fileIndex,
      level: ref.level,
      tx: ref.tx,
      ty: ref.ty,
      from: pos - tileStart,
      to: to - tileStart,
    });
    pos = to;
  }
  return out;
}

/** What one read did, for the request's log line. */
export interface VirtualCogReadCounter {
  /** tiles this read rendered */
  rendered: number;
  /** tiles it found in the cache */
  cached: number;
  /** tiles it took from a render another read had started */
  shared: number;
}

/** Counters a store keeps, for logs, metrics and tests. */
export interface VirtualCogStats {
  /** tiles rendered (each render counted once, however many requests waited for it) */
  tilesRendered: number;
  /** tile reads served from the cache */
  cacheHits: number;
  /** tile reads that joined a render already under way */
  sharedRenders: number;
  /** virtual COG plans made (one per mosaic version and options) */
  plans: number;
  /** tiles rendered ahead of a bulk reader (see VirtualCog.readAhead) */
  prefetched: number;
}

/** A read of at least this many tiles' bytes is a bulk read: the tiles after it are rendered ahead. */
const READ_AHEAD_MIN_TILES = 4;
/** Tiles rendered ahead after one read, at most. */
const READ_AHEAD_MAX_TILES = 16;

export interface VirtualCogStoreSettings {
  /** bytes of rendered tile payloads kept (lru) */
  readonly cacheBytes: number;
  /** tiles one read renders at the same time (default 2) */
  readonly readConcurrency?: number;
  /**
   * renders a tile's raw payload elsewhere (the server's tile worker threads: virtual.cog.task.ts); default: on
   * the calling thread with the store's engine
   */
  readonly renderTile?: (mosaic: Mosaic, args: VirtualCogTileArgs) => Promise<Uint8Array>;
  /**
   * whether a tile rendered now would keep no request waiting (`renderTile`'s workers have room): read-aheads
   * start only then. Default: always
   */
  readonly idle?: () => boolean;
}

export interface VirtualCogHooks {
  /** called after each tile render with its duration */
  onTileRendered?(ms: number): void;
  /** called on each tile read: from the cache, joined to an in-flight render, or rendered */
  onTileRead?(result: 'hit' | 'shared' | 'miss'): void;
}

/**
 * Virtual COGs of many mosaics with one shared, bytes-bounded cache of rendered tiles. Built once by whoever
 * serves them (never at import time).
 */
export class VirtualCogStore {
  readonly stats: VirtualCogStats = { tilesRendered: 0, cacheHits: 0, sharedRenders: 0, plans: 0, prefetched: 0 };
  private readonly engine: Engine;
  private readonly settings: VirtualCogStoreSettings;
  private readonly hooks: VirtualCogHooks;
  private readonly tiles: LRUCache<string, Uint8Array>;
  private readonly inflight = new Map<string, Promise<Uint8Array>>();
  private readonly cogs = new Map<string, VirtualCog>();

  constructor(engine: Engine, settings: VirtualCogStoreSettings, hooks: VirtualCogHooks = {}) {
    this.engine = engine;
    this.settings = settings;
    this.hooks = hooks;
    this.tiles = new LRUCache<string, Uint8Array>({
      maxSize: settings.cacheBytes,
      sizeCalculation: (b) => Math.max(1, b.byteLength),
    });
  }

  /** Bytes of rendered tiles held now. */
  get cachedBytes(): number {
    return this.tiles.calculatedSize;
  }

  /** The virtual COG of a mosaic as it is now; re-planned when the mosaic's etag or the options change. */
  open(mosaic: Mosaic, options: VirtualCogOptions = {}): VirtualCog {
    const key = `${mosaic.id}|${options.blockSize ?? ''}|${options.resampling ?? ''}|${options.overviewResampling ?? ''}`;
    const hit = this.cogs.get(key);
    if (
      hit &&
      hit.mosaic === mosaic &&
      hit.file.mosaicEtag === mosaic.etag &&
      hit.gdalMetadata === (options.gdalMetadata ?? '')
    )
      return hit;
    const cog = new VirtualCog(this, mosaic, virtualCogFile(mosaic, options), options.gdalMetadata ?? '');
    this.stats.plans++;
    this.cogs.set(key, cog);
    return cog;
  }

  get readConcurrency(): number {
    return Math.max(1, this.settings.readConcurrency ?? 2);
  }

  /** The payload of one tile: from the cache, from a render under way, or rendered now. Errors are not cached. */
  /** Resolves when every render under way (reads and read-aheads) has finished. */
  async settled(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight.values()]);
  }

  /**
   * Render a tile into the cache unless it is there or on its way, or the workers are busy (a read-ahead: not
   * counted as a read).
   */
  prefetch(cog: VirtualCog, fileIndex: number): void {
    const key = `${cog.file.etag}|${fileIndex}`;
    if (this.tiles.has(key) || this.inflight.has(key)) return;
    // a read-ahead never makes a request wait for a worker
    if (this.settings.idle && !this.settings.idle()) return;
    this.stats.prefetched++;
    this.startRender(cog, fileIndex, key).catch(() => {});
  }

  tilePayload(cog: VirtualCog, fileIndex: number, counter?: VirtualCogReadCounter): Promise<Uint8Array> {
    const key = `${cog.file.etag}|${fileIndex}`;
    const cached = this.tiles.get(key);
    if (cached) {
      this.stats.cacheHits++;
      if (counter) counter.cached++;
      this.hooks.onTileRead?.('hit');
      return Promise.resolve(cached);
    }
    const running = this.inflight.get(key);
    if (running) {
      this.stats.sharedRenders++;
      if (counter) counter.shared++;
      this.hooks.onTileRead?.('shared');
      return running;
    }
    if (counter) counter.rendered++;
    this.hooks.onTileRead?.('miss');
    return this.startRender(cog, fileIndex, key);
  }

  private startRender(cog: VirtualCog, fileIndex: number, key: string): Promise<Uint8Array> {
    const p = this.render(cog, fileIndex).then(
      (bytes) => {
        this.tiles.set(key, bytes);
        this.inflight.delete(key);
        return bytes;
      },
      (e: unknown) => {
        this.inflight.delete(key);
        throw e;
      },
    );
    this.inflight.set(key, p);
    return p;
  }

  private async render(cog: VirtualCog, fileIndex: number): Promise<Uint8Array> {
    const { file, mosaic } = cog;
    const ref = file.layout.tileAtFileIndex(fileIndex);
    const t0 = performance.now();
    const args: VirtualCogTileArgs = {
      levels: file.levels,
      level: ref.level,
      tx: ref.tx,
      ty: ref.ty,
      options: file.tileOptions,
    };
    const bytes = this.settings.renderTile
      ? await this.settings.renderTile(mosaic, args)
      : await virtualCogTileBytes(this.engine, mosaic, args);
    if (bytes.byteLength !== file.layout.rawTileBytes) {
      throw new RenderError(
        'internal',
        `tile ${fileIndex} of ${mosaic.id}.tif rendered to ${bytes.byteLength} bytes, expected ${file.layout.rawTileBytes}`,
      );
    }
    this.stats.tilesRendered++;
    this.hooks.onTileRendered?.(performance.now() - t0);
    return bytes;
  }
}

/** One virtual COG: a planned layout plus the store that renders its tiles. */
export class VirtualCog {
  readonly mosaic: Mosaic;
  readonly file: VirtualCogFile;
  /** the GDAL_METADATA document in the header ('' for none) */
  readonly gdalMetadata: string;
  private readonly store: VirtualCogStore;
  private headerBytes: Uint8Array | undefined;

  constructor(store: VirtualCogStore, mosaic: Mosaic, file: VirtualCogFile, gdalMetadata = '') {
    this.store = store;
    this.mosaic = mosaic;
    this.file = file;
    this.gdalMetadata = gdalMetadata;
  }

  get size(): number {
    return this.file.size;
  }

  get etag(): string {
    return this.file.etag;
  }

  /** Bytes before the first tile (TIFF header, ghost area, IFDs, tile arrays, alignment zeros), built once. */
  header(): Uint8Array {
    this.headerBytes ??= virtualCogHeader(this.file);
    return this.headerBytes;
  }

  segments(offset: number, length: number): VirtualCogSegment[] {
    return virtualCogSegments(this.file, offset, length);
  }

  /** The bytes of one segment (a copy-free view where possible). */
  async segmentBytes(seg: VirtualCogSegment, counter?: VirtualCogReadCounter): Promise<Uint8Array> {
    if (seg.kind === 'header') return this.header().subarray(seg.from, seg.to);
    const payload = await this.store.tilePayload(this, seg.fileIndex, counter);
    return payload.subarray(seg.from, seg.to);
  }

  /** Bytes [offset, offset + length) (clipped to the file), rendering only the tiles they overlap. */
  async read(offset: number, length: number, counter?: VirtualCogReadCounter): Promise<Uint8Array> {
    const segs = this.segments(offset, length);
    const out = new Uint8Array(segs.reduce((n, s) => n + (s.to - s.from), 0));
    const starts: number[] = [];
    let pos = 0;
    for (const s of segs) {
      starts.push(pos);
      pos += s.to - s.from;
    }
    let next = 0;
    const worker = async () => {
      while (next < segs.length) {
        const i = next++;
        out.set(await this.segmentBytes(segs[i], counter), starts[i]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.store.readConcurrency, segs.length) }, worker));
    this.readAhead(offset, length);
    return out;
  }

  /**
   * After a bulk read (at least READ_AHEAD_MIN_TILES tiles' bytes: GDAL copying a level or the whole file), the
   * tiles that follow in the file are rendered into the cache while the client handles these bytes: its next
   * request, usually the next range, then finds them ready instead of waiting for the renders.
   */
  private readAhead(offset: number, length: number): void {
    const { dataStart, layout, present } = this.file;
    const raw = layout.rawTileBytes;
    if (length < READ_AHEAD_MIN_TILES * raw) return;
    const end = Math.min(this.file.size, offset + length);
    const last = Math.floor((end - 1 - dataStart) / raw);
    // as many tiles as this read took (the next one is usually as large), within bounds
    const n = Math.min(READ_AHEAD_MAX_TILES, Math.max(this.store.readConcurrency, Math.ceil(length / raw)));
    for (let k = last + 1; k <= last + n && k < present.length; k++) this.store.prefetch(this, present[k]);
  }

  /**
   * Bytes [offset, offset + length) as a stream with backpressure: a segment is rendered only when the consumer
   * pulls, with a read-ahead of `readConcurrency` segments. Memory stays bounded whatever the length.
   */
  stream(offset: number, length: number, counter?: VirtualCogReadCounter): ReadableStream<Uint8Array> {
    const segs = this.segments(offset, length);
    const ahead = this.store.readConcurrency;
    const pending: Promise<Uint8Array>[] = [];
    let next = 0;
    const fill = () => {
      while (pending.length < ahead && next < segs.length) {
        const p = this.segmentBytes(segs[next++], counter);
        p.catch(() => {}); // observed when pulled; avoid an unhandled rejection in between
        pending.push(p);
      }
    };
    return new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          fill();
          const p = pending.shift();
          if (!p) {
            controller.close();
            return;
          }
          controller.enqueue(await p);
          if (next >= segs.length && pending.length === 0) controller.close();
        },
        cancel() {
          next = segs.length;
          pending.length = 0;
        },
      },
      { highWaterMark: 0 },
    );
  }
}
