/**
 * Configuration: one typed, frozen object, validated at start-up (config.ts decides whether the schema is needed). Read from a JSON or YAML file plus
 * environment overrides (`COGMILL_<SECTION>_<KEY>`, e.g. COGMILL_SERVER_PORT, COGMILL_AUTH_TOKEN,
 * COGMILL_SOURCES_ROOTS=/data,/mnt; any of them may instead name a file holding the value with a `_FILE`
 * suffix, e.g. COGMILL_AUTH_TOKEN_FILE=/run/secrets/token). This is the only module that interprets
 * environment variables, and it receives them as a parameter.
 *
 * The stages: config.schema.ts (keys, types, defaults), config.env.ts (environment overrides), this file
 * (file reading, merging, validation), config.suggest.ts (did you mean), config.reference.ts (the README's
 * reference table), config.redact.ts (a copy safe to print).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { z } from 'zod';
import { applyConventionalAzureEnv, azureCredentialSource, checkAzure } from './config.azure.ts';
import { envOverrides } from './config.env.ts';
import {
  type Config,
  ConfigError,
  configSchema,
  type MosaicConfig,
  mosaicSchema,
  SECTIONS,
  type Section,
  sectionShape,
} from './config.schema.ts';
import { closest } from './config.suggest.ts';
import { deepFreeze } from './config.ts';

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

function checkDestinations(dests: readonly string[]): string[] {
  const out: string[] = [];
  dests.forEach((d, i) => {
    const key = `materialize.allowedDestinations[${i}]`;
    if (/^s3:\/\//i.test(d)) {
      if (!/^s3:\/\/[a-z0-9][a-z0-9.-]{1,62}\/([^?#\s]*\/)?$/.test(d)) {
        out.push(`${key}: "${d}" must be s3://bucket/ or s3://bucket/prefix/ (ending in "/")`);
      }
    } else if (/^az:\/\//i.test(d)) {
      if (!/^az:\/\/[a-z0-9]+(-[a-z0-9]+)*\/([^?#\s]*\/)?$/.test(d)) {
        out.push(`${key}: "${d}" must be az://container/ or az://container/prefix/ (ending in "/")`);
      }
    } else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(d) && !/^file:\/\//i.test(d)) {
      out.push(`${key}: "${d}" is neither s3://bucket/prefix/, az://container/prefix/ nor a local folder`);
    } else if (!path.isAbsolute(d.replace(/^file:\/\//i, ''))) {
      out.push(`${key}: "${d}" must be an absolute path (relative paths are resolved against the config file)`);
    }
    if (/(^|\/)\.\.?(\/|$)/.test(d.replace(/^[a-z0-9]+:\/\//i, '')))
      out.push(`${key}: "${d}" may not contain "." or ".." segments`);
  });
  return out;
}

/** `raw` without `azure.credentialSource` (set by parseConfig, not a setting), and that value. */
function withoutCredentialSource(raw: unknown): { raw: unknown; carried: string | undefined } {
  const azure = (raw as { azure?: unknown } | null)?.azure;
  if (!azure || typeof azure !== 'object' || !('credentialSource' in azure)) return { raw, carried: undefined };
  const { credentialSource, ...rest } = azure as Record<string, unknown>;
  return {
    raw: { ...(raw as Record<string, unknown>), azure: rest },
    carried: typeof credentialSource === 'string' ? credentialSource : undefined,
  };
}

/** Validate one mosaic definition (a POST /mosaics body, say). Throws ConfigError naming every bad key. */
export function parseMosaicDefinition(raw: unknown, where = 'mosaic'): MosaicConfig {
  const r = mosaicSchema.safeParse(raw);
  if (!r.success) throw new ConfigError(`invalid mosaic definition:\n${formatIssues(r.error, where, new Map())}`);
  return deepFreeze(r.data);
}

/** Validate a raw config object (after merging). Throws ConfigError naming every bad key. */
export function parseConfig(raw: unknown, where = 'config', origins: ReadonlyMap<string, string> = new Map()): Config {
  // a parsed config given back (with mosaics added, say) keeps where its Azure credential came from
  const { raw: input, carried } = withoutCredentialSource(raw);
  const r = configSchema.safeParse(input);
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
  problems.push(...checkAzure(r.data.azure));
  if (problems.length)
    throw new ConfigError(`invalid configuration:\n${problems.map((p) => `  ${where}: ${p}`).join('\n')}`);
  const credentialSource = carried ?? azureCredentialSource(r.data.azure, origins, where);
  return deepFreeze(credentialSource ? { ...r.data, azure: { ...r.data.azure, credentialSource } } : r.data);
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
export async function loadConfigValidated(opts: {
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
      // the YAML parser loads with the first YAML file (a command without one starts ~20 ms sooner)
      parsed = json ? JSON.parse(text) : (await import('yaml')).default.parse(text);
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
  const origins = new Map<string, string>();
  if (opts.env) {
    const env = await envOverrides(opts.env);
    raw = deepMerge(raw, env.values);
    for (const [k, v] of env.origins) origins.set(k, v);
  }
  if (opts.overrides) raw = deepMerge(raw, opts.overrides);
  // the conventional AZURE_STORAGE_* variables come last: only what nothing above set
  if (opts.env) applyConventionalAzureEnv(raw, opts.env, origins);
  return parseConfig(raw, where, origins);
}
