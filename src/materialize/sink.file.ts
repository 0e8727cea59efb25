/**
 * A local file sink: tiles are written after a reserved header area of a temporary file next to the destination;
 * the header goes to offset 0 at the end and the file is renamed into place. Nothing appears at the destination
 * until the COG is complete; on abort the temporary file is removed.
 */
import { type FileHandle, mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { MiB } from '../render/types.ts';
import { partialPath, releasePartial, removeStalePartials } from './partial.files.ts';
import { SinkError, type SinkErrorKind, type SinkResult, type SinkSequential, type SinkStats } from './sink.ts';

/** The sink kind of a file system error: a path that cannot be a file, no permission, else a failing disk. */
function fileErrorKind(e: unknown): SinkErrorKind {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOTDIR' || code === 'EISDIR' || code === 'ENAMETOOLONG' || code === 'EINVAL') return 'bad-destination';
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return 'forbidden';
  return 'unreachable';
}

function fileError(e: unknown, what: string): SinkError {
  return new SinkError(fileErrorKind(e), `${what}: ${(e as Error).message}`, { cause: e });
}

/** Written bytes after which a background flush to disk starts (see SinkFile.startFlush). */
const FLUSH_EVERY_BYTES = 8 * MiB;

export class SinkFile implements SinkSequential {
  readonly mode = 'sequential' as const;
  readonly kind = 'file';
  readonly location: string;
  readonly stats: SinkStats = { parts: 0, bytes: 0, retries: 0 };
  private readonly tmp: string;
  private fh: FileHandle | undefined;
  private reserved = 0;
  private pos = 0;
  private readonly keep: boolean;
  /** bytes written since the last flush to disk was started, the flush running, and a failure one reported */
  private unflushed = 0;
  private flushing: Promise<void> | undefined;
  private flushError: unknown;

  /** `keep`: leave the finished file at a temporary path only (downloads stream it, then delete it) */
  constructor(destination: string, options: { keep?: boolean } = {}) {
    this.location = path.resolve(destination);
    this.tmp = partialPath(this.location);
    this.keep = options.keep ?? false;
  }

  /** the temporary file (for sinks that stream it out) */
  get temporaryPath(): string {
    return this.tmp;
  }

  async open(headerBytes: number): Promise<void> {
    try {
      await mkdir(path.dirname(this.location), { recursive: true });
      await removeStalePartials(this.location);
      this.fh = await open(this.tmp, 'wx');
    } catch (e) {
      throw fileError(e, `cannot write ${this.location}`);
    }
    this.reserved = headerBytes;
    this.pos = headerBytes;
  }

  private async writeAt(fh: FileHandle, bytes: Uint8Array, at: number): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) {
      const { bytesWritten } = await fh.write(bytes, done, bytes.byteLength - done, at + done);
      done += bytesWritten;
    }
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (!this.fh) throw new SinkError('internal', `${this.location}: the sink is not open`);
    try {
      await this.writeAt(this.fh, chunk, this.pos);
    } catch (e) {
      throw fileError(e, `writing ${this.location} failed`);
    }
    this.pos += chunk.byteLength;
    this.stats.bytes += chunk.byteLength;
    this.unflushed += chunk.byteLength;
    if (this.unflushed >= FLUSH_EVERY_BYTES && !this.flushing) this.startFlush(this.fh);
  }

  /**
   * Hand the data written so far to the disk in the background, so that the sync before the rename (durability:
   * a complete file, or none, at the destination after a power loss) has only the last of it to wait for: a
   * 171 MB COG waited 60 ms there. A failure is kept and fails `complete` (Linux reports a writeback error to one
   * sync only).
   */
  private startFlush(fh: FileHandle): void {
    this.unflushed = 0;
    this.flushing = fh
      .datasync()
      .catch((e: unknown) => {
        this.flushError ??= e;
      })
      .finally(() => {
        this.flushing = undefined;
      });
  }

  async complete(header: Uint8Array): Promise<SinkResult> {
    const fh = this.fh;
    if (!fh) throw new SinkError('internal', `${this.location}: the sink is not open`);
    let size: number;
    try {
      if (header.byteLength === this.reserved) {
        await this.writeAt(fh, header, 0);
        size = this.pos;
      } else {
        // the header grew (BigTIFF after all): rewrite the data after the larger header
        const shifted = `${this.tmp}.big`;
        const out = await open(shifted, 'wx');
        try {
          await this.writeAt(out, header, 0);
          const buf = new Uint8Array(8 * MiB);
          let at = this.reserved;
          let to = header.byteLength;
          while (at < this.pos) {
            const { bytesRead } = await fh.read(buf, 0, Math.min(buf.byteLength, this.pos - at), at);
            if (bytesRead === 0) break;
            await this.writeAt(out, buf.subarray(0, bytesRead), to);
            at += bytesRead;
            to += bytesRead;
          }
          await out.sync();
        } finally {
          await out.close();
        }
        await fh.close();
        this.fh = undefined;
        await rename(shifted, this.tmp);
        size = this.pos - this.reserved + header.byteLength;
      }
      await this.flushing;
      if (this.flushError) throw this.flushError;
      if (this.fh) {
        await this.fh.sync();
        await this.fh.close();
        this.fh = undefined;
      }
      if (!this.keep) {
        await rename(this.tmp, this.location);
        releasePartial(this.tmp);
      }
    } catch (e) {
      await this.abort(e);
      throw fileError(e, `finishing ${this.location} failed`);
    }
    this.stats.bytes += header.byteLength;
    return { location: this.keep ? this.tmp : this.location, bytes: size };
  }

  async abort(_reason?: unknown): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await this.flushing;
    await fh?.close().catch(() => {});
    await rm(this.tmp, { force: true });
    await rm(`${this.tmp}.big`, { force: true });
    releasePartial(this.tmp);
  }
}
