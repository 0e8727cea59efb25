/**
 * A Source is random access to the bytes of one file, wherever it lives (disk, HTTP(S), S3).
 * All IO of the render layer goes through this seam, so tests can record, delay or break it.
 */

export interface SourceRead {
  readonly bytes: Uint8Array;
  /** total size of the object in bytes */
  readonly size: number;
  /** version tag of the object (HTTP/S3 ETag, or mtime+size for files); a change means the object changed */
  readonly etag: string;
}

export interface ReadOptions {
  readonly signal?: AbortSignal;
  /** when set, the read must fail with SourceError kind 'changed' if the object's etag differs */
  readonly ifMatch?: string;
}

export interface Source {
  /** canonical location, used as cache key and in messages (never carries credentials) */
  readonly url: string;
  /** read `length` bytes at `offset`; a read past the end returns the bytes that exist */
  read(offset: number, length: number, options?: ReadOptions): Promise<SourceRead>;
  /** current size and etag without reading data */
  stat(options?: ReadOptions): Promise<{ size: number; etag: string; lastModified?: Date }>;
  close?(): Promise<void>;
}

/** Counters every source keeps, for logs, metrics and tests. */
export interface SourceStats {
  requests: number;
  bytes: number;
  /** requests that were sent again after a failure (sources that retry by themselves) */
  retries?: number;
}
