/**
 * Summarise V8 CPU profiles (`node --cpu-prof --cpu-prof-dir=DIR ...`; one file per thread): the functions with the
 * most self time, and the files they live in, over all the profiles given.
 *
 *   node bench/profile.ts DIR_OR_FILE... [--top N]
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

export interface ProfileLine {
  readonly fn: string;
  readonly where: string;
  readonly selfMs: number;
  readonly selfPct: number;
}

export interface ProfileSummary {
  readonly files: number;
  /** sampled time over all threads, idle excluded */
  readonly busyMs: number;
  readonly idleMs: number;
  readonly top: readonly ProfileLine[];
  readonly byFile: readonly { readonly where: string; readonly selfMs: number; readonly selfPct: number }[];
}

function shortUrl(url: string): string {
  if (!url) return '(native)';
  const u = url.replace(/^file:\/\//, '');
  const i = u.indexOf('/node_modules/');
  if (i >= 0) return u.slice(i + 1);
  const j = u.lastIndexOf('/src/');
  if (j >= 0) return u.slice(j + 1);
  const k = u.lastIndexOf('/bench/');
  return k >= 0 ? u.slice(k + 1) : u;
}

async function profileFiles(inputs: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const p of inputs) {
    if ((await stat(p)).isDirectory()) {
      for (const f of (await readdir(p)).sort()) if (f.endsWith('.cpuprofile')) out.push(path.join(p, f));
    } else out.push(p);
  }
  return out;
}

/** Self time per function over every profile under `inputs`. */
export async function summariseProfiles(inputs: readonly string[], top = 20): Promise<ProfileSummary> {
  const files = await profileFiles(inputs);
  const selfUs = new Map<string, number>();
  const fileUs = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  for (const f of files) {
    const prof = JSON.parse(await readFile(f, 'utf8')) as CpuProfile;
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    for (let i = 0; i < prof.samples.length; i++) {
      const node = byId.get(prof.samples[i]);
      const dt = prof.timeDeltas[i] ?? 0;
      if (!node) continue;
      const name = node.callFrame.functionName || '(anonymous)';
      if (name === '(idle)' || name === '(program)' || name === '(garbage collector)') {
        if (name === '(idle)') {
          idle += dt;
          continue;
        }
      }
      busy += dt;
      const where = shortUrl(node.callFrame.url);
      const key = `${name}\t${where}${node.callFrame.url ? `:${node.callFrame.lineNumber + 1}` : ''}`;
      selfUs.set(key, (selfUs.get(key) ?? 0) + dt);
      fileUs.set(where, (fileUs.get(where) ?? 0) + dt);
    }
  }
  const pct = (us: number) => Math.round((us / Math.max(1, busy)) * 1000) / 10;
  return {
    files: files.length,
    busyMs: Math.round(busy / 1000),
    idleMs: Math.round(idle / 1000),
    top: [...selfUs.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => {
        const [fn, where] = k.split('\t');
        return { fn, where, selfMs: Math.round(us / 1000), selfPct: pct(us) };
      }),
    byFile: [...fileUs.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 12)
      .map(([where, us]) => ({ where, selfMs: Math.round(us / 1000), selfPct: pct(us) })),
  };
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '25' } },
  });
  const s = await summariseProfiles(positionals, Number(values.top));
  process.stdout.write(`profiles: ${s.files}, busy ${s.busyMs} ms, idle ${s.idleMs} ms\n\nself time by function:\n`);
  for (const l of s.top)
    process.stdout.write(`${String(l.selfMs).padStart(7)} ms ${String(l.selfPct).padStart(5)}%  ${l.fn}  ${l.where}\n`);
  process.stdout.write('\nself time by file:\n');
  for (const l of s.byFile)
    process.stdout.write(`${String(l.selfMs).padStart(7)} ms ${String(l.selfPct).padStart(5)}%  ${l.where}\n`);
}
