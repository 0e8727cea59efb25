/**
 * The configuration schema: every section and key with its type, default and meaning (zod), the Config type,
 * ConfigError, and the introspection the environment names and the reference table are built from.
 */
import { z } from 'zod';
import { type AzureConfig, azureSchema } from './config.azure.ts';
import { COMPOSITES, DTYPES, KiB, MiB, RESAMPLINGS } from './render/types.ts';

const positiveInt = z.number().int().positive();

/** A URL prefix sources may be read from: scheme, host and a path that ends in `/`. */
const urlPrefix = z
  .string()
  .regex(
    /^(https?:\/\/[^/?#\s]+|s3:\/\/[^/?#\s]+|az:\/\/[^/?#\s]+)\/([^?#\s]*\/)?$/i,
    'a URL prefix is scheme://host/, s3://bucket/ or az://container/ followed by an optional path ending in "/" (e.g. https://data.example.com/cogs/)',
  )
  .refine((p) => !/\/\.\.?\//.test(p.replace(/%2e/gi, '.')), 'a URL prefix may not contain "." or ".." path segments');

const stacSortSchema = z.union([
  z.string(),
  z.array(z.object({ field: z.string().min(1), direction: z.enum(['asc', 'desc']).optional() }).strict()),
]);

const stacSchema = z
  .object({
    items: z.string().min(1).optional(),
    search: z
      .url({ protocol: /^https?$/, error: 'stac.search must be the http(s) URL of a STAC API /search' })
      .optional(),
    method: z.enum(['GET', 'POST']).optional(),
    collections: z.array(z.string().min(1)).optional(),
    ids: z.array(z.string().min(1)).optional(),
    bbox: z.tuple([z.number(), z.number(), z.number(), z.number()]).optional(),
    datetime: z.string().min(1).optional(),
    query: z.record(z.string(), z.unknown()).optional(),
    filter: z.union([z.record(z.string(), z.unknown()), z.string().min(1)]).optional(),
    sortby: stacSortSchema.optional(),
    limit: z.number().int().min(1).max(10_000).optional(),
    maxItems: z.number().int().min(1).max(1_000_000).optional(),
  })
  .strict()
  .refine(
    (s) => (s.items === undefined) !== (s.search === undefined),
    'stac takes items (a file or URL) or search (a URL)',
  );

export const mosaicSchema = z
  .object({
    id: z
      .string()
      .regex(
        /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/,
        'ids are 1-64 letters, digits, _ and - (starting with a letter or digit)',
      ),
    title: z.string().optional(),
    sources: z.array(z.string().min(1)).optional(),
    stac: stacSchema.optional(),
    index: z.string().min(1).optional(),
    assets: z.array(z.string().min(1).max(100)).min(1).max(100).optional(),
    period: z.enum(['P1D', 'P1W', 'P1M', 'P1Y']).optional(),
    periodBands: z.boolean().optional(),
    crs: z.union([z.number().int(), z.string()]).optional(),
    resolution: z.union([z.number().positive(), z.tuple([z.number().positive(), z.number().positive()])]).optional(),
    bounds: z.tuple([z.number(), z.number(), z.number(), z.number()]).optional(),
    bands: z.array(positiveInt).min(1).optional(),
    nodata: z.union([z.number(), z.literal('nan')]).optional(),
    dtype: z.enum(DTYPES).optional(),
    composite: z.enum(COMPOSITES).default('first'),
    resampling: z.enum(RESAMPLINGS).default('nearest'),
    blockSize: z.union([z.literal(256), z.literal(512), z.literal(1024)]).default(512),
  })
  .strict()
  .refine((m) => [m.sources?.length ? 1 : 0, m.stac ? 1 : 0, m.index ? 1 : 0].reduce((a, b) => a + b) === 1, {
    path: ['sources'],
    message: 'a mosaic needs at least one source, or else a stac catalogue or an index (exactly one of the three)',
  });

export const configSchema = z
  .object({
    server: z
      .object({
        host: z.string().min(1).default('0.0.0.0').describe('interface to listen on'),
        port: z.number().int().min(0).max(65535).default(8080).describe('TCP port (0 picks a free one)'),
        publicUrl: z
          .url({ protocol: /^https?$/, error: 'publicUrl must be an http:// or https:// URL' })
          .optional()
          .describe(
            'base URL clients reach the service at, used in TileJSON, WMTS and VRT links; default: from the request (its Host header; X-Forwarded-Host/Proto with trustProxy)',
          ),
        trustProxy: z
          .boolean()
          .default(false)
          .describe(
            'take X-Forwarded-Host / X-Forwarded-Proto for links (without publicUrl): only behind a reverse proxy that sets them; otherwise any client could put its own host into cached links',
          ),
        corsOrigins: z
          .array(z.string().min(1))
          .default(['*'])
          .describe('origins allowed by CORS; `*` allows any (no credentials are ever sent with CORS)'),
        cacheControl: z
          .string()
          .default('public, max-age=3600')
          .describe('Cache-Control header of tiles and other rendered answers'),
        requestTimeoutMs: positiveInt
          .default(30_000)
          .describe(
            'longest time a rendering request (tiles, previews, crops, statistics, virtual COG) may take: 504 after it',
          ),
        tileWorkers: z
          .number()
          .int()
          .min(0)
          .max(256)
          .optional()
          .describe(
            'worker threads rendering tile images (tiles, previews, crops) and virtual COG tiles, each with its own share of the block cache; before the server listens each draws a few tiles of the first mosaics (at most 3 s); default: one per core; 0 renders on the main thread',
          ),
        shutdownGraceMs: positiveInt
          .default(10_000)
          .describe(
            'on SIGTERM, how long in-flight requests and materialisations get to finish before connections are closed',
          ),
        maxBodyBytes: positiveInt
          .default(64 * KiB)
          .describe('largest request body accepted (POST /materialize, POST /mosaics): 413 above it'),
        mosaicsFile: z
          .string()
          .min(1)
          .optional()
          .describe(
            'JSON file where mosaics registered with POST/PUT /mosaics are kept and restored from on start (not used when materialize.redis is set: they are kept in Redis); unset: they last until the process stops',
          ),
        mosaicsRefreshSeconds: z
          .number()
          .int()
          .min(0)
          .max(3600)
          .default(5)
          .describe(
            'with materialize.redis: how often a replica reads the registered mosaics again, to serve those another replica registered or replaced and drop those it removed; 0: only at start',
          ),
      })
      .strict()
      .prefault({}),
    sources: z
      .object({
        roots: z
          .array(z.string().min(1))
          .default([])
          .describe('local folders sources may be read from (paths outside them, also through symlinks, are refused)'),
        allowedUrlPrefixes: z
          .array(urlPrefix)
          .default([])
          .describe(
            'URL prefixes (https://host/path/, s3://bucket/prefix/, az://container/prefix/) sources may be read from; nothing else is fetched',
          ),
        httpTimeoutMs: positiveInt.default(15_000).describe('timeout of one HTTP(S) source request'),
        httpRetries: z
          .number()
          .int()
          .min(0)
          .max(10)
          .default(3)
          .describe('retries of a failed HTTP(S) source request (with backoff)'),
        onSourceError: z
          .enum(['skip', 'fail'])
          .default('skip')
          .describe(
            'a source that cannot be read (corrupt, unsupported, missing) or a block that cannot be decoded: skip serves the mosaic without it (listed in GET /mosaics/{id}, logged, counted; /readyz says degraded); fail fails the mosaic or the request. Exports always fail on a bad block',
          ),
        maxOpenFiles: positiveInt
          .default(256)
          .describe(
            'file descriptors local sources may hold open at once (idle ones are closed, least recently used first)',
          ),
        maxOpenRasters: positiveInt
          .default(4096)
          .describe(
            'parsed source headers kept (catalogue mosaics open sources per window; dropped ones reopen from the header cache)',
          ),
      })
      .strict()
      .prefault({}),
    s3: z
      .object({
        endpoint: z
          .url({ protocol: /^https?$/, error: 'endpoint must be an http:// or https:// URL' })
          .optional()
          .describe('endpoint of an S3-compatible store (MinIO, Ceph radosgw, ...); default: AWS'),
        region: z
          .string()
          .min(1)
          .optional()
          .describe("signing region; default: us-east-1 with an endpoint, else the SDK's region chain"),
        forcePathStyle: z
          .boolean()
          .optional()
          .describe('path-style requests (https://endpoint/bucket/key); default: true when an endpoint is given'),
        accessKeyId: z
          .string()
          .min(1)
          .optional()
          .describe(
            "static access key; default: the SDK's credential chain (AWS_* variables, profile, web identity, instance role)",
          ),
        secretAccessKey: z.string().min(1).optional().describe('static secret key (never logged)'),
        maxAttempts: z.number().int().min(1).max(20).default(3).describe('attempts per S3 request, the first included'),
        timeoutMs: positiveInt.default(30_000).describe('longest an S3 connection may stay silent'),
      })
      .strict()
      .prefault({}),
    azure: azureSchema.prefault({}),
    cache: z
      .object({
        headerBytes: positiveInt.default(64 * MiB).describe('bytes of parsed source headers kept in memory'),
        blockBytes: positiveInt.default(256 * MiB).describe('bytes of decoded source blocks kept in memory'),
        tileBytes: positiveInt.default(128 * MiB).describe('bytes of encoded tiles kept in memory'),
        virtualCogBytes: positiveInt.default(256 * MiB).describe('bytes of rendered virtual COG tiles kept in memory'),
      })
      .strict()
      .prefault({}),
    limits: z
      .object({
        maxRenderPixels: positiveInt
          .default(4096 * 4096)
          .describe('largest window (width x height) one render may produce: 413 above it'),
        maxPreviewSize: positiveInt.default(2048).describe('largest side of a preview image in pixels: 413 above it'),
        maxCropPixels: positiveInt.default(4096 * 4096).describe('largest bbox crop (width x height): 413 above it'),
        maxStatisticsPixels: positiveInt
          .default(2048 * 2048)
          .describe('pixels read for one statistics request (a coarser overview is used above it)'),
        maxExpressionLength: positiveInt
          .default(512)
          .describe('longest band-math expression in characters: 400 above it'),
        maxConcurrentRenders: positiveInt
          .default(16)
          .describe('rendering requests served at once; more wait in a queue'),
        maxQueuedRenders: z
          .number()
          .int()
          .min(0)
          .default(256)
          .describe('rendering requests that may wait for a slot; more are answered 503 with Retry-After'),
        maxZoom: z.number().int().min(0).max(30).default(24).describe('highest tile zoom level served'),
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        token: z
          .string()
          .min(16, 'the token must be at least 16 characters')
          .optional()
          .describe('bearer token for /materialize, /jobs and export downloads (never logged)'),
        allowUnauthenticated: z
          .boolean()
          .default(false)
          .describe('without a token, serve those routes to anyone (local use only); otherwise they answer 403'),
      })
      .strict()
      .prefault({}),
    materialize: z
      .object({
        allowedDestinations: z
          .array(z.string().min(1))
          .default([])
          .describe(
            'where exports may be written: s3://bucket/prefix/, az://container/prefix/ or local folders; anything else is refused (403)',
          ),
        workers: z
          .number()
          .int()
          .min(0)
          .max(256)
          .default(0)
          .describe('worker threads rendering and compressing tiles (0 = one per core)'),
        maxConcurrentUploads: positiveInt.default(4).describe('parts uploaded at once per job'),
        maxConcurrentJobs: positiveInt.default(2).describe('jobs running at once; more wait'),
        spoolDir: z
          .string()
          .min(1)
          .optional()
          .describe('folder for temporary files of downloads and local exports; default: the system temp folder'),
        redis: z
          .string()
          .regex(/^rediss?:\/\/[^/\s]+(\/\d+)?$/, 'write redis://[user:password@]host:port[/db] (or rediss://)')
          .optional()
          .describe(
            'queue mode: /materialize to S3 or Azure plans, then runs the shards on cogmill worker processes through this Redis (BullMQ); mosaics registered with POST/PUT /mosaics are kept there too (hash cogmill:mosaics); the password is never logged',
          ),
        shards: z
          .number()
          .int()
          .min(0)
          .max(4096)
          .default(0)
          .describe(
            'queue mode: shards a materialisation is cut into (0 = one per 256 MiB of the largest possible output, from 2 to 1,000)',
          ),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z
          .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
          .default('info')
          .describe('log level (JSON lines on stdout)'),
      })
      .strict()
      .prefault({}),
    mosaics: z.array(mosaicSchema).default([]),
  })
  .strict();

/** The configuration; `azure.credentialSource` says where the Azure credential came from (set by loadConfig). */
export type Config = Omit<z.output<typeof configSchema>, 'azure'> & {
  readonly azure: AzureConfig & { readonly credentialSource?: string };
};
export type MosaicConfig = z.output<typeof mosaicSchema>;
export type Section = Exclude<keyof Config, 'mosaics'>;

export { ConfigError } from './config.error.ts';

// schema introspection

interface ZodInternals {
  _zod: {
    def: { type: string; innerType?: z.ZodType; defaultValue?: unknown; element?: z.ZodType; options?: z.ZodType[] };
  };
  description?: string;
}

export function internals(t: z.ZodType): ZodInternals {
  return t as unknown as ZodInternals;
}

/** Strip default / optional / prefault wrappers. */
export function unwrap(t: z.ZodType): z.ZodType {
  let cur = t;
  for (;;) {
    const def = internals(cur)._zod.def;
    if ((def.type === 'default' || def.type === 'optional' || def.type === 'prefault') && def.innerType)
      cur = def.innerType;
    else return cur;
  }
}

export function sectionShape(section: Section): Record<string, z.ZodType> {
  return (unwrap(configSchema.shape[section]) as z.ZodObject).shape as Record<string, z.ZodType>;
}

export const SECTIONS = Object.keys(configSchema.shape).filter((k) => k !== 'mosaics') as Section[];

export type ValueKind = 'array' | 'number' | 'boolean' | 'string';

export function valueKind(t: z.ZodType): ValueKind {
  const type = internals(unwrap(t))._zod.def.type;
  if (type === 'array') return 'array';
  if (type === 'number') return 'number';
  if (type === 'boolean') return 'boolean';
  return 'string';
}
