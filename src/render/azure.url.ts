/**
 * Azure Blob Storage URLs and endpoints, without the SDK: what deciding whether a location is a blob needs (the
 * source registry asks it of every https source), so that only a process that reads or writes blobs loads
 * `@azure/storage-blob` (azure.client.ts, its one import site).
 */
import type { AzureSettings } from './azure.client.ts';
import { SourceError } from './errors.ts';

/** The Azure public cloud's blob host suffix. */
export const PUBLIC_BLOB_HOST = /^([a-z0-9]{3,24})\.blob\.core\.windows\.net$/i;

export function trimEndpoint(url: string): string {
  return url.replace(/[?#].*$/s, '').replace(/\/+$/, '');
}

export function connectionStringField(cs: string, name: string): string | undefined {
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

/** `az://container/blob` -> container and blob name (the name may be empty: a prefix). */
export function parseAzureUrl(url: string): { container: string; blob: string } {
  const m = /^az:\/\/([^/?#]+)(?:\/([^?#]*))?$/s.exec(url);
  if (!m)
    throw new SourceError('bad-request', `"${url}" is not an Azure URL: write it as az://container/path/blob.tif`);
  return { container: m[1], blob: m[2] ?? '' };
}
