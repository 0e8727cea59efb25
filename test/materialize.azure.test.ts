/**
 * Materialise to Azure Blob Storage against a real Azure Blob service (Azurite), from sources that live in
 * Azurite too, directly and through the fault-injecting proxy: the committed blob equals the file sink's output
 * byte for byte, GDAL calls it a valid COG and reads it over /vsiaz/ with the engine's pixels, retried faults still
 * end in the same COG, and a fatal fault or a cancel leaves no committed blob.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { parseDestination } from '../src/materialize/destination.ts';
import {
  completeInProcess,
  type MaterializeOptions,
  materialize,
  runShardsInProcess,
} from '../src/materialize/pipeline.ts';
import { parsePlan, planMaterialization } from '../src/materialize/plan.ts';
import { choosePredictor } from '../src/materialize/predictor.choice.ts';
import { parseShardReport, type ShardReport } from '../src/materialize/shard.ts';
import {
  AZURE_MAX_BLOCKS,
  azureBlockId,
  azurePartNumber,
  SinkAzure,
  type SinkAzureOptions,
} from '../src/materialize/sink.azure.ts';
import { SinkFile } from '../src/materialize/sink.file.ts';
import { SinkError } from '../src/materialize/sink.ts';
import type { AzureSettings } from '../src/render/azure.client.ts';
import { Engine } from '../src/render/engine.ts';
import { RenderError } from '../src/render/errors.ts';
import type { Mosaic, MosaicSpec } from '../src/render/mosaic.ts';
import { MiB } from '../src/render/types.ts';
import { type Azurite, startAzurite } from './support/azurite.ts';
import { startFaultProxy } from './support/fault.proxy.ts';
import { fixtureDir, gdalRead, tempDir } from './support/gdal.ts';
import { assertValidCog, BIG, writeNoise } from './support/materialize.ts';

const IN = 'cogs';
const OUT = 'cogmill-out';

let azurite: Azurite;
let settings: AzureSettings;
let inputs: ContainerClient;
let outputs: ContainerClient;
/** reads the Azurite sources */
let engine: Engine;
/** reads the same files from disk */
let local: Engine;
let dir = '';
let out = '';
const NOISE = 2048;

before(async () => {
  [azurite, dir, out] = await Promise.all([startAzurite(), fixtureDir(), tempDir('cogmill-azmat-')]);
  settings = { account: azurite.account, accountKey: azurite.accountKey, endpoint: azurite.endpoint };
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  inputs = service.getContainerClient(IN);
  outputs = service.getContainerClient(OUT);
  await Promise.all([inputs.create(), outputs.create()]);
  await writeNoise(path.join(out, 'noise.tif'), NOISE);
  for (const [name, file] of [
    ['utm/utm32.tif', path.join(dir, 'utm32.tif')],
    ['utm/utm31.tif', path.join(dir, 'utm31.tif')],
    ['noise/noise.tif', path.join(out, 'noise.tif')],
  ] as const) {
    await inputs.getBlockBlobClient(name).uploadData(await readFile(file));
  }
  engine = new Engine({ azure: { ...settings, retryBaseMs: 5 }, allowedUrlPrefixes: [`az://${IN}/`] });
  local = new Engine({ roots: [dir, out] });
});

after(async () => {
  await engine?.close();
  await local?.close();
  await azurite?.stop();
});

async function download(name: string): Promise<Buffer> {
  return outputs.getBlockBlobClient(name).downloadToBuffer();
}

async function blobExists(name: string): Promise<boolean> {
  return outputs.getBlockBlobClient(name).exists();
}

/** retries fast in tests */
const FAST: SinkAzureOptions = { retryBaseMs: 20, retryMaxMs: 200 };

const twoZones = async (e: Engine): Promise<Mosaic> => {
  const sources =
    e === engine ? await e.expand([`az://${IN}/utm/`]) : ['utm31', 'utm32'].map((n) => path.join(dir, `${n}.tif`));
  return e.openMosaic({ id: 'two', sources, blockSize: 256 });
};

/** the noise raster with its band exposed twice: 2 x 16 MiB of incompressible float32 at full resolution */
const noise = (e: Engine, extra: Partial<MosaicSpec> = {}): Promise<Mosaic> =>
  e.openMosaic({
    id: 'noise',
    sources: [e === engine ? `az://${IN}/noise/noise.tif` : path.join(out, 'noise.tif')],
    blockSize: 256,
    bands: [1, 1],
    ...extra,
  });

/** The file sink's output for the same mosaic read from local files: the reference bytes. */
const references = new Map<string, Promise<Buffer>>();
function reference(name: string, m: () => Promise<Mosaic>, opts: MaterializeOptions): Promise<Buffer> {
  let p = references.get(name);
  if (!p) {
    p = (async () => {
      const file = path.join(out, `${name}.ref.tif`);
      await materialize(local, await m(), new SinkFile(file), opts);
      return readFile(file);
    })();
    references.set(name, p);
  }
  return p;
}

const putBlock = (u: URL) => u.searchParams.get('comp') === 'block';
const putBlockList = (u: URL) => u.searchParams.get('comp') === 'blocklist';

describe('block ids and destinations', () => {
  test('block ids are fixed-length base64 and give their part number back for their own tag only', () => {
    const tag = '0123456789abcdef';
    const ids = [1, 2, 99, AZURE_MAX_BLOCKS].map((n) => azureBlockId(tag, n));
    assert.equal(new Set(ids.map((id) => id.length)).size, 1, 'every id has the same length');
    assert.deepEqual(
      ids.map((id) => azurePartNumber(tag, id)),
      [1, 2, 99, AZURE_MAX_BLOCKS],
    );
    assert.equal(azurePartNumber('fedcba9876543210', ids[0]), undefined);
    assert.throws(() => azureBlockId(tag, AZURE_MAX_BLOCKS + 1), RangeError);
    assert.throws(() => azureBlockId('short', 1), RangeError);
  });

  test('az:// destinations are checked', () => {
    assert.deepEqual(parseDestination('az://out/a/b.tif'), {
      kind: 'azure',
      url: 'az://out/a/b.tif',
      container: 'out',
      blob: 'a/b.tif',
    });
    for (const bad of [
      'az://out/',
      'az://out',
      'az://Out/a.tif',
      'az://o/a.tif',
      'az://out/a/../b.tif',
      'az://a--b/x.tif',
    ])
      assert.throws(() => parseDestination(bad), { kind: 'bad-request' }, bad);
  });
});

describe('materialise to Azure (Azurite), sources in Azurite', () => {
  test('two UTM zones: valid COG, same bytes as the file sink from local files, GDAL reads the engine pixels over /vsiaz/', async () => {
    const m = await twoZones(engine);
    assert.deepEqual(
      m.sources.map((s) => s.location),
      [`az://${IN}/utm/utm31.tif`, `az://${IN}/utm/utm32.tif`],
    );
    const opts: MaterializeOptions = { compression: 'deflate', workers: 2 };
    const ref = await reference('two', () => twoZones(local), opts);
    const name = 'small/two.tif';
    const sink = new SinkAzure(`az://${OUT}/${name}`, { settings, ...FAST });
    const res = await materialize(engine, m, sink, opts);
    assert.equal(res.location, `az://${OUT}/${name}`);
    assert.equal(res.bytes, ref.byteLength);
    const props = await outputs.getBlockBlobClient(name).getProperties();
    assert.equal(props.contentType, 'image/tiff');
    assert.equal(props.contentLength, ref.byteLength);
    const got = await download(name);
    assert.ok(got.equals(ref), 'the blob differs from the file sink output');
    await assertValidCog(out, got, 'two');

    // GDAL over /vsiaz/ (the emulator's endpoint through the connection string) decodes the engine's pixels
    const gd = await gdalRead(`/vsiaz/${OUT}/${name}`, {
      env: { AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString, CPL_VSIL_CURL_CACHE_SIZE: '0' },
    });
    const px = await engine.render(m, m.grid);
    const valid = px.mask.reduce((a, v) => a + (v !== 0 ? 1 : 0), 0);
    assert.ok(valid > px.mask.length / 2, `most pixels have a value (${valid} of ${px.mask.length})`);
    assert.equal(gd.width, m.grid.width);
    assert.equal(gd.height, m.grid.height);
    const ours = Buffer.concat(px.bands.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength)));
    assert.ok(gd.bytes.equals(ours), 'GDAL reads other pixels than the engine renders');
  });

  test('several runs (uncompressed noise): blocks in part order, header block first, same bytes', async () => {
    const m = await noise(engine);
    const ref = await reference('noise-none', () => noise(local), BIG);
    const name = 'big/noise.tif';
    const sink = new SinkAzure(`az://${OUT}/${name}`, { settings, ...FAST });
    const res = await materialize(engine, m, sink, BIG);
    assert.equal(res.bytes, ref.byteLength);
    assert.ok(res.parts! >= 4, `expected several blocks, got ${res.parts}`);
    const staged = sink.stagedParts();
    assert.equal(staged[0].partNumber, 1);
    const list = await outputs.getBlockBlobClient(name).getBlockList('committed');
    assert.deepEqual(
      list.committedBlocks?.map((b) => azurePartNumber(sink.uploadId!, b.name)),
      staged.map((p) => p.partNumber),
      'committed in part order',
    );
    // no gluing: a run's first tile goes out with the previous run's tail, not 5 MiB later
    assert.ok(
      staged.some((p) => p.bytes < 5 * MiB && p.partNumber !== staged.at(-1)!.partNumber),
      'some block is smaller than S3 would allow',
    );
    const got = await download(name);
    assert.ok(got.equals(ref), 'the blob differs from the file sink output');
    await assertValidCog(out, got, 'noise-none');
  });

  test('through faults (503 on a fifth of Put Blocks, a connection cut mid-block, an error on Put Block List): same COG', async (t) => {
    const m = await noise(engine);
    const ref = await reference('noise-none', () => noise(local), BIG);
    const proxy = await startFaultProxy(
      new URL(azurite.endpoint).origin,
      [
        { name: 'cut', method: 'PUT', match: putBlock, maxTimes: 1, action: { kind: 'reset' } },
        {
          name: '503',
          method: 'PUT',
          match: putBlock,
          probability: 0.2,
          action: { kind: 'error', status: 503, code: 'ServerBusy', message: 'The server is busy.' },
        },
        {
          name: 'blocklist-500',
          method: 'PUT',
          match: putBlockList,
          maxTimes: 1,
          action: {
            kind: 'error',
            status: 500,
            code: 'InternalError',
            message: 'The server encountered an internal error.',
          },
        },
      ],
      5,
    );
    try {
      const name = 'faults/noise.tif';
      const endpoint = `${proxy.url}/${azurite.account}`;
      const sink = new SinkAzure(`az://${OUT}/${name}`, { settings: { ...settings, endpoint }, ...FAST });
      const res = await materialize(engine, m, sink, BIG);
      assert.equal(proxy.stats.faults.cut, 1);
      assert.equal(proxy.stats.faults['blocklist-500'], 1);
      assert.ok((proxy.stats.faults['503'] ?? 0) >= 1, 'some 503s were injected');
      const injected = Object.values(proxy.stats.faults).reduce((a, b) => a + b, 0);
      assert.equal(sink.stats.retries, injected, 'every injected fault was retried once');
      assert.ok(sink.recentErrors.some((e) => /503|ServerBusy/.test(e)));
      assert.equal(res.bytes, ref.byteLength);
      const got = await download(name);
      assert.ok(got.equals(ref), 'the blob differs from the file sink output');
      await assertValidCog(out, got, 'faults');
      t.diagnostic(JSON.stringify({ faults: proxy.stats.faults, retries: sink.stats.retries, blocks: res.parts }));
    } finally {
      await proxy.stop();
    }
  });

  test('a fatal fault (403 on every Put Block): no committed blob; the error names the container and the credential', async () => {
    const m = await noise(engine);
    const proxy = await startFaultProxy(new URL(azurite.endpoint).origin, [
      {
        name: '403',
        method: 'PUT',
        match: putBlock,
        action: { kind: 'error', status: 403, code: 'AuthorizationPermissionMismatch', message: 'not authorized' },
      },
    ]);
    try {
      const name = 'fatal/noise.tif';
      const endpoint = `${proxy.url}/${azurite.account}`;
      const sink = new SinkAzure(`az://${OUT}/${name}`, {
        settings: { ...settings, endpoint, credentialSource: 'COGMILL_AZURE_ACCOUNT_KEY' },
        ...FAST,
      });
      await assert.rejects(materialize(engine, m, sink, BIG), (e: unknown) => {
        assert.ok(e instanceof SinkError, String(e));
        assert.equal(e.sinkKind, 'forbidden');
        assert.match(e.message, /access denied to container cogmill-out \(Put Block \d+, Azure 403/);
        assert.match(e.message, /shared key of account cogmill[0-9a-f]+ \(COGMILL_AZURE_ACCOUNT_KEY\)/);
        return true;
      });
      assert.equal(sink.stats.retries, 0, 'a 403 is not retried');
      assert.equal(await blobExists(name), false);
    } finally {
      await proxy.stop();
    }
  });

  test('a wrong key (Azurite refuses it): a clear error, nothing committed', async () => {
    const m = await twoZones(engine);
    const wrongKey = Buffer.alloc(64, 9).toString('base64');
    const denied = new SinkAzure(`az://${OUT}/denied/two.tif`, {
      settings: { ...settings, accountKey: wrongKey, credentialSource: 'AZURE_STORAGE_KEY' },
      ...FAST,
    });
    await assert.rejects(materialize(engine, m, denied, { workers: 1 }), (e: unknown) => {
      assert.ok(e instanceof SinkError, String(e));
      assert.equal(e.sinkKind, 'forbidden');
      assert.match(
        e.message,
        /access denied to container cogmill-out \(Put Block \d+, Azure 403 AuthorizationFailure\)/,
      );
      assert.match(e.message, /credentials tried: the shared key of account cogmill[0-9a-f]+ \(AZURE_STORAGE_KEY\)/);
      return true;
    });
    assert.equal(denied.stats.retries, 0);
    assert.equal(await blobExists('denied/two.tif'), false);
  });

  test('a container that does not exist: a SinkError (bad destination) naming the container', async () => {
    const m = await twoZones(engine);
    const lost = new SinkAzure('az://no-such-container/two.tif', { settings, ...FAST });
    await assert.rejects(materialize(engine, m, lost, { workers: 1 }), (e: unknown) => {
      assert.ok(e instanceof SinkError, String(e));
      assert.equal(e.sinkKind, 'bad-destination');
      assert.equal(e.code, 400);
      assert.match(e.message, /the container no-such-container does not exist/);
      return true;
    });
  });

  test('Put Block List failing every time: no committed blob, the staged blocks stay uncommitted', async () => {
    const m = await twoZones(engine);
    const proxy = await startFaultProxy(new URL(azurite.endpoint).origin, [
      {
        name: 'commit',
        method: 'PUT',
        match: putBlockList,
        action: { kind: 'error', status: 503, code: 'ServerBusy' },
      },
    ]);
    try {
      const name = 'commit-fails/two.tif';
      const endpoint = `${proxy.url}/${azurite.account}`;
      const sink = new SinkAzure(`az://${OUT}/${name}`, { settings: { ...settings, endpoint }, ...FAST, attempts: 3 });
      await assert.rejects(materialize(engine, m, sink, { workers: 1 }), /Put Block List/);
      assert.equal(proxy.stats.faults.commit, 3);
      assert.equal(await blobExists(name), false);
      const staged = await sink.listStaged();
      assert.deepEqual(
        staged.map((p) => [p.partNumber, p.bytes]),
        sink.stagedParts().map((p) => [p.partNumber, p.bytes]),
      );
    } finally {
      await proxy.stop();
    }
  });

  test('cancel through the AbortSignal mid-way: no committed blob', async () => {
    const m = await noise(engine);
    const name = 'cancel/noise.tif';
    const sink = new SinkAzure(`az://${OUT}/${name}`, { settings, ...FAST });
    const ac = new AbortController();
    let partsAtCancel = 0;
    // one shard: its blocks are staged while tiles are still being rendered; cancel as soon as one is staged
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
    assert.ok(partsAtCancel >= 1, 'blocks had been staged before the cancel');
    assert.equal(await blobExists(name), false);
  });
});

describe('one upload, several processes (attach, stage, listStaged, commit)', () => {
  /** deterministic bytes of part n */
  const partBytes = (n: number, size: number) => new Uint8Array(size).map((_, i) => (i * 13 + n * 101) & 0xff);
  const part = (n: number, size: number) => ({ partNumber: n, chunks: [partBytes(n, size)], bytes: size });

  test('shards stage their parts into one upload, one of them twice; a resume finds them; a third process commits', async () => {
    const name = 'staged/blob.bin';
    const url = `az://${OUT}/${name}`;
    const coordinator = new SinkAzure(url, { settings, ...FAST });
    const uploadId = await coordinator.create();
    assert.match(uploadId, /^[0-9a-f]{16}$/);
    // an older, unfinished upload to the same blob
    const stale = new SinkAzure(url, { settings, ...FAST });
    await stale.create();
    await stale.stage(part(2, 1000));

    const sizes = new Map([
      [1, 700],
      [2, 3],
      [3, 300_000],
      [5, 1],
      [6, 65_536],
    ]);
    const worker1 = new SinkAzure(url, { settings, ...FAST });
    const worker2 = new SinkAzure(url, { settings, ...FAST });
    worker1.attach(uploadId);
    worker2.attach(uploadId);
    await Promise.all([worker1.stage(part(6, sizes.get(6)!)), worker2.stage(part(3, sizes.get(3)!))]);
    // at-least-once delivery: part 3 again, from the other worker, with the same bytes
    await worker1.stage(part(3, sizes.get(3)!));
    await worker2.stage(part(2, sizes.get(2)!));

    // a resume attaches and finds what is there (the stale upload's block is not ours)
    const resumed = new SinkAzure(url, { settings, ...FAST });
    resumed.attach(uploadId);
    assert.deepEqual(
      (await resumed.listStaged()).map((p) => [p.partNumber, p.bytes]),
      [
        [2, 3],
        [3, 300_000],
        [6, 65_536],
      ],
    );
    assert.deepEqual((await resumed.listUploads()).map((u) => u.uploadId).sort(), [uploadId, stale.uploadId].sort());
    await resumed.stage(part(5, sizes.get(5)!));
    await resumed.stage(part(1, sizes.get(1)!));
    assert.equal(await blobExists(name), false, 'nothing is visible before the commit');

    const done = new SinkAzure(url, { settings, ...FAST });
    done.attach(uploadId);
    const staged = await done.listStaged();
    assert.deepEqual(
      staged.map((p) => p.partNumber),
      [1, 2, 3, 5, 6],
    );
    const res = await done.commit(staged);
    const want = Buffer.concat([...sizes.entries()].map(([n, size]) => partBytes(n, size)));
    assert.equal(res.bytes, want.byteLength);
    assert.equal(res.parts, 5);
    assert.ok((await download(name)).equals(want), 'the blob is the parts in number order');
    // the commit discarded every uncommitted block of the blob, the stale upload's included
    assert.deepEqual(await done.listUploads(), []);
  });

  test('notes next to the destination: put, get, list, clear (blobs of their own, not the destination)', async () => {
    const name = 'staged/noted.tif';
    const sink = new SinkAzure(`az://${OUT}/${name}`, { settings, ...FAST });
    assert.equal(await sink.getNote('plan.json'), undefined);
    assert.deepEqual(await sink.listNotes(), []);
    await sink.putNote('plan.json', '{"shards":3}');
    await sink.putNote('shard-000001.json', '{"tiles":[1,2]}');
    await sink.putNote('plan.json', '{"shards":4}');
    // another process reads them
    const other = new SinkAzure(`az://${OUT}/${name}`, { settings, ...FAST });
    assert.equal(await other.getNote('plan.json'), '{"shards":4}');
    assert.deepEqual(await other.listNotes(), ['plan.json', 'shard-000001.json']);
    const props = await outputs.getBlockBlobClient(`${name}.cogmill/plan.json`).getProperties();
    assert.equal(props.contentType, 'application/json');
    assert.equal(await blobExists(name), false, 'notes are not the destination');
    await other.clearNotes();
    assert.deepEqual(await sink.listNotes(), []);
    await assert.rejects(sink.putNote('../escape.json', '{}'), RangeError);
  });

  test('a commit that leaves out part 1, or is not in order, is refused before anything is sent', async () => {
    const sink = new SinkAzure(`az://${OUT}/staged/refused.bin`, { settings, ...FAST });
    await sink.create();
    const p2 = await sink.stage(part(2, 10));
    const p1 = await sink.stage(part(1, 10));
    await assert.rejects(sink.commit([p2]), /without part 1/);
    await assert.rejects(sink.commit([p1, p2, p2]), /increasing order/);
    assert.equal(await blobExists('staged/refused.bin'), false);
    assert.throws(() => new SinkAzure(`az://${OUT}/x.bin`, { settings }).attach('not-a-tag'), RangeError);
  });
});

describe('plan -> shard -> complete on Azure, each step with its own sink', () => {
  test('three shards staged by separate sinks into one upload (one shard twice), completed by a fourth: same bytes as the file', async () => {
    const m = await noise(engine);
    const opts: MaterializeOptions = { compression: 'deflate', level: 1, workers: 1, minPartSizeBytes: 5 * MiB };
    const ref = await reference('noise-deflate', () => noise(local), opts);
    const url = `az://${OUT}/dist/noise.tif`;
    const coordinator = new SinkAzure(url, { settings, ...FAST });
    // as every command plans: an 'auto' predictor chosen on the data first
    const planned = planMaterialization({
      mosaic: m,
      options: await choosePredictor(engine, m, opts),
      destination: url,
      limits: coordinator.limits,
      shards: 3,
    });
    const plan = { ...planned, uploadId: await coordinator.create() };
    assert.equal(plan.minPartBytes, 1, "the plan takes Azure's limits: nothing to glue");
    await coordinator.putNote('plan.json', JSON.stringify(plan));

    // each shard: a sink of its own attached to the upload, the plan read back from the note
    const runShard = async (i: number): Promise<void> => {
      const sink = new SinkAzure(url, { settings, ...FAST });
      const saved = parsePlan((await sink.getNote('plan.json'))!);
      sink.attach(saved.uploadId!);
      const [report] = await runShardsInProcess(engine, m, saved, sink, { workers: 1, only: [i] });
      await sink.putNote(`shard-${String(i).padStart(6, '0')}.json`, JSON.stringify(report));
    };
    for (const i of [2, 0, 1, 1]) await runShard(i);
    assert.equal(await blobExists('dist/noise.tif'), false, 'nothing at the blob before the complete step');

    const done = new SinkAzure(url, { settings, ...FAST });
    done.attach(plan.uploadId);
    const names = (await done.listNotes()).filter((n) => n.startsWith('shard-'));
    assert.equal(names.length, 3);
    const reports: ShardReport[] = [];
    for (const n of names) reports.push(parseShardReport((await done.getNote(n))!, plan));
    // what a resume would find: every part the reports name is staged, with its size
    const staged = new Map((await done.listStaged()).map((p) => [p.partNumber, p.bytes]));
    for (const r of reports) {
      assert.ok(r.parts.length >= 1, `shard ${r.shard} staged parts of its own`);
      for (const p of r.parts) assert.equal(staged.get(p.partNumber), p.bytes);
    }
    const res = await completeInProcess(engine, m, plan, done, reports, { workers: 1 });
    assert.equal(res.bytes, ref.byteLength);
    const got = await download('dist/noise.tif');
    assert.ok(got.equals(ref), 'the sharded blob differs from the single-process file');
    await done.clearNotes();
    assert.deepEqual(await done.listNotes(), []);
  });
});
