/**
 * Configuration entry points (the stages are listed in config.parse.ts). Reading a configuration validates it with
 * the schema library, which takes ~50 ms to load (zod: ~100 modules); a command given no configuration file, no
 * `COGMILL_*` and no `AZURE_STORAGE_*` variable and no overrides gets the schema's defaults without it
 * (config.defaults.ts, kept equal to the schema's by a test), and so does a command-line mosaic of plain sources
 * added to them. Anything else goes through config.parse.ts.
 */
import path from 'node:path';
import { CONFIG_DEFAULTS, MOSAIC_DEFAULTS } from './config.defaults.ts';
import type { Config } from './config.schema.ts';

export function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** Configurations made from the defaults alone (see withCommandLineMosaic). */
const unvalidated = new WeakSet<Config>();

/** True when `env` holds a variable that the configuration reads (loadConfigValidated then interprets it). */
function configuresFromEnv(env: Readonly<Record<string, string | undefined>>): boolean {
  for (const k of Object.keys(env)) if (k.startsWith('COGMILL_') || k.startsWith('AZURE_STORAGE_')) return true;
  return false;
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
  const nothingSet =
    !opts.file &&
    !(opts.env && configuresFromEnv(opts.env)) &&
    (!opts.overrides || Object.keys(opts.overrides).length === 0);
  if (nothingSet) {
    const config = deepFreeze(structuredClone(CONFIG_DEFAULTS) as unknown as Config);
    unvalidated.add(config);
    return config;
  }
  return (await import('./config.parse.ts')).loadConfigValidated(opts);
}

/**
 * `base` with one more mosaic, from the command line, validated as the configuration's are. A mosaic of plain
 * sources (no empty name) added to the defaults is completed with the definition's defaults instead.
 */
export async function withCommandLineMosaic(base: Config, def: Record<string, unknown>): Promise<Config> {
  const plain =
    unvalidated.has(base) &&
    Object.keys(def).every((k) => k === 'id' || k === 'title' || k === 'sources') &&
    def.id === 'default' &&
    typeof def.title === 'string' &&
    Array.isArray(def.sources) &&
    def.sources.length > 0 &&
    def.sources.every((s) => typeof s === 'string' && s.length > 0);
  if (plain) {
    const mosaic = { ...def, ...structuredClone(MOSAIC_DEFAULTS) };
    const config = deepFreeze({ ...structuredClone(base), mosaics: [mosaic] } as unknown as Config);
    unvalidated.add(config);
    return config;
  }
  const { parseConfig } = await import('./config.parse.ts');
  return parseConfig({ ...base, mosaics: [...base.mosaics, def] }, 'command line');
}

/**
 * Source patterns that come from configuration or the command line are trusted: their folders become source
 * roots and their URL prefixes (the URL up to its last `/`, without query) become allowed prefixes.
 */
export function trustedSourcePolicy(patterns: readonly string[]): { roots: string[]; allowedUrlPrefixes: string[] } {
  const roots = new Set<string>();
  const prefixes = new Set<string>();
  for (const s of patterns) {
    if (/^(https?|s3|az):\/\//i.test(s)) {
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
