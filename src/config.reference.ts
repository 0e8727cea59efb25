/** The configuration reference: every settable key with its environment variable, type, default and meaning. */

import type { z } from 'zod';
import { envName } from './config.env.ts';
import { internals, SECTIONS, sectionShape, unwrap } from './config.schema.ts';
import { MiB } from './render/types.ts';

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
