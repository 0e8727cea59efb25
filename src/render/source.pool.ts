/**
 * A bounded pool of open file handles shared by every local source of an engine. A read borrows its file's handle
 * and gives it back; idle handles beyond `maxOpen` are closed, least recently used first; when every handle is in
 * use, the next read waits for one. A folder of thousands of GeoTIFFs therefore never holds more than `maxOpen`
 * descriptors, whatever the process's limit.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { SourceError } from './errors.ts';

interface PoolEntry {
  readonly handle: Promise<FileHandle>;
  users: number;
  /** dropped from the pool (file replaced): close when the last user gives it back */
  retired: boolean;
}

export class FileHandlePool {
  readonly maxOpen: number;
  /** insertion order = least recently used first */
  private readonly entries = new Map<string, PoolEntry>();
  private readonly waiting: (() => void)[] = [];
  /** handles opened over the pool's life (for tests and metrics) */
  opened = 0;

  constructor(maxOpen: number) {
    if (!(Number.isInteger(maxOpen) && maxOpen >= 1)) throw new RangeError('maxOpen must be a positive integer');
    this.maxOpen = maxOpen;
  }

  /** Handles open now (in use or idle). */
  get size(): number {
    return this.entries.size;
  }

  private closeEntry(e: PoolEntry): void {
    e.handle.then((h) => h.close()).catch(() => {});
  }

  /** Close idle handles until there is room for one more; false when every handle is in use. */
  private makeRoom(): boolean {
    if (this.entries.size < this.maxOpen) return true;
    for (const [key, e] of this.entries) {
      if (e.users > 0) continue;
      this.entries.delete(key);
      this.closeEntry(e);
      return true;
    }
    return false;
  }

  private release(e: PoolEntry): void {
    e.users--;
    if (e.retired && e.users === 0) this.closeEntry(e);
    const next = this.waiting.shift();
    if (next) next();
  }

  /** Run `fn` with the open handle of `filePath` (opened if needed). */
  async use<T>(filePath: string, fn: (fh: FileHandle) => Promise<T>): Promise<T> {
    let e = this.entries.get(filePath);
    while (!e) {
      if (this.makeRoom()) {
        const handle = open(filePath, 'r');
        e = { handle, users: 0, retired: false };
        this.entries.set(filePath, e);
        this.opened++;
        const mine = e;
        handle.catch(() => {
          if (this.entries.get(filePath) === mine) this.entries.delete(filePath);
        });
        break;
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
      e = this.entries.get(filePath);
    }
    // most recently used goes last
    this.entries.delete(filePath);
    this.entries.set(filePath, e);
    e.users++;
    let fh: FileHandle;
    try {
      fh = await e.handle;
    } catch (err) {
      this.release(e);
      const code = (err as NodeJS.ErrnoException).code;
      throw new SourceError(
        code === 'ENOENT' ? 'not-found' : 'unreachable',
        `cannot open ${filePath}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    try {
      return await fn(fh);
    } finally {
      this.release(e);
    }
  }

  /** Forget the handle of `filePath` (the file was replaced): the next read opens the new file. */
  retire(filePath: string): void {
    const e = this.entries.get(filePath);
    if (!e) return;
    this.entries.delete(filePath);
    e.retired = true;
    if (e.users === 0) this.closeEntry(e);
  }

  async close(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => e.handle.then((h) => h.close()).catch(() => {})));
    for (const w of this.waiting.splice(0)) w();
  }
}
