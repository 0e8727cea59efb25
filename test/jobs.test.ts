/**
 * Materialisation jobs: the registry on its own (real materialisations to files), then the job API through the
 * real HTTP app against a real S3 server (radosgw), with the fault proxy between them to slow uploads down.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { parseJobOptions } from '../src/materialize/jobs.options.ts';
import { isFinalState, JobQueueFullError, JobRegistry, type JobView } from '../src/materialize/jobs.ts';
import { materialize } from '../src/materialize/pipeline.ts';
import { SinkFile } from '../src/materialize/sink.file.ts';
import { Engine } from '../src/render/engine.ts';
import { RenderError } from '../src/render/errors.ts';
import type { Mosaic } from '../src/render/mosaic.ts';
import { startTestServer, type TestServer } from './support/app.ts';
import { spawnServe } from './support/cli.ts';
import { type FaultProxy, S3_REQUEST, startFaultProxy } from './support/fault.proxy.ts';
import { fixtureDir, tempDir, validateCog } from './support/gdal.ts';
import { type S3TestBucket, startS3Bucket } from './support/s3.bucket.ts';

const TOKEN = 'jobs-test-token-0123456789abcdef';
const BUCKET = 'cogmill-jobs';
/** a guard for waits on events (a job's end, an upload under way): generous, so a loaded machine never trips it */
const WAIT_MS = 240_000;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `fn` until it returns a value (not undefined), at most `timeoutMs`. */
async function until<T>(
  fn: () => Promise<T | undefined> | T | undefined,
  what: string,
  timeoutMs = WAIT_MS,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

let dir = '';
let out = '';

before(async () => {
  [dir, out] = await Promise.all([fixtureDir(), tempDir('cogmill-jobs-')]);
});

describe('job options', () => {
  test('parsed from strings or JSON values, errors name the option', () => {
    const { options, asked } = parseJobOptions({
      compress: 'ZSTD',
      level: '9',
      blocksize: 256,
      predictor: '2',
      overviews: 'sources',
      statistics: 'false',
      recompress: 'yes',
    });
    assert.equal(options.compression, 'zstd');
    assert.equal(options.recompress, true);
    assert.equal(options.overviews, 'sources');
    assert.equal(options.level, 9);
    assert.equal(options.blockSize, 256);
    assert.equal(options.predictor, 2);
    assert.equal(options.statistics, false);
    assert.deepEqual(asked, {
      compress: 'zstd',
      level: 9,
      blocksize: 256,
      predictor: '2',
      overviews: 'sources',
      statistics: false,
      recompress: true,
    });
    assert.equal(parseJobOptions({}).options.compression, 'deflate');
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ compress: 'gzip' }, /^compress: must be one of none, deflate/],
      [{ level: 12 }, /^level: must be an integer from 1 to 9/],
      [{ compress: 'lzw', level: 3 }, /^level: applies to compress=deflate/],
      [{ quality: 80 }, /^quality: applies to compress=jpeg and webp/],
      [{ blocksize: 500 }, /^blocksize: must be a multiple of 16/],
      [{ blocksize: 'big' }, /^blocksize: must be an integer/],
      [{ predictor: 4 }, /^predictor: must be one of auto, 1, 2, 3/],
      [{ overview_resampling: 'lanczos' }, /^overview_resampling: must be one of/],
      [{ statistics: 'maybe' }, /^statistics: must be true or false/],
      [{ recompress: 2 }, /^recompress: must be true or false/],
      [{ overviews: 'gdal' }, /^overviews: must be one of finer, sources/],
    ];
    for (const [input, message] of bad) {
      assert.throws(
        () => parseJobOptions(input),
        (e: unknown) => e instanceof RenderError && e.code === 400 && message.test(e.message),
        JSON.stringify(input),
      );
    }
  });
});

describe('job registry', () => {
  let engine: Engine;
  let mosaic: Mosaic;
  before(async () => {
    engine = new Engine({ roots: [dir] });
    mosaic = await engine.openMosaic({
      id: 'two',
      sources: ['utm32', 'utm31'].map((n) => path.join(dir, `${n}.tif`)),
      blockSize: 256,
    });
  });
  after(() => engine.close());

  const fileJob = (name: string) => {
    const file = path.join(out, `${name}.tif`);
    return {
      file,
      request: {
        mosaic: 'two',
        destination: file,
        run: (hooks: Parameters<typeof materialize>[4]) =>
          materialize(engine, mosaic, new SinkFile(file), { workers: 1 }, hooks),
      },
    };
  };

  test('bounded concurrency: with one slot the second job waits, then both succeed with full progress', async () => {
    const order: string[] = [];
    const jobs = new JobRegistry({
      maxConcurrentJobs: 1,
      onStart: (j) => order.push(`start ${j.id}`),
      onFinish: (j) => order.push(`finish ${j.id}`),
    });
    const a = fileJob('reg-a');
    const b = fileJob('reg-b');
    const ja = jobs.create(a.request);
    const jb = jobs.create(b.request);
    assert.equal(ja.state, 'running');
    assert.equal(jb.state, 'queued');
    assert.deepEqual(jobs.counts, { queued: 1, running: 1, retained: 2 });
    assert.equal(jobs.activeFor(b.file)?.id, jb.id);
    const events: string[] = [];
    const stop = jobs.subscribe(jb.id, (e) => events.push(`${e.type}:${e.job.state}`));
    const doneA = await jobs.wait(ja.id);
    const doneB = await jobs.wait(jb.id);
    stop();
    assert.equal(doneA?.state, 'succeeded');
    assert.equal(doneB?.state, 'succeeded');
    assert.deepEqual(
      order,
      [`start ${ja.id}`, `finish ${ja.id}`, `start ${jb.id}`, `finish ${jb.id}`],
      'b started after a finished',
    );
    assert.equal(events[0], 'state:running');
    assert.equal(events.at(-1), 'state:succeeded');
    assert.ok(events.includes('progress:running'));
    const p = doneB!.progress;
    assert.equal(p.tilesDone, p.tilesTotal);
    assert.equal(p.percent, 100);
    assert.equal(p.etaSeconds, 0);
    assert.equal(p.bytesWritten, (await stat(b.file)).size);
    assert.equal(doneB!.result?.bytes, p.bytesWritten);
    assert.ok(doneB!.result!.bytesPerSecond > 0);
    assert.equal(jobs.activeFor(b.file), undefined);
  });

  /** the file sink's temporary files for `file`: `.NAME.HEX.partial` in its folder */
  async function partials(file: string): Promise<string[]> {
    const base = path.basename(file);
    return (await readdir(path.dirname(file))).filter((n) => n.startsWith(`.${base}.`) && n.includes('.partial'));
  }

  test('cancel: a queued job at once, a running one once its sink is aborted; nothing is left', async () => {
    const jobs = new JobRegistry({ maxConcurrentJobs: 1 });
    const a = fileJob('cancel-a');
    const b = fileJob('cancel-b');
    // job a's first write waits for the test: the job is certainly running, its temporary file open
    let firstWrite: () => void = () => {};
    const writing = new Promise<void>((r) => {
      firstWrite = r;
    });
    let letGo: () => void = () => {};
    const gate = new Promise<void>((r) => {
      letGo = r;
    });
    const ja = jobs.create({
      ...a.request,
      run: (hooks) => {
        const sink = new SinkFile(a.file);
        const write = sink.write.bind(sink);
        sink.write = async (c: Uint8Array) => {
          firstWrite();
          await gate;
          return write(c);
        };
        return materialize(engine, mosaic, sink, { workers: 1 }, hooks);
      },
    });
    const jb = jobs.create(b.request);
    const cb = jobs.cancel(jb.id);
    assert.equal(cb?.state, 'cancelled');
    assert.equal(cb?.startedAt, null);
    await writing;
    assert.equal((await partials(a.file)).length, 1, 'job a is writing its temporary file');
    const ca = jobs.cancel(ja.id);
    assert.equal(ca?.state, 'running');
    assert.equal(ca?.cancelRequested, true);
    letGo();
    const done = await jobs.wait(ja.id);
    assert.equal(done?.state, 'cancelled');
    assert.equal(done?.error?.kind, 'cancelled');
    await assert.rejects(stat(a.file), { code: 'ENOENT' });
    await assert.rejects(stat(b.file), { code: 'ENOENT' });
    assert.deepEqual(await partials(a.file), [], 'no temporary file left');
    assert.deepEqual(await partials(b.file), []);
    assert.equal(jobs.cancel('no-such-job'), undefined);
  });

  test('a failing job reports its error; the queue is bounded; finished jobs are forgotten', async () => {
    const jobs = new JobRegistry({ maxConcurrentJobs: 1, maxQueuedJobs: 1, retainMs: 300 });
    // a destination whose folder is a file: the sink cannot be opened
    const blocked = path.join(out, 'blocker', 'x.tif');
    await writeFile(path.dirname(blocked), 'not a folder');
    const failing = jobs.create({
      mosaic: 'two',
      destination: blocked,
      run: (hooks) => materialize(engine, mosaic, new SinkFile(blocked), { workers: 0 }, hooks),
    });
    const queued = jobs.create(fileJob('bounded').request);
    assert.equal(queued.state, 'queued');
    assert.throws(() => jobs.create(fileJob('refused').request), JobQueueFullError);
    const f = await jobs.wait(failing.id);
    assert.equal(f?.state, 'failed');
    assert.equal(f?.error?.status, 502);
    assert.match(f!.error!.message, /cannot write .*blocker\/x\.tif: (EEXIST|ENOTDIR)/);
    assert.equal(jobs.list().length, 2);
    await jobs.wait(queued.id);
    assert.equal(jobs.get(queued.id)?.state, 'succeeded');
    await until(() => (jobs.list().length === 0 ? true : undefined), 'finished jobs to be forgotten after retainMs');
    assert.equal(jobs.get(failing.id), undefined);
  });

  test('cancelAll (shutdown) cancels everything and refuses new jobs', async () => {
    const jobs = new JobRegistry({ maxConcurrentJobs: 1 });
    const a = jobs.create(fileJob('all-a').request);
    const b = jobs.create(fileJob('all-b').request);
    await jobs.cancelAll('server stopping');
    assert.equal(jobs.get(a.id)?.state, 'cancelled');
    assert.equal(jobs.get(b.id)?.state, 'cancelled');
    assert.throws(() => jobs.create(fileJob('late').request), JobQueueFullError);
  });
});

describe('job API (HTTP, radosgw)', () => {
  let s3: S3TestBucket;
  let proxy: FaultProxy;
  let server: TestServer;
  let spool = '';
  let local = '';
  const auth = { authorization: `Bearer ${TOKEN}` };

  before(async () => {
    s3 = await startS3Bucket(BUCKET);
    proxy = await startFaultProxy(s3.settings.endpoint!, []);
    spool = await tempDir('cogmill-spool-');
    local = await tempDir('cogmill-local-');
    // a larger mosaic for jobs that must still be running when the test acts: the two zones at 5 m
    server = await startTestServer({
      s3: { ...s3.settings, endpoint: proxy.url },
      auth: { token: TOKEN },
      materialize: {
        allowedDestinations: [`s3://${BUCKET}/exports/`, `${local}/`],
        workers: 2,
        maxConcurrentJobs: 1,
        spoolDir: spool,
      },
      mosaics: [
        { id: 'two', sources: ['utm32', 'utm31'].map((n) => path.join(dir, `${n}.tif`)), blockSize: 256 },
        {
          id: 'fine',
          sources: ['utm32', 'utm31'].map((n) => path.join(dir, `${n}.tif`)),
          blockSize: 256,
          resolution: 5,
        },
      ],
    });
  });

  after(async () => {
    await server?.stop();
    await proxy?.stop();
    await s3?.stop();
  });

  const api = (p: string, init: RequestInit = {}) =>
    fetch(`${server.url}${p}`, { ...init, headers: { ...auth, ...(init.headers as Record<string, string>) } });

  const post = (body: unknown) =>
    api('/materialize', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  async function finished(id: string): Promise<JobView> {
    return until(async () => {
      const j = (await (await api(`/jobs/${id}`)).json()) as JobView;
      return isFinalState(j.state) ? j : undefined;
    }, `job ${id} to finish`);
  }

  /** every server-sent event of a stream until it ends: { event, data } */
  async function readEvents(p: string): Promise<{ event: string; data: JobView }[]> {
    const res = await api(p, { signal: AbortSignal.timeout(WAIT_MS) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const text = await res.text();
    const events: { event: string; data: JobView }[] = [];
    for (const block of text.split('\n\n')) {
      const lines = block.split('\n').filter((l) => l && !l.startsWith(':'));
      if (!lines.length) continue;
      const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message';
      const data = lines
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n');
      events.push({ event, data: JSON.parse(data) });
    }
    return events;
  }

  test('GET /materialize: 202 + Location; the job succeeds with full progress; the object is a valid COG', async () => {
    const key = 'exports/two.tif';
    const res = await api(
      `/materialize?mosaic=two&dest=${encodeURIComponent(`s3://${BUCKET}/${key}`)}&compress=deflate&blocksize=256`,
    );
    assert.equal(res.status, 202);
    const body = await res.json();
    assert.match(body.id, /^[0-9a-f-]{36}$/);
    assert.ok(['queued', 'running'].includes(body.state));
    assert.equal(body.destination, `s3://${BUCKET}/${key}`);
    assert.equal(res.headers.get('location'), `/jobs/${body.id}`);
    assert.equal(body.links.self, `${server.url}/jobs/${body.id}`);
    assert.equal(body.links.events, `${server.url}/jobs/${body.id}/events`);
    const job = await finished(body.id);
    assert.equal(job.state, 'succeeded', JSON.stringify(job.error));
    assert.equal(job.progress.tilesDone, job.progress.tilesTotal);
    assert.ok(job.progress.tilesTotal > 0);
    assert.equal(job.progress.percent, 100);
    assert.equal(job.progress.parts, 1);
    assert.equal(job.result?.bytes, job.progress.bytesWritten);
    assert.equal(job.result?.parts, 1);
    assert.deepEqual(job.options, { compress: 'deflate', blocksize: 256 });
    const head = await s3.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    assert.equal(head.ContentLength, job.result?.bytes);
    assert.equal(head.ETag, job.result?.etag);
    const file = path.join(out, 'api-two.tif');
    await writeFile(file, await s3.download(key));
    const v = await validateCog(file);
    assert.deepEqual([v.errors, v.warnings], [[], []], v.output);
    // the export of the same mosaic with the same options is the same file
    const exp = await api('/mosaics/two/export.tif?blocksize=256');
    assert.equal(exp.status, 200);
    assert.equal(Number(exp.headers.get('content-length')), job.result?.bytes);
    assert.equal(exp.headers.get('content-disposition'), 'attachment; filename="two.tif"');
    assert.ok(
      Buffer.from(await exp.arrayBuffer()).equals(await readFile(file)),
      'export.tif differs from the S3 object',
    );
    assert.deepEqual(
      await until(async () => ((await readdir(spool)).length === 0 ? true : undefined), 'the spool to empty'),
      true,
    );
    const list = await (await api('/jobs')).json();
    assert.ok(list.jobs.some((j: JobView) => j.id === body.id));
    const exportJob = list.jobs.find((j: JobView) => j.destination === 'download');
    assert.equal(exportJob?.result?.location, 'download', 'the spool path is not shown');
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    assert.match(metrics, /cogmill_materialize_jobs_total\{state="succeeded"\} [1-9]/);
    assert.match(metrics, /cogmill_materialize_parts_total\{sink="s3"\} [1-9]/);
  });

  test('POST /materialize + events: state, progress, then the final state; a local file destination', async () => {
    const file = path.join(local, 'fine.tif');
    const res = await post({ mosaic: 'fine', dest: file, compress: 'none' });
    assert.equal(res.status, 202);
    const { id } = await res.json();
    const events = await readEvents(`/jobs/${id}/events`);
    assert.equal(events[0].event, 'state');
    const last = events.at(-1)!;
    assert.equal(last.event, 'state');
    assert.equal(last.data.state, 'succeeded');
    const progress = events.filter((e) => e.event === 'progress').map((e) => e.data.progress.tilesDone);
    assert.ok(progress.length >= 1, 'progress events arrived');
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i] >= progress[i - 1], 'tilesDone never goes back');
    assert.equal(last.data.progress.tilesDone, last.data.progress.tilesTotal);
    assert.equal((await stat(file)).size, last.data.result?.bytes);
    // a finished job's stream is its final state alone
    const again = await readEvents(`/jobs/${id}/events`);
    assert.deepEqual(
      again.map((e) => [e.event, e.data.state]),
      [['state', 'succeeded']],
    );
  });

  test('DELETE /jobs/{id} mid-upload: cancelled, no upload listed, no object; queued jobs wait for the slot', async () => {
    // hold every part 2 s so the job is mid-upload when it is cancelled
    proxy.setRules([
      { name: 'slow', method: 'PUT', match: S3_REQUEST.uploadPart, action: { kind: 'delay', ms: 2000 } },
    ]);
    try {
      const key = 'exports/cancelled.tif';
      const a = await (await post({ mosaic: 'fine', dest: `s3://${BUCKET}/${key}`, compress: 'none' })).json();
      const b = await (await post({ mosaic: 'two', dest: `s3://${BUCKET}/exports/queued.tif` })).json();
      assert.equal(b.state, 'queued', 'one job runs at a time (materialize.maxConcurrentJobs=1)');
      const busy = await post({ mosaic: 'two', dest: `s3://${BUCKET}/${key}` });
      assert.equal(busy.status, 409);
      assert.match((await busy.json()).message, new RegExp(`job ${a.id} is already writing`));
      const cb = await api(`/jobs/${b.id}`, { method: 'DELETE' });
      assert.equal(cb.status, 200);
      assert.equal((await cb.json()).state, 'cancelled');
      await until(() => ((proxy.stats.faults.slow ?? 0) >= 1 ? true : undefined), 'a part on its way');
      const running = (await (await api(`/jobs/${a.id}`)).json()) as JobView;
      assert.equal(running.state, 'running');
      const del = await api(`/jobs/${a.id}`, { method: 'DELETE' });
      assert.equal(del.status, 200);
      const job = (await del.json()) as JobView;
      assert.equal(job.state, 'cancelled');
      assert.equal(job.error?.kind, 'cancelled');
      assert.equal(await s3.uploadsAt(key), 0);
      assert.equal(await s3.objectExists(key), false);
      assert.equal(await s3.objectExists('exports/queued.tif'), false);
    } finally {
      proxy.setRules([]);
    }
  });

  test('bad requests: 400 naming the parameter, 404 unknown mosaic or job, 403 destination, 401/403 token', async () => {
    const cases: [string, number, RegExp][] = [
      [`/materialize?mosaic=two&dest=s3://${BUCKET}/exports/x.tif&compress=gzip`, 400, /compress: must be one of/],
      [
        `/materialize?mosaic=two&dest=s3://${BUCKET}/exports/x.tif&level=99`,
        400,
        /level: must be an integer from 1 to 9/,
      ],
      [`/materialize?mosaic=two&dest=s3://${BUCKET}/exports/x.tif&colour=red`, 400, /unknown parameter "colour"/],
      [`/materialize?mosaic=two&dest=s3://${BUCKET}/exports/x.tif&compress=jpeg`, 400, /jpeg compression needs uint8/],
      ['/materialize?mosaic=two', 400, /dest is required/],
      [`/materialize?dest=s3://${BUCKET}/exports/x.tif`, 400, /mosaic is required/],
      [`/materialize?mosaic=nope&dest=s3://${BUCKET}/exports/x.tif`, 404, /no mosaic with id "nope"/],
      [`/materialize?mosaic=two&dest=s3://${BUCKET}/elsewhere/x.tif`, 403, /not under an allowed destination/],
      [`/materialize?mosaic=two&dest=${encodeURIComponent('/tmp/x.tif')}`, 403, /not under an allowed destination/],
      [
        '/materialize?mosaic=two&dest=https://example.com/x.tif',
        400,
        /only s3:\/\/bucket\/key, .*local file paths are supported/,
      ],
      ['/jobs/00000000-0000-0000-0000-000000000000', 404, /no job with id/],
      ['/mosaics/two/export.tif?compress=gzip', 400, /compress: must be one of/],
      ['/mosaics/two/export.tif?dest=x', 400, /unknown parameter "dest"/],
    ];
    for (const [p, status, message] of cases) {
      const res = await api(p);
      const body = await res.json();
      assert.equal(res.status, status, `${p}: ${JSON.stringify(body)}`);
      assert.match(body.message, message, p);
    }
    const notJson = await api('/materialize', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"mosaic":',
    });
    assert.equal(notJson.status, 400);
    assert.match((await notJson.json()).message, /not valid JSON/);
    const head = await api('/mosaics/two/export.tif', { method: 'HEAD' });
    assert.equal(head.status, 405);
    const noToken = await fetch(`${server.url}/jobs`);
    assert.equal(noToken.status, 401);
    assert.match(noToken.headers.get('www-authenticate') ?? '', /^Bearer/);
    const wrong = await fetch(`${server.url}/jobs`, { headers: { authorization: 'Bearer wrong-token-wrong-token' } });
    assert.equal(wrong.status, 403);
    const exportNoToken = await fetch(`${server.url}/mosaics/two/export.tif`);
    assert.equal(exportNoToken.status, 401, 'export.tif follows the token rule of /materialize');
  });

  test('without auth.token materialisation is disabled (403) unless auth.allowUnauthenticated', async () => {
    const mosaics = [{ id: 'two', sources: [path.join(dir, 'utm32.tif')], blockSize: 256 }];
    const closed = await startTestServer({ materialize: { allowedDestinations: [`${local}/`] }, mosaics });
    try {
      const res = await fetch(
        `${closed.url}/materialize?mosaic=two&dest=${encodeURIComponent(path.join(local, 'closed.tif'))}`,
      );
      assert.equal(res.status, 403);
      assert.match(
        (await res.json()).message,
        /materialisation is disabled: configure auth\.token.*allowUnauthenticated/,
      );
    } finally {
      await closed.stop();
    }
    const open = await startTestServer({
      auth: { allowUnauthenticated: true },
      materialize: { allowedDestinations: [`${local}/`] },
      mosaics,
    });
    try {
      const file = path.join(local, 'open.tif');
      const res = await fetch(`${open.url}/materialize?mosaic=two&dest=${encodeURIComponent(file)}`);
      assert.equal(res.status, 202);
      const { id } = await res.json();
      const job = await until(async () => {
        const j = (await (await fetch(`${open.url}/jobs/${id}`)).json()) as JobView;
        return isFinalState(j.state) ? j : undefined;
      }, 'the open job');
      assert.equal(job.state, 'succeeded');
      assert.equal((await stat(file)).size, job.result?.bytes);
    } finally {
      await open.stop();
    }
  });

  test('a download abandoned mid-way leaves nothing in the spool folder', async () => {
    const res = await api('/mosaics/fine/export.tif?compress=none');
    assert.equal(res.status, 200);
    const size = Number(res.headers.get('content-length'));
    assert.ok(size > 10 * 1024 * 1024);
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.ok(first.value && first.value.byteLength > 0);
    await reader.cancel();
    assert.deepEqual(
      await until(async () => ((await readdir(spool)).length === 0 ? true : undefined), 'the spool to empty'),
      true,
    );
  });

  test('a real SIGTERM to `cogmill serve` mid-upload: the job is cancelled, the upload aborted, exit 0', async () => {
    // the store holds every UploadPart (a minute): the process is mid-upload for as long as the test wants
    proxy.setRules([
      { name: 'held-part', method: 'PUT', match: S3_REQUEST.uploadPart, action: { kind: 'delay', ms: 600_000 } },
    ]);
    const child = await spawnServe([path.join(dir, 'utm32.tif'), path.join(dir, 'utm31.tif')], {
      cwd: dir,
      env: {
        COGMILL_S3_ENDPOINT: proxy.url,
        COGMILL_S3_REGION: s3.settings.region!,
        COGMILL_S3_ACCESS_KEY_ID: s3.settings.accessKeyId!,
        COGMILL_S3_SECRET_ACCESS_KEY: s3.settings.secretAccessKey!,
        COGMILL_AUTH_TOKEN: TOKEN,
        COGMILL_MATERIALIZE_ALLOWED_DESTINATIONS: `s3://${BUCKET}/exports/`,
        COGMILL_SERVER_SHUTDOWN_GRACE_MS: '120000',
      },
    });
    try {
      const key = 'exports/sigterm.tif';
      const res = await fetch(`${child.url}/materialize`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ mosaic: 'default', dest: `s3://${BUCKET}/${key}` }),
      });
      assert.equal(res.status, 202);
      const { id } = (await res.json()) as { id: string };
      await until(() => ((proxy.stats.faults['held-part'] ?? 0) >= 1 ? true : undefined), 'a part on its way');
      assert.equal(await s3.uploadsAt(key), 1, 'the multipart upload exists before the signal');
      const job = (await (await fetch(`${child.url}/jobs/${id}`, { headers: auth })).json()) as JobView;
      assert.equal(job.state, 'running');
      child.proc.kill('SIGTERM');
      assert.equal(await child.exit, 0);
      assert.equal(await s3.uploadsAt(key), 0, 'the upload was aborted');
      assert.equal(await s3.objectExists(key), false);
      const states = child
        .lines()
        .filter((l) => l.job === id && typeof l.state === 'string' && l.msg !== 'request')
        .map((l) => l.state);
      assert.equal(states.at(-1), 'cancelled', JSON.stringify(states));
    } finally {
      child.kill();
      proxy.setRules([]);
    }
  });

  test('close() (what SIGTERM runs) cancels running jobs and aborts their uploads', async () => {
    proxy.setRules([
      { name: 'slow-stop', method: 'PUT', match: S3_REQUEST.uploadPart, action: { kind: 'delay', ms: 2000 } },
    ]);
    const key = 'exports/shutdown.tif';
    const res = await post({ mosaic: 'fine', dest: `s3://${BUCKET}/${key}`, compress: 'none' });
    assert.equal(res.status, 202);
    await until(() => ((proxy.stats.faults['slow-stop'] ?? 0) >= 1 ? true : undefined), 'a part on its way');
    const inTime = await server.running.close(120_000);
    assert.equal(inTime, true, 'the jobs wound down within the grace period');
    assert.equal(await s3.uploadsAt(key), 0);
    assert.equal(await s3.objectExists(key), false);
    const line = server.logs.find((l) => l.msg === 'materialisation cancelled');
    assert.ok(line, 'the cancelled job was logged');
  });
});
