/** In-memory and recording Sources for tests: count requests and bytes, or serve bytes from memory. */
import type { ReadOptions, Source, SourceRead } from '../../src/render/source.ts';

export class SourceMemory implements Source {
  readonly url: string;
  bytes: Uint8Array;
  etag: string;
  constructor(url: string, bytes: Uint8Array, etag = '"v1"') {
    this.url = url;
    this.bytes = bytes;
    this.etag = etag;
  }
  async read(offset: number, length: number): Promise<SourceRead> {
    return {
      bytes: this.bytes.slice(offset, Math.min(this.bytes.byteLength, offset + length)),
      size: this.bytes.byteLength,
      etag: this.etag,
    };
  }
  async stat() {
    return { size: this.bytes.byteLength, etag: this.etag };
  }
}

export interface Recorded {
  readonly offset: number;
  readonly length: number;
}

/** Wraps a real source and records every read it passes on. */
export class SourceRecording implements Source {
  readonly inner: Source;
  readonly reads: Recorded[] = [];
  stats = 0;
  constructor(inner: Source) {
    this.inner = inner;
  }
  get url(): string {
    return this.inner.url;
  }
  read(offset: number, length: number, options?: ReadOptions): Promise<SourceRead> {
    this.reads.push({ offset, length });
    return this.inner.read(offset, length, options);
  }
  stat(options?: ReadOptions) {
    this.stats++;
    return this.inner.stat(options);
  }
  reset(): void {
    this.reads.length = 0;
    this.stats = 0;
  }
}
