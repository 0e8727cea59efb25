/**
 * Environment overrides: `COGMILL_<SECTION>_<KEY>` variables (or `..._FILE`, naming a file that holds the value)
 * read into a partial config object, guided by the schema's keys. The only place environment names are read; the
 * variables come in as a parameter.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError, SECTIONS, type Section, sectionShape, type ValueKind, valueKind } from './config.schema.ts';
import { closest } from './config.suggest.ts';

const ENV_PREFIX = 'COGMILL_';

/** `server.requestTimeoutMs` -> `COGMILL_SERVER_REQUEST_TIMEOUT_MS` */
export function envName(section: string, key: string): string {
  return `${ENV_PREFIX}${section.toUpperCase()}_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
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
