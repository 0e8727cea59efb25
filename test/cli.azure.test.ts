/**
 * The real `cogmill` processes with Azure, configured the conventional way (AZURE_STORAGE_CONNECTION_STRING or
 * AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY, the endpoint from COGMILL_AZURE_ENDPOINT): `cogmill materialize`
 * from az:// sources to az:// and to a file (same bytes), a refused key named in the error, and `cogmill serve`
 * exporting to an allowed az:// destination through /materialize.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { type Azurite, startAzurite } from './support/azurite.ts';
import { CLI, type ServeChild, spawnServe } from './support/cli.ts';
import { fixtureDir, tempDir, validateCog } from './support/gdal.ts';

let azurite: Azurite;
let outputs: ContainerClient;
let out = '';

before(async () => {
  let dir: string;
  [azurite, dir, out] = await Promise.all([startAzurite(), fixtureDir(), tempDir('cogmill-azcli-')]);
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  const inputs = service.getContainerClient('cogs');
  outputs = service.getContainerClient('out');
  await Promise.all([inputs.create(), outputs.create()]);
  for (const n of ['utm31', 'utm32'])
    await inputs.getBlockBlobClient(`utm/${n}.tif`).uploadData(await readFile(path.join(dir, `${n}.tif`)));
});

after(async () => {
  await azurite?.stop();
});

interface Run {
  code: number | null;
  /** the signal that ended the process, if one did */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `cogmill materialize ARGS` with only PATH, HOME and `env` in its environment */
function materialize(args: readonly string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'materialize', ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout, stderr: signal ? `killed by ${signal}; stderr: ${stderr}` : stderr }),
    );
  });
}

const connectionEnv = () => ({ AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString });

describe('cogmill materialize with Azure', () => {
  test('az:// sources to az:// and to a file: the same bytes, a valid COG', async () => {
    const common = ['az://cogs/utm/', '--blocksize', '256', '--workers', '2', '--progress', 'none'];
    const toBlob = await materialize([...common, '--out', 'az://out/cli/two.tif'], connectionEnv());
    assert.equal(toBlob.code, 0, toBlob.stderr);
    const summary = JSON.parse(toBlob.stdout);
    assert.equal(summary.location, 'az://out/cli/two.tif');
    const file = path.join(out, 'two.tif');
    const toFile = await materialize([...common, '--out', file], connectionEnv());
    assert.equal(toFile.code, 0, toFile.stderr);
    const blob = await outputs.getBlockBlobClient('cli/two.tif').downloadToBuffer();
    const local = await readFile(file);
    assert.equal(summary.bytes, local.byteLength);
    assert.ok(blob.equals(local), 'the blob differs from the file written by the same command');
    const v = await validateCog(file);
    assert.deepEqual([v.errors, v.warnings], [[], []]);
  });

  test('a key the service refuses: exit 1, the message names the container and AZURE_STORAGE_KEY, no blob', async () => {
    const run = await materialize(['az://cogs/utm/', '--out', 'az://out/cli/denied.tif', '--progress', 'none'], {
      AZURE_STORAGE_ACCOUNT: azurite.account,
      AZURE_STORAGE_KEY: Buffer.alloc(64, 5).toString('base64'),
      COGMILL_AZURE_ENDPOINT: azurite.endpoint,
    });
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /access denied to container cogs/);
    assert.match(run.stderr, /AZURE_STORAGE_KEY/);
    assert.equal(await outputs.getBlockBlobClient('cli/denied.tif').exists(), false);
  });
});

describe('static shards to Azure (separate processes)', () => {
  test('--plan-out, three --plan processes given JOB_COMPLETION_INDEX, --complete: the same bytes as one process', async () => {
    const plan = path.join(out, 'plan.json');
    const quiet = ['--progress', 'none'];
    const planned = await materialize(
      ['az://cogs/utm/', '--out', 'az://out/static/two.tif', '--plan-out', plan, '--shards', '3', ...quiet],
      connectionEnv(),
    );
    assert.equal(planned.code, 0, planned.stderr);
    const shards = await Promise.all(
      [0, 1, 2].map((i) =>
        materialize(['--plan', plan, ...quiet], { ...connectionEnv(), JOB_COMPLETION_INDEX: String(i) }),
      ),
    );
    for (const r of shards) assert.equal(r.code, 0, r.stderr);
    assert.equal(await outputs.getBlockBlobClient('static/two.tif').exists(), false, 'nothing before --complete');
    const done = await materialize(['--plan', plan, '--complete', ...quiet], connectionEnv());
    assert.equal(done.code, 0, done.stderr);
    const file = path.join(out, 'static.tif');
    const one = await materialize(['az://cogs/utm/', '--out', file, '--shards', '3', ...quiet], connectionEnv());
    assert.equal(one.code, 0, one.stderr);
    const blob = await outputs.getBlockBlobClient('static/two.tif').downloadToBuffer();
    assert.ok(blob.equals(await readFile(file)), 'the sharded blob differs from the single-process file');
  });
});

describe('cogmill serve with Azure', () => {
  let server: ServeChild | undefined;

  after(() => server?.kill());

  test('serves az:// sources and exports to an allowed az:// destination; other containers are refused', async () => {
    server = await spawnServe(['az://cogs/utm/'], {
      env: {
        AZURE_STORAGE_ACCOUNT: azurite.account,
        AZURE_STORAGE_KEY: azurite.accountKey,
        COGMILL_AZURE_ENDPOINT: azurite.endpoint,
        COGMILL_AUTH_ALLOW_UNAUTHENTICATED: 'true',
        COGMILL_MATERIALIZE_ALLOWED_DESTINATIONS: 'az://out/served/',
      },
    });
    const ready = await fetch(`${server.url}/readyz`);
    assert.equal(ready.status, 200, await ready.text());

    const refused = await fetch(`${server.url}/materialize?mosaic=default&dest=az://other/x.tif`);
    assert.equal(refused.status, 403);
    assert.match((await refused.json()).message, /not under an allowed destination/);

    const res = await fetch(`${server.url}/materialize?mosaic=default&dest=az://out/served/two.tif&blocksize=256`);
    assert.equal(res.status, 202, await res.clone().text());
    const { id } = (await res.json()) as { id: string };
    // the job's event stream ends when the job does
    const events = await (await fetch(`${server.url}/jobs/${id}/events`)).text();
    const last = events
      .split('\n')
      .filter((l) => l.startsWith('data: '))
      .map((l) => JSON.parse(l.slice(6)) as { state: string; destination: string; error?: unknown })
      .at(-1);
    assert.equal(last?.state, 'succeeded', JSON.stringify(last?.error));
    assert.equal(last?.destination, 'az://out/served/two.tif');
    const blob = await outputs.getBlockBlobClient('served/two.tif').downloadToBuffer();
    const file = path.join(out, 'served.tif');
    await writeFile(file, blob);
    const v = await validateCog(file);
    assert.deepEqual([v.errors, v.warnings], [[], []]);
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /cogmill_materialize_parts_total\{sink="azure"\} [1-9]/);
  });
});
