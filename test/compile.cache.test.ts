/** Worker threads reuse Node's compile cache once the composition root enabled it (src/compile.cache.ts). */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { tempDir } from './support/gdal.ts';

const ROOT = path.join(import.meta.dirname, '..');

/** Start a process that enables the cache, then a worker thread that loads the tile job; files cached. */
async function cachedFiles(): Promise<number> {
  const dir = await tempDir('cogmill-ccache-');
  const script = `
    import { Worker } from 'node:worker_threads';
    import { enableCompileCache } from ${JSON.stringify(path.join(ROOT, 'src/compile.cache.ts'))};
    if (true) enableCompileCache(process.env, ${JSON.stringify(dir)});
    await new Promise((resolve, reject) => {
      const w = new Worker(${JSON.stringify(`import(${JSON.stringify(path.join(ROOT, 'src/materialize/tile.job.ts'))})`)}, { eval: true });
      w.on('exit', resolve);
      w.on('error', reject);
    });
  `;
  // the directory is only given to enableCompileCache: the worker finds it in the environment or not at all
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.NODE_COMPILE_CACHE;
  delete env.NODE_DISABLE_COMPILE_CACHE;
  // a plain process, not a test runner's child
  for (const k of Object.keys(env)) if (k.startsWith('NODE_TEST')) delete env[k];
  await new Promise<void>((resolve, reject) =>
    execFile(process.execPath, ['--input-type=module', '-e', script], { env }, (e, _o, err) =>
      e ? reject(new Error(`${e.message}\n${err}`)) : resolve(),
    ),
  );
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).length;
}

describe('compile cache', () => {
  test('a worker thread of a process that enabled the cache writes its compiled modules there', async () => {
    const n = await cachedFiles();
    // the tile job imports dozens of modules (render, encode, deflate...): each one is cached (the main thread
    // loads only compile.cache.ts: without the directory in the environment the worker caches nothing)
    assert.ok(n >= 40, `${n} modules cached`);
  });

  test('the cogmill command turns the cache on before its first TypeScript file: a second start strips none', async () => {
    const dir = await tempDir('cogmill-ccache-cli-');
    // no NODE_COMPILE_CACHE (with it Node turns the cache on before any file): the command's own default, which is
    // under the temporary folder
    const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: dir };
    delete env.NODE_COMPILE_CACHE;
    delete env.NODE_DISABLE_COMPILE_CACHE;
    for (const k of Object.keys(env)) if (k.startsWith('NODE_TEST')) delete env[k];
    // Node's TypeScript loader (amaro, WebAssembly compiled at each start) is loaded only to strip a file
    const probe = `data:text/javascript,process.on('exit', () => process.stderr.write('amaro ' + process.moduleLoadList.some((m) => m.includes('amaro')) + '\\n'))`;
    const start = () =>
      new Promise<string>((resolve, reject) =>
        execFile(
          process.execPath,
          ['--import', probe, path.join(ROOT, 'bin/cogmill.js'), '--help'],
          { env },
          (e, _o, err) => (e ? reject(new Error(`${e.message}\n${err}`)) : resolve(err)),
        ),
      );
    assert.match(await start(), /amaro true/, 'the first start strips the sources into the cache');
    assert.match(await start(), /amaro false/, 'the second finds every file there, the entry included');
  });
});
