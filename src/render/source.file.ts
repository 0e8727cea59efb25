/** Local files, confined to configured roots. */
import { fstatSync, readSync } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { SourceError } from './errors.ts';
import { FileHandlePool } from './source.pool.ts';
import type { ReadOptions, Source, SourceRead, SourceStats } from './source.ts';

/**
 * Resolve `p` and check that it (after following symlinks) stays inside one of `roots`.
 * Throws SourceError 'forbidden' otherwise, 'not-found' when it does not exist.
 */
export async function confinePath(p: string, roots: readonly string[]): Promise<string> {
  if (roots.length === 0) throw new SourceError('forbidden', `local file ${p} refused: no source roots are configured`);
  const abs = path.resolve(p);
  let real: string;
  try {
    real = await realpath(abs);
  } catch (e) {
    throw new SourceError('not-found', `local file ${p} does not exist`, { cause: e });
  }
  for (const root of roots) {
    let realRoot: string;
    try {
      realRoot = await realpath(path.resolve(root));
    } catch {
      continue;
    }
    const rel = path.relative(realRoot, real);
    if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) return real;
  }
  throw new SourceError('forbidden', `local file ${p} is outside the configured source roots (${roots.join(', ')})`);
}

function fileEtag(size: number, mtimeMs: number): string {
  return `"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`;
}

let readHere = false;

/**
 * Read local files on the calling thread instead of libuv's pool, from now on in this thread (a worker thread
 * only: the main thread never blocks on a disk). For the materialisation workers, which do one tile at a time:
 * no round trip through the pool for each block's stat and read.
 */
export function readOnThisThread(on: boolean): void {
  readHere = on && !isMainThread;
}

export class SourceFile implements Source {
  readonly url: string;
  readonly stats: SourceStats = { requests: 0, bytes: 0 };
  private readonly filePath: string;
  private readonly pool: FileHandlePool;

  /**
   * `filePath` must already be confined (see confinePath). Reads borrow a handle from `pool` (the engine's, shared
   * by all its local sources, so open descriptors stay bounded); without one the source keeps its own single handle.
   */
  constructor(filePath: string, pool?: FileHandlePool) {
    this.filePath = filePath;
    this.url = `file://${filePath}`;
    this.pool = pool ?? new FileHandlePool(1);
  }

  async stat(options?: ReadOptions): Promise<{ size: number; etag: string; lastModified: Date }> {
    let s: { size: number; mtimeMs: number; mtime: Date };
    try {
      s = await stat(this.filePath);
    } catch (e) {
      throw new SourceError('not-found', `local file ${this.filePath} is gone`, { cause: e });
    }
    const etag = fileEtag(s.size, s.mtimeMs);
    if (options?.ifMatch && options.ifMatch !== etag) {
      throw new SourceError('changed', `local file ${this.filePath} changed while it was being read`);
    }
    return { size: s.size, etag, lastModified: s.mtime };
  }

  async read(offset: number, length: number, options?: ReadOptions): Promise<SourceRead> {
    options?.signal?.throwIfAborted();
    const r = await this.pool.use(this.filePath, async (fh) => {
      const s = readHere ? fstatSync(fh.fd) : await fh.stat();
      const etag = fileEtag(s.size, s.mtimeMs);
      if (options?.ifMatch && options.ifMatch !== etag) return { changed: true as const };
      const n = Math.max(0, Math.min(length, s.size - offset));
      const bytes = new Uint8Array(n);
      let done = 0;
      while (done < n) {
        const got = readHere
          ? readSync(fh.fd, bytes, done, n - done, offset + done)
          : (await fh.read(bytes, done, n - done, offset + done)).bytesRead;
        if (got === 0) break;
        done += got;
      }
      return { changed: false as const, bytes: done === n ? bytes : bytes.subarray(0, done), size: s.size, etag };
    });
    if (r.changed) {
      // the open handle may point at a replaced file: drop it so a re-open sees the new one
      this.pool.retire(this.filePath);
      throw new SourceError('changed', `local file ${this.filePath} changed while it was being read`);
    }
    this.stats.requests++;
    this.stats.bytes += r.bytes.byteLength;
    return { bytes: r.bytes, size: r.size, etag: r.etag };
  }

  async close(): Promise<void> {
    this.pool.retire(this.filePath);
  }
}
