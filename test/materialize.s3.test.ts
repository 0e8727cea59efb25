/**
 * Materialise to S3 against a real S3 server (radosgw on a one-node Ceph cluster), directly and through the
 * fault-injecting proxy: the object equals the file sink's output byte for byte, GDAL calls it a valid COG, the
 * part count matches the ETag, retried faults still end in the same COG, and a fatal fault or a cancel leaves no
 * upload and no object. Also the command line, to S3 and interrupted.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CompleteMultipartUploadCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { type MaterializeOptions, materialize } from '../src/materialize/pipeline.ts';
import { SinkFile } from '../src/materialize/sink.file.ts';
import { multipartEtagParts, SinkS3, type SinkS3Options } from '../src/materialize/sink.s3.ts';
import { SinkError } from '../src/materialize/sink.ts';
import { Engine } from '../src/render/engine.ts';
import { RenderError } from '../src/render/errors.ts';
import type { Mosaic, MosaicSpec } from '../src/render/mosaic.ts';
import type { S3Settings } from '../src/render/s3.client.ts';
import { MiB } from '../src/render/types.ts';
import { S3_REQUEST, startFaultProxy } from './support/fault.proxy.ts';
import { fixtureDir, tempDir } from './support/gdal.ts';
import { assertValidCog, BIG, writeNoise } from './support/materialize.ts';
import { type S3TestBucket, startS3Bucket } from './support/s3.bucket.ts';

const BUCKET = 'cogmill-out';
const NODE = process.execPath;
const CLI = path.join(import.meta.dirname, '..', 'src', 'cli.ts');

let s3: S3TestBucket;
let ceph: S3TestBucket['ceph'];
let settings: S3Settings;
let client: S3Client;
let engine: Engine;
let dir = '';
let out = '';
/** side of the noise raster in pixels (10 m pixels) */
const NOISE = 2048;

before(async () => {
  [s3, dir, out] = await Promise.all([startS3Bucket(BUCKET), fixtureDir(), tempDir('cogmill-s3mat-')]);
  ({ ceph, settings, client } = s3);
  await writeNoise(path.join(out, 'noise.tif'), NOISE);
  engine = new Engine({ roots: [dir, out] });
});

after(async () => {
  await engine?.close();
  await s3?.stop();
});

const download = (key: string) => s3.download(key);
const uploadsAt = (key: string) => s3.uploadsAt(key);
const objectExists = (key: string) => s3.objectExists(key);

/** retries fast in tests */
const FAST: SinkS3Options = { retryBaseMs: 20, retryMaxMs: 200 };

const twoZones = (): Promise<Mosaic> =>
  engine.openMosaic({ id: 'two', sources: ['utm32', 'utm31'].map((n) => path.join(dir, `${n}.tif`)), blockSize: 256 });

/** the noise raster with its band exposed twice: 2 x 16 MiB of incompressible float32 at full resolution */
const noise = (extra: Partial<MosaicSpec> = {}): Promise<Mosaic> =>
  engine.openMosaic({ id: 'noise', sources: [path.join(out, 'noise.tif')], blockSize: 256, bands: [1, 1], ...extra });

/** The file sink's output for the same mosaic and options: the reference bytes. */
const references = new Map<string, Promise<{ bytes: Buffer; ms: number }>>();
function reference(name: string, m: Mosaic, opts: MaterializeOptions): Promise<{ bytes: Buffer; ms: number }> {
  let p = references.get(name);
  if (!p) {
    p = (async () => {
      const file = path.join(out, `${name}.ref.tif`);
      const t0 = performance.now();
      await materialize(engine, m, new SinkFile(file), opts);
      const ms = performance.now() - t0;
      return { bytes: await readFile(file), ms };
    })();
    references.set(name, p);
  }
  return p;
}

describe('materialise to S3 (radosgw)', () => {
  test('two UTM zones to s3://bucket/key.tif: one part, same bytes as the file sink, valid COG', async () => {
    const m = await twoZones();
    const opts: MaterializeOptions = { compression: 'deflate', workers: 2 };
    const ref = await reference('two', m, opts);
    const key = 'small/two.tif';
    const sink = new SinkS3(`s3://${BUCKET}/${key}`, { settings, ...FAST });
    const res = await materialize(engine, m, sink, opts);
    assert.equal(res.location, `s3://${BUCKET}/${key}`);
    assert.equal(res.bytes, ref.bytes.byteLength);
    assert.equal(res.parts, 1, 'a COG under 5 MiB is one part (the header part)');
    assert.equal(multipartEtagParts(res.etag), 1);
    const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    assert.equal(head.ContentType, 'image/tiff');
    assert.equal(head.ContentLength, ref.bytes.byteLength);
    assert.equal(head.ETag, sink.expectedEtag(), 'the ETag is the MD5 of the part MD5s');
    const got = await download(key);
    assert.ok(got.equals(ref.bytes), 'the S3 object differs from the file sink output');
    await assertValidCog(out, got, 'two');
    assert.equal(await uploadsAt(key), 0);
  });

  test('several runs and parts (uncompressed noise): every part legal, ETag suffix = parts, same bytes', async (t) => {
    const m = await noise();
    const ref = await reference('noise-none', m, BIG);
    const key = 'big/noise.tif';
    const sink = new SinkS3(`s3://${BUCKET}/${key}`, { settings, ...FAST });
    const t0 = performance.now();
    const res = await materialize(engine, m, sink, BIG);
    const ms = performance.now() - t0;
    assert.equal(res.bytes, ref.bytes.byteLength);
    assert.ok(res.parts! >= 3, `expected several parts, got ${res.parts}`);
    assert.equal(multipartEtagParts(res.etag), res.parts);
    const parts = sink.uploadedParts();
    assert.equal(parts[0].partNumber, 1);
    for (const p of parts.slice(0, -1)) assert.ok(p.bytes >= 5 * MiB, `part ${p.partNumber} is ${p.bytes} bytes`);
    assert.equal(
      parts.reduce((a, p) => a + p.bytes, 0),
      ref.bytes.byteLength,
    );
    const got = await download(key);
    assert.ok(got.equals(ref.bytes), 'the S3 object differs from the file sink output');
    await assertValidCog(out, got, 'noise-none');
    t.diagnostic(
      JSON.stringify({
        bytes: res.bytes,
        parts: res.parts,
        s3MiBps: Math.round((res.bytes / MiB / (ms / 1000)) * 10) / 10,
        fileMiBps: Math.round((ref.bytes.byteLength / MiB / (ref.ms / 1000)) * 10) / 10,
        s3Ms: Math.round(ms),
        fileMs: Math.round(ref.ms),
      }),
    );
  });

  test('highly compressible (mostly nodata), 4 runs, real 5 MiB minimum: no EntityTooSmall, ETag suffix = parts', async () => {
    // the noise fills the bottom-right quarter of a mosaic twice its size: three quarters of the tiles are empty and
    // compress to almost nothing, so some runs hold far less than 5 MiB and must be glued to their neighbours
    const side = NOISE * 10;
    const m = await noise({ id: 'sparse', bounds: [500000 - side, 5000000 - side, 500000 + side, 5000000 + side] });
    assert.equal(m.grid.width, 2 * NOISE);
    const opts: MaterializeOptions = {
      compression: 'deflate',
      level: 1,
      predictor: 1,
      workers: 2,
      runs: 4,
      minPartSizeBytes: 5 * MiB,
      statistics: false,
    };
    const ref = await reference('sparse', m, opts);
    const upper = m.grid.width * m.grid.height * 2 * 4;
    assert.ok(ref.bytes.byteLength < upper / 3, 'the output is much smaller than the uncompressed size');
    const key = 'sparse/noise.tif';
    const sink = new SinkS3(`s3://${BUCKET}/${key}`, { settings, ...FAST });
    const res = await materialize(engine, m, sink, opts);
    assert.ok(res.parts! >= 2, `expected more than one part, got ${res.parts}`);
    assert.equal(multipartEtagParts(res.etag), res.parts);
    for (const p of sink.uploadedParts().slice(0, -1))
      assert.ok(p.bytes >= 5 * MiB, `part ${p.partNumber} is ${p.bytes} bytes`);
    const got = await download(key);
    assert.ok(got.equals(ref.bytes), 'the S3 object differs from the file sink output');
    await assertValidCog(out, got, 'sparse');
  });

  test('through faults (503 on a fifth of UploadParts, a connection cut mid-part, a 200 with an error body on complete): same COG', async (t) => {
    const m = await noise();
    const ref = await reference('noise-none', m, BIG);
    const proxy = await startFaultProxy(
      ceph.endpoint,
      [
        { name: 'cut', method: 'PUT', match: S3_REQUEST.uploadPart, maxTimes: 1, action: { kind: 'reset' } },
        {
          name: '503',
          method: 'PUT',
          match: S3_REQUEST.uploadPart,
          probability: 0.2,
          action: { kind: 'error', status: 503, code: 'SlowDown' },
        },
        {
          name: 'complete-200-error',
          method: 'POST',
          match: S3_REQUEST.multipartUpload,
          maxTimes: 1,
          action: {
            kind: 'error',
            status: 200,
            code: 'InternalError',
            message: 'We encountered an internal error. Please try again.',
          },
        },
      ],
      5,
    );
    try {
      const key = 'faults/noise.tif';
      const sink = new SinkS3(`s3://${BUCKET}/${key}`, { settings: { ...settings, endpoint: proxy.url }, ...FAST });
      const res = await materialize(engine, m, sink, BIG);
      assert.equal(proxy.stats.faults.cut, 1);
      assert.equal(proxy.stats.faults['complete-200-error'], 1);
      assert.ok((proxy.stats.faults['503'] ?? 0) >= 1, 'some 503s were injected');
      const injected = Object.values(proxy.stats.faults).reduce((a, b) => a + b, 0);
      assert.equal(sink.stats.retries, injected, 'every injected fault was retried once');
      assert.ok(sink.recentErrors.some((e) => /503|SlowDown/.test(e)));
      assert.equal(multipartEtagParts(res.etag), res.parts);
      // equal to the file sink's output, which GDAL validates in the test above
      const got = await download(key);
      assert.ok(got.equals(ref.bytes), 'the S3 object differs from the file sink output');
      assert.equal(await uploadsAt(key), 0);
      t.diagnostic(JSON.stringify({ faults: proxy.stats.faults, retries: sink.stats.retries, parts: res.parts }));
    } finally {
      await proxy.stop();
    }
  });

  test('a fatal fault (403 on every UploadPart) aborts: no upload listed, no object', async () => {
    const m = await noise();
    const proxy = await startFaultProxy(ceph.endpoint, [
      {
        name: '403',
        method: 'PUT',
        match: S3_REQUEST.uploadPart,
        action: { kind: 'error', status: 403, code: 'AccessDenied', message: 'Access Denied' },
      },
    ]);
    try {
      const key = 'fatal/noise.tif';
      const sink = new SinkS3(`s3://${BUCKET}/${key}`, { settings: { ...settings, endpoint: proxy.url }, ...FAST });
      await assert.rejects(materialize(engine, m, sink, BIG), (e: unknown) => {
        assert.ok(e instanceof SinkError, String(e));
        assert.equal(e.sinkKind, 'forbidden');
        assert.equal(e.code, 403);
        assert.match(e.message, /access denied \(UploadPart \d+/);
        return true;
      });
      assert.ok(sink.uploadId, 'the upload had been created');
      assert.equal(sink.stats.retries, 0, 'a 403 is not retried');
      assert.equal(await uploadsAt(key), 0);
      assert.equal(await objectExists(key), false);
    } finally {
      await proxy.stop();
    }
  });

  test('a bucket that does not exist: a SinkError (bad destination) naming the bucket, nothing retried', async () => {
    const m = await twoZones();
    const sink = new SinkS3('s3://cogmill-no-such-bucket/two.tif', { settings, ...FAST });
    await assert.rejects(materialize(engine, m, sink, { workers: 1 }), (e: unknown) => {
      assert.ok(e instanceof SinkError, String(e));
      assert.equal(e.sinkKind, 'bad-destination');
      assert.equal(e.code, 400);
      assert.match(e.message, /the bucket cogmill-no-such-bucket does not exist \(CreateMultipartUpload\)/);
      return true;
    });
    assert.equal(sink.stats.retries, 0);
  });

  test('CompleteMultipartUpload failing every time (200 with an error body) aborts: no upload, no object', async () => {
    const m = await twoZones();
    const proxy = await startFaultProxy(ceph.endpoint, [
      {
        name: 'complete',
        method: 'POST',
        match: S3_REQUEST.multipartUpload,
        action: { kind: 'error', status: 200, code: 'InternalError' },
      },
    ]);
    try {
      const key = 'complete-fails/two.tif';
      const sink = new SinkS3(`s3://${BUCKET}/${key}`, {
        settings: { ...settings, endpoint: proxy.url },
        ...FAST,
        attempts: 3,
      });
      await assert.rejects(materialize(engine, m, sink, { workers: 1 }), /CompleteMultipartUpload/);
      assert.equal(proxy.stats.faults.complete, 3);
      assert.equal(await uploadsAt(key), 0);
      assert.equal(await objectExists(key), false);
    } finally {
      await proxy.stop();
    }
  });

  test('a completion the sink could not confirm is undone by abort: no upload, no object', async () => {
    // the store completes the upload (here: out of band) while every answer the sink gets is a 500
    const proxy = await startFaultProxy(ceph.endpoint, [
      {
        name: 'complete',
        method: 'POST',
        match: S3_REQUEST.multipartUpload,
        action: { kind: 'error', status: 500, code: 'InternalError' },
      },
    ]);
    try {
      const key = 'raced/object.bin';
      const sink = new SinkS3(`s3://${BUCKET}/${key}`, {
        settings: { ...settings, endpoint: proxy.url },
        ...FAST,
        attempts: 2,
      });
      await sink.open();
      const bytes = new Uint8Array(256 * 1024).map((_, i) => (i * 7) & 0xff);
      await sink.putPart({
        partNumber: 1,
        chunks: [bytes.subarray(0, 1000), bytes.subarray(1000)],
        bytes: bytes.byteLength,
      });
      await client.send(
        new CompleteMultipartUploadCommand({
          Bucket: BUCKET,
          Key: key,
          UploadId: sink.uploadId,
          MultipartUpload: { Parts: sink.uploadedParts().map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
        }),
      );
      assert.equal(await objectExists(key), true);
      await assert.rejects(sink.complete(), /CompleteMultipartUpload/);
      await sink.abort(new Error('cancelled'));
      assert.equal(await uploadsAt(key), 0);
      assert.equal(await objectExists(key), false, 'the object made of exactly our parts was removed');
    } finally {
      await proxy.stop();
    }
  });

  test('cancel through the AbortSignal mid-way: no upload, no object', async () => {
    const m = await noise();
    const key = 'cancel/noise.tif';
    const sink = new SinkS3(`s3://${BUCKET}/${key}`, { settings, ...FAST });
    const ac = new AbortController();
    let partsAtCancel = 0;
    // one shard: its parts go out while tiles are still being rendered; cancel as soon as one is stored
    const stage = sink.stage.bind(sink);
    sink.stage = async (...args: Parameters<typeof stage>) => {
      const r = await stage(...args);
      if (!ac.signal.aborted) {
        partsAtCancel = sink.stats.parts;
        ac.abort(new Error('stop'));
      }
      return r;
    };
    await assert.rejects(
      materialize(engine, m, sink, { ...BIG, runs: 1 }, { signal: ac.signal }),
      (e: unknown) => e instanceof RenderError && e.message === 'materialisation cancelled',
    );
    assert.ok(sink.uploadId, 'the upload had been created');
    assert.ok(partsAtCancel >= 1, 'parts had been uploaded before the cancel');
    assert.equal(await uploadsAt(key), 0);
    assert.equal(await objectExists(key), false);
  });
});

interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the CLI; `poll` is called every 50 ms with a function that interrupts it (SIGINT). */
function runCli(args: string[], env: Record<string, string>, poll?: (interrupt: () => void) => void): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(NODE, [CLI, 'materialize', ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
    const poller = poll ? setInterval(() => poll(() => child.kill('SIGINT')), 50) : undefined;
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      clearInterval(poller);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('cogmill materialize (command line)', () => {
  const env = () => ({
    AWS_ACCESS_KEY_ID: ceph.accessKeyId,
    AWS_SECRET_ACCESS_KEY: ceph.secretAccessKey,
    AWS_REGION: ceph.region,
    COGMILL_CONFIG: '',
  });

  test('SOURCE... --out s3://: JSON summary, valid COG equal to the API output', async () => {
    const m = await twoZones();
    const ref = await reference('two', m, { compression: 'deflate', workers: 2 });
    const key = 'cli/two.tif';
    const run = await runCli(
      [
        path.join(dir, 'utm32.tif'),
        path.join(dir, 'utm31.tif'),
        '--out',
        `s3://${BUCKET}/${key}`,
        '--s3-endpoint',
        ceph.endpoint,
        '--blocksize',
        '256',
        '--workers',
        '2',
      ],
      env(),
    );
    assert.equal(run.code, 0, run.stderr);
    const summary = JSON.parse(run.stdout);
    assert.equal(summary.location, `s3://${BUCKET}/${key}`);
    assert.equal(summary.parts, 1);
    assert.equal(summary.bytes, ref.bytes.byteLength);
    assert.match(run.stderr, /100\.0%/, 'a final progress line');
    const got = await download(key);
    assert.ok(got.equals(ref.bytes), 'the CLI output differs from the API output for the same mosaic');
  });

  test('bad options exit 2 naming the flag', async () => {
    const run = await runCli(
      [path.join(dir, 'utm32.tif'), '--out', path.join(out, 'x.tif'), '--compress', 'gzip'],
      env(),
    );
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--compress: must be one of/);
  });

  test('Ctrl-C aborts the upload: exit 130, no upload listed, no object', async () => {
    // a slow store (every UploadPart held 1 s) so the interrupt lands mid-upload
    const proxy = await startFaultProxy(ceph.endpoint, [
      { name: 'slow', method: 'PUT', match: S3_REQUEST.uploadPart, action: { kind: 'delay', ms: 1000 } },
    ]);
    try {
      const key = 'cli/interrupted.tif';
      let sent = false;
      const run = await runCli(
        [
          path.join(out, 'noise.tif'),
          '--out',
          `s3://${BUCKET}/${key}`,
          '--s3-endpoint',
          proxy.url,
          '--compress',
          'none',
          '--workers',
          '1',
        ],
        env(),
        (interrupt) => {
          // a part is on its way (held by the proxy): interrupt now
          if (!sent && (proxy.stats.faults.slow ?? 0) >= 1) {
            sent = true;
            interrupt();
          }
        },
      );
      assert.ok(sent, `the interrupt was sent (stderr: ${run.stderr})`);
      assert.equal(run.code, 130, run.stderr);
      assert.match(run.stderr, /cancelled; nothing was written/);
      assert.equal(await uploadsAt(key), 0);
      assert.equal(await objectExists(key), false);
    } finally {
      await proxy.stop();
    }
  });
});
