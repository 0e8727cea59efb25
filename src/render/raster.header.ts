/**
 * The byte adapter geotiff.js parses through: header bytes read in 64 KiB blocks over our Source, kept in a
 * bytes-bounded cache keyed by URL and ETag, so a COG header costs one or two requests.
 */
import type { LRUCache } from 'lru-cache';
import { RenderError } from './errors.ts';
import type { Source } from './source.ts';
import { KiB, MiB } from './types.ts';

const HEADER_BLOCK_BYTES = 64 * KiB;

export class HeaderReader {
  size = Number.NaN;
  etag = '';
  readonly source: Source;
  readonly cache: LRUCache<string, Uint8Array>;
  readonly signal?: AbortSignal;
  constructor(source: Source, cache: LRUCache<string, Uint8Array>, signal?: AbortSignal) {
    this.source = source;
    this.cache = cache;
    this.signal = signal;
  }

  private async block(index: number): Promise<Uint8Array> {
    const key = `${this.source.url}|${this.etag}|${index}`;
    if (this.etag) {
      const hit = this.cache.get(key);
      if (hit) return hit;
    }
    const r = await this.source.read(index * HEADER_BLOCK_BYTES, HEADER_BLOCK_BYTES, {
      signal: this.signal,
      ifMatch: this.etag || undefined,
    });
    if (!this.etag) {
      this.etag = r.etag;
      this.size = r.size;
    }
    this.cache.set(`${this.source.url}|${this.etag}|${index}`, r.bytes);
    return r.bytes;
  }

  /** geotiff.js BaseSource.fetch */
  async fetch(slices: { offset: number; length: number }[]): Promise<ArrayBuffer[]> {
    const out: ArrayBuffer[] = [];
    for (const { offset, length } of slices) {
      if (!Number.isFinite(offset) || !Number.isFinite(length) || offset < 0 || length < 0 || length > 256 * MiB) {
        throw new RenderError('corrupt', `${this.source.url}: TIFF structure points at an impossible byte range`);
      }
      if (Number.isFinite(this.size) && offset >= this.size) {
        throw new RenderError(
          'corrupt',
          `${this.source.url}: TIFF structure points past the end of the file (truncated?)`,
        );
      }
      const end = Number.isFinite(this.size) ? Math.min(offset + length, this.size) : offset + length;
      const buf = new Uint8Array(Math.max(0, end - offset));
      const first = Math.floor(offset / HEADER_BLOCK_BYTES);
      const last = Math.floor((Math.max(end, offset + 1) - 1) / HEADER_BLOCK_BYTES);
      if (last - first > 64) {
        // a big array (tile offsets of a huge image): one direct read
        const r = await this.source.read(offset, end - offset, {
          signal: this.signal,
          ifMatch: this.etag || undefined,
        });
        buf.set(r.bytes.subarray(0, buf.length));
      } else {
        for (let b = first; b <= last; b++) {
          const block = await this.block(b);
          const blockStart = b * HEADER_BLOCK_BYTES;
          const from = Math.max(offset, blockStart);
          const to = Math.min(end, blockStart + block.byteLength);
          if (to > from) buf.set(block.subarray(from - blockStart, to - blockStart), from - offset);
        }
      }
      out.push(buf.buffer);
    }
    return out;
  }

  get fileSize(): number | null {
    return Number.isFinite(this.size) ? this.size : null;
  }
  async fetchSlice(slice: { offset: number; length: number }) {
    const [data] = await this.fetch([slice]);
    return { ...slice, data };
  }
  async close(): Promise<void> {}
}
