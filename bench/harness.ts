/**
 * Running benchmarks: command-line options, inputs, a scratch folder, JSON lines on stdout, and a dated section
 * per benchmark appended to bench/RESULTS.md. `bench/run.ts` runs them all; each `*.bench.ts` runs alone too.
 *
 *   node bench/run.ts [--small] [--repeats N] [--only a,b] [--no-record] [--keep] [--data DIR] [--out DIR]
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type BenchData, ensureBenchData } from './data.ts';
import { appendResults, emit, note, type Section } from './support.ts';

export interface BenchContext {
  readonly data: BenchData;
  readonly small: boolean;
  /** --repeats N: runs per measured command where a benchmark repeats them (default: its own) */
  readonly repeats?: number;
  /** scratch folder of this benchmark (removed afterwards unless --keep) */
  readonly outDir: string;
  /** print one JSON line for this benchmark */
  emit(record: Record<string, unknown>): void;
}

export interface BenchReport {
  readonly sections: readonly Section[];
}

export interface Bench {
  /** short name for --only and the JSON lines */
  readonly name: string;
  /** section title in RESULTS.md */
  readonly title: string;
  run(ctx: BenchContext): Promise<BenchReport>;
}

export interface HarnessOptions {
  readonly small: boolean;
  readonly repeats?: number;
  readonly only?: readonly string[];
  readonly record: boolean;
  readonly keep: boolean;
  readonly dataDir?: string;
  readonly outDir?: string;
}

export function parseHarnessArgs(argv: readonly string[]): HarnessOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      small: { type: 'boolean', default: false },
      repeats: { type: 'string' },
      only: { type: 'string' },
      'no-record': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      data: { type: 'string' },
      out: { type: 'string' },
    },
  });
  return {
    small: values.small ?? false,
    repeats: values.repeats ? Math.max(1, Number.parseInt(values.repeats, 10) || 1) : undefined,
    only: values.only ? values.only.split(',').map((s) => s.trim()) : undefined,
    record: !values['no-record'],
    keep: values.keep ?? false,
    dataDir: values.data,
    outDir: values.out,
  };
}

/** Run benchmarks one after the other; a failing benchmark is reported and the others still run. */
export async function runBenches(benches: readonly Bench[], options: HarnessOptions): Promise<{ failed: string[] }> {
  const selected = options.only ? benches.filter((b) => options.only!.includes(b.name)) : benches;
  if (options.only && selected.length !== options.only.length) {
    const known = benches.map((b) => b.name).join(', ');
    throw new Error(`unknown benchmark in --only ${options.only.join(',')} (known: ${known})`);
  }
  const t0 = performance.now();
  const data = await ensureBenchData({ small: options.small, dir: options.dataDir });
  note(`inputs ready in ${Math.round(performance.now() - t0)} ms (${data.dir})`);
  const root = options.outDir ?? (await mkdtemp(path.join(tmpdir(), 'cogmill-bench-')));
  const failed: string[] = [];
  for (const bench of selected) {
    const outDir = path.join(root, bench.name);
    await mkdir(outDir, { recursive: true });
    const tb = performance.now();
    note(`${bench.name}: ${bench.title}`);
    try {
      const report = await bench.run({
        data,
        small: options.small,
        repeats: options.repeats,
        outDir,
        emit: (r) => emit(bench.name, r),
      });
      if (options.record) await appendResults(bench.title, options.small, report.sections);
      note(`${bench.name} done in ${Math.round((performance.now() - tb) / 1000)} s`);
    } catch (e) {
      failed.push(bench.name);
      const message = (e as Error)?.stack ?? String(e);
      emit(bench.name, { error: message.split('\n')[0] });
      note(`${bench.name} FAILED: ${message}`);
      if (options.record)
        await appendResults(bench.title, options.small, [
          { title: 'failed', body: `\`\`\`\n${message.slice(0, 4000)}\n\`\`\`` },
        ]);
    } finally {
      if (!options.keep) await rm(outDir, { recursive: true, force: true });
    }
  }
  if (!options.keep && !options.outDir) await rm(root, { recursive: true, force: true });
  note(
    `all done in ${Math.round((performance.now() - t0) / 1000)} s${failed.length ? `; failed: ${failed.join(', ')}` : ''}`,
  );
  return { failed };
}

/** The `if (import.meta.main)` body of a single benchmark file. */
export async function runStandalone(bench: Bench): Promise<void> {
  const { failed } = await runBenches([bench], parseHarnessArgs(process.argv.slice(2)));
  if (failed.length) process.exitCode = 1;
}
