/**
 * Overview levels built from the finer level, in one pass over the full-resolution tiles (as GDAL's COG driver
 * does when it computes overviews): each full-resolution tile is rendered from the sources once and encoded; its
 * decoded pixels are kept until the tiles of the next level that need them (2 x 2 of them, one pixel more at the
 * seams of odd sizes) are computed (overview.reduce.ts), which are encoded and kept in turn, up to the top.
 *
 * The COG stores the smallest overview first, so the pass has to run before any overview tile can be written;
 * tiles it produces are kept in a temporary spill file until they are asked for (the tile renderer of the
 * pipeline: any tile, any order, any number of times). Memory stays bounded by the width: full-resolution tiles
 * are rendered in row order with a few in flight, and each level holds about two rows of its decoded tiles.
 *
 * A tile's bytes depend only on the mosaic and the plan, so every process that runs the pass (single process,
 * static shards, queue workers, the complete step) produces the same bytes. The pass starts on the first request
 * for an overview tile; until then full-resolution tiles are rendered directly (the same bytes).
 */

import type { FileHandle } from 'node:fs/promises';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RenderError } from '../render/errors.ts';
import type { Resampling, TypedArray } from '../render/types.ts';
import type { CogLevel } from './cog.layout.ts';
import { type ReduceWindow, windowOf } from './overview.reduce.ts';
import type { BandAccumulator } from './statistics.xml.ts';
import type { TileJobResult, TilePixels } from './tile.job.ts';
import type { TileJobRequest, TileRef } from './tile.pool.ts';

/** Runs one tile job (a worker pool, or inline). */
export type TileJobRunner = (job: TileJobRequest) => Promise<TileJobResult>;

interface Spilled {
  readonly offset: number;
  readonly bytes: number;
  readonly stats?: BandAccumulator[];
  readonly validCount: number;
}

interface Waiter {
  resolve: (r: Spilled) => void;
  reject: (e: unknown) => void;
}

export interface OverviewPyramidOptions {
  /** full-resolution tiles rendered at once during the pass (default 4) */
  readonly tilesInFlight?: number;
  /** where the spill file goes (default the OS temporary directory) */
  readonly tempDir?: string;
}

export class OverviewPyramid {
  private readonly levels: readonly CogLevel[];
  private readonly blockSize: number;
  private readonly resampling: Resampling;
  private readonly run: TileJobRunner;
  private readonly options: OverviewPyramidOptions;
  private readonly spilled = new Map<number, Spilled>();
  private readonly waiters = new Map<number, Waiter[]>();
  private pass: Promise<void> | undefined;
  private failure: unknown;
  private closed = false;
  private file: FileHandle | undefined;
  private dir: string | undefined;
  private spillBytes = 0;
  private writes: Promise<unknown> = Promise.resolve();
  /** tiles the pass made (counted by tests) */
  passTiles = 0;

  constructor(
    levels: readonly CogLevel[],
    blockSize: number,
    resampling: Resampling,
    run: TileJobRunner,
    options: OverviewPyramidOptions = {},
  ) {
    this.levels = levels;
    this.blockSize = blockSize;
    this.resampling = resampling;
    this.run = run;
    this.options = options;
  }

  private tilesX(level: number): number {
    return Math.ceil(this.levels[level].width / this.blockSize);
  }

  private tilesY(level: number): number {
    return Math.ceil(this.levels[level].height / this.blockSize);
  }

  private key(level: number, tx: number, ty: number): number {
    return (level * 2 ** 21 + ty) * 2 ** 21 + tx;
  }

  /** The encoded tile, as the pipeline's tile renderer. */
  async render(ref: TileRef, signal?: AbortSignal): Promise<TileJobResult> {
    if (this.closed) throw new RenderError('internal', 'the overview pyramid is closed');
    if (this.pass === undefined && ref.level === 0) return this.run({ level: 0, tx: ref.tx, ty: ref.ty });
    this.pass ??= this.runPass();
    const s = await this.spilledTile(ref, signal);
    const payload = new Uint8Array(s.bytes);
    if (s.bytes > 0) await this.file!.read(payload, 0, s.bytes, s.offset);
    return { payload, validCount: s.validCount, ...(s.stats ? { stats: s.stats } : {}) };
  }

  private spilledTile(ref: TileRef, signal?: AbortSignal): Promise<Spilled> {
    const k = this.key(ref.level, ref.tx, ref.ty);
    const s = this.spilled.get(k);
    if (s) return Promise.resolve(s);
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise<Spilled>((resolve, reject) => {
      const list = this.waiters.get(k) ?? [];
      list.push({ resolve, reject });
      this.waiters.set(k, list);
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  }

  private fail(e: unknown): void {
    this.failure ??= e;
    for (const list of this.waiters.values()) for (const w of list) w.reject(this.failure);
    this.waiters.clear();
  }

  private async keep(level: number, tx: number, ty: number, r: TileJobResult): Promise<void> {
    const offset = this.spillBytes;
    this.spillBytes += r.payload.byteLength;
    const file = this.file!;
    const write = this.writes.then(() => file.write(r.payload, 0, r.payload.byteLength, offset));
    this.writes = write.catch(() => {});
    await write;
    const s: Spilled = {
      offset,
      bytes: r.payload.byteLength,
      validCount: r.validCount,
      ...(r.stats ? { stats: r.stats } : {}),
    };
    const k = this.key(level, tx, ty);
    this.spilled.set(k, s);
    this.passTiles++;
    for (const w of this.waiters.get(k) ?? []) w.resolve(s);
    this.waiters.delete(k);
  }

  private async runPass(): Promise<void> {
    try {
      this.dir = await mkdtemp(path.join(this.options.tempDir ?? tmpdir(), 'cogmill-pyramid-'));
      this.file = await open(path.join(this.dir, 'tiles.bin'), 'w+');
      // unlinked at once (POSIX keeps an open file's data): a killed process leaves nothing behind
      await rm(this.dir, { recursive: true, force: true }).catch(() => {});
      await this.build();
    } catch (e) {
      this.fail(e);
    }
  }

  /** The finer level's window [x0, x1) x [y0, y1) that tile (tx, ty) of `level` (>= 1) needs. */
  private windowOfTile(level: number, tx: number, ty: number): [number, number, number, number] {
    const f = this.levels[level - 1];
    const c = this.levels[level];
    const bs = this.blockSize;
    const [x0, x1] = windowOf(tx * bs, Math.min(c.width, (tx + 1) * bs), f.width, c.width, this.resampling);
    const [y0, y1] = windowOf(ty * bs, Math.min(c.height, (ty + 1) * bs), f.height, c.height, this.resampling);
    return [x0, x1, y0, y1];
  }

  /** The finer tiles [cx0, cx1] x [cy0, cy1] (inclusive) tile (tx, ty) of `level` needs. */
  private childrenOf(level: number, tx: number, ty: number): [number, number, number, number] {
    const [x0, x1, y0, y1] = this.windowOfTile(level, tx, ty);
    const bs = this.blockSize;
    return [Math.floor(x0 / bs), Math.floor((x1 - 1) / bs), Math.floor(y0 / bs), Math.floor((y1 - 1) / bs)];
  }

  /** The tiles of `level` + 1 that need tile (cx, cy) of `level`. */
  private parentsOf(level: number, cx: number, cy: number): [number, number][] {
    const out: [number, number][] = [];
    const nx = this.tilesX(level + 1);
    const ny = this.tilesY(level + 1);
    for (let py = Math.max(0, (cy >> 1) - 1); py <= Math.min(ny - 1, (cy >> 1) + 1); py++)
      for (let px = Math.max(0, (cx >> 1) - 1); px <= Math.min(nx - 1, (cx >> 1) + 1); px++) {
        const [a, b, c, d] = this.childrenOf(level + 1, px, py);
        if (cx >= a && cx <= b && cy >= c && cy <= d) out.push([px, py]);
      }
    return out;
  }

  /** Copy the window tile (tx, ty) of `level` needs out of the finer level's kept tiles. */
  private windowFor(
    level: number,
    tx: number,
    ty: number,
    kept: Map<number, { pixels: TilePixels; refs: number }>,
  ): ReduceWindow {
    const [x0, x1, y0, y1] = this.windowOfTile(level, tx, ty);
    const [cx0, cx1, cy0, cy1] = this.childrenOf(level, tx, ty);
    const bs = this.blockSize;
    const width = x1 - x0;
    const height = y1 - y0;
    const mask = new Uint8Array(width * height);
    let bands: TypedArray[] | undefined;
    for (let cy = cy0; cy <= cy1; cy++)
      for (let cx = cx0; cx <= cx1; cx++) {
        const child = kept.get(this.key(level - 1, cx, cy))!;
        const p = child.pixels;
        bands ??= p.bands.map((b) => new (b.constructor as new (n: number) => TypedArray)(width * height));
        const ax = Math.max(x0, cx * bs);
        const bx = Math.min(x1, (cx + 1) * bs);
        const ay = Math.max(y0, cy * bs);
        const by = Math.min(y1, (cy + 1) * bs);
        for (let y = ay; y < by; y++) {
          const src = (y - cy * bs) * bs + (ax - cx * bs);
          const dst = (y - y0) * width + (ax - x0);
          mask.set(p.mask.subarray(src, src + bx - ax), dst);
          for (let b = 0; b < bands.length; b++) bands[b].set(p.bands[b].subarray(src, src + bx - ax), dst);
        }
        if (--child.refs === 0) kept.delete(this.key(level - 1, cx, cy));
      }
    return { x0, y0, width, height, bands: bands ?? [], mask };
  }

  private async build(): Promise<void> {
    const top = this.levels.length - 1;
    // decoded tiles kept until every coarser tile that needs them is computed (all levels in one map)
    const kept = new Map<number, { pixels: TilePixels; refs: number }>();
    const started = new Set<number>();
    const tasks = new Set<Promise<void>>();
    let error: unknown;
    const track = (p: Promise<void>) => {
      const t = p.catch((e) => {
        error ??= e;
      });
      const tracked = t.finally(() => tasks.delete(tracked));
      tasks.add(tracked);
    };
    const done = async (level: number, tx: number, ty: number, r: TileJobResult): Promise<void> => {
      if (level < top && r.pixels) {
        const parents = this.parentsOf(level, tx, ty);
        if (parents.length > 0) kept.set(this.key(level, tx, ty), { pixels: r.pixels, refs: parents.length });
        for (const [px, py] of parents) {
          const pk = this.key(level + 1, px, py);
          if (started.has(pk)) continue;
          const [a, b, c, d] = this.childrenOf(level + 1, px, py);
          let ready = true;
          for (let cy = c; cy <= d && ready; cy++)
            for (let cx = a; cx <= b && ready; cx++) if (!kept.has(this.key(level, cx, cy))) ready = false;
          if (!ready) continue;
          started.add(pk);
          const window = this.windowFor(level + 1, px, py, kept);
          track(
            this.run({ level: level + 1, tx: px, ty: py, keep: level + 1 < top, window }).then((p) =>
              done(level + 1, px, py, p),
            ),
          );
        }
      }
      await this.keep(level, tx, ty, { payload: r.payload, validCount: r.validCount, stats: r.stats });
    };
    const maxInFlight = Math.max(1, this.options.tilesInFlight ?? 4);
    for (let ty = 0; ty < this.tilesY(0) && error === undefined && !this.closed; ty++) {
      for (let tx = 0; tx < this.tilesX(0) && error === undefined && !this.closed; tx++) {
        track(this.run({ level: 0, tx, ty, keep: top > 0 }).then((r) => done(0, tx, ty, r)));
        while (tasks.size >= maxInFlight) await Promise.race(tasks);
      }
    }
    while (tasks.size > 0) await Promise.all(tasks);
    if (error !== undefined) throw error;
    if (this.closed) throw new RenderError('internal', 'the overview pyramid is closed');
    if (kept.size > 0) throw new RenderError('internal', `overview pass left ${kept.size} tiles unused`);
  }

  /** Stop the pass (if running), wait for its jobs, delete the spill file. */
  async close(): Promise<void> {
    this.closed = true;
    await this.pass;
    this.fail(new RenderError('internal', 'the overview pyramid is closed'));
    await this.writes;
    await this.file?.close().catch(() => {});
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}
