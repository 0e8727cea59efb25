/**
 * SourceAzure and listAzureTiffs against a real Azure Blob service (Azurite), directly and through the
 * fault-injecting proxy; the credential order; the engine resolving az:// and https blob URLs under its allow-list.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  BlobSASPermissions,
  BlobServiceClient,
  type ContainerClient,
  generateBlobSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import { type AzureSettings, createAzureClients, parseAzureUrl } from '../src/render/azure.client.ts';
import { Engine } from '../src/render/engine.ts';
import { listAzureTiffs, SourceAzure } from '../src/render/source.azure.ts';
import { type Azurite, startAzurite } from './support/azurite.ts';
import { startFaultProxy } from './support/fault.proxy.ts';
import { pattern, rejectsWithKind } from './support/source.check.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const CONTAINER = 'cogmill-test';
const PATTERN_BLOB = 'data/pattern.bin';
const PATTERN_BYTES = 3 * MiB + 17;

let azurite: Azurite;
let settings: AzureSettings;
let container: ContainerClient;
const data = pattern(PATTERN_BYTES);
let dataEtag: string;

async function open(url: string, overrides: Partial<AzureSettings> = {}): Promise<SourceAzure> {
  const s = { ...settings, retryBaseMs: 5, ...overrides };
  return SourceAzure.open(await createAzureClients(s), url, s);
}

function sasUrl(blob: string, permissions = 'r'): string {
  const credential = new StorageSharedKeyCredential(azurite.account, azurite.accountKey);
  const sas = generateBlobSASQueryParameters(
    {
      containerName: CONTAINER,
      blobName: blob,
      permissions: BlobSASPermissions.parse(permissions),
      expiresOn: new Date(Date.now() + 3600_000),
    },
    credential,
  ).toString();
  return `${azurite.endpoint}/${CONTAINER}/${blob}?${sas}`;
}

before(async () => {
  azurite = await startAzurite();
  settings = { account: azurite.account, accountKey: azurite.accountKey, endpoint: azurite.endpoint };
  const service = BlobServiceClient.fromConnectionString(azurite.connectionString);
  container = service.getContainerClient(CONTAINER);
  await container.create();
  const put = await container.getBlockBlobClient(PATTERN_BLOB).uploadData(data);
  dataEtag = put.etag ?? '';
  assert.match(dataEtag, /^"0x[0-9A-F]+"$/);
});

after(async () => {
  await azurite?.stop();
});

describe('SourceAzure reads', () => {
  test('exact byte ranges, with the blob size and ETag', async () => {
    const source = await open(`az://${CONTAINER}/${PATTERN_BLOB}`);
    for (const [offset, length] of [
      [0, 16],
      [1000, 4096],
      [MiB - 3, 2 * MiB + 5],
      [PATTERN_BYTES - 10, 10],
    ] as const) {
      const r = await source.read(offset, length);
      assert.equal(r.size, PATTERN_BYTES);
      assert.equal(r.etag, dataEtag);
      assert.deepEqual(r.bytes, data.subarray(offset, offset + length), `range ${offset}+${length}`);
    }
    assert.equal(source.stats.requests, 4);
    assert.equal(source.stats.bytes, 16 + 4096 + 2 * MiB + 5 + 10);
  });

  test('reads past the end return the bytes that exist', async () => {
    const source = await open(`az://${CONTAINER}/${PATTERN_BLOB}`);
    const tail = await source.read(PATTERN_BYTES - 5, 100);
    assert.deepEqual(tail.bytes, data.subarray(PATTERN_BYTES - 5));
    assert.equal(tail.size, PATTERN_BYTES);
    const beyond = await source.read(PATTERN_BYTES + 10, 10);
    assert.equal(beyond.bytes.byteLength, 0);
    assert.equal(beyond.size, PATTERN_BYTES);
    assert.equal(beyond.etag, dataEtag);
    const empty = await source.read(5, 0);
    assert.equal(empty.bytes.byteLength, 0);
    assert.equal(empty.size, PATTERN_BYTES);
  });

  test('stat gives size, ETag and modification time', async () => {
    const s = await (await open(`az://${CONTAINER}/${PATTERN_BLOB}`)).stat();
    assert.equal(s.size, PATTERN_BYTES);
    assert.equal(s.etag, dataEtag);
    assert.ok(s.lastModified instanceof Date);
  });

  test("a changed blob fails reads that carry ifMatch with kind 'changed'", async () => {
    const name = 'data/changing.bin';
    const url = `az://${CONTAINER}/${name}`;
    await container.getBlockBlobClient(name).uploadData(pattern(64 * KiB, 1));
    const source = await open(url);
    const first = await source.read(0, 100);
    const same = await source.read(100, 100, { ifMatch: first.etag });
    assert.deepEqual(same.bytes, pattern(64 * KiB, 1).subarray(100, 200));
    await container.getBlockBlobClient(name).uploadData(pattern(64 * KiB, 2));
    const e = await rejectsWithKind(source.read(0, 100, { ifMatch: first.etag }), 'changed', url);
    assert.equal(e.code, 409);
    await rejectsWithKind(source.stat({ ifMatch: first.etag }), 'changed');
    const now = await source.read(0, 100);
    assert.notEqual(now.etag, first.etag);
    assert.deepEqual(now.bytes, pattern(64 * KiB, 2).subarray(0, 100));
  });

  test("missing blobs and containers are 'not-found', naming the URL", async () => {
    const missing = await open(`az://${CONTAINER}/no/such.tif`);
    const e = await rejectsWithKind(missing.read(0, 10), 'not-found', `az://${CONTAINER}/no/such.tif`);
    assert.equal(e.code, 404);
    await rejectsWithKind(missing.stat(), 'not-found');
    const noContainer = await open('az://no-such-container/a.tif');
    await rejectsWithKind(noContainer.read(0, 10), 'not-found');
  });

  test("a wrong key is 'forbidden' naming the container and the credential tried; a dead endpoint 'unreachable'", async () => {
    const wrongKey = Buffer.alloc(64, 7).toString('base64');
    const wrong = await open(`az://${CONTAINER}/${PATTERN_BLOB}`, {
      accountKey: wrongKey,
      credentialSource: 'COGMILL_AZURE_ACCOUNT_KEY',
    });
    const e = await rejectsWithKind(wrong.read(0, 1), 'forbidden');
    assert.match(e.message, new RegExp(`container ${CONTAINER}`));
    assert.match(e.message, /shared key of account cogmill[0-9a-f]+ \(COGMILL_AZURE_ACCOUNT_KEY\)/);
    assert.equal(wrong.stats.requests, 1, 'a 403 is not retried');

    const dead = await open(`az://${CONTAINER}/${PATTERN_BLOB}`, {
      endpoint: `http://127.0.0.1:1/${azurite.account}`,
      maxAttempts: 2,
    });
    await rejectsWithKind(dead.read(0, 1), 'unreachable', 'after 2 attempts');
    assert.equal(dead.stats.requests, 2);
  });

  test('https URLs: under the configured endpoint with its credentials, or with a SAS of their own', async () => {
    const plain = await open(`${azurite.endpoint}/${CONTAINER}/${PATTERN_BLOB}`);
    assert.deepEqual((await plain.read(5, 10)).bytes, data.subarray(5, 15));

    // a SAS URL needs no configured credentials at all
    const url = sasUrl(PATTERN_BLOB);
    const clients = await createAzureClients({});
    assert.equal(clients.credentialKind, 'none');
    const viaSas = await SourceAzure.open(clients, url, {});
    assert.equal(viaSas.url, `${azurite.endpoint}/${CONTAINER}/${PATTERN_BLOB}`, 'the SAS is not part of the URL');
    assert.deepEqual((await viaSas.read(MiB, 100)).bytes, data.subarray(MiB, MiB + 100));
    // a SAS for another blob is refused by the service
    const other = sasUrl('data/other.bin').replace('data/other.bin', PATTERN_BLOB);
    const e = await rejectsWithKind((await SourceAzure.open(clients, other, {})).read(0, 1), 'forbidden');
    assert.ok(!e.message.includes('sig='), 'no signature in messages');
  });

  test('az:// without any configured account is a clear error', async () => {
    const clients = await createAzureClients({});
    await rejectsWithKind(SourceAzure.open(clients, `az://${CONTAINER}/x.tif`), 'bad-request', 'azure.account');
  });

  test('credential order: connection string, then shared key, then SAS', async () => {
    const cs = await createAzureClients({ ...settings, connectionString: azurite.connectionString });
    assert.equal(cs.credentialKind, 'connection-string');
    assert.equal(cs.endpoint, azurite.endpoint);
    const key = await createAzureClients({ ...settings, sasToken: 'sv=x&sig=y' });
    assert.equal(key.credentialKind, 'shared-key');
    const sas = await createAzureClients({ account: azurite.account, endpoint: azurite.endpoint, sasToken: '?sv=x' });
    assert.equal(sas.credentialKind, 'sas');
  });

  test('URLs that name no blob are refused', async () => {
    const clients = await createAzureClients(settings);
    await rejectsWithKind(SourceAzure.open(clients, 'https://example.com/a.tif'), 'bad-request');
    await rejectsWithKind(SourceAzure.open(clients, `az://${CONTAINER}/`), 'bad-request');
    assert.deepEqual(parseAzureUrl(`az://${CONTAINER}`), { container: CONTAINER, blob: '' });
    assert.throws(() => parseAzureUrl('s3://a/b'), { kind: 'bad-request' });
  });
});

describe('listAzureTiffs', () => {
  const names = [
    'tiles/b.TIFF',
    'tiles/a.tif',
    'tiles/notes.txt',
    'tiles/sub/d.tif',
    'tiles/c.tif.aux.xml',
    'tiles2/e.tif',
  ];
  before(async () => {
    await Promise.all(names.map((n) => container.getBlockBlobClient(n).uploadData(Buffer.from(n))));
  });

  test('lists .tif/.tiff blobs under a prefix, sorted, across pages', async () => {
    const clients = await createAzureClients(settings);
    const want = [
      `az://${CONTAINER}/tiles/a.tif`,
      `az://${CONTAINER}/tiles/b.TIFF`,
      `az://${CONTAINER}/tiles/sub/d.tif`,
    ];
    assert.deepEqual(await listAzureTiffs(clients, `az://${CONTAINER}/tiles/`), want);
    assert.deepEqual(await listAzureTiffs(clients, `az://${CONTAINER}/tiles`), want);
    assert.deepEqual(await listAzureTiffs(clients, `az://${CONTAINER}/tiles/`, 100, 2), want);
    const all = await listAzureTiffs(clients, `az://${CONTAINER}`, 100, 1);
    assert.deepEqual(all, [...want, `az://${CONTAINER}/tiles2/e.tif`]);
  });

  test('too many matches and a missing container are clear errors', async () => {
    const clients = await createAzureClients(settings);
    await rejectsWithKind(listAzureTiffs(clients, `az://${CONTAINER}/tiles/`, 2), 'too-large', 'narrower prefix');
    await rejectsWithKind(listAzureTiffs(clients, 'az://no-such-container/x/'), 'not-found', 'no-such-container');
    assert.deepEqual(await listAzureTiffs(clients, `az://${CONTAINER}/nothing-here/`), []);
  });
});

describe('through the fault proxy', () => {
  const getBlob = (u: URL) => u.pathname.endsWith(`/${PATTERN_BLOB}`) && !u.searchParams.has('comp');

  test('503 ServerBusy on Get Blob is retried and the bytes are right', async () => {
    const proxy = await startFaultProxy(azurite.endpoint.replace(/\/[^/]+$/, ''), [
      { name: 'busy', method: 'GET', match: getBlob, maxTimes: 2, action: { kind: 'error', code: 'ServerBusy' } },
    ]);
    try {
      const source = await open(`az://${CONTAINER}/${PATTERN_BLOB}`, { endpoint: `${proxy.url}/${azurite.account}` });
      const r = await source.read(12345, 256 * KiB);
      assert.deepEqual(r.bytes, data.subarray(12345, 12345 + 256 * KiB));
      assert.equal(r.etag, dataEtag);
      assert.equal(proxy.stats.faults.busy, 2);
      assert.equal(source.stats.requests, 3);
      assert.equal(source.stats.retries, 2);
    } finally {
      await proxy.stop();
    }
  });

  test('a connection cut in the middle of the body is read again', async () => {
    const proxy = await startFaultProxy(azurite.endpoint.replace(/\/[^/]+$/, ''), [
      { name: 'cut', method: 'GET', match: getBlob, maxTimes: 1, action: { kind: 'reset', afterBytes: 100 * KiB } },
    ]);
    try {
      const source = await open(`az://${CONTAINER}/${PATTERN_BLOB}`, { endpoint: `${proxy.url}/${azurite.account}` });
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
    const proxy = await startFaultProxy(azurite.endpoint.replace(/\/[^/]+$/, ''), [
      { name: 'slow', method: 'GET', action: { kind: 'delay', ms: 3_000 } },
    ]);
    try {
      const endpoint = `${proxy.url}/${azurite.account}`;
      const slow = await open(`az://${CONTAINER}/${PATTERN_BLOB}`, { endpoint, timeoutMs: 300, maxAttempts: 1 });
      await rejectsWithKind(slow.read(0, 10), 'timeout', 'did not answer within 300 ms');
      const patient = await open(`az://${CONTAINER}/${PATTERN_BLOB}`, { endpoint });
      const reason = new Error('tile request cancelled');
      const controller = new AbortController();
      setTimeout(() => controller.abort(reason), 100);
      await assert.rejects(patient.read(0, 10, { signal: controller.signal }), (e) => e === reason);
    } finally {
      await proxy.stop();
    }
  });
});

describe('Engine with Azure sources', () => {
  test('az:// prefixes expand to their .tif blobs; URLs outside the allow-list are refused', async () => {
    const engine = new Engine({ azure: settings, allowedUrlPrefixes: [`az://${CONTAINER}/tiles/`] });
    try {
      assert.deepEqual(await engine.expand([`az://${CONTAINER}/tiles/`]), [
        `az://${CONTAINER}/tiles/a.tif`,
        `az://${CONTAINER}/tiles/b.TIFF`,
        `az://${CONTAINER}/tiles/sub/d.tif`,
      ]);
      await rejectsWithKind(engine.expand([`az://${CONTAINER}/tiles2/`]), 'forbidden', 'allowed URL prefix');
      await rejectsWithKind(engine.source(`az://${CONTAINER}/tiles/../data/pattern.bin`), 'forbidden');
      await rejectsWithKind(engine.source(`az://${CONTAINER}/data/pattern.bin`), 'forbidden');
      const s = await engine.source(`az://${CONTAINER}/tiles/a.tif`);
      assert.ok(s instanceof SourceAzure);
      assert.equal(new TextDecoder().decode((await s.read(0, 100)).bytes), 'tiles/a.tif');
      // an https URL under the configured endpoint is an Azure source too
      const h = await new Engine({ azure: settings, allowedUrlPrefixes: [`${azurite.endpoint}/`] }).source(
        `${azurite.endpoint}/${CONTAINER}/tiles/b.TIFF`,
      );
      assert.ok(h instanceof SourceAzure);
    } finally {
      await engine.close();
    }
  });
});
