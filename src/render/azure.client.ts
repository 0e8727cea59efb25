/**
 * What every user of Azure Blob Storage shares, sources (source.azure.ts) and sinks (materialize/sink.azure.ts)
 * alike: the settings, the clients of an account and their credentials, `az://` and https blob URLs, the shape of
 * the SDK's errors, which of them a retry may cure, the mapping of an error to one a person can act on, and
 * listing a prefix. The one import site of `@azure/storage-blob` (and of `@azure/identity`, imported only when the
 * default credential chain is used).
 *
 * Credentials, strongest first (the config layer fills `AzureSettings` from `azure.*` / COGMILL_AZURE_* and then
 * from the conventional AZURE_STORAGE_* variables, and names where they came from): a connection string; an account
 * name and shared key; a SAS token; else `@azure/identity`'s DefaultAzureCredential (environment, workload
 * identity, managed identity, Azure CLI).
 */
import type { TokenCredential } from '@azure/core-auth';
import {
  AnonymousCredential,
  BlobServiceClient,
  type BlobServiceClientOptions,
  BlockBlobClient,
  type ContainerClient,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { azureEndpoint, connectionStringField, isAzureBlobUrl, parseAzureUrl, trimEndpoint } from './azure.url.ts';

export { parseAzureUrl };

import { CogmillError, SourceError } from './errors.ts';
import { NETWORK_CODES } from './retry.ts';

export type { BlobClient, BlockBlobClient } from '@azure/storage-blob';
export { azureEndpoint, isAzureBlobUrl };

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
