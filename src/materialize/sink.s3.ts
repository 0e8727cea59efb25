/**
 * Over 500 lines because the multipart protocol is one unit: staging, listing, resuming, completing and reading
 * back share the upload's state and one error mapping.
 *
 * The S3 sink: one multipart upload per COG. Parts arrive in any order and concurrently (part 1, the header part,
 * last); each is uploaded with UploadPart and retried with exponential backoff and full jitter on 5xx, throttling,
 * timeouts and dropped connections (re-uploading a part number overwrites it, so a retry is always safe).
 *
 * `complete` sends CompleteMultipartUpload with the parts sorted by number, then reads the object back with
 * HeadObject: the object must exist, have the size of the parts together and an ETag ending in `-N` with N the
 * number of parts. That catches a CompleteMultipartUpload answered 200 with an error body (the SDK turns those
 * into 503s, which are retried) and stores that answer with an empty ETag (radosgw) alike.
 * `abort` sends AbortMultipartUpload (retried) and checks the upload is gone: nothing appears at the key.
 *
 * Every part carries a Content-MD5 header, so the store refuses a part damaged on the way (BadDigest, retried).
 */
import { createHash } from 'node:crypto';

import { CogmillError, errorMessage, SourceError } from '../render/errors.ts';
import { retrying } from '../render/retry.ts';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  createS3Client,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  isRetryableS3Error,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  parseS3Url,
  type S3Client,
  type S3ErrorShape,
  type S3Settings,
  s3ErrorName,
  s3SourceError,
  UploadPartCommand,
} from '../render/s3.client.ts';
import { type Part, S3_MAX_PART_BYTES, S3_MAX_PARTS, S3_MIN_PART_BYTES } from './part.plan.ts';
import {
  asSinkError,
  isSinkError,
  noteRetried,
  partBody,
  SINK_REMOTE_DEFAULTS,
  SinkError,
  type SinkLimits,
  type SinkParts,
  type SinkRemoteOptions,
  type SinkResult,
  type SinkStaged,
  type SinkStats,
  type StagedPart,
  type UploadInfo,
} from './sink.ts';

export interface SinkS3Options extends SinkRemoteOptions {
  /**
   * A client to share (its own SDK retries then add to the sink's, and are counted too). Without it the sink
   * builds a private client from `settings` with SDK retries off, and destroys it when done.
   */
  readonly client?: S3Client;
  readonly settings?: S3Settings;
  /** every part but the highest-numbered must be at least this big (S3: 5 MiB) */
  readonly minPartBytes?: number;
}

export const SINK_S3_DEFAULTS = SINK_REMOTE_DEFAULTS;

/** `"0123abcd...-7"` -> 7 (undefined when the ETag is not a multipart ETag) */
export function multipartEtagParts(etag: string | undefined): number | undefined {
  const m = /^"?[0-9a-fA-F]+-(\d+)"?$/.exec(etag ?? '');
  return m ? Number(m[1]) : undefined;
}

interface PartRecord {
  readonly etag: string;
  readonly bytes: number;
  readonly md5: Buffer;
}

export class SinkS3 implements SinkParts, SinkStaged {
  readonly mode = 'parts' as const;
  readonly kind = 's3';
  readonly location: string;
  readonly stats: SinkStats = { parts: 0, bytes: 0, retries: 0 };
  /** the last few errors that were retried, oldest first (for progress reports) */
  readonly recentErrors: string[] = [];
  readonly bucket: string;
  readonly key: string;
  private readonly options: SinkS3Options;
  private client: S3Client | undefined;
  private readonly ownsClient: boolean;
  private readonly attempts: number;
  private readonly parts = new Map<number, PartRecord>();
  private readonly inflight = new Set<Promise<unknown>>();
  private id: string | undefined;
  private state: 'new' | 'open' | 'completing' | 'completed' | 'aborted' = 'new';
  /** CompleteMultipartUpload was sent at least once (the store may have completed the object) */
  private completeSent = false;
  /** the parts of the last commit */
  private committed: readonly StagedPart[] = [];

  constructor(url: string, options: SinkS3Options = {}) {
    let parsed: { bucket: string; key: string };
    try {
      parsed = parseS3Url(url);
    } catch (e) {
      throw e instanceof SourceError ? asSinkError(e) : e;
    }
    const { bucket, key } = parsed;
    if (key === '' || key.endsWith('/')) {
      throw new SinkError(
        'bad-destination',
        `"${url}" names no object: write the destination as s3://bucket/path/to/file.tif`,
      );
    }
    if (!options.client && !options.settings) throw new TypeError('SinkS3 needs a client or S3 settings');
    this.location = `s3://${bucket}/${key}`;
    this.bucket = bucket;
    this.key = key;
    this.options = options;
    this.client = options.client;
    this.ownsClient = options.client === undefined;
    this.attempts = Math.max(1, options.attempts ?? SINK_S3_DEFAULTS.attempts);
  }

  /** the multipart upload id (after open, create or attach) */
  get uploadId(): string | undefined {
    return this.id;
  }

  get limits(): SinkLimits {
    return {
      minPartBytes: this.options.minPartBytes ?? S3_MIN_PART_BYTES,
      maxPartBytes: S3_MAX_PART_BYTES,
      maxParts: S3_MAX_PARTS,
    };
  }

  get minPartBytes(): number {
    return this.limits.minPartBytes;
  }

  async create(signal?: AbortSignal): Promise<string> {
    await this.open(signal);
    return this.id!;
  }

  attach(uploadId: string): void {
    if (this.state !== 'new') throw new SinkError('internal', `SinkS3.attach: the sink is ${this.state}`);
    if (typeof uploadId !== 'string' || uploadId === '') throw new TypeError('SinkS3.attach: an upload id is needed');
    this.id = uploadId;
    this.state = 'open';
  }

  async stage(part: Part, signal?: AbortSignal): Promise<StagedPart> {
    const p = this.upload(part, signal);
    this.inflight.add(p);
    const done = () => this.inflight.delete(p);
    p.then(done, done);
    return p;
  }

  async listStaged(signal?: AbortSignal): Promise<StagedPart[]> {
    if (this.id === undefined) throw new SinkError('internal', 'SinkS3.listStaged: no upload (create or attach first)');
    const out: StagedPart[] = [];
    let marker: string | undefined;
    for (let page = 0; page < 1000; page++) {
      const res = await this.send(
        'ListParts',
        (c, s) =>
          c.send(
            new ListPartsCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.id, PartNumberMarker: marker }),
            { abortSignal: s },
          ),
        signal,
      );
      for (const p of res.Parts ?? [])
        out.push({ partNumber: p.PartNumber ?? 0, bytes: p.Size ?? 0, etag: p.ETag ?? '' });
      if (!res.IsTruncated) break;
      marker = res.NextPartNumberMarker;
    }
    return out.sort((a, b) => a.partNumber - b.partNumber);
  }

  async listUploads(signal?: AbortSignal): Promise<UploadInfo[]> {
    const out: UploadInfo[] = [];
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    for (let page = 0; page < 100; page++) {
      const res = await this.send(
        'ListMultipartUploads',
        (c, s) =>
          c.send(
            new ListMultipartUploadsCommand({
              Bucket: this.bucket,
              Prefix: this.key,
              KeyMarker: keyMarker,
              UploadIdMarker: idMarker,
            }),
            { abortSignal: s },
          ),
        signal,
      );
      for (const u of res.Uploads ?? []) {
        if (u.Key === this.key && u.UploadId)
          out.push({ uploadId: u.UploadId, initiated: u.Initiated ? new Date(u.Initiated).toISOString() : null });
      }
      if (!res.IsTruncated) break;
      keyMarker = res.NextKeyMarker;
      idMarker = res.NextUploadIdMarker;
    }
    return out;
  }

  /** where the notes of this destination live: `KEY.cogmill/` */
  get notesPrefix(): string {
    return `${this.key}.cogmill/`;
  }

  async putNote(name: string, text: string, signal?: AbortSignal): Promise<void> {
    await this.send(
      `PutObject ${name}`,
      (c, s) =>
        c.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: this.notesPrefix + name,
            Body: text,
            ContentType: 'application/json',
          }),
          { abortSignal: s },
        ),
      signal,
    );
  }

  async getNote(name: string, signal?: AbortSignal): Promise<string | undefined> {
    try {
      const res = await this.send(
        `GetObject ${name}`,
        (c, s) =>
          c.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.notesPrefix + name }), { abortSignal: s }),
        signal,
      );
      return await res.Body!.transformToString();
    } catch (e) {
      if (isSinkError(e, 'not-found')) return undefined;
      throw e;
    }
  }

  async listNotes(signal?: AbortSignal): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    for (let page = 0; page < 1000; page++) {
      const res = await this.send(
        'ListObjectsV2',
        (c, s) =>
          c.send(
            new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.notesPrefix, ContinuationToken: token }),
            { abortSignal: s },
          ),
        signal,
      );
      for (const o of res.Contents ?? []) if (o.Key) out.push(o.Key.slice(this.notesPrefix.length));
      if (!res.IsTruncated) break;
      token = res.NextContinuationToken;
    }
    return out.sort();
  }

  async clearNotes(signal?: AbortSignal): Promise<void> {
    for (const name of await this.listNotes(signal)) {
      await this.send(
        `DeleteObject ${name}`,
        (c, s) =>
          c.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.notesPrefix + name }), { abortSignal: s }),
        signal,
      );
    }
  }

  async abortUpload(uploadId: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.send(
        'AbortMultipartUpload',
        (c, s) =>
          c.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: uploadId }), {
            abortSignal: s,
          }),
        signal,
      );
    } catch (e) {
      if (!isSinkError(e, 'upload-gone')) throw e;
    }
  }

  private s3(): S3Client {
    this.client ??= createS3Client({ ...this.options.settings, maxAttempts: 1 });
    return this.client;
  }

  private release(): void {
    if (this.ownsClient) {
      this.client?.destroy();
      this.client = undefined;
    }
  }

  private note(action: string, e: unknown): void {
    const err = (e ?? {}) as S3ErrorShape;
    const status = err.$metadata?.httpStatusCode;
    const what = [status && `HTTP ${status}`, s3ErrorName(e) || err.code, err.message].filter(Boolean).join(' ');
    noteRetried(this.recentErrors, `${action}: ${what || errorMessage(e)}`);
  }

  /** SDK-level retries (shared clients) count as retries too */
  private countSdkRetries(meta: { attempts?: number } | undefined): void {
    if (meta?.attempts && meta.attempts > 1) this.stats.retries += meta.attempts - 1;
  }

  /** Send with retries; `signal` cancels (its reason is thrown as it is). */
  private send<T extends { $metadata?: { attempts?: number } }>(
    action: string,
    fn: (client: S3Client, signal: AbortSignal | undefined) => Promise<T>,
    signal: AbortSignal | undefined,
    onFailedAttempt?: (e: unknown) => void,
  ): Promise<T> {
    return retrying(
      async () => {
        const out = await fn(this.s3(), signal);
        this.countSdkRetries(out.$metadata);
        return out;
      },
      {
        attempts: this.attempts,
        baseMs: this.options.retryBaseMs ?? SINK_S3_DEFAULTS.retryBaseMs,
        maxMs: this.options.retryMaxMs ?? SINK_S3_DEFAULTS.retryMaxMs,
        signal,
        failure: (e) => {
          this.countSdkRetries((e as S3ErrorShape).$metadata);
          onFailedAttempt?.(e);
          return e;
        },
        retryable: isRetryableS3Error,
        onRetry: (e) => {
          this.stats.retries++;
          this.note(action, e);
        },
        fail: (e, attempts) => this.fail(e, action, attempts),
      },
    );
  }

  private fail(e: unknown, action: string, attempts: number): SinkError {
    if (e instanceof CogmillError) return asSinkError(e);
    const name = s3ErrorName(e);
    const opts = { cause: e };
    const after = attempts > 1 ? ` after ${attempts} attempts` : '';
    if (name === 'NoSuchUpload') {
      return new SinkError(
        'upload-gone',
        `${this.location}: the multipart upload ${this.id ?? ''} no longer exists (${action}); it was aborted, or a lifecycle rule removed it`,
        opts,
      );
    }
    if (name === 'NoSuchBucket') {
      return new SinkError(
        'bad-destination',
        `${this.location}: the bucket ${this.bucket} does not exist (${action}); create it first, or check the bucket name and the S3 endpoint/region`,
        opts,
      );
    }
    if (name === 'EntityTooSmall' || name === 'InvalidPart' || name === 'InvalidPartOrder') {
      return new SinkError(
        'parts-refused',
        `${this.location}: S3 refused the parts (${action}, ${name}): ${(e as Error).message}`,
        opts,
      );
    }
    const status = (e as S3ErrorShape).$metadata?.httpStatusCode;
    if (status === 401 || status === 403) {
      return new SinkError(
        'forbidden',
        `${this.location}: access denied (${action}, S3 ${status} ${name}); the credentials need s3:PutObject and s3:AbortMultipartUpload on this bucket and key`,
        opts,
      );
    }
    return asSinkError(s3SourceError(e, this.location, action), after);
  }

  async open(signal?: AbortSignal): Promise<void> {
    if (this.state !== 'new') throw new SinkError('internal', `SinkS3.open: the sink is ${this.state}`);
    const res = await this.send(
      'CreateMultipartUpload',
      (c, s) =>
        c.send(
          new CreateMultipartUploadCommand({
            Bucket: this.bucket,
            Key: this.key,
            ContentType: this.options.contentType ?? SINK_S3_DEFAULTS.contentType,
          }),
          { abortSignal: s },
        ),
      signal,
    );
    if (!res.UploadId)
      throw new SinkError('unreachable', `${this.location}: CreateMultipartUpload answered without an UploadId`);
    this.id = res.UploadId;
    this.state = 'open';
  }

  async putPart(part: Part, signal?: AbortSignal): Promise<void> {
    await this.stage(part, signal);
  }

  private async upload(part: Part, signal?: AbortSignal): Promise<StagedPart> {
    if (this.state !== 'open') {
      throw new SinkError(
        'internal',
        `${this.location}: part ${part.partNumber} arrived while the upload is ${this.state}`,
      );
    }
    const n = part.partNumber;
    if (!Number.isInteger(n) || n < 1 || n > S3_MAX_PARTS)
      throw new RangeError(`part number ${n} is outside 1..${S3_MAX_PARTS}`);
    if (part.bytes > S3_MAX_PART_BYTES) throw new RangeError(`part ${n} is ${part.bytes} bytes, more than S3's 5 GiB`);
    const body = partBody(part);
    const md5 = createHash('md5').update(body).digest();
    const res = await this.send(
      `UploadPart ${n}`,
      (c, s) =>
        c.send(
          new UploadPartCommand({
            Bucket: this.bucket,
            Key: this.key,
            UploadId: this.id,
            PartNumber: n,
            Body: body,
            ContentLength: body.byteLength,
            ContentMD5: md5.toString('base64'),
          }),
          { abortSignal: s },
        ),
      signal,
    );
    const etag = res.ETag ?? '';
    if (etag === '') throw new SinkError('unreachable', `${this.location}: UploadPart ${n} answered without an ETag`);
    const staged = { partNumber: n, bytes: body.byteLength, etag };
    if (this.state !== 'open') return staged;
    const old = this.parts.get(n);
    if (old) this.stats.bytes -= old.bytes;
    else this.stats.parts++;
    this.parts.set(n, { etag, bytes: body.byteLength, md5 });
    this.stats.bytes += body.byteLength;
    return staged;
  }

  /** the parts uploaded so far, by number */
  uploadedParts(): { partNumber: number; bytes: number; etag: string }[] {
    return [...this.parts.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([partNumber, p]) => ({ partNumber, bytes: p.bytes, etag: p.etag }));
  }

  /** the ETag S3 gives a multipart object made of exactly these parts (MD5 of the parts' MD5s, `-N`) */
  expectedEtag(): string {
    const parts = this.committed.length ? this.committed : this.uploadedParts();
    const h = createHash('md5');
    for (const p of parts) h.update(Buffer.from(p.etag.replace(/"/g, ''), 'hex'));
    return `"${h.digest('hex')}-${parts.length}"`;
  }

  async complete(signal?: AbortSignal): Promise<SinkResult> {
    if (this.state !== 'open')
      throw new SinkError('internal', `${this.location}: complete() while the upload is ${this.state}`);
    await Promise.allSettled([...this.inflight]);
    return this.commit(this.uploadedParts(), signal);
  }

  async commit(parts: readonly StagedPart[], signal?: AbortSignal): Promise<SinkResult> {
    if (this.state !== 'open')
      throw new SinkError('internal', `${this.location}: commit() while the upload is ${this.state}`);
    await Promise.allSettled([...this.inflight]);
    const sorted = [...parts];
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i].partNumber <= sorted[i - 1].partNumber)
        throw new SinkError('internal', `${this.location}: commit() needs parts in ascending order of number`);
    }
    this.committed = sorted;
    if (sorted.length === 0 || sorted[0].partNumber !== 1) {
      throw new SinkError('internal', `${this.location}: cannot complete the upload without part 1 (the header)`);
    }
    const minPartBytes = this.options.minPartBytes ?? S3_MIN_PART_BYTES;
    for (let i = 0; i < sorted.length - 1; i++) {
      if (sorted[i].bytes < minPartBytes) {
        throw new SinkError(
          'internal',
          `${this.location}: part ${sorted[i].partNumber} is ${sorted[i].bytes} bytes; every part but the last must be at least ${minPartBytes}`,
        );
      }
    }
    const totalBytes = sorted.reduce((a, p) => a + p.bytes, 0);
    this.state = 'completing';
    // a retry after an answer that got lost may find the upload already completed (NoSuchUpload): then the
    // object itself tells whether it is ours
    let ambiguous = false;
    try {
      await this.send(
        'CompleteMultipartUpload',
        (c, s) => {
          this.completeSent = true;
          return c.send(
            new CompleteMultipartUploadCommand({
              Bucket: this.bucket,
              Key: this.key,
              UploadId: this.id,
              MultipartUpload: { Parts: sorted.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
            }),
            { abortSignal: s },
          );
        },
        signal,
        (e) => {
          if (isRetryableS3Error(e)) ambiguous = true;
        },
      );
    } catch (e) {
      if (!(ambiguous && isSinkError(e, 'upload-gone'))) {
        this.state = 'open';
        throw e;
      }
    }
    let head: { ContentLength?: number; ETag?: string };
    try {
      head = await this.send(
        'HeadObject',
        (c, s) => c.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key }), { abortSignal: s }),
        signal,
      );
    } catch (e) {
      this.state = 'open';
      if (isSinkError(e, 'not-found')) {
        throw new SinkError(
          'unreachable',
          `${this.location}: CompleteMultipartUpload seemed to succeed but no object is at the key; the upload was not completed`,
          { cause: e },
        );
      }
      throw e;
    }
    const etag = head.ETag ?? '';
    const etagParts = multipartEtagParts(etag);
    const problem =
      head.ContentLength !== totalBytes
        ? `its size is ${head.ContentLength} bytes, not the ${totalBytes} uploaded`
        : etagParts !== sorted.length
          ? `its ETag ${etag || '(none)'} does not say ${sorted.length} parts`
          : undefined;
    if (problem) {
      // another writer's object, or a completion that did not take our parts: do not report success
      this.state = 'open';
      throw new SinkError(
        'not-ours',
        `${this.location}: after CompleteMultipartUpload the object is not ours: ${problem}`,
      );
    }
    this.state = 'completed';
    this.release();
    return { location: this.location, bytes: totalBytes, etag, parts: sorted.length };
  }

  async abort(_reason?: unknown): Promise<void> {
    if (this.state === 'completed' || this.state === 'aborted') {
      this.release();
      return;
    }
    const wasOpen = this.state !== 'new';
    this.state = 'aborted';
    // parts still on the wire would re-create storage after the abort: let them finish first
    await Promise.allSettled([...this.inflight]);
    if (!wasOpen || this.id === undefined) {
      this.release();
      return;
    }
    const timeout = AbortSignal.timeout(this.options.abortTimeoutMs ?? SINK_S3_DEFAULTS.abortTimeoutMs);
    try {
      // S3 may need more than one abort to free parts that were being uploaded: abort until it is not listed
      let gone = false;
      for (let round = 0; round < 3; round++) {
        try {
          await this.send(
            'AbortMultipartUpload',
            (c, s) =>
              c.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key, UploadId: this.id }), {
                abortSignal: s,
              }),
            timeout,
          );
        } catch (e) {
          if (!isSinkError(e, 'upload-gone')) throw e;
          gone = true;
        }
        if (!(await this.stillListed(timeout))) {
          // a cancel that raced CompleteMultipartUpload: the object may exist; remove it only if it is exactly ours
          if (gone && this.completeSent) await this.removeIfOurs(timeout);
          return;
        }
      }
      throw new SinkError(
        'unreachable',
        `${this.location}: the multipart upload ${this.id} is still listed after three aborts`,
      );
    } finally {
      this.release();
    }
  }

  /** Delete the object at the key when its ETag says it is made of exactly our parts. */
  private async removeIfOurs(signal: AbortSignal): Promise<void> {
    let etag: string | undefined;
    try {
      const head = await this.send(
        'HeadObject',
        (c, s) => c.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.key }), { abortSignal: s }),
        signal,
      );
      etag = head.ETag;
    } catch (e) {
      if (isSinkError(e, 'not-found')) return;
      throw e;
    }
    if (etag !== this.expectedEtag()) return;
    await this.send(
      'DeleteObject',
      (c, s) => c.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key }), { abortSignal: s }),
      signal,
    );
  }

  /** whether ListMultipartUploads still shows our upload */
  private async stillListed(signal: AbortSignal): Promise<boolean> {
    return (await this.listUploads(signal)).some((u) => u.uploadId === this.id);
  }
}
