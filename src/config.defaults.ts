/**
 * The configuration with nothing set (configSchema.parse({})) and the defaults a mosaic definition gets, as plain data: a
 * command with no configuration file and no COGMILL_ or AZURE_STORAGE_ variables starts from these without loading the
 * schema library (~50 ms of a command's start). test/config.test.ts keeps them equal to what the schema gives.
 */
export const CONFIG_DEFAULTS = {
  server: {
    host: '0.0.0.0',
    port: 8080,
    trustProxy: false,
    corsOrigins: ['*'],
    cacheControl: 'public, max-age=3600',
    requestTimeoutMs: 30000,
    shutdownGraceMs: 10000,
    maxBodyBytes: 65536,
    mosaicsRefreshSeconds: 5,
  },
  sources: {
    roots: [],
    allowedUrlPrefixes: [],
    httpTimeoutMs: 15000,
    httpRetries: 3,
    onSourceError: 'skip',
    maxOpenFiles: 256,
    maxOpenRasters: 4096,
  },
  s3: {
    maxAttempts: 3,
    timeoutMs: 30000,
  },
  azure: {
    maxAttempts: 4,
    timeoutMs: 30000,
  },
  cache: {
    headerBytes: 67108864,
    blockBytes: 268435456,
    tileBytes: 134217728,
    virtualCogBytes: 268435456,
  },
  limits: {
    maxRenderPixels: 16777216,
    maxPreviewSize: 2048,
    maxCropPixels: 16777216,
    maxStatisticsPixels: 4194304,
    maxExpressionLength: 512,
    maxConcurrentRenders: 16,
    maxQueuedRenders: 256,
    maxZoom: 24,
  },
  auth: {
    allowUnauthenticated: false,
  },
  materialize: {
    allowedDestinations: [],
    workers: 0,
    maxConcurrentUploads: 4,
    maxConcurrentJobs: 2,
    shards: 0,
  },
  log: {
    level: 'info',
  },
  mosaics: [],
};

/** Defaults of a mosaic definition's optional keys. */
export const MOSAIC_DEFAULTS = {
  composite: 'first',
  resampling: 'nearest',
  blockSize: 512,
};
