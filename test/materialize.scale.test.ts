/**
 * One materialisation across many processes, against real parts: radosgw (S3), Debian's redis-server under
 * BullMQ, and every worker, shard and coordinator a separate OS process of the command line.
 * - static shards (Kubernetes Indexed Job style): --plan-out, 3 processes told their index by JOB_COMPLETION_INDEX,
 *   --complete: the object is byte-identical to the single-process file output, a valid COG, no upload left;
 * - a queue: 3 `cogmill worker` processes and a coordinator: byte-identical again, and Redis received far fewer
 *   bytes than the object has (tile bytes never travel through it);
 * - a coordinator killed with SIGKILL part-way, then the same command again: it resumes (fewer tiles rendered
 *   than the whole) and the object is byte-identical.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { S3_REQUEST, startFaultProxy } from './support/fault.proxy.ts';
import { noiseWithOverviews, tempDir, validateCog } from './support/gdal.ts';
import { startStaticServer } from './support/http.server.ts';
import { spawnWorker, startRedis, type TestRedis } from './support/queue.ts';
import { type S3TestBucket, startS3Bucket } from './support/s3.bucket.ts';

const BUCKET = 'cogmill-scale';
const NODE = process.execPath;
const CLI = path.join(import.meta.dirname, '..', 'src', 'cli.ts');

let s3: S3TestBucket;
let dir = '';
let noise = '';
let reference: Buffer;
let redis: TestRedis | undefined;
let redisPort = 0;
const children = new Set<ChildProcess>();

/** ~21 MiB of uncompressed float32 noise with overviews: several 5 MiB parts per shard, glue needed at the edges */
const COMMON = ['--compress', 'none', '--blocksize', '256', '--min-part-bytes', '262144', '--part-size-mib', '1'];

/** `cogmill materialize SOURCE --out s3://BUCKET/KEY` in `shards` shards queued on Redis at `redisUrl`. */
function queuedArgs(source: string, key: string, shards: number, redisUrl: string): string[] {
  return [
    'materialize',
    source,
    '--out',
    `s3://${BUCKET}/${key}`,
    ...COMMON,
    '--shards',
    String(shards),
    '--redis',
    redisUrl,
  ];
}
/** radosgw's smallest part, lowered like the CLI's --min-part-bytes (S3's 5 MiB would make every shard tiny) */
const MIN_PART = 262144;

function env(): Record<string, string> {
  return {
    COGMILL_S3_ACCESS_KEY_ID: s3.settings.accessKeyId!,
    COGMILL_S3_SECRET_ACCESS_KEY: s3.settings.secretAccessKey!,
    COGMILL_S3_ENDPOINT: s3.settings.endpoint!,
  };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], extraEnv: Record<string, string> = {}, onStart?: (c: ChildProcess) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [CLI, ...args], {
      env: { ...process.env, ...env(), ...extraEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    onStart?.(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => {
      stdout += d;
    });
    child.stderr!.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      children.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

async function notesAt(key: string): Promise<string[]> {
  const res = await s3.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${key}.cogmill/` }));
  return (res.Contents ?? []).map((o) => o.Key!);
}

before(async () => {
  [s3, dir] = await Promise.all([
    startS3Bucket(BUCKET, { multipartMinPartBytes: MIN_PART }),
    tempDir('cogmill-scale-'),
  ]);
  noise = path.join(dir, 'noise.tif');
  await noiseWithOverviews(noise, 2048, 11, [2, 4, 8]);
  // the single-process reference: one process, one shard, to a file
  const ref = path.join(dir, 'reference.tif');
  const run = await cli(['materialize', noise, '--out', ref, ...COMMON, '--workers', '2']);
  assert.equal(run.code, 0, run.stderr);
  reference = await readFile(ref);
  const v = await validateCog(ref);
  assert.deepEqual(v.errors, []);
});

after(async () => {
  for (const c of children) c.kill('SIGKILL');
  redis?.stop();
  await s3?.stop();
});

describe('static shards (Indexed Job)', () => {
  test('--plan-out, 3 processes with JOB_COMPLETION_INDEX, --complete: byte-identical, valid, nothing left', async () => {
    const key = 'static/noise.tif';
    const planFile = path.join(dir, 'plan.json');
    const planned = await cli([
      'materialize',
      noise,
      '--out',
      `s3://${BUCKET}/${key}`,
      ...COMMON,
      '--shards',
      '3',
      '--plan-out',
      planFile,
    ]);
    assert.equal(planned.code, 0, planned.stderr);
    const plan = JSON.parse(await readFile(planFile, 'utf8'));
    assert.equal(plan.shards.length, 3);
    assert.equal(await s3.uploadsAt(key), 1, 'the upload exists before any shard runs');
    const shards = await Promise.all(
      [0, 1, 2].map((i) =>
        cli(['materialize', '--plan', planFile, '--workers', '1'], { JOB_COMPLETION_INDEX: String(i) }),
      ),
    );
    for (const [i, r] of shards.entries()) {
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout).shards, [i], 'each index runs its own shard');
    }
    const done = await cli(['materialize', '--plan', `s3://${BUCKET}/${key}`, '--complete']);
    assert.equal(done.code, 0, done.stderr);
    const got = await s3.download(key);
    assert.equal(got.byteLength, reference.byteLength);
    assert.ok(got.equals(reference), 'the sharded object differs from the single-process file');
    assert.ok(JSON.parse(done.stdout).parts >= 3, 'several parts');
    assert.equal(await s3.uploadsAt(key), 0);
    assert.deepEqual(await notesAt(key), [], 'the plan and the reports are removed');
  });
});

describe('queue (BullMQ on redis-server) and resume', () => {
  before(async () => {
    redis = await startRedis();
    redisPort = redis.port;
  });

  test('3 worker processes + a coordinator: byte-identical; no tile byte goes through Redis or the coordinator', async () => {
    const url = `redis://127.0.0.1:${redisPort}`;
    const workers = [0, 1, 2].map(() => spawnWorker(url, env(), ['--threads', '1'], children));
    const logs = () => workers.map((w) => w.log());
    // the coordinator reaches S3 through a proxy that counts what it sends (the workers go straight to radosgw)
    const sent = { uploadParts: 0, bodyBytes: 0 };
    const proxy = await startFaultProxy(s3.settings.endpoint!, [
      {
        name: 'count',
        match: (u, h) => {
          if (S3_REQUEST.uploadPart(u)) sent.uploadParts++;
          sent.bodyBytes += Number(h['x-amz-decoded-content-length'] ?? h['content-length'] ?? 0);
          return false;
        },
        action: { kind: 'error' },
      },
    ]);
    try {
      const before = Number((await redis!.info()).total_net_input_bytes);
      const key = 'queue/noise.tif';
      const run = await cli([...queuedArgs(noise, key, 3, url), '--s3-endpoint', proxy.url]);
      assert.equal(run.code, 0, `${run.stderr}\n${logs().join('\n')}`);
      const got = await s3.download(key);
      assert.ok(got.equals(reference), 'the queued object differs from the single-process file');
      const redisBytes = Number((await redis!.info()).total_net_input_bytes) - before;
      assert.ok(
        redisBytes < reference.byteLength / 20,
        `Redis received ${redisBytes} bytes for a ${reference.byteLength}-byte object`,
      );
      assert.equal(sent.uploadParts, 0, 'the coordinator uploaded no part');
      assert.ok(sent.bodyBytes < reference.byteLength / 100, `the coordinator sent ${sent.bodyBytes} bytes to S3`);
      assert.ok(sent.bodyBytes > 0, 'the coordinator saved the plan through the proxy');
      // the shards ran in the worker processes, not in the coordinator
      const ran = workers.map((w) => w.shardsDone());
      assert.equal(
        ran.reduce((a, b) => a + b, 0),
        3,
        `shards per worker: ${ran.join(', ')}`,
      );
      assert.equal(await s3.uploadsAt(key), 0);
      const v = await validateCog(path.join(dir, 'reference.tif'));
      assert.deepEqual(v.errors, []);
    } finally {
      await proxy.stop();
      for (const w of workers) w.stop();
    }
  });

  test('a worker killed with SIGKILL mid-shard: its shard runs again on another worker, same bytes', async () => {
    const url = `redis://127.0.0.1:${redisPort}`;
    // a short lock so the dead worker's shard is taken over quickly
    const start = () => spawnWorker(url, env(), ['--threads', '1', '--lock-ms', '2000'], children);
    const victim = start();
    const survivor = start();
    let killedMidShard = false;
    const poll = setInterval(() => {
      if (!killedMidShard && victim.log().includes('"shard start"')) {
        killedMidShard = true;
        victim.child.kill('SIGKILL');
      }
    }, 20);
    try {
      const key = 'killed-worker/noise.tif';
      const run = await cli(queuedArgs(noise, key, 3, url));
      assert.equal(run.code, 0, `${run.stderr}\n${victim.log()}\n${survivor.log()}`);
      assert.ok(killedMidShard, 'the first worker was killed while it ran a shard');
      assert.equal(victim.shardsDone(), 0, 'the killed worker finished no shard');
      assert.equal(survivor.shardsDone(), 3, 'the survivor ran every shard, the lost one again');
      const got = await s3.download(key);
      assert.ok(got.equals(reference), 'the object differs from the single-process file');
      assert.equal(await s3.uploadsAt(key), 0);
    } finally {
      clearInterval(poll);
      survivor.stop();
    }
  });

  test('Ctrl-C of the coordinator: every shard stops, no upload listed, no object, no notes', async () => {
    const url = `redis://127.0.0.1:${redisPort}`;
    const workers = [0, 1].map(() => spawnWorker(url, env(), ['--threads', '1'], children));
    try {
      const key = 'cancelled/noise.tif';
      let interrupted = false;
      // deflate at level 9 over float noise: shards that take a while (without compression a shard can finish
      // between its 'shard start' line and the interrupt reaching it)
      const args = [...queuedArgs(noise, key, 3, url), '--compress', 'deflate', '--level', '9'];
      const run = await cli(args, {}, (child) => {
        const poll = setInterval(() => {
          if (!interrupted && workers.some((w) => w.log().includes('"shard start"'))) {
            interrupted = true;
            clearInterval(poll);
            child.kill('SIGINT');
          }
        }, 20);
        child.on('close', () => clearInterval(poll));
      });
      assert.ok(interrupted);
      assert.equal(run.code, 130, run.stderr);
      assert.equal(await s3.uploadsAt(key), 0, 'the upload is aborted');
      assert.equal(await s3.objectExists(key), false);
      assert.deepEqual(await notesAt(key), []);
      assert.equal(
        workers.reduce((n, w) => n + w.shardsDone(), 0),
        0,
        'no shard ran to its end',
      );
    } finally {
      for (const w of workers) w.stop();
    }
  });

  test('one worker, 6 shards of a plan: one thread pool and one mosaic for them all (source headers read once)', async () => {
    const files = await startStaticServer(dir);
    const worker = spawnWorker(redis!.url, env(), ['--threads', '1'], children);
    try {
      await worker.ready;
      const key = 'one-pool/noise.tif';
      const run = await cli(queuedArgs(`${files.url}/noise.tif`, key, 6, redis!.url));
      assert.equal(run.code, 0, `${run.stderr}\n${worker.log()}`);
      assert.equal(worker.shardsDone(), 6);
      assert.ok((await s3.download(key)).equals(reference), 'the object differs from the single-process file');
      // every engine (the coordinator's, the worker's, each render thread's) reads the header from offset 0 once;
      // a pool per shard job would add one per shard
      const headerReads = files.requests.filter((r) => /^bytes=0-/.test(r.range ?? '')).length;
      assert.ok(headerReads >= 3, `header reads: ${headerReads}`);
      assert.ok(headerReads <= 4, `header reads: ${headerReads} for 6 shards (coordinator, worker, its pool, glue)`);
    } finally {
      worker.stop();
      await files.stop();
    }
  });

  test('a coordinator killed with SIGKILL part-way: the same command resumes, renders fewer tiles, same bytes', async () => {
    const key = 'resume/noise.tif';
    const args = [
      'materialize',
      noise,
      '--out',
      `s3://${BUCKET}/${key}`,
      ...COMMON,
      '--shards',
      '6',
      '--workers',
      '1',
      '--max-uploads',
      '1',
    ];
    let killed = false;
    const first = await cli(args, {}, (child) => {
      const poll = setInterval(async () => {
        const reports = (await notesAt(key).catch(() => [])).filter((k) => k.includes('/shard-'));
        if (reports.length >= 1 && !killed) {
          killed = true;
          clearInterval(poll);
          child.kill('SIGKILL');
        }
      }, 100);
      child.on('close', () => clearInterval(poll));
    });
    assert.ok(killed, `the first run ended before it could be killed: ${first.stderr}`);
    assert.equal(first.code, null);
    assert.equal(await s3.uploadsAt(key), 1, 'the killed run left its upload (to resume)');
    const second = await cli(args);
    assert.equal(second.code, 0, second.stderr);
    const summary = JSON.parse(second.stdout);
    assert.equal(summary.resumed, true);
    assert.ok(summary.shardsRun < 6 && summary.shardsRun >= 1, `shards run again: ${summary.shardsRun}`);
    assert.ok(summary.tilesRendered < summary.tiles, `${summary.tilesRendered} of ${summary.tiles} tiles rendered`);
    const got = await s3.download(key);
    assert.ok(got.equals(reference), 'the resumed object differs from the single-process file');
    assert.equal(await s3.uploadsAt(key), 0);
    assert.deepEqual(await notesAt(key), []);
  });
});
