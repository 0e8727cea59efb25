/**
 * SourceS3 and listS3Tiffs against a real S3 server (radosgw on a one-node Ceph cluster), directly and through
 * the fault-injecting proxy.
 */
import assert from 'node:assert/strict';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListBucketsCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { createS3Client, type S3Settings } from '../src/render/s3.client.ts';
import { listS3Tiffs, SourceS3 } from '../src/render/source.s3.ts';
import { lonLatToTile } from '../src/render/tilematrix.ts';
import { type CephS3, startCeph } from './support/ceph.ts';
import { spawnServe } from './support/cli.ts';
import { S3_REQUEST, startFaultProxy } from './support/fault.proxy.ts';
import { fixtureDir, gdalRead } from './support/gdal.ts';
import { pattern, rejectsWithKind } from './support/source.check.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const BUCKET = 'cogmill-test';
const PATTERN_KEY = 'data/pattern.bin';
const PATTERN_BYTES = 3 * MiB + 17;

let ceph: CephS3;
let client: S3Client;
let settings: S3Settings;
const data = pattern(PATTERN_BYTES);
let dataEtag: string;
const clients: S3Client[] = [];

function clientFor(overrides: Partial<S3Settings>): S3Client {
  const c = createS3Client({ ...settings, ...overrides });
  clients.push(c);
  return c;
}

before(async () => {
  ceph = await startCeph();
  settings = {
    endpoint: ceph.endpoint,
    region: ceph.region,
    accessKeyId: ceph.accessKeyId,
    secretAccessKey: ceph.secretAccessKey,
  };
  client = clientFor({});
  await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
  const put = await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: PATTERN_KEY, Body: data }));
  dataEtag = put.ETag ?? '';
  assert.match(dataEtag, /^"[0-9a-f]{32}"$/);
});

after(async () => {
  for (const c of clients) c.destroy();
  await ceph?.stop();
});

describe('SourceS3 reads', () => {
  test('exact byte ranges, with the object size and ETag', async () => {
    const source = new SourceS3(client, `s3://${BUCKET}/${PATTERN_KEY}`);
    for (const [offset, length] of [
      [0, 16],
      [1000, 4096],
      [MiB - 3, 2 * MiB + 5],
      [PATTERN_BYTES - 10, 10],
    ] as const) {
      const r = await source.read(offset, length);
      assert.equal(r.size, PATTERN_BYTES);
      assert.equal(r.etag, dataEtag);
      assert.equal(r.bytes.byteLength, length);
      assert.deepEqual(r.bytes, data.subarray(offset, offset + length), `range ${offset}+${length}`);
    }
    assert.equal(source.stats.requests, 4);
    assert.equal(source.stats.bytes, 16 + 4096 + 2 * MiB + 5 + 10);
  });

  test('reads past the end return the bytes that exist', async () => {
    const source = new SourceS3(client, `s3://${BUCKET}/${PATTERN_KEY}`);
    const tail = await source.read(PATTERN_BYTES - 5, 100);
    assert.deepEqual(tail.bytes, data.subarray(PATTERN_BYTES - 5));
    assert.equal(tail.size, PATTERN_BYTES);

    const beyond = await source.read(PATTERN_BYTES + 10, 10);
    assert.equal(beyond.bytes.byteLength, 0);
    assert.equal(beyond.size, PATTERN_BYTES);
    assert.equal(beyond.etag, dataEtag);

    const atEnd = await source.read(PATTERN_BYTES, 1);
    assert.equal(atEnd.bytes.byteLength, 0);

    const empty = await source.read(5, 0);
    assert.equal(empty.bytes.byteLength, 0);
    assert.equal(empty.size, PATTERN_BYTES);
  });

  test('stat gives size, ETag and modification time', async () => {
    const source = new SourceS3(client, `s3://${BUCKET}/${PATTERN_KEY}`);
    const s = await source.stat();
    assert.equal(s.size, PATTERN_BYTES);
    assert.equal(s.etag, dataEtag);
    assert.ok(s.lastModified instanceof Date);
    assert.ok(Math.abs(s.lastModified.getTime() - Date.now()) < 10 * 60_000);
  });

  test("a changed object fails reads that carry ifMatch with kind 'changed'", async () => {
    const key = 'data/changing.bin';
    const url = `s3://${BUCKET}/${key}`;
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: pattern(64 * KiB, 1) }));
    const source = new SourceS3(client, url);
    const first = await source.read(0, 100, {});
    const same = await source.read(100, 100, { ifMatch: first.etag });
    assert.deepEqual(same.bytes, pattern(64 * KiB, 1).subarray(100, 200));

    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: pattern(64 * KiB, 2) }));
    const e = await rejectsWithKind(source.read(0, 100, { ifMatch: first.etag }), 'changed', url);
    assert.equal(e.code, 409);
    await rejectsWithKind(source.stat({ ifMatch: first.etag }), 'changed');
    const now = await source.read(0, 100);
    assert.notEqual(now.etag, first.etag);
    assert.deepEqual(now.bytes, pattern(64 * KiB, 2).subarray(0, 100));
  });

  test("missing keys and buckets are 'not-found', naming the URL", async () => {
    const missing = new SourceS3(client, `s3://${BUCKET}/no/such.tif`);
    const e = await rejectsWithKind(missing.read(0, 10), 'not-found', `s3://${BUCKET}/no/such.tif`);
    assert.equal(e.code, 404);
    await rejectsWithKind(missing.stat(), 'not-found', 'check the bucket and key');
    const noBucket = new SourceS3(client, 's3://no-such-bucket-here/a.tif');
    await rejectsWithKind(noBucket.read(0, 10), 'not-found', 'bucket does not exist');
  });

  test("wrong credentials are 'forbidden', a dead endpoint is 'unreachable'", async () => {
    const wrong = clientFor({ secretAccessKey: 'not-the-secret' });
    const e = await rejectsWithKind(new SourceS3(wrong, `s3://${BUCKET}/${PATTERN_KEY}`).read(0, 1), 'forbidden');
    assert.match(e.message, /access key and secret/);
    await rejectsWithKind(new SourceS3(wrong, `s3://${BUCKET}/${PATTERN_KEY}`).stat(), 'forbidden');

    const dead = clientFor({ endpoint: 'http://127.0.0.1:1', maxAttempts: 1 });
    await rejectsWithKind(
      new SourceS3(dead, `s3://${BUCKET}/${PATTERN_KEY}`).read(0, 1),
      'unreachable',
      'ECONNREFUSED',
    );
  });

  test('URLs that name no object are refused', () => {
    assert.throws(() => new SourceS3(client, 'https://example.com/a.tif'), { kind: 'bad-request' });
    assert.throws(() => new SourceS3(client, `s3://${BUCKET}/`), { kind: 'bad-request' });
    assert.throws(() => new SourceS3(client, `s3://${BUCKET}`), { kind: 'bad-request' });
  });
});

describe('listS3Tiffs', () => {
  const keys = [
    'tiles/b.TIFF',
    'tiles/a.tif',
    'tiles/notes.txt',
    'tiles/sub/d.tif',
    'tiles/c.tif.aux.xml',
    'tiles2/e.tif',
  ];

  before(async () => {
    await Promise.all(keys.map((Key) => client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: Key }))));
  });

  test('lists .tif/.tiff keys under a prefix, sorted, across pages', async () => {
    const want = [`s3://${BUCKET}/tiles/a.tif`, `s3://${BUCKET}/tiles/b.TIFF`, `s3://${BUCKET}/tiles/sub/d.tif`];
    assert.deepEqual(await listS3Tiffs(client, `s3://${BUCKET}/tiles/`), want);
    // without the trailing slash the prefix is still a folder: tiles2/ stays out
    assert.deepEqual(await listS3Tiffs(client, `s3://${BUCKET}/tiles`), want);
    // two keys per page: three requests, same answer
    assert.deepEqual(await listS3Tiffs(client, `s3://${BUCKET}/tiles/`, 100, 2), want);
    const all = await listS3Tiffs(client, `s3://${BUCKET}`, 100, 1);
    assert.deepEqual(all, [...want, `s3://${BUCKET}/tiles2/e.tif`]);
  });

  test('too many matches and a missing bucket are clear errors', async () => {
    await rejectsWithKind(listS3Tiffs(client, `s3://${BUCKET}/tiles/`, 2), 'too-large', 'narrower prefix');
    await rejectsWithKind(listS3Tiffs(client, 's3://no-such-bucket-here/x/'), 'not-found', 'bucket does not exist');
    assert.deepEqual(await listS3Tiffs(client, `s3://${BUCKET}/nothing-here/`), []);
  });
});

describe('through the fault proxy', () => {
  test('503 SlowDown on GetObject is retried by the SDK and the bytes are right', async () => {
    const proxy = await startFaultProxy(ceph.endpoint, [
      { name: 'slowdown', method: 'GET', match: S3_REQUEST.object, maxTimes: 2, action: { kind: 'error' } },
    ]);
    try {
      const source = new SourceS3(clientFor({ endpoint: proxy.url }), `s3://${BUCKET}/${PATTERN_KEY}`);
      const r = await source.read(12345, 256 * KiB);
      assert.deepEqual(r.bytes, data.subarray(12345, 12345 + 256 * KiB));
      assert.equal(r.etag, dataEtag);
      assert.equal(proxy.stats.faults.slowdown, 2);
      assert.equal(proxy.stats.forwarded, 1);
      assert.equal(source.stats.requests, 3);
    } finally {
      await proxy.stop();
    }
  });

  test('503 on every attempt ends in an unreachable error after maxAttempts', async () => {
    const proxy = await startFaultProxy(ceph.endpoint, [
      { name: 'down', method: 'GET', action: { kind: 'error', code: 'ServiceUnavailable' } },
    ]);
    try {
      const source = new SourceS3(clientFor({ endpoint: proxy.url, maxAttempts: 2 }), `s3://${BUCKET}/${PATTERN_KEY}`);
      const e = await rejectsWithKind(source.read(0, 10), 'unreachable', 'HTTP 503');
      assert.equal(e.code, 502);
      assert.equal(proxy.stats.faults.down, 2);
    } finally {
      await proxy.stop();
    }
  });

  test('a connection cut in the middle of the body is read again', async () => {
    const proxy = await startFaultProxy(ceph.endpoint, [
      {
        name: 'cut',
        method: 'GET',
        match: S3_REQUEST.object,
        maxTimes: 1,
        action: { kind: 'reset', afterBytes: 100 * KiB },
      },
    ]);
    try {
      const source = new SourceS3(clientFor({ endpoint: proxy.url }), `s3://${BUCKET}/${PATTERN_KEY}`);
      const r = await source.read(7, MiB);
      assert.deepEqual(r.bytes, data.subarray(7, 7 + MiB));
      assert.equal(proxy.stats.faults.cut, 1);
      assert.equal(source.stats.requests, 2);
      assert.equal(source.stats.bytes, MiB);
    } finally {
      await proxy.stop();
    }
  });

  test("a silent server gives 'timeout'; an abort rejects with the caller's reason", async () => {
    const proxy = await startFaultProxy(ceph.endpoint, [
      { name: 'slow', method: 'GET', action: { kind: 'delay', ms: 3_000 } },
    ]);
    try {
      const slow = clientFor({ endpoint: proxy.url, timeoutMs: 300, maxAttempts: 1 });
      const source = new SourceS3(slow, `s3://${BUCKET}/${PATTERN_KEY}`);
      await rejectsWithKind(source.read(0, 10), 'timeout', 'did not answer in time');

      const patient = new SourceS3(clientFor({ endpoint: proxy.url }), `s3://${BUCKET}/${PATTERN_KEY}`);
      const reason = new Error('tile request cancelled');
      await assert.rejects(patient.read(0, 10, { signal: AbortSignal.timeout(200) }), {
        name: 'TimeoutError',
      });
      const controller = new AbortController();
      setTimeout(() => controller.abort(reason), 100);
      await assert.rejects(patient.read(0, 10, { signal: controller.signal }), (e) => e === reason);
    } finally {
      await proxy.stop();
    }
  });

  test('signed uploads pass through; a cut UploadPart is retried; radosgw enforces EntityTooSmall', async () => {
    const proxy = await startFaultProxy(
      ceph.endpoint,
      [{ name: 'cut-part', method: 'PUT', match: S3_REQUEST.uploadPart, maxTimes: 1, action: { kind: 'reset' } }],
      7,
    );
    try {
      const up = clientFor({ endpoint: proxy.url });
      const key = 'data/multipart.bin';
      const body = pattern(5 * MiB + 3 * KiB, 3);
      const parts = [body.subarray(0, 5 * MiB), body.subarray(5 * MiB)];
      const { UploadId } = await up.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: key }));
      const etags: string[] = [];
      for (const [i, part] of parts.entries()) {
        const r = await up.send(
          new UploadPartCommand({ Bucket: BUCKET, Key: key, UploadId, PartNumber: i + 1, Body: part }),
        );
        etags.push(r.ETag ?? '');
      }
      assert.equal(proxy.stats.faults['cut-part'], 1);
      await up.send(
        new CompleteMultipartUploadCommand({
          Bucket: BUCKET,
          Key: key,
          UploadId,
          MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
        }),
      );
      const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
      assert.equal(head.ContentLength, body.byteLength);
      assert.match(head.ETag ?? '', /^"[0-9a-f]{32}-2"$/);
      const r = await new SourceS3(client, `s3://${BUCKET}/${key}`).read(5 * MiB - 10, 20);
      assert.deepEqual(r.bytes, body.subarray(5 * MiB - 10, 5 * MiB + 10));

      // a first part under 5 MiB is refused at completion, as AWS does
      const small = await up.send(new CreateMultipartUploadCommand({ Bucket: BUCKET, Key: 'data/small.bin' }));
      const smallEtags: string[] = [];
      for (const n of [1, 2]) {
        const r2 = await up.send(
          new UploadPartCommand({
            Bucket: BUCKET,
            Key: 'data/small.bin',
            UploadId: small.UploadId,
            PartNumber: n,
            Body: pattern(KiB, n),
          }),
        );
        smallEtags.push(r2.ETag ?? '');
      }
      await assert.rejects(
        up.send(
          new CompleteMultipartUploadCommand({
            Bucket: BUCKET,
            Key: 'data/small.bin',
            UploadId: small.UploadId,
            MultipartUpload: { Parts: smallEtags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
          }),
        ),
        { name: 'EntityTooSmall' },
      );
    } finally {
      await proxy.stop();
    }
  });
});

describe('`cogmill serve` over S3 sources', () => {
  test('tiles, the VRT and the virtual COG of s3://bucket/prefix/ equal those of the same files on disk', async () => {
    const fixtures = await fixtureDir();
    for (const name of ['utm31.tif', 'utm32.tif']) {
      const body = await readFile(path.join(fixtures, name));
      await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: `mosaic/${name}`, Body: body }));
    }
    // the README's form, an S3 prefix (its .tif keys, sorted), and the same files from disk in that order
    const overS3 = await spawnServe([`s3://${BUCKET}/mosaic/`], {
      env: {
        COGMILL_S3_ENDPOINT: ceph.endpoint,
        COGMILL_S3_REGION: ceph.region,
        COGMILL_S3_ACCESS_KEY_ID: ceph.accessKeyId,
        COGMILL_S3_SECRET_ACCESS_KEY: ceph.secretAccessKey,
      },
    });
    const onDisk = await spawnServe([path.join(fixtures, 'utm31.tif'), path.join(fixtures, 'utm32.tif')]);
    try {
      const sources = async (base: string) =>
        ((await (await fetch(`${base}/mosaics/default`)).json()) as { sources: { location: string }[] }).sources.map(
          (x) => x.location,
        );
      assert.deepEqual(await sources(overS3.url), [
        `s3://${BUCKET}/mosaic/utm31.tif`,
        `s3://${BUCKET}/mosaic/utm32.tif`,
      ]);
      assert.deepEqual(
        (await sources(onDisk.url)).map((x) => path.basename(x)),
        ['utm31.tif', 'utm32.tif'],
      );
      // tiles over the zone boundary: the same PNG bytes
      const [x, y] = lonLatToTile(6.0, 45.0, 13);
      for (const [dx, dy] of [
        [0, 0],
        [-1, 0],
        [0, 1],
      ]) {
        const p = `/mosaics/default/tiles/13/${x + dx}/${y + dy}.png?rescale=0,4000`;
        const [s3Tile, diskTile] = await Promise.all([fetch(overS3.url + p), fetch(onDisk.url + p)]);
        assert.equal(s3Tile.status, 200, p);
        assert.equal(diskTile.status, 200, p);
        const [sb, db] = [Buffer.from(await s3Tile.arrayBuffer()), Buffer.from(await diskTile.arrayBuffer())];
        assert.ok(sb.length > 1000 && sb.equals(db), `${p}: the tile over S3 differs from the tile from disk`);
      }
      const s3Reads = overS3
        .lines()
        .filter((l) => l.msg === 'request' && String(l.path).includes('/tiles/'))
        .reduce((n, l) => n + Number(l.sourceRequests ?? 0), 0);
      assert.ok(s3Reads > 0, 'the S3 server read its tiles from S3');
      // the VRT and the virtual COG, as GDAL reads them through /vsicurl/: the same values, every level of the COG
      const env = { GDAL_DISABLE_READDIR_ON_OPEN: 'EMPTY_DIR', CPL_VSIL_CURL_ALLOWED_EXTENSIONS: '.tif,.vrt' };
      const read = (base: string, p: string, overview = -1) => gdalRead(`/vsicurl/${base}${p}`, { env, overview });
      const vrtS3 = await read(overS3.url, '/mosaics/default.vrt');
      const vrtDisk = await read(onDisk.url, '/mosaics/default.vrt');
      assert.ok(vrtS3.bytes.length > 0 && vrtS3.bytes.equals(vrtDisk.bytes), 'the VRT over S3 differs');
      for (const overview of [-1, 0]) {
        const cogS3 = await read(overS3.url, '/mosaics/default.tif', overview);
        const cogDisk = await read(onDisk.url, '/mosaics/default.tif', overview);
        assert.ok(cogS3.bytes.length > 0 && cogS3.bytes.equals(cogDisk.bytes), `virtual COG level ${overview + 1}`);
      }
      overS3.proc.kill('SIGTERM');
      onDisk.proc.kill('SIGTERM');
      assert.deepEqual([await overS3.exit, await onDisk.exit], [0, 0]);
    } finally {
      overS3.kill();
      onDisk.kill();
    }
  });
});

describe('startCeph', () => {
  test('two clusters boot side by side and stop cleanly', async () => {
    const [a, b] = await Promise.all([startCeph(), startCeph()]);
    try {
      assert.notEqual(a.endpoint, b.endpoint);
      for (const c of [a, b]) {
        const s3 = createS3Client({
          endpoint: c.endpoint,
          accessKeyId: c.accessKeyId,
          secretAccessKey: c.secretAccessKey,
          maxAttempts: 1,
        });
        try {
          await s3.send(new CreateBucketCommand({ Bucket: 'only-here' }));
          const list = await s3.send(new ListBucketsCommand({}));
          assert.deepEqual(
            list.Buckets?.map((x) => x.Name),
            ['only-here'],
          );
        } finally {
          s3.destroy();
        }
      }
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
    for (const c of [a, b]) {
      await assert.rejects(access(c.dir), { code: 'ENOENT' });
      await assert.rejects(fetch(`${c.endpoint}/`, { signal: AbortSignal.timeout(2_000) }));
    }
  });
});
