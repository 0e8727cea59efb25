/**
 * The commands that do not serve load no HTTP server code: `cogmill materialize` and `cogmill worker` run as
 * sidecars and batch jobs, where Hono, pino and prom-client are dead weight. An engine that reads only local
 * sources loads neither object store's SDK (every tile and materialisation worker thread builds an engine). A
 * module hook records every module the process loads.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { fixtureDir } from './support/gdal.ts';

const CLI = path.join(import.meta.dirname, '..', 'src', 'cli.ts');
/** prints every resolved module URL to stderr, one per line, prefixed */
const HOOK = `data:text/javascript,${encodeURIComponent(
  "import { registerHooks } from 'node:module'; registerHooks({ resolve(s, c, next) { const r = next(s, c); process.stderr.write('LOADED ' + r.url + '\\n'); return r; } });",
)}`;

function loaded(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; urls: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', HOOK, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env });
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
    const { code, urls } = await loaded([CLI, ...args]);
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

const SDKS = /node_modules\/(@aws-sdk|@azure)\//;

test('an engine reading local sources loads neither the S3 nor the Azure SDK; an s3:// source loads the S3 one', async () => {
  const dir = await fixtureDir();
  const engine = pathToFileURL(path.join(import.meta.dirname, '..', 'src', 'render', 'engine.ts')).href;
  const script = (source: string) => `
    const { Engine } = await import(${JSON.stringify(engine)});
    const e = new Engine({ roots: [${JSON.stringify(dir)}], allowedUrlPrefixes: ['s3://bucket/'], s3: { endpoint: 'http://127.0.0.1:9' } });
    try {
      const m = await e.openMosaic({ id: 'm', sources: [${JSON.stringify(source)}] });
      const px = await e.render(m, { ...m.grid, width: 32, height: 32 });
      process.stderr.write('RENDERED ' + px.bands.length + '\\n');
    } catch (err) {
      process.stderr.write('FAILED ' + err.message + '\\n');
    }
    await e.close();`;
  const local = await loaded(['--input-type=module', '-e', script(path.join(dir, 'utm32.tif'))]);
  assert.equal(local.code, 0);
  assert.ok(
    local.urls.some((u) => u.endsWith('/src/render/warp.loop.ts')),
    'the render modules were loaded',
  );
  assert.deepEqual(
    local.urls.filter((u) => SDKS.test(u)),
    [],
    'an object store SDK was loaded',
  );
  // the same script with an s3:// source (nothing listens there: the open fails) does load the S3 SDK
  const s3 = await loaded(['--input-type=module', '-e', script('s3://bucket/a.tif')]);
  assert.equal(s3.code, 0);
  assert.ok(
    s3.urls.some((u) => /node_modules\/@aws-sdk\/client-s3\//.test(u)),
    'the S3 SDK is loaded for an s3:// source',
  );
});

/** image codecs (sharp, libvips) and the parquet reader: only for PNG / WebP / JPEG tiles and parquet catalogues */
const LAZY = /node_modules\/(sharp|@img|hyparquet)\//;

test('cogmill materialize to a local file loads neither object store SDK, nor sharp nor hyparquet, nor the ES facade of http, in any thread, nor the schema library', async () => {
  const dir = await fixtureDir();
  const out = path.join(await mkdtemp(path.join(tmpdir(), 'cogmill-imports-')), 'out.tif');
  try {
    // worker threads inherit --import: their modules are recorded too; no variable configures anything (the
    // configuration is then the schema's defaults, without the schema library)
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('COGMILL_') && !k.startsWith('AZURE_STORAGE_')),
    );
    const { code, urls } = await loaded(
      [CLI, 'materialize', path.join(dir, 'utm32.tif'), '--out', out, '--quiet', '--workers', '2'],
      env,
    );
    assert.equal(code, 0);
    assert.ok((await stat(out)).size > 0, 'the COG was written');
    assert.ok(
      urls.some((u) => u.endsWith('/src/materialize/pipeline.worker.ts')),
      'the tile workers were started',
    );
    assert.deepEqual(
      urls.filter((u) => SDKS.test(u)),
      [],
      'an object store SDK was loaded',
    );
    assert.deepEqual(
      urls.filter((u) => LAZY.test(u)),
      [],
      'sharp or hyparquet was loaded',
    );
    assert.deepEqual(
      urls.filter((u) => u.includes('/node_modules/zod/')),
      [],
      'the schema library was loaded for a command with nothing to validate',
    );
    // geotiff's HTTP client gets the built-ins without their ES facades (src/builtin.hooks.ts), in every thread
    assert.deepEqual(
      urls.filter((u) => u === 'node:http' || u === 'node:https'),
      [],
      'an ES import of http or https',
    );
    assert.equal(
      urls.filter((u) => u.endsWith('/geotiff/dist-module/source/client/http.js')).length,
      3,
      "geotiff's HTTP client (which imports them) was loaded by the main thread and two workers",
    );
  } finally {
    await rm(path.dirname(out), { recursive: true, force: true });
  }
});
