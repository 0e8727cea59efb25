/**
 * The real `cogmill serve` process for tests about the process itself (signals, exit codes, what it logs): started
 * with `--port 0`, so the server binds a free port itself and reports it in its "listening on" line.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import path from 'node:path';

export const CLI = path.join(import.meta.dirname, '..', '..', 'bin', 'cogmill.js');

/** the longest the process may take to say where it listens (a guard against a hung start, not a measurement) */
const START_GUARD_MS = 180_000;

export interface ServeChild {
  readonly proc: ChildProcess;
  /** `http://127.0.0.1:PORT` from the process's own "listening on" line */
  readonly url: string;
  readonly stdout: string[];
  readonly stderr: string[];
  /** the exit code (null when killed by a signal) */
  readonly exit: Promise<number | null>;
  /** the JSON log lines written to stdout so far */
  lines(): Record<string, unknown>[];
  /** resolves with the first log line (already written or still to come) that `test` accepts */
  waitForLine(test: (line: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
  /** SIGKILL if it still runs (for `finally` blocks) */
  kill(): void;
}

/** Start `cogmill serve ARGS` with only PATH, HOME and `env` in its environment. */
export async function spawnServe(
  args: readonly string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<ServeChild> {
  const proc = spawn(process.execPath, [CLI, 'serve', '--host', '127.0.0.1', '--port', '0', ...args], {
    cwd: opts.cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const events = new EventEmitter();
  proc.stdout?.on('data', (d) => {
    stdout.push(String(d));
    events.emit('out');
  });
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const lines = () =>
    stdout
      .join('')
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => {
        try {
          return JSON.parse(l) as Record<string, unknown>;
        } catch {
          return { partial: l };
        }
      });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`no "listening" line within ${START_GUARD_MS} ms: ${stderr.join('')}`)),
      START_GUARD_MS,
    );
    proc.stderr?.on('data', (d) => {
      stderr.push(String(d));
      const m = /listening on (http:\/\/\S+)/.exec(stderr.join(''));
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`cogmill exited with ${code}: ${stderr.join('')}`));
    });
  });
  return {
    proc,
    url,
    stdout,
    stderr,
    exit,
    lines,
    waitForLine: async (test) => {
      for (;;) {
        const hit = lines().find(test);
        if (hit) return hit;
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error('cogmill exited before that line');
        await Promise.race([once(events, 'out'), exit]);
      }
    },
    kill: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
}
