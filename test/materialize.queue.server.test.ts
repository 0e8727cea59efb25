/**
 * The server in queue mode (materialize.redis), against real parts: radosgw (S3), Debian's redis-server under
 * BullMQ, two `cogmill worker` OS processes, and the real app on a loopback port.
 * - POST /materialize to S3: the server plans and creates the upload, the workers render and upload the parts,
 *   the job's events show the progress of both workers summed, and the object is byte-identical to the same
 *   server's single-process materialisation of the mosaic (a file destination runs in the server itself);
 *   the server sends no part and only a few KiB to S3 (the plan), Redis gets far fewer bytes than the object has;
 * - DELETE /jobs/{id} while the workers run shards: every shard stops, the upload is aborted (nothing in
 *   ListMultipartUploads), no object, no notes, no job left active on the queue.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isFinalState, type JobView } from '../src/materialize/jobs.ts';
import { startTestServer, type TestServer } from './support/app.ts';
import { type FaultProxy, S3_REQUEST, startFaultProxy } from './support/fault.proxy.ts';
import { noiseWithOverviews, tempDir, validateCog } from './support/gdal.ts';
import { spawnWorker, startRedis, type TestRedis, type TestWorker } from './support/queue.ts';
import { type S3TestBucket, startS3Bucket } from './support/s3.bucket.ts';

const BUCKET = 'cogmill-queue-server';
const TOKEN = 'queue-server-token-0123456789abcdef';
const SHARDS = 3;
/** a guard for waits on events: generous, so a loaded machine never trips it */
const WAIT_MS = 240_000;

let s3: S3TestBucket;
let redis: TestRedis;
let proxy: FaultProxy;
let server: TestServer;
let dir = '';
let reference: Buffer;
const workers: TestWorker[] = [];
const children = new Set<ChildProcess>();
/** what the server sent to S3 (through the counting proxy): UploadPart requests and request body bytes */
const fromServer = { uploadParts: 0, bodyBytes: 0 };

const auth = { authorization: `Bearer ${TOKEN}` };
const api = (p: string, init: RequestInit = {}) =>
  fetch(`${server.url}${p}`, { ...init, headers: { ...auth, ...(init.headers ?? {}) } });
const post = (body: Record<string, unknown>) =>
  api('/materialize', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

async function until<T>(fn: () => Promise<T | undefined>, what: string): Promise<T> {
  const end = Date.now() + WAIT_MS;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const job = async (id: string) => (await (await api(`/jobs/${id}`)).json()) as JobView;
const finished = (id: string) =>
  until(async () => {
    const j = await job(id);
    return isFinalState(j.state) ? j : undefined;
  }, `job ${id} to finish`);

/** every server-sent event of a job until its stream ends */
async function events(id: string): Promise<{ event: string; data: JobView }[]> {
  const res = await api(`/jobs/${id}/events`, { signal: AbortSignal.timeout(WAIT_MS) });
  assert.equal(res.status, 200);
  const out: { event: string; data: JobView }[] = [];
  for (const block of (await res.text()).split('\n\n')) {
    const lines = block.split('\n').filter((l) => l && !l.startsWith(':'));
    const event = lines.find((l) => l.startsWith('event: '))?.slice(7);
    const data = lines.find((l) => l.startsWith('data: '))?.slice(6);
    if (event && data) out.push({ event, data: JSON.parse(data) });
  }
  return out;
}

async function notesAt(key: string): Promise<string[]> {
  return s3.keys(`${key}.cogmill/`);
}

before(async () => {
  [s3, redis, dir] = await Promise.all([startS3Bucket(BUCKET), startRedis(), tempDir('cogmill-queue-server-')]);
  const noise = path.join(dir, 'noise.tif');
  // ~85 MiB of uncompressed float32 noise (overviews included): each of 3 shards stages 8 MiB parts of its own
  await noiseWithOverviews(noise, 4096, 12, [2, 4, 8, 16]);
  proxy = await startFaultProxy(s3.settings.endpoint!, [
    {
      // counts, never fires
      name: 'count',
      match: (u, h) => {
        if (S3_REQUEST.uploadPart(u)) fromServer.uploadParts++;
        fromServer.bodyBytes += Number(h['x-amz-decoded-content-length'] ?? h['content-length'] ?? 0);
        return false;
      },
      action: { kind: 'error' },
    },
  ]);
  server = await startTestServer({
    s3: { ...s3.settings, endpoint: proxy.url },
    auth: { token: TOKEN },
    materialize: {
      allowedDestinations: [`s3://${BUCKET}/`, `${dir}/`],
      redis: redis.url,
      shards: SHARDS,
      workers: 1,
    },
    mosaics: [{ id: 'noise', sources: [noise], blockSize: 256 }],
  });
  const direct = {
    COGMILL_S3_ACCESS_KEY_ID: s3.settings.accessKeyId!,
    COGMILL_S3_SECRET_ACCESS_KEY: s3.settings.secretAccessKey!,
    COGMILL_S3_ENDPOINT: s3.settings.endpoint!,
  };
  for (let i = 0; i < 2; i++) workers.push(spawnWorker(redis.url, direct, ['--threads', '1'], children));
  // the single-process reference: the same server, a file destination (never queued: workers cannot reach it)
  const ref = path.join(dir, 'reference.tif');
  const res = await post({ mosaic: 'noise', dest: ref, compress: 'none', blocksize: 256 });
  assert.equal(res.status, 202, await res.clone().text());
  const done = await finished((await res.json()).id);
  assert.equal(done.state, 'succeeded', JSON.stringify(done.error));
  assert.equal(done.progress.workers, undefined, 'the file job ran in the server');
  reference = await readFile(ref);
  assert.deepEqual((await validateCog(ref)).errors, []);
  await Promise.all(workers.map((w) => w.ready));
});

after(async () => {
  await server?.stop();
  for (const c of children) c.kill('SIGKILL');
  redis?.stop();
  await proxy?.stop();
  await s3?.stop();
});

describe('server queue mode (materialize.redis)', () => {
  test('POST /materialize: 2 worker processes upload the parts; progress summed over both; byte-identical', async () => {
    const key = 'queue/noise.tif';
    const redisBefore = Number((await redis.info()).total_net_input_bytes);
    const serverBefore = { ...fromServer };
    const shardsBefore = workers.map((w) => w.shardsDone());
    const res = await post({ mosaic: 'noise', dest: `s3://${BUCKET}/${key}`, compress: 'none', blocksize: 256 });
    assert.equal(res.status, 202, await res.clone().text());
    const { id } = await res.json();
    const seen = await events(id);
    const last = seen.at(-1)!;
    assert.equal(last.event, 'state');
    assert.equal(last.data.state, 'succeeded', JSON.stringify(last.data.error));

    const got = await s3.download(key);
    assert.equal(got.byteLength, reference.byteLength);
    assert.ok(got.equals(reference), 'the queued object differs from the single-process file');
    assert.equal(last.data.result?.bytes, reference.byteLength);

    // each worker process ran shards; the job's progress is the sum of theirs
    const ran = workers.map((w, i) => w.shardsDone() - shardsBefore[i]);
    assert.equal(ran[0] + ran[1], SHARDS, `shards per worker: ${ran.join(', ')}`);
    assert.ok(
      ran.every((n) => n >= 1),
      `both workers ran shards: ${ran.join(', ')}`,
    );
    const progress = seen.filter((e) => e.event === 'progress').map((e) => e.data.progress);
    assert.ok(
      progress.some((p) => p.tilesDone > 0 && p.tilesDone < p.tilesTotal),
      'progress arrived while the workers ran',
    );
    assert.ok(
      progress.some((p) => p.workers === 2),
      `progress of both workers was summed: ${progress.map((p) => p.workers).join(',')}`,
    );
    const end = last.data.progress;
    assert.equal(end.tilesDone, end.tilesTotal);
    assert.deepEqual(end.shards, { total: SHARDS, done: SHARDS, running: 0 });
    assert.ok(end.parts >= SHARDS + 1, `parts: ${end.parts}`);

    // tile bytes never went through the server or Redis
    assert.equal(fromServer.uploadParts - serverBefore.uploadParts, 0, 'the server uploaded no part');
    const serverBytes = fromServer.bodyBytes - serverBefore.bodyBytes;
    assert.ok(serverBytes < got.byteLength / 100, `the server sent ${serverBytes} bytes to S3`);
    const redisBytes = Number((await redis.info()).total_net_input_bytes) - redisBefore;
    assert.ok(redisBytes < got.byteLength / 20, `Redis received ${redisBytes} bytes for ${got.byteLength}`);

    assert.equal(await s3.uploadsAt(key), 0);
    assert.deepEqual(await notesAt(key), [], 'the plan and the reports are removed');
  });

  test('an unreachable Redis: the job fails naming it, within seconds, and no upload was created', async () => {
    // the server starts with its Redis (registered mosaics are kept there), which then goes away
    const gone = await startRedis();
    await gone.cli('CONFIG', 'SET', 'requirepass', 'secret');
    const deadPort = gone.port;
    const other = await startTestServer({
      s3: { ...s3.settings },
      auth: { token: TOKEN },
      materialize: { allowedDestinations: [`s3://${BUCKET}/`], redis: `redis://:secret@127.0.0.1:${deadPort}` },
      mosaics: server.deps.config.mosaics,
    });
    gone.stop();
    try {
      const key = 'no-redis/noise.tif';
      const res = await fetch(`${other.url}/materialize`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ mosaic: 'noise', dest: `s3://${BUCKET}/${key}`, compress: 'none', blocksize: 256 }),
      });
      assert.equal(res.status, 202);
      const { id } = await res.json();
      const done = await until(async () => {
        const j = (await (await fetch(`${other.url}/jobs/${id}`, { headers: auth })).json()) as JobView;
        return isFinalState(j.state) ? j : undefined;
      }, 'the job to fail');
      assert.equal(done.state, 'failed');
      assert.equal(done.error?.kind, 'unreachable');
      assert.match(done.error?.message ?? '', new RegExp(`Redis at 127\\.0\\.0\\.1:${deadPort} did not answer`));
      assert.doesNotMatch(done.error?.message ?? '', /secret/, 'the password is not shown');
      assert.equal(await s3.uploadsAt(key), 0, 'no upload was created');
      assert.deepEqual(await notesAt(key), []);
    } finally {
      await other.stop();
    }
  });

  test('DELETE /jobs/{id} while shards run: every shard stops, the upload is aborted, nothing is left', async () => {
    const key = 'cancelled/noise.tif';
    const res = await post({ mosaic: 'noise', dest: `s3://${BUCKET}/${key}`, compress: 'none', blocksize: 256 });
    assert.equal(res.status, 202, await res.clone().text());
    const { id } = await res.json();
    // a worker reported tiles of a shard: shards are running
    await until(async () => {
      const j = await job(id);
      assert.ok(!isFinalState(j.state), `the job ended before the cancel: ${j.state}`);
      return j.progress.tilesDone > 0 ? j : undefined;
    }, 'a shard to report progress');
    assert.equal(await s3.uploadsAt(key), 1, 'the upload is open while the shards run');
    const del = await api(`/jobs/${id}`, { method: 'DELETE' });
    assert.ok(del.status === 200 || del.status === 202, `DELETE answered ${del.status}`);
    const done = await finished(id);
    assert.equal(done.state, 'cancelled');
    assert.equal(await s3.uploadsAt(key), 0, 'the upload is aborted');
    assert.equal(await s3.objectExists(key), false, 'no object at the key');
    assert.deepEqual(await notesAt(key), [], 'no notes left');
    // the workers are idle: no job of the queue is active, none waits
    assert.equal((await redis.cli('LLEN', 'bull:cogmill-materialize:active')).trim(), '0');
    assert.equal((await redis.cli('LLEN', 'bull:cogmill-materialize:wait')).trim(), '0');
    const log = workers.map((w) => w.log()).join('');
    const plan = [...log.matchAll(/"msg":"shard start","plan":"([^"]+)"/g)].at(-1)?.[1];
    assert.ok(plan, 'a worker started a shard of the job');
    assert.ok(!log.includes(`"msg":"complete","plan":"${plan}"`), 'the cancelled plan was never completed');
  });
});
