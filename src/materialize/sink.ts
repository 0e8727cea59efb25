/**
 * Where a materialised COG goes. Three shapes:
 *
 * - **staged** sinks (S3 multipart, Azure block blobs) — the one every distributed mode uses. An *upload* has an id
 *   that any process can attach to; numbered parts are staged by any process, in any order, concurrently and more
 *   than once (a part staged again with the same number replaces the old one: at-least-once delivery is harmless);
 *   the staged parts can be listed (resume); one call commits an explicit, ordered list of parts into the object
 *   (parts left out are discarded by the store), and abort removes the upload and every staged part.
 *
 *   ```
 *   interface SinkStaged {
 *     kind, location, limits: { minPartBytes, maxPartBytes, maxParts }, stats
 *     create(signal)                -> uploadId          (coordinator, once per materialisation)
 *     attach(uploadId)                                   (workers, the complete step, resume)
 *     stage(part, signal)           -> StagedPart        (part = { partNumber, chunks, bytes })
 *     listStaged(signal)            -> StagedPart[]      (S3 ListParts, Azure uncommitted block list)
 *     commit(parts, signal)         -> SinkResult        (S3 CompleteMultipartUpload + HeadObject check;
 *                                                         Azure Put Block List + properties check)
 *     abort(reason)                                      (the upload and its parts are gone afterwards)
 *     listUploads(signal)           -> UploadInfo[]      (other unfinished uploads to the same key: stale ones)
 *     abortUpload(uploadId, signal)                      (remove one of them)
 *     putNote(name, text) / getNote(name) / listNotes() / clearNotes()
 *                                                        small documents next to the destination (S3:
 *                                                        KEY.cogmill/NAME): the plan and the shard reports,
 *                                                        read by other processes and by resume
 *   }
 *   ```
 *   Part numbers are 1..limits.maxParts and increase in file order; every part but the highest-numbered one is at
 *   least limits.minPartBytes (S3: 5 MiB; Azure: 1). Part 1 is the COG header followed by the first data, staged
 *   last. Azure maps part numbers to fixed-length block ids (e.g. base64 of `${uploadId}:${partNumber padded}`), so
 *   listStaged can recover part numbers and commit can name blocks by number.
 *
 * - parts sinks (the older in-process shape, SinkParts): open/putPart/complete with the sink keeping the part list;
 *   `stagedOf()` turns one into a staged sink for the in-process pipeline.
 * - sequential sinks (file, download): accept the tile data in file order after a reserved header area, then the
 *   header at offset 0.
 *
 * On any failure or cancel the caller aborts: nothing may appear at the destination. Sinks throw SinkError.
 */
import { CogmillError, type ErrorKind } from '../render/errors.ts';
import type { Part } from './part.plan.ts';

/** Tuning every remote sink (S3, Azure) takes. */
export interface SinkRemoteOptions {
  /** Content-Type of the object (default image/tiff) */
  readonly contentType?: string;
  /** attempts per request, the first included (default 8) */
  readonly attempts?: number;
  /** first backoff in milliseconds; doubles per attempt, full jitter (default 200) */
  readonly retryBaseMs?: number;
  /** longest backoff in milliseconds (default 10,000) */
  readonly retryMaxMs?: number;
  /** how long abort() may take before it gives up, in milliseconds (default 60,000) */
  readonly abortTimeoutMs?: number;
}

export const SINK_REMOTE_DEFAULTS = {
  contentType: 'image/tiff',
  attempts: 8,
  retryBaseMs: 200,
  retryMaxMs: 10_000,
  abortTimeoutMs: 60_000,
} as const;

/** how many retried errors a sink remembers for progress reports */
const RECENT_ERRORS = 10;

/** Remember one retried error (`recent` keeps the last few, oldest first, for progress reports). */
export function noteRetried(recent: string[], text: string): void {
  recent.push(`${text} (retried)`);
  if (recent.length > RECENT_ERRORS) recent.shift();
}

/** A part's chunks as one buffer (the chunk itself when there is one). */
export function partBody(part: Part): Uint8Array {
  const { chunks, bytes } = part;
  if (chunks.length === 1 && chunks[0].byteLength === bytes) return chunks[0];
  const out = new Uint8Array(bytes);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  if (at !== bytes) throw new RangeError(`part chunks hold ${at} bytes, not the ${bytes} announced`);
  return out;
}

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

/** A part as the store holds it. */
export interface StagedPart {
  readonly partNumber: number;
  readonly bytes: number;
  /** S3: the part's ETag; Azure: the block id */
  readonly etag: string;
}

export interface SinkLimits {
  /** smallest size of every part but the highest-numbered (S3 5 MiB; Azure 1) */
  readonly minPartBytes: number;
  /** largest part (S3 5 GiB; Azure 4000 MiB) */
  readonly maxPartBytes: number;
  /** highest part number (S3 10,000; Azure 50,000) */
  readonly maxParts: number;
}

/** An unfinished upload to a key. */
export interface UploadInfo {
  readonly uploadId: string;
  /** ISO time the upload was created, when the store says */
  readonly initiated: string | null;
}

export interface SinkStaged {
  readonly kind: string;
  readonly location: string;
  readonly limits: SinkLimits;
  readonly stats: SinkStats;
  /** the upload this sink writes to (after create or attach) */
  readonly uploadId: string | undefined;
  /** start a new upload and attach to it */
  create(signal?: AbortSignal): Promise<string>;
  /** write to an existing upload (made by create here or in another process) */
  attach(uploadId: string): void;
  /** stage one part (retried inside as needed); a part staged again with the same number replaces it */
  stage(part: Part, signal?: AbortSignal): Promise<StagedPart>;
  /** the parts staged in this upload so far, by number (from the store, not from memory) */
  listStaged(signal?: AbortSignal): Promise<StagedPart[]>;
  /** make the object from exactly these parts, in this order (ascending numbers), and check it is there */
  commit(parts: readonly StagedPart[], signal?: AbortSignal): Promise<SinkResult>;
  /** remove the upload and every staged part; afterwards nothing of it is at the destination */
  abort(reason?: unknown): Promise<void>;
  /** unfinished uploads to this sink's key (stale ones from crashed runs, or this one) */
  listUploads(signal?: AbortSignal): Promise<UploadInfo[]>;
  /** abort another upload to this key */
  abortUpload(uploadId: string, signal?: AbortSignal): Promise<void>;
  /** store a small document next to the destination (replaces one of the same name) */
  putNote(name: string, text: string, signal?: AbortSignal): Promise<void>;
  /** a document stored by putNote, or undefined */
  getNote(name: string, signal?: AbortSignal): Promise<string | undefined>;
  /** names of the documents stored by putNote */
  listNotes(signal?: AbortSignal): Promise<string[]>;
  /** remove every document stored by putNote */
  clearNotes(signal?: AbortSignal): Promise<void>;
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

/** Whether a sink can be written by many processes (it implements SinkStaged). */
export function isStaged(sink: unknown): sink is SinkStaged {
  const s = sink as Partial<SinkStaged> | undefined;
  return typeof s?.stage === 'function' && typeof s.commit === 'function' && typeof s.listStaged === 'function';
}

/**
 * What went wrong at a destination, for a person and for code:
 * - `bad-destination`: the destination is malformed, names no object, or its bucket / container / folder does not
 *   exist or is not a folder;
 * - `forbidden`: the credentials (or the file permissions) do not allow writing there;
 * - `not-found`: an object the sink looked for is not there (a note, the object after a commit);
 * - `upload-gone`: the upload no longer exists (aborted, completed, or removed by a lifecycle rule);
 * - `parts-refused`: the store refused the parts at commit (too small, wrong order, unknown ETag);
 * - `not-ours`: after the commit the object at the key is not made of our parts (another writer);
 * - `unreachable` / `timeout`: the store did not answer usably, retries included (a disk that fails to write too);
 * - `internal`: the sink was used wrongly (a bug).
 */
export const SINK_ERROR_KINDS = [
  'bad-destination',
  'forbidden',
  'not-found',
  'upload-gone',
  'parts-refused',
  'not-ours',
  'unreachable',
  'timeout',
  'internal',
] as const;
export type SinkErrorKind = (typeof SINK_ERROR_KINDS)[number];

/** how each sink failure is reported over HTTP (through CogmillError's kind -> status table) */
const SINK_KIND_TO_ERROR: Record<SinkErrorKind, ErrorKind> = {
  'bad-destination': 'bad-request',
  forbidden: 'forbidden',
  'not-found': 'not-found',
  'upload-gone': 'not-found',
  'parts-refused': 'internal',
  'not-ours': 'changed',
  unreachable: 'unreachable',
  timeout: 'timeout',
  internal: 'internal',
};

export class SinkError extends CogmillError {
  override readonly name = 'SinkError';
  readonly sinkKind: SinkErrorKind;
  constructor(sinkKind: SinkErrorKind, message: string, options?: { cause?: unknown }) {
    super(SINK_KIND_TO_ERROR[sinkKind], message, options);
    this.sinkKind = sinkKind;
  }
}

/** The sink kind of an error of another layer (the S3 and Azure error mappings the sinks share with the sources). */
const ERROR_TO_SINK_KIND: Record<ErrorKind, SinkErrorKind> = {
  'bad-request': 'bad-destination',
  forbidden: 'forbidden',
  'not-found': 'not-found',
  'too-large': 'internal',
  unsupported: 'internal',
  corrupt: 'internal',
  changed: 'not-ours',
  conflict: 'not-ours',
  unreachable: 'unreachable',
  timeout: 'timeout',
  internal: 'internal',
};

/**
 * `e` as a sink's error: a SinkError as it is, another layer's error with the sink kind of its kind; the message
 * (plus `suffix`, e.g. " after 8 attempts") and the underlying cause are kept.
 */
export function asSinkError(e: CogmillError, suffix = ''): SinkError {
  if (e instanceof SinkError && suffix === '') return e;
  const kind = e instanceof SinkError ? e.sinkKind : ERROR_TO_SINK_KIND[e.kind];
  return new SinkError(kind, `${e.message}${suffix}`, { cause: e.cause ?? e });
}

/** Whether `e` is a sink error of one of `kinds`. */
export function isSinkError(e: unknown, ...kinds: SinkErrorKind[]): e is SinkError {
  return e instanceof SinkError && (kinds.length === 0 || kinds.includes(e.sinkKind));
}
