/**
 * Where a materialised COG goes. Two shapes:
 * - parts sinks (S3, Azure): accept numbered parts in any order and concurrently, part 1 (header first) last;
 * - sequential sinks (file, download): accept the tile data in file order after a reserved header area, then the
 *   header at offset 0.
 * On any failure or cancel the pipeline calls abort(): nothing may appear at the destination.
 */
import type { Part } from './part.plan.ts';

export interface SinkResult {
  /** where the COG is now (s3://bucket/key, az://container/blob, a file path, or "download") */
  readonly location: string;
  readonly bytes: number;
  readonly etag?: string;
  readonly parts?: number;
}

export interface SinkStats {
  parts: number;
  bytes: number;
  retries: number;
}

export interface SinkParts {
  readonly mode: 'parts';
  readonly kind: string;
  readonly location: string;
  readonly stats: SinkStats;
  /** smallest size of every part but the last (default S3's 5 MiB; Azure block blobs: 1, nothing is glued) */
  readonly minPartBytes?: number;
  /** highest part number (default S3's 10,000; Azure: 50,000 blocks) */
  readonly maxParts?: number;
  open(signal?: AbortSignal): Promise<void>;
  /** upload one part (retried inside as needed); parts of the same number overwrite */
  putPart(part: Part, signal?: AbortSignal): Promise<void>;
  /** every part is in: complete the object */
  complete(signal?: AbortSignal): Promise<SinkResult>;
  abort(reason: unknown): Promise<void>;
}

export interface SinkSequential {
  readonly mode: 'sequential';
  readonly kind: string;
  readonly location: string;
  readonly stats: SinkStats;
  /** `headerBytes` are reserved at the start; data chunks follow in file order */
  open(headerBytes: number, signal?: AbortSignal): Promise<void>;
  write(chunk: Uint8Array, signal?: AbortSignal): Promise<void>;
  /** write the header; when it is larger than reserved (BigTIFF after all), the sink shifts the data */
  complete(header: Uint8Array, signal?: AbortSignal): Promise<SinkResult>;
  abort(reason: unknown): Promise<void>;
}

export type Sink = SinkParts | SinkSequential;
