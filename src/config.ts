/**
 * Configuration: one typed, frozen object, validated at start-up. Read from a JSON or YAML file plus
 * environment overrides (`COGMILL_<SECTION>_<KEY>`, e.g. COGMILL_SERVER_PORT, COGMILL_AUTH_TOKEN,
 * COGMILL_SOURCES_ROOTS=/data,/mnt; any of them may instead name a file holding the value with a `_FILE`
 * suffix, e.g. COGMILL_AUTH_TOKEN_FILE=/run/secrets/token). This is the only module that interprets
 * environment variables, and it receives them as a parameter.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { redactUrl } from './render/source.http.ts';
import { COMPOSITES, DTYPES, KiB, MiB, RESAMPLINGS } from './render/types.ts';

const ENV_PREFIX = 'COGMILL_';
const REDACTED = '[redacted]';

const positiveInt = z.number().int().positive();

/** A URL prefix sources may be read from: scheme, host and a path that ends in `/`. */
const urlPrefix = z
  .string()
  .regex(
    /^(https?:\/\/[^/?#\s]+|s3:\/\/[^/?#\s]+)\/([^?#\s]*\/)?$/i,
    'a URL prefix is scheme://host/ or s3://bucket/ followed by an optional path ending in "/" (e.g. https://data.example.com/cogs/)',
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
            'JSON file where mosaics registered with POST/PUT /mosaics are kept and restored from on start; unset: they last until the process stops',
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
            'URL prefixes (https://host/path/, s3://bucket/prefix/) sources may be read from; nothing else is fetched',
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
            'where exports may be written: s3://bucket/prefix/ or local folders; anything else is refused (403)',
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

export type Config = z.output<typeof configSchema>;
export type MosaicConfig = z.output<typeof mosaicSchema>;
type Section = Exclude<keyof Config, 'mosaics'>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

// ---------------------------------------------------------------------------------------------------------------
// schema introspection (environment names, the README reference table)

interface ZodInternals {
  _zod: {
    def: { type: string; innerType?: z.ZodType; defaultValue?: unknown; element?: z.ZodType; options?: z.ZodType[] };
  };
  description?: string;
}

function internals(t: z.ZodType): ZodInternals {
  return t as unknown as ZodInternals;
}

/** Strip default / optional / prefault wrappers. */
function unwrap(t: z.ZodType): z.ZodType {
  let cur = t;
  for (;;) {
    const def = internals(cur)._zod.def;
    if ((def.type === 'default' || def.type === 'optional' || def.type === 'prefault') && def.innerType)
      cur = def.innerType;
    else return cur;
  }
}

function sectionShape(section: Section): Record<string, z.ZodType> {
  return (unwrap(configSchema.shape[section]) as z.ZodObject).shape as Record<string, z.ZodType>;
}

const SECTIONS = Object.keys(configSchema.shape).filter((k) => k !== 'mosaics') as Section[];

/** `server.requestTimeoutMs` -> `COGMILL_SERVER_REQUEST_TIMEOUT_MS` */
export function envName(section: string, key: string): string {
  return `${ENV_PREFIX}${section.toUpperCase()}_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

type ValueKind = 'array' | 'number' | 'boolean' | 'string';

function valueKind(t: z.ZodType): ValueKind {
  const type = internals(unwrap(t))._zod.def.type;
  if (type === 'array') return 'array';
  if (type === 'number') return 'number';
  if (type === 'boolean') return 'boolean';
  return 'string';
}

export interface ConfigKeyReference {
  /** dotted key, e.g. `server.port` */
  readonly key: string;
  readonly env: string;
  readonly type: string;
  /** the default as it would be written in YAML, or undefined when there is none */
  readonly default: unknown;
  readonly description: string;
}

function typeLabel(t: z.ZodType): string {
  const inner = unwrap(t);
  const def = internals(inner)._zod.def as { type: string; entries?: Record<string, string>; element?: z.ZodType };
  if (def.type === 'enum' && def.entries) return Object.values(def.entries).join(' \\| ');
  if (def.type === 'array' && def.element) return `list of ${typeLabel(def.element)}`;
  if (def.type === 'number') return 'integer';
  return def.type;
}

/** Every settable key of every section, with its environment variable, type, default and description. */
export function configReference(): ConfigKeyReference[] {
  const out: ConfigKeyReference[] = [];
  for (const section of SECTIONS) {
    for (const [key, t] of Object.entries(sectionShape(section))) {
      const def = internals(t)._zod.def;
      out.push({
        key: `${section}.${key}`,
        env: envName(section, key),
        type: typeLabel(t),
        default: def.type === 'default' ? def.defaultValue : undefined,
        description: internals(t).description ?? '',
      });
    }
  }
  return out;
}

/** The reference as a Markdown table (the README's configuration section is generated from it). */
export function configReferenceMarkdown(): string {
  const cell = (key: string, v: unknown): string => {
    if (v === undefined) return '—';
    const bytes = key.endsWith('Bytes') && typeof v === 'number' && v >= MiB && v % MiB === 0;
    return bytes ? `\`${v}\` (${(v as number) / MiB} MiB)` : `\`${JSON.stringify(v)}\``;
  };
  const rows = configReference().map(
    (r) =>
      `| \`${r.key}\` | \`${r.env}\` | ${r.type} | ${cell(r.key, r.default)} | ${r.description.replace(/\|/g, '\\|')} |`,
  );
  return ['| key | environment variable | type | default | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// environment overrides

function levenshtein(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const next = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = prev[j];
      prev[j] = next;
    }
  }
  return prev[b.length];
}

function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const c of candidates) {
    const d = levenshtein(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

export interface EnvOverrides {
  readonly values: Record<string, Record<string, unknown>>;
  /** dotted key -> the variable it came from, for error messages */
  readonly origins: ReadonlyMap<string, string>;
}

function parseEnvValue(raw: string, kind: ValueKind): unknown {
  switch (kind) {
    case 'array':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    case 'number': {
      const n = Number(raw.trim());
      return raw.trim() !== '' && Number.isFinite(n) ? n : raw;
    }
    case 'boolean':
      if (/^(1|true|yes|on)$/i.test(raw.trim())) return true;
      if (/^(0|false|no|off)$/i.test(raw.trim())) return false;
      return raw;
    case 'string':
      return raw;
  }
}

/**
 * Convert `COGMILL_SERVER_PORT=8080` style variables into a partial config object, guided by the schema's keys.
 * `COGMILL_<NAME>_FILE` reads the value from a file (for secrets mounted as files). A variable that looks like a
 * setting of a known section but names no key is an error (a typo would otherwise be silently ignored).
 */
export async function envOverrides(env: Readonly<Record<string, string | undefined>>): Promise<EnvOverrides> {
  const values: Record<string, Record<string, unknown>> = {};
  const origins = new Map<string, string>();
  const known = new Map<string, { section: Section; key: string }>();
  for (const section of SECTIONS) {
    for (const key of Object.keys(sectionShape(section))) known.set(envName(section, key), { section, key });
  }
  const problems: string[] = [];
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined) continue;
    const fromFile = name.endsWith('_FILE') && !known.has(name);
    const target = fromFile ? name.slice(0, -'_FILE'.length) : name;
    const hit = known.get(target);
    if (!hit) {
      const section = SECTIONS.find((s) => target.startsWith(`${ENV_PREFIX}${s.toUpperCase()}_`));
      if (section) {
        const guess = closest(target, [...known.keys()]);
        problems.push(`  environment: ${name}: no such setting${guess ? ` (did you mean ${guess}?)` : ''}`);
      }
      continue;
    }
    let text = raw;
    if (fromFile) {
      try {
        text = (await readFile(raw, 'utf8')).trim();
      } catch (e) {
        problems.push(`  environment: ${name}: cannot read ${raw}: ${(e as Error).message}`);
        continue;
      }
    }
    if (text === '') continue;
    values[hit.section] ??= {};
    values[hit.section][hit.key] = parseEnvValue(text, valueKind(sectionShape(hit.section)[hit.key]));
    origins.set(`${hit.section}.${hit.key}`, name);
  }
  if (problems.length) throw new ConfigError(`invalid configuration:\n${problems.join('\n')}`);
  return { values, origins };
}

// ---------------------------------------------------------------------------------------------------------------
// validation

function issueKey(pathParts: readonly PropertyKey[]): string {
  return pathParts.length
    ? pathParts
        .map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))
        .join('.')
        .replace(/\.\[/g, '[')
    : '(top level)';
}

function knownKeysAt(pathParts: readonly PropertyKey[]): string[] {
  if (pathParts.length === 0) return Object.keys(configSchema.shape);
  const [section, ...rest] = pathParts;
  if (section === 'mosaics' && rest.length === 1) return Object.keys(mosaicSchema.shape);
  if (rest.length === 0 && SECTIONS.includes(section as Section)) return Object.keys(sectionShape(section as Section));
  return [];
}

function formatIssues(err: z.ZodError, where: string, origins: ReadonlyMap<string, string>): string {
  const lines: string[] = [];
  for (const i of err.issues) {
    if (i.code === 'unrecognized_keys') {
      const known = knownKeysAt(i.path);
      for (const k of i.keys) {
        const guess = closest(k, known);
        lines.push(`  ${where}: ${issueKey([...i.path, k])}: unknown key${guess ? ` (did you mean "${guess}"?)` : ''}`);
      }
      continue;
    }
    const key = issueKey(i.path);
    const origin = i.path.length >= 2 ? origins.get(`${String(i.path[0])}.${String(i.path[1])}`) : undefined;
    lines.push(`  ${origin ? 'environment' : where}: ${key}${origin ? ` (from ${origin})` : ''}: ${i.message}`);
  }
  return lines.join('\n');
}

function deepMerge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && cur && typeof cur === 'object' && !Array.isArray(cur)
        ? deepMerge(cur as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

function checkDestinations(dests: readonly string[]): string[] {
  const out: string[] = [];
  dests.forEach((d, i) => {
    const key = `materialize.allowedDestinations[${i}]`;
    if (/^s3:\/\//i.test(d)) {
      if (!/^s3:\/\/[a-z0-9][a-z0-9.-]{1,62}\/([^?#\s]*\/)?$/.test(d)) {
        out.push(`${key}: "${d}" must be s3://bucket/ or s3://bucket/prefix/ (ending in "/")`);
      }
    } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(d) && !/^file:\/\//i.test(d)) {
      out.push(`${key}: "${d}" is neither s3://bucket/prefix/ nor a local folder`);
    } else if (!path.isAbsolute(d.replace(/^file:\/\//i, ''))) {
      out.push(`${key}: "${d}" must be an absolute path (relative paths are resolved against the config file)`);
    }
    if (/(^|\/)\.\.?(\/|$)/.test(d.replace(/^[a-z0-9]+:\/\//i, '')))
      out.push(`${key}: "${d}" may not contain "." or ".." segments`);
  });
  return out;
}

/** Validate one mosaic definition (a POST /mosaics body, say). Throws ConfigError naming every bad key. */
export function parseMosaicDefinition(raw: unknown, where = 'mosaic'): MosaicConfig {
  const r = mosaicSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`invalid mosaic definition:\n${formatIssues(r.error, where, new Map())}`);
  return deepFreeze(r.data);
}

/** Validate a raw config object (after merging). Throws ConfigError naming every bad key. */
export function parseConfig(raw: unknown, where = 'config', origins: ReadonlyMap<string, string> = new Map()): Config {
  const r = configSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`invalid configuration:\n${formatIssues(r.error, where, origins)}`);
  const problems: string[] = [];
  const ids = new Set<string>();
  r.data.mosaics.forEach((m, i) => {
    if (ids.has(m.id)) problems.push(`mosaics[${i}].id: "${m.id}" is used by another mosaic`);
    ids.add(m.id);
  });
  problems.push(...checkDestinations(r.data.materialize.allowedDestinations));
  if ((r.data.s3.accessKeyId === undefined) !== (r.data.s3.secretAccessKey === undefined)) {
    problems.push(
      's3: accessKeyId and secretAccessKey go together (give both, or neither for the default credential chain)',
    );
  }
  if (problems.length)
    throw new ConfigError(`invalid configuration:\n${problems.map((p) => `  ${where}: ${p}`).join('\n')}`);
  return deepFreeze(r.data);
}

function resolvePaths(raw: Record<string, unknown>, base: string): void {
  const isUrl = (s: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(s);
  const abs = (v: unknown) => (typeof v === 'string' && !isUrl(v) ? path.resolve(base, v) : v);
  const sources = raw.sources as Record<string, unknown> | undefined;
  if (sources && Array.isArray(sources.roots)) sources.roots = sources.roots.map(abs);
  const server = raw.server as Record<string, unknown> | undefined;
  if (server && typeof server.mosaicsFile === 'string') server.mosaicsFile = abs(server.mosaicsFile);
  const mat = raw.materialize as Record<string, unknown> | undefined;
  if (mat && Array.isArray(mat.allowedDestinations)) {
    mat.allowedDestinations = mat.allowedDestinations.map((d) => {
      const out = abs(d);
      // keep the trailing "/" of a folder the way it was written
      return typeof d === 'string' && typeof out === 'string' && d.endsWith('/') && !out.endsWith('/')
        ? `${out}/`
        : out;
    });
  }
  if (mat && typeof mat.spoolDir === 'string') mat.spoolDir = abs(mat.spoolDir);
  if (Array.isArray(raw.mosaics)) {
    for (const m of raw.mosaics as { sources?: unknown; index?: unknown; stac?: { items?: unknown } }[]) {
      if (m && Array.isArray(m.sources)) m.sources = m.sources.map(abs);
      if (m && typeof m.index === 'string') m.index = abs(m.index);
      if (m?.stac && typeof m.stac === 'object' && typeof m.stac.items === 'string') m.stac.items = abs(m.stac.items);
    }
  }
}

/**
 * Read a config file (JSON or YAML by extension, else YAML, which also reads JSON) and apply environment
 * overrides, then `overrides` (from the command line). Relative paths in the file are relative to the file.
 */
export async function loadConfig(opts: {
  file?: string;
  env?: Readonly<Record<string, string | undefined>>;
  overrides?: Record<string, unknown>;
}): Promise<Config> {
  let raw: Record<string, unknown> = {};
  const where = opts.file ? path.basename(opts.file) : 'config';
  if (opts.file) {
    let text: string;
    try {
      text = await readFile(opts.file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read config file ${opts.file}: ${(e as Error).message}`);
    }
    const json = /\.json$/i.test(opts.file);
    let parsed: unknown;
    try {
      parsed = json ? JSON.parse(text) : YAML.parse(text);
    } catch (e) {
      throw new ConfigError(`config file ${opts.file} is not valid ${json ? 'JSON' : 'YAML'}: ${(e as Error).message}`);
    }
    parsed ??= {};
    if (typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new ConfigError(
        `config file ${opts.file} must hold an object (sections such as server:, sources:, mosaics:) at the top level`,
      );
    }
    raw = parsed as Record<string, unknown>;
    resolvePaths(raw, path.dirname(path.resolve(opts.file)));
  }
  let origins: ReadonlyMap<string, string> = new Map();
  if (opts.env) {
    const env = await envOverrides(opts.env);
    raw = deepMerge(raw, env.values);
    origins = env.origins;
  }
  if (opts.overrides) raw = deepMerge(raw, opts.overrides);
  return parseConfig(raw, where, origins);
}

/** A copy of the config safe to log or print: secrets replaced, credentials and query strings stripped from URLs. */
export function redactConfig(config: Config): Record<string, unknown> {
  const url = (s: string) => (/^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? redactUrl(s) : s);
  const hidden = (key: string, v: unknown) => (v === undefined ? {} : { [key]: REDACTED });
  const { accessKeyId, secretAccessKey, ...s3 } = config.s3;
  const { token, ...auth } = config.auth;
  return {
    ...config,
    s3: { ...s3, ...hidden('accessKeyId', accessKeyId), ...hidden('secretAccessKey', secretAccessKey) },
    auth: { ...auth, ...hidden('token', token) },
    sources: { ...config.sources, allowedUrlPrefixes: config.sources.allowedUrlPrefixes.map(url) },
    mosaics: config.mosaics.map((m) => ({
      ...m,
      ...(m.sources ? { sources: m.sources.map(url) } : {}),
      ...(m.index ? { index: url(m.index) } : {}),
      ...(m.stac
        ? {
            stac: {
              ...m.stac,
              ...(m.stac.items ? { items: url(m.stac.items) } : {}),
              ...(m.stac.search ? { search: url(m.stac.search) } : {}),
            },
          }
        : {}),
    })),
  };
}

/**
 * Source patterns that come from configuration or the command line are trusted: their folders become source
 * roots and their URL prefixes (the URL up to its last `/`, without query) become allowed prefixes.
 */
export function trustedSourcePolicy(patterns: readonly string[]): { roots: string[]; allowedUrlPrefixes: string[] } {
  const roots = new Set<string>();
  const prefixes = new Set<string>();
  for (const s of patterns) {
    if (/^(https?|s3):\/\//i.test(s)) {
      const bare = s.replace(/[?#].*$/s, '');
      const schemeEnd = bare.indexOf('://') + 3;
      const slash = bare.lastIndexOf('/');
      prefixes.add(slash >= schemeEnd ? bare.slice(0, slash + 1) : `${bare}/`);
    } else {
      const local = s.replace(/^file:\/\//i, '');
      const glob = local.search(/[*?[{]/);
      const fixed = glob >= 0 ? local.slice(0, glob) : local;
      const abs = path.resolve(fixed || '.');
      roots.add(
        glob >= 0
          ? fixed.endsWith('/')
            ? abs
            : path.dirname(abs)
          : /\.(tif|tiff|gtiff)$/i.test(abs)
            ? path.dirname(abs)
            : abs,
      );
    }
  }
  return { roots: [...roots], allowedUrlPrefixes: [...prefixes] };
}
