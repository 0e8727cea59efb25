/**
 * The queue's real parts for tests: Debian's redis-server on a free loopback port (no persistence), and
 * `cogmill worker` OS processes with their stderr (JSON log lines) kept for the assertions.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { sh } from './gdal.ts';

const NODE = process.execPath;
export const CLI = path.join(import.meta.dirname, '..', '..', 'bin', 'cogmill.js');

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface TestRedis {
  readonly url: string;
  readonly port: number;
  /** `INFO stats` as key -> value (total_net_input_bytes: every byte clients sent it) */
  info(): Promise<Record<string, string>>;
  /** a redis-cli command's answer */
  cli(...args: string[]): Promise<string>;
  stop(): void;
}

/** redis-server on `port` (default: a free one) */
export async function startRedis(port?: number): Promise<TestRedis> {
  port ??= await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const cli = (...args: string[]) => sh('redis-cli', ['-p', String(port), ...args]);
  const redis: TestRedis = {
    url: `redis://127.0.0.1:${port}`,
    port,
    cli,
    info: async () =>
      Object.fromEntries(
        (await cli('INFO', 'stats'))
          .split(/\r?\n/)
          .filter((l) => l.includes(':'))
          .map((l) => l.split(':') as [string, string]),
      ),
    stop: () => {
      child.kill('SIGKILL');
    },
  };
  for (let i = 0; i < 100; i++) {
    try {
      await cli('PING');
      return redis;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  redis.stop();
  throw new Error('redis-server did not start');
}

export interface TestWorker {
  readonly child: ChildProcess;
  /** everything the worker wrote to stderr so far (JSON log lines) */
  log(): string;
  /** "shard done" lines so far */
  shardsDone(): number;
  /** resolves once the worker waits for jobs */
  readonly ready: Promise<void>;
  stop(): void;
}

/** A `cogmill worker` process on `redisUrl`; `children` collects it for a kill in `after`. */
export function spawnWorker(
  redisUrl: string,
  env: Record<string, string>,
  args: readonly string[] = ['--threads', '1'],
  children?: Set<ChildProcess>,
): TestWorker {
  const child = spawn(NODE, [CLI, 'worker', '--redis', redisUrl, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children?.add(child);
  child.on('close', () => children?.delete(child));
  let text = '';
  let readyResolve = () => {};
  let readyReject = (_: Error) => {};
  const ready = new Promise<void>((resolve, reject) => {
    readyResolve = resolve;
    readyReject = reject;
  });
  child.stderr!.on('data', (d) => {
    text += d;
    if (text.includes('waiting for shards')) readyResolve();
  });
  child.on('close', (code) => readyReject(new Error(`the worker exited (${code}) before it was ready: ${text}`)));
  ready.catch(() => {});
  return {
    child,
    log: () => text,
    shardsDone: () => (text.match(/"shard done"/g) ?? []).length,
    ready,
    stop: () => {
      child.kill('SIGTERM');
    },
  };
}
