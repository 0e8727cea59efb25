/**
 * What every user of S3 shares, sources (source.s3.ts) and sinks (materialize/sink.s3.ts) alike: the settings,
 * the client factory, `s3://` URLs, the shape of the SDK's errors, which of them a retry may cure, and the mapping
 * of an error to one a person can act on. The one import site of `@aws-sdk/client-s3`: the commands are taken
 * from here.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { CogmillError, SourceError } from './errors.ts';
import { NETWORK_CODES } from './retry.ts';

export {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  ListPartsCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';

export interface S3Settings {
  /** custom endpoint of an S3-compatible store, e.g. `http://127.0.0.1:7480`; AWS when absent */
  readonly endpoint?: string;
  /** signing region; `us-east-1` when an endpoint is given, else the SDK's region chain (AWS_REGION, profile) */
  readonly region?: string;
  /** `https://endpoint/bucket/key` instead of `https://bucket.endpoint/key`; default true when an endpoint is given */
  readonly forcePathStyle?: boolean;
  /** static keys; when absent the SDK's standard credential chain applies (env, profile, web identity, IMDS) */
  readonly accessKeyId?: string;
  readonly secretAccessKey?: string;
  /** attempts per request, the first included (SDK standard retry with backoff); default 3 */
  readonly maxAttempts?: number;
  /** the longest a connection may stay silent (connecting, waiting for an answer, between body bytes); default 30 s */
  readonly timeoutMs?: number;
}

export const S3_DEFAULTS = { region: 'us-east-1', maxAttempts: 3, timeoutMs: 30_000, maxSockets: 64 } as const;

export function createS3Client(settings: S3Settings): S3Client {
  const timeoutMs = settings.timeoutMs ?? S3_DEFAULTS.timeoutMs;
  const agent = { keepAlive: true, maxSockets: S3_DEFAULTS.maxSockets };
  const hasKeys = settings.accessKeyId !== undefined && settings.secretAccessKey !== undefined;
  return new S3Client({
    endpoint: settings.endpoint,
    region: settings.region ?? (settings.endpoint !== undefined ? S3_DEFAULTS.region : undefined),
    forcePathStyle: settings.forcePathStyle ?? settings.endpoint !== undefined,
    credentials: hasKeys
      ? { accessKeyId: settings.accessKeyId as string, secretAccessKey: settings.secretAccessKey as string }
      : undefined,
    maxAttempts: settings.maxAttempts ?? S3_DEFAULTS.maxAttempts,
    // checksums only where the API requires them: S3-compatible stores (radosgw, older MinIO) reject the
    // trailing checksums the SDK would otherwise add to streamed uploads
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: {
      connectionTimeout: timeoutMs,
      socketTimeout: timeoutMs,
      httpAgent: agent,
      httpsAgent: agent,
    },
  });
}

/** `s3://bucket/key` -> bucket and key (the key may be empty: a prefix). */
export function parseS3Url(url: string): { bucket: string; key: string } {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/s.exec(url);
  if (!m) throw new SourceError('bad-request', `"${url}" is not an S3 URL: write it as s3://bucket/key`);
  return { bucket: m[1], key: m[2] ?? '' };
}

/** What the SDK's and the socket's errors look like, as far as the error mappings read them. */
export interface S3ErrorShape {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
}

/** S3 error codes of a request that may succeed when sent again. */
const RETRYABLE_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'BadDigest',
  'IncompleteBody',
  'TimeoutError',
]);

const NEVER_RETRY = new Set(['CredentialsProviderError', 'TypeError', 'RangeError', 'SyntaxError', 'ReferenceError']);

/** The S3 error code (`NoSuchUpload`, `SlowDown`, ...) or the error's name. */
export function s3ErrorName(e: unknown): string {
  const err = (e ?? {}) as S3ErrorShape;
  return err.Code ?? err.name ?? '';
}

/** Whether an S3 request that failed this way may succeed when sent again. */
export function isRetryableS3Error(e: unknown): boolean {
  if (e instanceof CogmillError) return false;
  const err = (e ?? {}) as S3ErrorShape;
  const status = err.$metadata?.httpStatusCode;
  const name = s3ErrorName(e);
  if (RETRYABLE_CODES.has(name)) return true;
  if (err.code !== undefined && NETWORK_CODES.has(err.code)) return true;
  if (status !== undefined) return status >= 500 || status === 429 || status === 408;
  // no HTTP answer at all: a socket or parsing failure on the way, unless it is a programming or credentials error
  return !NEVER_RETRY.has(name) && !(e instanceof TypeError);
}

/** One mapping from whatever the SDK or the socket threw to a SourceError a person can act on. */
export function s3SourceError(e: unknown, url: string, action: string): SourceError {
  if (e instanceof SourceError) return e;
  const err = (e ?? {}) as S3ErrorShape;
  const status = err.$metadata?.httpStatusCode;
  const name = err.Code ?? err.name ?? '';
  const detail = err.message ? `: ${err.message}` : '';
  const opts = { cause: e };
  if (name === 'NoSuchBucket') {
    return new SourceError(
      'not-found',
      `${url}: the bucket does not exist (${action}); check the bucket name and the S3 endpoint/region`,
      opts,
    );
  }
  if (status === 404 || name === 'NoSuchKey' || name === 'NotFound') {
    return new SourceError('not-found', `${url} does not exist (${action}); check the bucket and key`, opts);
  }
  if (status === 412 || name === 'PreconditionFailed') {
    return new SourceError(
      'changed',
      `${url} changed while it was being read (its ETag is no longer the one first seen)`,
      opts,
    );
  }
  if (status === 401 || status === 403) {
    return new SourceError(
      'forbidden',
      `${url}: access denied (${action}, S3 ${status} ${name}); check the access key and secret, the region and the bucket policy`,
      opts,
    );
  }
  if (name === 'CredentialsProviderError') {
    return new SourceError(
      'forbidden',
      `${url}: no S3 credentials found (${action}); configure an access key and secret, or the standard AWS credential chain${detail}`,
      opts,
    );
  }
  if (name === 'TimeoutError' || name === 'RequestTimeout' || err.code === 'ETIMEDOUT') {
    return new SourceError(
      'timeout',
      `${url}: S3 did not answer in time (${action}); check the endpoint, or raise the S3 timeout`,
      opts,
    );
  }
  if (err.code !== undefined && NETWORK_CODES.has(err.code)) {
    return new SourceError(
      'unreachable',
      `${url}: S3 connection failed (${action}, ${err.code}); check the endpoint and the network`,
      opts,
    );
  }
  if (status !== undefined && status >= 500) {
    return new SourceError(
      'unreachable',
      `${url}: S3 is failing (${action}, HTTP ${status} ${name}) after retries; try again later`,
      opts,
    );
  }
  const what = status !== undefined ? `HTTP ${status} ${name}` : name || 'an error';
  return new SourceError('unreachable', `${url}: S3 answered ${what} (${action})${detail}`, opts);
}
