/**
 * Render threads started ahead by `cogmill materialize` (src/materialize/tile.pool.start.ts): the pool adopts them
 * instead of starting its own, and a command that stops before it has a pool is not kept alive by them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { threadsToStartAhead } from '../src/materialize/tile.pool.start.ts';
import { fixtureDir, gdalRead } from './support/gdal.ts';

const CLI = path.join(import.meta.dirname, '..', 'src', 'cli.ts');
/** prints every module URL a thread loads, one per line */
const HOOK = `data:text/javascript,${encodeURIComponent(
  "import { registerHooks } from 'node:module'; registerHooks({ resolve(s, c, next) { const r = next(s, c); process.stderr.write('LOADED ' + r.url + '\\n'); return r; } });",
)}`;

function cli(args: string[]): Promise<{ code: number | null; stderr: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    // killed after a minute: a process kept alive by idle threads fails here instead of hanging the suite
    const child = spawn(process.execPath, ['--import', HOOK, CLI, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: 60_000,
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr, ms: performance.now() - t0 }));
  });
}

const workerLoads = (stderr: string) =>
  stderr.split('\n').filter((l) => l.startsWith('LOADED ') && l.endsWith('/src/materialize/pipeline.worker.ts')).length;

describe('render threads started ahead', () => {
  it('are counted from the command line: --workers, else one per core; none where nothing is rendered here', () => {
    assert.equal(threadsToStartAhead(['a.tif', '--out', 'b.tif'], 2), 2);
    assert.equal(threadsToStartAhead(['a.tif', '-o', 'b.tif'], 8), 8);
    assert.equal(threadsToStartAhead(['a.tif', '--out=b.tif', '--workers', '3'], 2), 3);
    assert.equal(threadsToStartAhead(['a.tif', '--out', 'b.tif', '--workers=1'], 2), 1);
    assert.equal(threadsToStartAhead(['a.tif', '--out', 'b.tif', '--workers', '0'], 2), 0);
    assert.equal(threadsToStartAhead(['a.tif', '--out', 'b.tif', '--workers', 'x'], 2), 0);
    assert.equal(threadsToStartAhead(['--plan', 's3://b/k.tif', '--shard', '0/2'], 2), 2);
    for (const stop of ['--help', '-h', '--dry-run', '--complete'])
      assert.equal(threadsToStartAhead(['a.tif', '--out', 'b.tif', stop], 2), 0, stop);
    assert.equal(threadsToStartAhead(['a.tif', '--out', 'b.tif', '--plan-out', 'p.json'], 2), 0);
    assert.equal(threadsToStartAhead(['a.tif', '--out', 'b.tif', '--redis', 'redis://x'], 2), 0);
    assert.equal(threadsToStartAhead(['a.tif'], 2), 0, 'no destination: the command only reports the error');
  });

  it('are the threads the pool renders with (no second set), and the file is the mosaic', async () => {
    const dir = await fixtureDir();
    const out = path.join(await mkdtemp(path.join(tmpdir(), 'cogmill-ahead-')), 'out.tif');
    try {
      const src = path.join(dir, 'utm32.tif');
      const r = await cli(['materialize', src, '--out', out, '--workers', '2', '--quiet', '--overviews', 'sources']);
      assert.equal(r.code, 0, r.stderr.slice(-2000));
      assert.equal(workerLoads(r.stderr), 2, 'two render threads loaded their module, once each');
      assert.ok((await stat(out)).size > 0);
      // full resolution as GDAL reads the source
      const [a, b] = await Promise.all([gdalRead(out), gdalRead(src)]);
      assert.equal(a.width, b.width);
      assert.ok(a.bytes.equals(b.bytes), 'the pixels are the source');
    } finally {
      await rm(path.dirname(out), { recursive: true, force: true });
    }
  });

  it('do not keep a command that fails before rendering alive', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cogmill-ahead-'));
    try {
      const r = await cli(['materialize', path.join(dir, 'missing.tif'), '--out', path.join(dir, 'o.tif')]);
      assert.notEqual(r.code, null, 'the process ended by itself');
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /missing\.tif/);
      // (the threads were created at start; whether they got as far as loading their module before the process
      // ended depends on the machine's load, so it is not asserted: a created thread that held the process would)
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
