/**
 * The commands that do not serve load no HTTP server code: `cogmill materialize` and `cogmill worker` run as
 * sidecars and batch jobs, where Hono, pino and prom-client are dead weight. A module hook records every module the
 * process loads.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

const CLI = path.join(import.meta.dirname, '..', 'src', 'cli.ts');
/** prints every resolved module URL to stderr, one per line, prefixed */
const HOOK = `data:text/javascript,${encodeURIComponent(
  "import { registerHooks } from 'node:module'; registerHooks({ resolve(s, c, next) { const r = next(s, c); process.stderr.write('LOADED ' + r.url + '\\n'); return r; } });",
)}`;

function loaded(args: string[]): Promise<{ code: number | null; urls: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', HOOK, CLI, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({
        code,
        urls: err
          .split('\n')
          .filter((l) => l.startsWith('LOADED '))
          .map((l) => l.slice(7)),
      }),
    );
  });
}

const SERVER = /\/src\/server\/|\/src\/main\.ts|node_modules\/(hono|@hono|pino|prom-client)\//;

// materialize --help and a worker without --redis load the command's whole static module graph and stop
for (const [cmd, args, exit] of [
  ['materialize', ['materialize', '--help'], 0],
  ['worker', ['worker'], 2],
] as const) {
  test(`cogmill ${cmd} loads no HTTP server module`, async () => {
    const { code, urls } = await loaded([...args]);
    assert.equal(code, exit);
    assert.ok(
      urls.some((u) => u.includes(`cli.${cmd}.ts`)),
      `the ${cmd} module was loaded`,
    );
    assert.deepEqual(
      urls.filter((u) => SERVER.test(u)),
      [],
      'server modules were loaded',
    );
  });
}
