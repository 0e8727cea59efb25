/**
 * The settings the engine and the sinks are built from, derived from the configuration. Kept apart from the
 * composition root (main.ts), which loads the HTTP server: commands that do not serve (materialize, worker, index)
 * import this instead.
 */
import type { AzureConfig } from './config.azure.ts';
import type { Config } from './config.schema.ts';
import { trustedSourcePolicy } from './config.ts';
import type { AzureSettings } from './render/azure.client.ts';
import type { EngineSettings } from './render/engine.ts';
import type { S3Settings } from './render/s3.client.ts';

/** The settings the Azure sources and sinks are built from (here, not beside the schema: no schema library needed). */
export function azureSettingsOf(azure: AzureConfig & { readonly credentialSource?: string }): AzureSettings {
  return {
    account: azure.account,
    accountKey: azure.accountKey,
    sasToken: azure.sasToken,
    connectionString: azure.connectionString,
    endpoint: azure.endpoint,
    credentialSource: azure.credentialSource,
    maxAttempts: azure.maxAttempts,
    timeoutMs: azure.timeoutMs,
  };
}

export function s3Settings(config: Config): S3Settings {
  const s = config.s3;
  return {
    endpoint: s.endpoint,
    region: s.region,
    forcePathStyle: s.forcePathStyle,
    accessKeyId: s.accessKeyId,
    secretAccessKey: s.secretAccessKey,
    maxAttempts: s.maxAttempts,
    timeoutMs: s.timeoutMs,
  };
}

/**
 * The engine's settings. The folders and URL prefixes of the configured mosaics' sources are trusted like
 * `sources.roots` / `sources.allowedUrlPrefixes` (they come from configuration, not from a request).
 */
export function engineSettings(config: Config): Partial<EngineSettings> {
  const s = config.sources;
  const fromMosaics = trustedSourcePolicy(config.mosaics.flatMap((m) => m.sources ?? []));
  return {
    roots: [...new Set([...s.roots, ...fromMosaics.roots])],
    allowedUrlPrefixes: [...new Set([...s.allowedUrlPrefixes, ...fromMosaics.allowedUrlPrefixes])],
    http: { timeoutMs: s.httpTimeoutMs, retries: s.httpRetries, retryBaseMs: 100 },
    s3: s3Settings(config),
    azure: azureSettingsOf(config.azure),
    headerCacheBytes: config.cache.headerBytes,
    tileCacheBytes: config.cache.blockBytes,
    maxRenderPixels: config.limits.maxRenderPixels,
    onSourceError: s.onSourceError,
    maxOpenFiles: s.maxOpenFiles,
    maxOpenRasters: s.maxOpenRasters,
  };
}
