/**
 * Azure Blob Storage sources: ranged Get Blob, Get Blob Properties and listing a prefix, through
 * `@azure/storage-blob` (the one place the render layer imports `@azure/*`; the sink builds its clients here too).
 *
 * Locations:
 * - `az://CONTAINER/path/to.tif` and `az://CONTAINER/prefix/` (its .tif blobs): the account and endpoint come from
 *   the settings;
 * - `https://ACCOUNT.blob.core.windows.net/CONTAINER/blob.tif[?SAS]`, or a URL under the configured endpoint (an
 *   emulator, a sovereign cloud): with a SAS in the URL it is used as is; without one, the configured credentials
 *   apply when the URL is under the configured endpoint, else the default Azure credential chain.
 *
 * Credentials, strongest first (the config layer fills `AzureSettings` from `azure.*` / COGMILL_AZURE_* and then
 * from the conventional AZURE_STORAGE_* variables, and names where they came from): a connection string; an account
 * name and shared key; a SAS token; else `@azure/identity`'s DefaultAzureCredential (environment, workload
 * identity, managed identity, Azure CLI), imported only when it is needed.
 *
 * The SDK's own retries are off: every request is retried here (exponential backoff, full jitter) on 5xx, 408,
 * 429, timeouts and dropped connections, so each attempt is counted and a body cut mid-way is read again.
 */
import type { Readable } from 'node:stream';
import type { TokenCredential } from '@azure/core-auth';
import {
  AnonymousCredential,
  type BlobClient,
  BlobServiceClient,
  type BlobServiceClientOptions,
  BlockBlobClient,
  type ContainerClient,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { CogmillError, SourceError } from './errors.ts';
import { NETWORK_CODES, sleep } from './retry.ts';
import { readBody } from './source.body.ts';
import type { ReadOptions, Source, SourceRead, SourceStats } from './source.ts';

export interface AzureSettings {
  /** storage account name (for `az://` URLs); from the connection string when one is given */
  readonly account?: string;
  /** the account's shared key (base64) */
  readonly accountKey?: string;
  /** a SAS token (with or without the leading `?`) for the account or container */
  readonly sasToken?: string;
  /** a full connection string (AccountName, AccountKey or SharedAccessSignature, BlobEndpoint, ...) */
  readonly connectionString?: string;
  /**
   * blob service endpoint, e.g. `http://127.0.0.1:10000/devstoreaccount1` (emulator) or
   * `https://ACCOUNT.blob.core.usgovcloudapi.net`; default `https://ACCOUNT.blob.core.windows.net`
   */
  readonly endpoint?: string;
  /** where the credentials came from, for error messages (e.g. "COGMILL_AZURE_ACCOUNT_KEY") */
  readonly credentialSource?: string;
  /** attempts per request, the first included; default 4 */
  readonly maxAttempts?: number;
  /** the longest one attempt may take (answer and body); default 30 s */
  readonly timeoutMs?: number;
  /** first backoff in milliseconds, doubled per attempt, full jitter; default 100 */
  readonly retryBaseMs?: number;
}

export const AZURE_DEFAULTS = { maxAttempts: 4, timeoutMs: 30_000, retryBaseMs: 100, retryMaxMs: 10_000 } as const;

/** The Azure public cloud's blob host suffix. */
const PUBLIC_BLOB_HOST = /^([a-z0-9]{3,24})\.blob\.core\.windows\.net$/i;

/** What kind of credential a client uses: shown in errors so a person knows what was tried. */
export type AzureCredentialKind = 'connection-string' | 'shared-key' | 'sas' | 'default-chain' | 'none';

/**
 * The clients of one configured account, built once by the engine (or a sink) and shared. Blob clients for
 * `https://` URLs outside the endpoint are built per URL with the right credential.
 */
export interface AzureClients {
  /** the account's service client; absent when no account, endpoint or connection string is configured */
  readonly service: BlobServiceClient | undefined;
  /** the account name, when known */
  readonly account: string | undefined;
  /** the blob endpoint without a trailing slash and without a query, when known */
  readonly endpoint: string | undefined;
  readonly credentialKind: AzureCredentialKind;
  /** e.g. "the shared key of account x (COGMILL_AZURE_ACCOUNT_KEY)" */
  readonly credentialSource: string;
  readonly options: BlobServiceClientOptions;
  /** the default chain's token credential (DefaultAzureCredential), built and imported on first use */
  defaultCredential(): Promise<TokenCredential>;
}

/** Client options: no SDK retries (ours count and back off), keep-alive on. */
function clientOptions(): BlobServiceClientOptions {
  return { retryOptions: { maxTries: 1 }, keepAliveOptions: { enable: true } };
}

function trimEndpoint(url: string): string {
  return url.replace(/[?#].*$/s, '').replace(/\/+$/, '');
}

function connectionStringField(cs: string, name: string): string | undefined {
  for (const part of cs.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim().toLowerCase() === name.toLowerCase()) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** The blob endpoint the settings point at (configured, from the connection string, or the account's public one). */
export function azureEndpoint(settings: AzureSettings): string | undefined {
  if (settings.connectionString) {
    const be = connectionStringField(settings.connectionString, 'BlobEndpoint');
    if (be) return trimEndpoint(be);
    const name = connectionStringField(settings.connectionString, 'AccountName');
    const suffix = connectionStringField(settings.connectionString, 'EndpointSuffix') ?? 'core.windows.net';
    const protocol = connectionStringField(settings.connectionString, 'DefaultEndpointsProtocol') ?? 'https';
    return name ? `${protocol}://${name}.blob.${suffix}` : undefined;
  }
  if (settings.endpoint) return trimEndpoint(settings.endpoint);
  return settings.account ? `https://${settings.account}.blob.core.windows.net` : undefined;
}

const DEFAULT_CHAIN =
  'the default Azure credential chain (environment, workload identity, managed identity, Azure CLI)';

/**
 * Build the clients for the settings, strongest credential first. `@azure/identity` is imported only when the
 * default credential chain is actually used.
 */
export async function createAzureClients(settings: AzureSettings): Promise<AzureClients> {
  const options = clientOptions();
  const from = settings.credentialSource ? ` (${settings.credentialSource})` : '';
  let token: Promise<TokenCredential> | undefined;
  const defaultCredential = () => {
    token ??= import('@azure/identity').then(({ DefaultAzureCredential }) => new DefaultAzureCredential());
    return token;
  };
  const endpoint = azureEndpoint(settings);
  if (settings.connectionString) {
    const cs = settings.connectionString;
    let service: BlobServiceClient;
    try {
      service = BlobServiceClient.fromConnectionString(cs, options);
    } catch (e) {
      throw new SourceError('bad-request', `the Azure connection string${from} is not valid: ${(e as Error).message}`, {
        cause: e,
      });
    }
    const sas = connectionStringField(cs, 'SharedAccessSignature');
    return {
      service,
      account: service.accountName || connectionStringField(cs, 'AccountName'),
      endpoint: trimEndpoint(service.url),
      credentialKind: 'connection-string',
      credentialSource: `a connection string${from}${sas ? ' with a SAS' : ''}`,
      options,
      defaultCredential,
    };
  }
  const account = settings.account;
  const base = { account, endpoint, options, defaultCredential };
  if (endpoint === undefined) {
    return {
      ...base,
      service: undefined,
      credentialKind: 'none',
      credentialSource: 'none (no Azure account, endpoint or connection string is configured)',
    };
  }
  if (account && settings.accountKey) {
    let credential: StorageSharedKeyCredential;
    try {
      credential = new StorageSharedKeyCredential(account, settings.accountKey);
    } catch (e) {
      throw new SourceError('bad-request', `the Azure account key${from} is not valid base64`, { cause: e });
    }
    return {
      ...base,
      service: new BlobServiceClient(endpoint, credential, options),
      credentialKind: 'shared-key',
      credentialSource: `the shared key of account ${account}${from}`,
    };
  }
  if (settings.sasToken) {
    const sas = settings.sasToken.replace(/^\?/, '');
    return {
      ...base,
      service: new BlobServiceClient(`${endpoint}?${sas}`, new AnonymousCredential(), options),
      credentialKind: 'sas',
      credentialSource: `a SAS token${from}`,
    };
  }
  return {
    ...base,
    service: new BlobServiceClient(endpoint, await defaultCredential(), options),
    credentialKind: 'default-chain',
    credentialSource: `${DEFAULT_CHAIN}, as no key, SAS or connection string is configured`,
  };
}

function requireService(clients: AzureClients, location: string): BlobServiceClient {
  if (!clients.service) {
    throw new SourceError(
      'bad-request',
      `${location}: no Azure storage account is configured; set azure.account (COGMILL_AZURE_ACCOUNT or AZURE_STORAGE_ACCOUNT), azure.endpoint, or a connection string`,
    );
  }
  return clients.service;
}

/** `az://container/blob` -> container and blob name (the name may be empty: a prefix). */
export function parseAzureUrl(url: string): { container: string; blob: string } {
  const m = /^az:\/\/([^/?#]+)(?:\/([^?#]*))?$/s.exec(url);
  if (!m)
    throw new SourceError('bad-request', `"${url}" is not an Azure URL: write it as az://container/path/blob.tif`);
  return { container: m[1], blob: m[2] ?? '' };
}

/** True for `https://ACCOUNT.blob.core.windows.net/...` and for URLs under the configured endpoint. */
export function isAzureBlobUrl(url: string, endpoint?: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  if (u.protocol === 'https:' && PUBLIC_BLOB_HOST.test(u.hostname)) return true;
  if (!endpoint) return false;
  return `${u.origin}${u.pathname}`.startsWith(`${trimEndpoint(endpoint)}/`);
}

/** The location without its query (no SAS in messages or logs). */
export function redactAzureUrl(url: string): string {
  const q = url.search(/[?#]/);
  return q < 0 ? url : `${url.slice(0, q)}${url[q] === '?' ? '?…' : ''}`;
}

/** The container and blob of an https URL, relative to the configured endpoint or the public host. */
function splitHttpsBlobUrl(url: string, endpoint: string | undefined): { container: string; blob: string } {
  const u = new URL(url);
  const base =
    endpoint && `${u.origin}${u.pathname}`.startsWith(`${endpoint}/`) ? new URL(`${endpoint}/`).pathname : '/';
  const rest = u.pathname.slice(base.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return { container: decodeURIComponent(slash < 0 ? rest : rest.slice(0, slash)), blob: '' };
  return { container: decodeURIComponent(rest.slice(0, slash)), blob: decodeURIComponent(rest.slice(slash + 1)) };
}

/** The block blob client of a location (`az://` or an https blob URL) under these clients. */
export async function azureBlobClient(
  clients: AzureClients,
  location: string,
): Promise<{ blob: BlockBlobClient; container: string; name: string; credentialSource: string }> {
  if (location.startsWith('az://')) {
    const { container, blob } = parseAzureUrl(location);
    return {
      blob: requireService(clients, location).getContainerClient(container).getBlockBlobClient(blob),
      container,
      name: blob,
      credentialSource: clients.credentialSource,
    };
  }
  const u = new URL(location);
  const underEndpoint = clients.endpoint !== undefined && `${u.origin}${u.pathname}`.startsWith(`${clients.endpoint}/`);
  const { container, blob } = splitHttpsBlobUrl(location, underEndpoint ? clients.endpoint : undefined);
  const hasSas = u.searchParams.has('sig');
  if (underEndpoint && !hasSas && clients.service) {
    return {
      blob: clients.service.getContainerClient(container).getBlockBlobClient(blob),
      container,
      name: blob,
      credentialSource: clients.credentialSource,
    };
  }
  // a SAS URL is used as it is; another account's URL gets the default chain's token
  return {
    blob: new BlockBlobClient(
      location,
      hasSas ? new AnonymousCredential() : await clients.defaultCredential(),
      clients.options,
    ),
    container,
    name: blob,
    credentialSource: hasSas ? 'the SAS in the URL' : DEFAULT_CHAIN,
  };
}

/** What the SDK's and the socket's errors look like, as far as the error mappings read them. */
export interface AzureErrorShape {
  name?: string;
  code?: string;
  statusCode?: number;
  message?: string;
  details?: { errorCode?: string };
}

/** The service's error code (`BlobNotFound`, `AuthorizationFailure`, ...) or the socket's. */
export function azureErrorCode(e: unknown): string {
  const err = (e ?? {}) as AzureErrorShape;
  return err.details?.errorCode ?? err.code ?? err.name ?? '';
}

/** Whether a request that failed this way may succeed when sent again. */
export function isRetryableAzureError(e: unknown): boolean {
  if (e instanceof CogmillError) return e.kind === 'unreachable' || e.kind === 'timeout';
  const err = (e ?? {}) as AzureErrorShape;
  const status = err.statusCode;
  if (status !== undefined && status !== 0) return status >= 500 || status === 408 || status === 429;
  const code = azureErrorCode(e);
  if (NETWORK_CODES.has(code) || (err.code !== undefined && NETWORK_CODES.has(err.code))) return true;
  if (/premature|socket hang up|aborted|ECONNRESET|terminated|less data than/i.test(err.message ?? '')) return true;
  return err.name === 'TimeoutError';
}

/** One mapping from whatever the SDK or the socket threw to a SourceError a person can act on. */
export function azureSourceError(
  e: unknown,
  where: string,
  action: string,
  context: { container?: string; credentialSource?: string } = {},
): SourceError {
  if (e instanceof SourceError) return e;
  const err = (e ?? {}) as AzureErrorShape;
  const status = err.statusCode;
  const code = azureErrorCode(e);
  const opts = { cause: e };
  const shown = redactAzureUrl(where);
  const firstLine = (err.message ?? '').split('\n')[0];
  if (code === 'ContainerNotFound') {
    return new SourceError(
      'not-found',
      `${shown}: the container ${context.container ?? ''} does not exist (${action}); check the container name and the Azure account/endpoint`,
      opts,
    );
  }
  if (status === 404 || code === 'BlobNotFound') {
    return new SourceError('not-found', `${shown} does not exist (${action}); check the container and blob name`, opts);
  }
  if (status === 412 || code === 'ConditionNotMet') {
    return new SourceError(
      'changed',
      `${shown} changed while it was being read (its ETag is no longer the one first seen)`,
      opts,
    );
  }
  if (status === 401 || status === 403) {
    return new SourceError(
      'forbidden',
      `${shown}: access denied to container ${context.container ?? '?'} (${action}, Azure ${status} ${code}); credentials tried: ${context.credentialSource ?? 'none'}`,
      opts,
    );
  }
  if (err.name === 'CredentialUnavailableError' || err.name === 'AuthenticationError') {
    return new SourceError(
      'forbidden',
      `${shown}: no Azure credential could be obtained (${action}); tried ${context.credentialSource ?? 'the default chain'}: ${firstLine}`,
      opts,
    );
  }
  if (err.name === 'TimeoutError' || code === 'ETIMEDOUT' || code === 'OperationTimedOut') {
    return new SourceError(
      'timeout',
      `${shown}: Azure did not answer in time (${action}); check the endpoint, or raise azure.timeoutMs`,
      opts,
    );
  }
  if (NETWORK_CODES.has(code) || (err.code !== undefined && NETWORK_CODES.has(err.code))) {
    return new SourceError(
      'unreachable',
      `${shown}: Azure connection failed (${action}, ${err.code ?? code}); check the endpoint and the network`,
      opts,
    );
  }
  if (status !== undefined && status >= 500) {
    return new SourceError(
      'unreachable',
      `${shown}: Azure is failing (${action}, HTTP ${status} ${code}); try again later`,
      opts,
    );
  }
  const what = status ? `HTTP ${status} ${code}` : code || 'an error';
  return new SourceError(
    'unreachable',
    `${shown}: Azure answered ${what} (${action})${firstLine ? `: ${firstLine}` : ''}`,
    opts,
  );
}

/** Exponential backoff with full jitter. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number = AZURE_DEFAULTS.retryMaxMs): number {
  return Math.random() * Math.min(maxMs, baseMs * 2 ** (attempt - 1));
}

/** `bytes 0-99/1234` -> start and total (NaN when the total is unknown) */
function parseContentRange(contentRange: string | undefined): { start: number; total: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange?.trim() ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[3] === '*' ? Number.NaN : Number(m[3]) };
}

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
  private async attempt<T>(action: string, options: ReadOptions | undefined, fn: (signal: AbortSignal) => Promise<T>) {
    const caller = options?.signal;
    for (let attempt = 1; ; attempt++) {
      caller?.throwIfAborted();
      const timeout = AbortSignal.timeout(this.timeoutMs);
      const signal = caller ? AbortSignal.any([caller, timeout]) : timeout;
      this.stats.requests++;
      try {
        return await fn(signal);
      } catch (e) {
        if (caller?.aborted) throw caller.reason;
        const failure = timeout.aborted
          ? new SourceError('timeout', `${this.url}: Azure did not answer within ${this.timeoutMs} ms (${action})`, {
              cause: e,
            })
          : e;
        if (attempt >= this.attempts || !isRetryableAzureError(failure)) throw this.fail(failure, action, attempt);
        this.stats.retries++;
        await sleep(backoffMs(attempt, this.retryBaseMs), caller);
      }
    }
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
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length)) {
      throw new SourceError('bad-request', `${this.url}: bad byte range offset=${offset} length=${length}`);
    }
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
 * Every blob under `az://container/prefix/` whose name `keep` accepts, as sorted `az://` URLs. A prefix without a
 * trailing slash is taken as a folder. More than `limit` matches is an error (narrow the prefix).
 */
export async function listAzureBlobs(
  clients: AzureClients,
  prefixUrl: string,
  options: { keep?: (name: string) => boolean; limit?: number; pageSize?: number; signal?: AbortSignal } = {},
): Promise<string[]> {
  const { keep = () => true, limit = 100_000, pageSize = 1000, signal } = options;
  const { container, blob } = parseAzureUrl(prefixUrl);
  const prefix = blob === '' || blob.endsWith('/') ? blob : `${blob}/`;
  const where = `az://${container}/${prefix}`;
  const client: ContainerClient = requireService(clients, prefixUrl).getContainerClient(container);
  const urls: string[] = [];
  try {
    for await (const page of client.listBlobsFlat({ prefix, abortSignal: signal }).byPage({ maxPageSize: pageSize })) {
      for (const item of page.segment.blobItems) {
        if (!keep(item.name)) continue;
        if (urls.length >= limit) {
          throw new SourceError(
            'too-large',
            `${where} holds more than ${limit} matching blobs; point at a narrower prefix`,
          );
        }
        urls.push(`az://${container}/${item.name}`);
      }
    }
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    throw azureSourceError(e, where, 'List Blobs', { container, credentialSource: clients.credentialSource });
  }
  return urls.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

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
