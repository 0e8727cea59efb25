/**
 * Azure Blob Storage sources: ranged Get Blob, Get Blob Properties and listing a prefix's GeoTIFFs.
 *
 * Locations:
 * - `az://CONTAINER/path/to.tif` and `az://CONTAINER/prefix/` (its .tif blobs): the account and endpoint come from
 *   the settings;
 * - `https://ACCOUNT.blob.core.windows.net/CONTAINER/blob.tif[?SAS]`, or a URL under the configured endpoint (an
 *   emulator, a sovereign cloud): with a SAS in the URL it is used as is; without one, the configured credentials
 *   apply when the URL is under the configured endpoint, else the default Azure credential chain.
 *
 * The clients, credentials, URL forms and error mapping are azure.client.ts's.
 *
 * The SDK's own retries are off: every request is retried here (exponential backoff, full jitter) on 5xx, 408,
 * 429, timeouts and dropped connections, so each attempt is counted and a body cut mid-way is read again.
 */
import type { Readable } from 'node:stream';
import {
  AZURE_DEFAULTS,
  type AzureClients,
  type AzureErrorShape,
  type AzureSettings,
  azureBlobClient,
  azureSourceError,
  type BlobClient,
  isAzureBlobUrl,
  isRetryableAzureError,
  listAzureBlobs,
  redactAzureUrl,
} from './azure.client.ts';
import { SourceError } from './errors.ts';
import { retrying } from './retry.ts';
import { checkByteRange, parseContentRange, readBody } from './source.body.ts';
import type { ReadOptions, Source, SourceRead, SourceStats } from './source.ts';

export class SourceAzure implements Source {
  readonly url: string;
  readonly stats: Required<SourceStats> = { requests: 0, bytes: 0, retries: 0 };
  private readonly blob: BlobClient;
  private readonly container: string;
  private readonly credentialSource: string;
  private readonly attempts: number;
  private readonly timeoutMs: number;
  private readonly retryBaseMs: number;

  /** The source of an `az://` URL or an https blob URL. */
  static async open(clients: AzureClients, location: string, settings: AzureSettings = {}): Promise<SourceAzure> {
    const isAz = location.startsWith('az://');
    // a URL with a SAS of its own needs nothing configured (an emulator's URL, say); others must be Azure's
    const hasSas = !isAz && /^https?:\/\//i.test(location) && new URL(location).searchParams.has('sig');
    if (!isAz && !hasSas && !isAzureBlobUrl(location, clients.endpoint)) {
      throw new SourceError('bad-request', `"${redactAzureUrl(location)}" is not an Azure blob URL`);
    }
    const target = await azureBlobClient(clients, location);
    if (target.name === '' || target.name.endsWith('/')) {
      throw new SourceError(
        'bad-request',
        `"${redactAzureUrl(location)}" names no blob: write it as az://container/path/to/file.tif`,
      );
    }
    return new SourceAzure(isAz ? location : location.replace(/[?#].*$/s, ''), target, settings);
  }

  private constructor(
    url: string,
    target: { blob: BlobClient; container: string; credentialSource: string },
    settings: AzureSettings,
  ) {
    this.url = url;
    this.blob = target.blob;
    this.container = target.container;
    this.credentialSource = target.credentialSource;
    this.attempts = Math.max(1, settings.maxAttempts ?? AZURE_DEFAULTS.maxAttempts);
    this.timeoutMs = settings.timeoutMs ?? AZURE_DEFAULTS.timeoutMs;
    this.retryBaseMs = settings.retryBaseMs ?? AZURE_DEFAULTS.retryBaseMs;
  }

  /** Run `fn` with retries; each attempt has its own timeout; the caller's abort wins over any error. */
  private attempt<T>(action: string, options: ReadOptions | undefined, fn: (signal: AbortSignal) => Promise<T>) {
    const caller = options?.signal;
    let timeout: AbortSignal | undefined;
    return retrying(
      () => {
        timeout = AbortSignal.timeout(this.timeoutMs);
        this.stats.requests++;
        return fn(caller ? AbortSignal.any([caller, timeout]) : timeout);
      },
      {
        attempts: this.attempts,
        baseMs: this.retryBaseMs,
        maxMs: AZURE_DEFAULTS.retryMaxMs,
        signal: caller,
        failure: (e) =>
          timeout?.aborted
            ? new SourceError('timeout', `${this.url}: Azure did not answer within ${this.timeoutMs} ms (${action})`, {
                cause: e,
              })
            : e,
        retryable: isRetryableAzureError,
        onRetry: () => {
          this.stats.retries++;
        },
        fail: (e, attempts) => this.fail(e, action, attempts),
      },
    );
  }

  private fail(e: unknown, action: string, attempts: number): SourceError {
    const mapped = azureSourceError(e, this.url, action, {
      container: this.container,
      credentialSource: this.credentialSource,
    });
    return attempts > 1 && (mapped.kind === 'unreachable' || mapped.kind === 'timeout')
      ? new SourceError(mapped.kind, `${mapped.message} after ${attempts} attempts`, { cause: e })
      : mapped;
  }

  async stat(options?: ReadOptions): Promise<{ size: number; etag: string; lastModified?: Date }> {
    const res = await this.attempt('Get Blob Properties', options, (signal) =>
      this.blob.getProperties({
        abortSignal: signal,
        conditions: options?.ifMatch ? { ifMatch: options.ifMatch } : {},
      }),
    );
    const size = res.contentLength;
    if (size === undefined || !Number.isSafeInteger(size)) {
      throw new SourceError('unreachable', `${this.url}: Get Blob Properties gave no Content-Length`);
    }
    return { size, etag: res.etag ?? `size-${size}`, lastModified: res.lastModified };
  }

  async read(offset: number, length: number, options?: ReadOptions): Promise<SourceRead> {
    checkByteRange(this.url, offset, length);
    if (length <= 0) {
      const s = await this.stat(options);
      return { bytes: new Uint8Array(0), size: s.size, etag: s.etag };
    }
    let beyond = false;
    const out = await this.attempt('Get Blob', options, async (signal) => {
      let res: Awaited<ReturnType<BlobClient['download']>>;
      try {
        res = await this.blob.download(offset, length, {
          abortSignal: signal,
          maxRetryRequests: 0,
          conditions: options?.ifMatch ? { ifMatch: options.ifMatch } : {},
        });
      } catch (e) {
        if ((e as AzureErrorShape).statusCode === 416) {
          beyond = true;
          return undefined;
        }
        throw e;
      }
      const body = res.readableStreamBody as Readable | undefined;
      let bytes: Uint8Array;
      try {
        bytes = await readBody(body, res.contentLength);
      } catch (e) {
        body?.destroy();
        throw Object.assign(e instanceof Error ? e : new Error(String(e)), {
          code: (e as { code?: string }).code ?? 'ECONNRESET',
        });
      }
      return { bytes, etag: res.etag ?? '', range: parseContentRange(res.contentRange) };
    });
    if (beyond || out === undefined) {
      // the range starts at or past the end: nothing to read
      const s = await this.stat(options);
      return { bytes: new Uint8Array(0), size: s.size, etag: s.etag };
    }
    let { bytes } = out;
    let size: number;
    if (out.range) {
      if (out.range.start !== offset) {
        throw new SourceError(
          'unreachable',
          `${this.url}: Azure answered bytes from ${out.range.start}, not ${offset}`,
        );
      }
      size = out.range.total;
    } else {
      size = bytes.byteLength;
      bytes = bytes.subarray(offset, offset + length);
    }
    this.stats.bytes += bytes.byteLength;
    return { bytes, size, etag: out.etag || `size-${size}` };
  }
}

const TIFF_NAME = /\.tiff?$/i;
/**
 * Every blob under `az://container/prefix/` whose name ends in .tif or .tiff, as sorted `az://` URLs. A prefix
 * without a trailing slash is taken as a folder. More than `limit` matches is an error (narrow the prefix).
 */
export function listAzureTiffs(
  clients: AzureClients,
  prefixUrl: string,
  limit = 100_000,
  pageSize = 1000,
): Promise<string[]> {
  return listAzureBlobs(clients, prefixUrl, { keep: (n) => TIFF_NAME.test(n), limit, pageSize });
}
