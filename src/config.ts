/**
 * Configuration: one typed, frozen object, validated at start-up. Read from a JSON or YAML file plus
 * environment overrides (`COGMILL_<SECTION>_<KEY>`, e.g. COGMILL_SERVER_PORT, COGMILL_AUTH_TOKEN,
 * COGMILL_SOURCES_ROOTS=/data,/mnt). This is the only module that reads `process.env`-like input, and it
 * receives it as a parameter.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import YAML from 'yaml';
import { z } from 'zod';
import { COMPOSITES, DTYPES, MiB, RESAMPLINGS } from './render/types.ts';

const positiveInt = z.number().int().positive();

const mosaicSchema = z
  .object({
    id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'ids are 1-64 letters, digits, _ and - (starting with a letter or digit)'),
    title: z.string().optional(),
    sources: z.array(z.string().min(1)).min(1, 'a mosaic needs at least one source'),
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
  .strict();

export const configSchema = z
  .object({
    server: z
      .object({
        host: z.string().default('0.0.0.0'),
        port: z.number().int().min(0).max(65535).default(8080),
        /** base URL clients reach the service at (for TileJSON, WMTS, VRT links); default from the request */
        publicUrl: z.string().url().optional(),
        corsOrigins: z.array(z.string()).default(['*']),
        cacheControl: z.string().default('public, max-age=3600'),
        requestTimeoutMs: positiveInt.default(30_000),
        shutdownGraceMs: positiveInt.default(10_000),
      })
      .strict()
      .prefault({}),
    sources: z
      .object({
        /** local folders sources may be read from */
        roots: z.array(z.string()).default([]),
        /** URL prefixes (https://host/path/, s3://bucket/prefix/) sources may be read from */
        allowedUrlPrefixes: z.array(z.string()).default([]),
        httpTimeoutMs: positiveInt.default(15_000),
        httpRetries: z.number().int().min(0).max(10).default(3),
        s3Endpoint: z.string().url().optional(),
        s3Region: z.string().optional(),
        s3ForcePathStyle: z.boolean().optional(),
      })
      .strict()
      .prefault({}),
    cache: z
      .object({
        headerBytes: positiveInt.default(64 * MiB),
        blockBytes: positiveInt.default(256 * MiB),
        tileBytes: positiveInt.default(128 * MiB),
        virtualCogBytes: positiveInt.default(256 * MiB),
      })
      .strict()
      .prefault({}),
    limits: z
      .object({
        maxRenderPixels: positiveInt.default(4096 * 4096),
        maxPreviewSize: positiveInt.default(2048),
        maxCropPixels: positiveInt.default(4096 * 4096),
        maxStatisticsPixels: positiveInt.default(2048 * 2048),
        maxExpressionLength: positiveInt.default(512),
        maxConcurrentRenders: positiveInt.default(16),
        maxZoom: z.number().int().min(0).max(30).default(24),
      })
      .strict()
      .prefault({}),
    auth: z
      .object({
        /** bearer token for /materialize and /jobs; without one those routes are off unless allowUnauthenticated */
        token: z.string().min(16, 'the token must be at least 16 characters').optional(),
        allowUnauthenticated: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    materialize: z
      .object({
        /** where exports may go: s3://bucket/prefix/ or local folders */
        allowedDestinations: z.array(z.string()).default([]),
        workers: z.number().int().min(0).max(256).default(0),
        maxConcurrentUploads: positiveInt.default(4),
        maxConcurrentJobs: positiveInt.default(2),
        spoolDir: z.string().optional(),
      })
      .strict()
      .prefault({}),
    log: z
      .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info') })
      .strict()
      .prefault({}),
    mosaics: z.array(mosaicSchema).default([]),
  })
  .strict();

export type Config = z.output<typeof configSchema>;
export type MosaicConfig = z.output<typeof mosaicSchema>;

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

function formatIssues(err: z.ZodError, where: string): string {
  return err.issues
    .map((i) => {
      const key = i.path.length ? i.path.join('.') : '(top level)';
      return `  ${where}: ${key}: ${i.message}`;
    })
    .join('\n');
}

/** Convert `COGMILL_SERVER_PORT=8080` style variables into a partial config object, guided by the schema's keys. */
export function envOverrides(env: Readonly<Record<string, string | undefined>>): Record<string, unknown> {
  const out: Record<string, Record<string, unknown>> = {};
  const shape = configSchema.shape;
  for (const section of Object.keys(shape) as (keyof typeof shape)[]) {
    if (section === 'mosaics') continue;
    const inner = (shape[section] as unknown as { unwrap(): z.ZodObject }).unwrap?.() ?? (shape[section] as unknown as z.ZodObject);
    const keys = Object.keys((inner as z.ZodObject).shape ?? {});
    for (const key of keys) {
      const name = `COGMILL_${section.toUpperCase()}_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
      const raw = env[name];
      if (raw === undefined || raw === '') continue;
      const probe = ((inner as z.ZodObject).shape as Record<string, z.ZodType>)[key];
      const kind = probeKind(probe);
      let value: unknown = raw;
      if (kind === 'array') value = raw.split(',').map((s) => s.trim()).filter(Boolean);
      else if (kind === 'number') value = Number(raw);
      else if (kind === 'boolean') value = /^(1|true|yes|on)$/i.test(raw);
      out[section] ??= {};
      out[section][key] = value;
    }
  }
  return out;
}

function probeKind(t: z.ZodType): 'array' | 'number' | 'boolean' | 'string' {
  for (const sample of [[], 1, true] as const) {
    if (t.safeParse(sample).success) return Array.isArray(sample) ? 'array' : typeof sample === 'number' ? 'number' : 'boolean';
  }
  return 'string';
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

/** Validate a raw config object (after merging). Throws ConfigError naming every bad key. */
export function parseConfig(raw: unknown, where = 'config'): Config {
  const r = configSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`invalid configuration:\n${formatIssues(r.error, where)}`);
  const ids = new Set<string>();
  for (const m of r.data.mosaics) {
    if (ids.has(m.id)) throw new ConfigError(`invalid configuration:\n  ${where}: mosaics: id "${m.id}" is used twice`);
    ids.add(m.id);
  }
  if (r.data.auth.token === undefined && r.data.auth.allowUnauthenticated === false) {
    // materialise routes stay off; nothing to validate
  }
  return deepFreeze(r.data);
}

/** Read a config file (JSON or YAML by extension or content) and apply environment overrides. */
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
    try {
      raw = (/\.json$/i.test(opts.file) ? JSON.parse(text) : YAML.parse(text)) ?? {};
    } catch (e) {
      throw new ConfigError(`config file ${opts.file} is not valid ${/\.json$/i.test(opts.file) ? 'JSON' : 'YAML'}: ${(e as Error).message}`);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`config file ${opts.file} must hold an object at the top level`);
    // relative roots and source paths are relative to the config file
    const base = path.dirname(path.resolve(opts.file));
    const sources = raw.sources as { roots?: unknown } | undefined;
    if (sources && Array.isArray(sources.roots)) sources.roots = sources.roots.map((r) => (typeof r === 'string' ? path.resolve(base, r) : r));
    if (Array.isArray(raw.mosaics)) {
      for (const m of raw.mosaics as { sources?: unknown }[]) {
        if (m && Array.isArray(m.sources)) m.sources = m.sources.map((s) => (typeof s === 'string' && !/^[a-z0-9]+:\/\//i.test(s) ? path.resolve(base, s) : s));
      }
    }
  }
  if (opts.env) raw = deepMerge(raw, envOverrides(opts.env));
  if (opts.overrides) raw = deepMerge(raw, opts.overrides);
  return parseConfig(raw, where);
}
