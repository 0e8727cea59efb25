/**
 * Where a materialised COG goes, as written by a person: `s3://bucket/key.tif` (a multipart upload),
 * `az://container/blob.tif` (staged blocks, one block list), or a local path / `file://` URL (a temporary file
 * renamed into place). Parsing checks only the form; which destinations a
 * request may use is the server's policy (materialize.allowedDestinations), not this module's.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import type { AzureSettings } from '../render/azure.client.ts';
import { parseAzureUrl } from '../render/azure.url.ts';
import type { S3Settings } from '../render/s3.client.ts';
import type { SinkAzure, SinkAzureOptions } from './sink.azure.ts';
import { SinkFile } from './sink.file.ts';
import type { SinkS3, SinkS3Options } from './sink.s3.ts';
import { SinkError } from './sink.ts';

export type SinkDestination =
  | { readonly kind: 's3'; readonly url: string; readonly bucket: string; readonly key: string }
  | { readonly kind: 'azure'; readonly url: string; readonly container: string; readonly blob: string }
  | { readonly kind: 'file'; readonly path: string };

/** Bucket names S3 and the S3-compatible stores accept (3-63 letters, digits, dots, hyphens, underscores). */
const BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$/;

function bad(dest: string, why: string): SinkError {
  return new SinkError('bad-destination', `destination "${dest}": ${why}`);
}

/** Container names Azure accepts: 3-63 lowercase letters, digits and single hyphens, starting with a letter or digit. */
const CONTAINER = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;

/** Check an `az://container/blob` destination; returns the container and blob name. */
export function parseAzureDestination(url: string): { container: string; blob: string } {
  const bad = (why: string) => new SinkError('bad-destination', `destination "${url}": ${why}`);
  let parsed: { container: string; blob: string };
  try {
    parsed = parseAzureUrl(url);
  } catch {
    throw bad('write it as az://container/path/to/file.tif');
  }
  const { container, blob } = parsed;
  if (!CONTAINER.test(container))
    throw bad(`"${container}" is not a valid container name (3-63 lowercase letters, digits and hyphens)`);
  if (blob === '') throw bad('write it as az://container/path/to/file.tif');
  if (blob.endsWith('/')) throw bad('it names a prefix; give the name of the file, e.g. .../mosaic.tif');
  if (blob.split('/').some((s) => s === '' || s === '.' || s === '..'))
    throw bad('the blob name may not contain empty, "." or ".." segments');
  if ([...blob].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f))
    throw bad('the blob name may not contain control characters');
  if (blob.length > 1024) throw bad('blob names are at most 1024 characters');
  return parsed;
}

/**
 * Parse a destination. A relative path is taken from `cwd` (the command line); the server only passes absolute
 * ones (checked against its allow-list first).
 */
export function parseDestination(dest: string, cwd: string = process.cwd()): SinkDestination {
  if (typeof dest !== 'string' || dest.trim() === '')
    throw bad(String(dest ?? ''), 'give s3://bucket/key.tif, az://container/blob.tif or a file path');
  if (/^s3:\/\//i.test(dest)) {
    const m = /^s3:\/\/([^/]+)\/(.+)$/s.exec(dest);
    if (!m) throw bad(dest, 'write it as s3://bucket/path/to/file.tif');
    const [, bucket, key] = m;
    if (!BUCKET.test(bucket)) throw bad(dest, `"${bucket}" is not a valid bucket name`);
    if (key.endsWith('/')) throw bad(dest, 'it names a prefix; give the key of the file, e.g. .../mosaic.tif');
    if (key.split('/').some((s) => s === '' || s === '.' || s === '..'))
      throw bad(dest, 'the key may not contain empty, "." or ".." segments');
    if ([...key].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f))
      throw bad(dest, 'the key may not contain control characters');
    if (Buffer.byteLength(key) > 1024) throw bad(dest, 'S3 keys are at most 1024 bytes');
    return { kind: 's3', url: `s3://${bucket}/${key}`, bucket, key };
  }
  if (/^az:\/\//i.test(dest)) {
    const { container, blob } = parseAzureDestination(dest.replace(/^az:/i, 'az:'));
    return { kind: 'azure', url: `az://${container}/${blob}`, container, blob };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(dest) && !/^file:\/\//i.test(dest)) {
    throw bad(dest, 'only s3://bucket/key, az://container/blob and local file paths are supported');
  }
  const raw = dest.replace(/^file:\/\//i, '');
  if (raw.endsWith('/') || raw.endsWith(path.sep)) throw bad(dest, 'it names a folder; give a file name');
  const file = path.resolve(cwd, raw);
  try {
    if (statSync(file).isDirectory()) throw bad(dest, 'it is a folder; give a file name');
  } catch (e) {
    if (e instanceof SinkError) throw e;
    // not there yet: fine
  }
  return { kind: 'file', path: file };
}

/** The location a destination is reported as (s3://bucket/key, az://container/blob or the absolute path). */
export function destinationLocation(dest: SinkDestination): string {
  return dest.kind === 'file' ? dest.path : dest.url;
}

export interface SinkSettings {
  /** S3 connection settings (endpoint, region, keys, timeout); the sink builds its own client from them */
  readonly s3: S3Settings;
  /** S3 sink tuning (retries, backoff); tests lower these */
  readonly s3Sink?: Omit<SinkS3Options, 'client' | 'settings'>;
  /** Azure account, endpoint and credentials */
  readonly azure?: AzureSettings;
  /** Azure sink tuning (retries, backoff); tests lower these */
  readonly azureSink?: Omit<SinkAzureOptions, 'clients' | 'settings'>;
}

/**
 * The sink writing to `dest`. Nothing is contacted until the pipeline opens it. The object-store sinks (and their
 * SDKs, ~0.15 s to load) are imported on first use: writing a local file loads neither.
 */
export async function createSink(
  dest: SinkDestination,
  settings: SinkSettings,
): Promise<SinkS3 | SinkAzure | SinkFile> {
  if (dest.kind === 's3') {
    const { SinkS3 } = await import('./sink.s3.ts');
    return new SinkS3(dest.url, { ...settings.s3Sink, settings: settings.s3 });
  }
  if (dest.kind === 'azure') {
    const { SinkAzure } = await import('./sink.azure.ts');
    return new SinkAzure(dest.url, { ...settings.azureSink, settings: settings.azure ?? {} });
  }
  return new SinkFile(dest.path);
}
