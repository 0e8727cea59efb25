/**
 * S3 sources (AWS S3 or any S3-compatible store): ranged GetObject, HeadObject, listing a prefix.
 * The S3 client is built once by the engine (createS3Client in s3.client.ts) and shared by every source.
 */
import type { Readable } from 'node:stream';
import { SourceError } from './errors.ts';
import { sleep } from './retry.ts';
import {
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  parseS3Url,
  type S3Client,
  type S3ErrorShape,
  s3SourceError,
} from './s3.client.ts';
import { checkByteRange, parseContentRange, readBody } from './source.body.ts';
import type { ReadOptions, Source, SourceRead, SourceStats } from './source.ts';

const BODY_RETRY_BASE_MS = 100;

function abortReason(signal: AbortSignal | undefined): unknown {
  return signal?.aborted ? signal.reason : undefined;
}

export interface SourceS3Options {
  /** attempts for a read whose body breaks off after the answer began (the SDK retries only until the answer); default 3 */
  readonly bodyAttempts?: number;
}

export class SourceS3 implements Source {
  readonly url: string;
  readonly stats: SourceStats = { requests: 0, bytes: 0 };
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly key: string;
  private readonly bodyAttempts: number;

  constructor(client: S3Client, url: string, options: SourceS3Options = {}) {
    const { bucket, key } = parseS3Url(url);
    if (key === '' || key.endsWith('/')) {
      throw new SourceError('bad-request', `"${url}" names no object: write it as s3://bucket/path/to/file.tif`);
    }
    this.client = client;
    this.url = url;
    this.bucket = bucket;
    this.key = key;
    this.bodyAttempts = Math.max(1, options.bodyAttempts ?? 3);
  }

  private countAttempts(meta: { attempts?: number } | undefined): void {
    this.stats.requests += meta?.attempts ?? 1;
  }

  async stat(options?: ReadOptions): Promise<{ size: number; etag: string; lastModified?: Date }> {
    options?.signal?.throwIfAborted();
    try {
      const res = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.key, IfMatch: options?.ifMatch }),
        { abortSignal: options?.signal },
      );
      this.countAttempts(res.$metadata);
      const size = res.ContentLength;
      if (size === undefined || !Number.isSafeInteger(size)) {
        throw new SourceError('unreachable', `${this.url}: S3 HeadObject gave no Content-Length`);
      }
      return { size, etag: res.ETag ?? `size-${size}`, lastModified: res.LastModified };
    } catch (e) {
      throw this.fail(e, 'HeadObject', options?.signal);
    }
  }

  async read(offset: number, length: number, options?: ReadOptions): Promise<SourceRead> {
    checkByteRange(this.url, offset, length);
    if (length <= 0) {
      const s = await this.stat(options);
      return { bytes: new Uint8Array(0), size: s.size, etag: s.etag };
    }
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.readOnce(offset, length, options);
      } catch (e) {
        const failure = this.fail(e, 'GetObject', options?.signal);
        const bodyBroke = (e as { bodyBroke?: boolean }).bodyBroke === true;
        if (!bodyBroke || attempt >= this.bodyAttempts || options?.signal?.aborted) throw failure;
        await sleep(BODY_RETRY_BASE_MS * 2 ** (attempt - 1) * (0.5 + Math.random()), options?.signal);
      }
    }
  }

  private async readOnce(offset: number, length: number, options?: ReadOptions): Promise<SourceRead> {
    const signal = options?.signal;
    signal?.throwIfAborted();
    let res: GetObjectCommandOutput;
    try {
      res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.key,
          Range: `bytes=${offset}-${offset + length - 1}`,
          IfMatch: options?.ifMatch,
        }),
        { abortSignal: signal },
      );
    } catch (e) {
      this.countAttempts((e as S3ErrorShape).$metadata);
      if ((e as S3ErrorShape).$metadata?.httpStatusCode === 416) {
        // the range starts at or past the end: nothing to read
        const s = await this.stat(options);
        return { bytes: new Uint8Array(0), size: s.size, etag: s.etag };
      }
      throw e;
    }
    this.countAttempts(res.$metadata);
    const etag = res.ETag ?? '';
    let bytes: Uint8Array;
    try {
      bytes = await readBody(res.Body as Readable, res.ContentLength, signal);
    } catch (e) {
      (res.Body as Readable | undefined)?.destroy();
      throw Object.assign(e instanceof Error ? e : new Error(String(e)), { bodyBroke: true });
    }
    let size: number;
    const range = parseContentRange(res.ContentRange);
    if (range) {
      if (range.start !== offset) {
        throw new SourceError(
          'unreachable',
          `${this.url}: S3 answered bytes from ${range.start}, not the ${offset} asked for`,
        );
      }
      size = range.total;
    } else {
      // the store ignored the Range header and sent the whole object
      size = bytes.byteLength;
      bytes = bytes.subarray(offset, offset + length);
    }
    this.stats.bytes += bytes.byteLength;
    return { bytes, size, etag: etag || `size-${size}` };
  }

  /** the caller's abort wins over any error it caused; everything else becomes a SourceError */
  private fail(e: unknown, action: string, signal: AbortSignal | undefined): unknown {
    const reason = abortReason(signal);
    if (reason !== undefined) return reason;
    return s3SourceError(e, this.url, action);
  }
}

const TIFF_KEY = /\.tiff?$/i;

/**
 * Every object under `s3://bucket/prefix/` whose key ends in .tif or .tiff, as sorted `s3://` URLs.
 * A prefix without a trailing slash is taken as a folder. More than `limit` matches is an error (narrow the prefix).
 */
export async function listS3Tiffs(
  client: S3Client,
  prefixUrl: string,
  limit = 100_000,
  pageSize = 1000,
): Promise<string[]> {
  const { bucket, key } = parseS3Url(prefixUrl);
  const prefix = key === '' || key.endsWith('/') ? key : `${key}/`;
  const where = `s3://${bucket}/${prefix}`;
  const urls: string[] = [];
  let token: string | undefined;
  do {
    let page: ListObjectsV2CommandOutput;
    try {
      page = await listPage(client, bucket, prefix, token, pageSize);
    } catch (e) {
      throw s3SourceError(e, where, 'ListObjectsV2');
    }
    for (const object of page.Contents ?? []) {
      if (object.Key === undefined || !TIFF_KEY.test(object.Key)) continue;
      if (urls.length >= limit) {
        throw new SourceError('too-large', `${where} holds more than ${limit} GeoTIFFs; point at a narrower prefix`);
      }
      urls.push(`s3://${bucket}/${object.Key}`);
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  return urls.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function listPage(
  client: S3Client,
  bucket: string,
  prefix: string,
  token: string | undefined,
  pageSize: number,
): Promise<ListObjectsV2CommandOutput> {
  return client.send(
    new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token, MaxKeys: pageSize }),
  );
}
