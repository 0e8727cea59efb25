/**
 * What every benchmark shares: the machine's description, child processes measured for wall time and peak RSS,
 * percentiles, JSON-line output and the dated sections appended to bench/RESULTS.md.
 */
import { execFile, spawn } from 'node:child_process';
import { appendFile, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

export const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
export const REPO_DIR = path.dirname(BENCH_DIR);
export const RESULTS_FILE = path.join(BENCH_DIR, 'RESULTS.md');
/** the Python that has GDAL's bindings (not the first python3 on PATH) */
export const PYTHON = '/usr/bin/python3';
export const NODE = process.execPath;

export interface BenchOptions {
  /** small inputs: the whole run takes well under a minute */
  readonly small: boolean;
  /** where generated inputs are cached */
  readonly dataDir: string;
  /** scratch folder for outputs (removed by the caller) */
  readonly outDir: string;
  /** append a section to bench/RESULTS.md */
  readonly record: boolean;
}

export interface Machine {
  readonly cpus: number;
  readonly cpuModel: string;
  readonly memoryGiB: number;
  readonly node: string;
  readonly gdal: string;
  readonly os: string;
}

let machineMemo: Promise<Machine> | undefined;

/** nproc, memory, CPU model, Node and GDAL versions. */
export function machine(): Promise<Machine> {
  machineMemo ??= (async () => {
    const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
    const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
    const nproc = (await run('nproc', [], { timeoutMs: 5_000 }).catch(() => undefined))?.stdout.trim();
    const gdal =
      (await run('gdalinfo', ['--version'], { timeoutMs: 10_000 }).catch(() => undefined))?.stdout.trim() ??
      'not installed';
    return {
      cpus: Number(nproc) || os.availableParallelism(),
      cpuModel: model,
      memoryGiB: Math.round((os.totalmem() / GiB) * 10) / 10,
      node: process.version,
      gdal,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
    };
  })();
  return machineMemo;
}

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly wallMs: number;
}

/** Run a command to completion (bounded by timeoutMs); rejects on a non-zero exit with its stderr. */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string; allowFail?: boolean } = {},
): Promise<RunResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      {
        timeout: opts.timeoutMs ?? 600_000,
        maxBuffer: 256 * MiB,
        env: opts.env ?? process.env,
        cwd: opts.cwd ?? REPO_DIR,
        killSignal: 'SIGKILL',
      },
      (err, stdout, stderr) => {
        const wallMs = performance.now() - t0;
        const code = err ? ((err as { code?: number }).code ?? null) : 0;
        if (err && !opts.allowFail) {
          reject(
            new Error(
              `${cmd} ${args.join(' ')} failed (${err.message.split('\n')[0]}): ${String(stderr).slice(-2000)}`,
            ),
          );
          return;
        }
        resolve({
          code: typeof code === 'number' ? code : null,
          stdout: String(stdout),
          stderr: String(stderr),
          wallMs,
        });
      },
    );
  });
}

export interface Measured extends RunResult {
  /** peak resident set size of the process (its VmHWM), bytes */
  readonly peakRssBytes: number;
  /** user + system CPU seconds */
  readonly cpuSeconds: number;
}

/**
 * Run a command under `/usr/bin/time -v` and report its wall time (measured here, process start to exit),
 * peak RSS and CPU time. Rejects on a non-zero exit.
 */
export async function measured(
  cmd: string,
  args: readonly string[],
  opts: { timeoutMs?: number; env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Promise<Measured> {
  const r = await run('/usr/bin/time', ['-v', cmd, ...args], opts);
  const field = (name: string) => {
    const m = new RegExp(`^\\s*${name}:\\s*(.+)$`, 'm').exec(r.stderr);
    return m ? m[1].trim() : '';
  };
  const peakKb = Number(field('Maximum resident set size \\(kbytes\\)'));
  const cpu = Number(field('User time \\(seconds\\)')) + Number(field('System time \\(seconds\\)'));
  // the part of stderr that the command wrote (time -v appends its report after a tab-indented block)
  const own = r.stderr.split(/\n\tCommand being timed:/)[0];
  return { ...r, stderr: own, peakRssBytes: peakKb * KiB, cpuSeconds: Math.round(cpu * 100) / 100 };
}

/** A long-running child (a server): started, its stdout/stderr collected, its peak RSS readable from /proc. */
export interface Child {
  readonly pid: number;
  output(): string;
  /** VmHWM of the running process, bytes (0 once it has exited) */
  peakRssBytes(): Promise<number>;
  /** wait until `pattern` appears in stdout or stderr; rejects after timeoutMs or when the child exits */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
  /** SIGTERM, then SIGKILL after graceMs; resolves when it has exited */
  stop(graceMs?: number): Promise<void>;
}

export function startChild(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {},
): Child {
  const child = spawn(cmd, args, {
    env: opts.env ?? process.env,
    cwd: opts.cwd ?? REPO_DIR,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  let exited = false;
  const listeners = new Set<() => void>();
  const onData = (b: Buffer) => {
    text += b.toString();
    if (text.length > 8 * MiB) text = text.slice(-4 * MiB);
    for (const l of listeners) l();
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      for (const l of listeners) l();
      resolve();
    }),
  );
  return {
    pid: child.pid ?? -1,
    output: () => text,
    async peakRssBytes() {
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8').catch(() => '');
      const m = /^VmHWM:\s*(\d+)\s*kB/m.exec(status);
      return m ? Number(m[1]) * KiB : 0;
    },
    waitFor(pattern, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = pattern.exec(text);
          if (m) return done(() => resolve(m));
          if (exited)
            return done(() => reject(new Error(`child exited before printing ${pattern}: ${text.slice(-2000)}`)));
        };
        const timer = setTimeout(
          () => done(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms: ${text.slice(-2000)}`))),
          timeoutMs,
        );
        const done = (f: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          f();
        };
        listeners.add(check);
        check();
      });
    },
    async stop(graceMs = 5_000) {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
  };
}

/** The p-th percentile (0..100) of values, nearest rank. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** The median (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function mib(bytes: number): number {
  return round(bytes / MiB, 1);
}

/** Print one JSON line for a measurement (stdout is the machine-readable record of a run). */
export function emit(bench: string, record: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ bench, ...record })}\n`);
}

/** A progress note on stderr (stdout stays JSON lines). */
export function note(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

export interface Section {
  readonly title: string;
  /** markdown: a table or lines */
  readonly body: string;
}

function machineLine(m: Machine): string {
  return `${m.cpus} CPUs (${m.cpuModel}), ${m.memoryGiB} GiB RAM, Node ${m.node}, ${m.gdal}, ${m.os}`;
}

/** A markdown table from rows of equal keys. */
export function table(rows: readonly Record<string, unknown>[]): string {
  if (rows.length === 0) return '(no rows)';
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: unknown) =>
    v === undefined || v === null ? '' : typeof v === 'number' ? String(v) : String(v).replace(/\|/g, '\\|');
  return [
    `| ${keys.join(' | ')} |`,
    `|${keys.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${keys.map((k) => cell(r[k])).join(' | ')} |`),
  ].join('\n');
}

/**
 * Append a dated section to bench/RESULTS.md: `## <date> <title> (<mode>)`, the machine, then the sections.
 * Appending only: whatever else the file holds (an analysis, other people's sections) is kept as it is.
 */
export async function appendResults(title: string, small: boolean, sections: readonly Section[]): Promise<void> {
  const m = await machine();
  const date = new Date().toISOString().replace('T', ' ').slice(0, 16);
  const load = os
    .loadavg()
    .map((x) => x.toFixed(1))
    .join(' ');
  const parts = [
    `\n## ${date} UTC: ${title} (${small ? '--small' : 'full size'})\n`,
    `Machine: ${machineLine(m)}; load average at the end ${load} (other work on the machine slows every number)\n`,
  ];
  for (const s of sections) parts.push(`### ${s.title}\n\n${s.body}\n`);
  await appendFile(RESULTS_FILE, parts.join('\n'));
}

/** Wait for ms (bounded sleeps only). */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
