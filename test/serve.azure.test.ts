/**
 * A server whose mosaic's sources live in Azure Blob Storage (Azurite) answers exactly what it answers for the
 * same files on disk: tiles, the virtual COG, statistics; /readyz checks an Azure source, and /metrics counts its
 * requests and bytes.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { BlobServiceClient } from '@azure/storage-blob';
import { loadConfig } from '../src/config.ts';
import { buildServices, createLogger, type RunningServer, startServer } from '../src/main.ts';
import { Engine } from '../src/render/engine.ts';
import { lonLatToTile } from '../src/render/tilematrix.ts';
import { type Azurite, startAzurite } from './support/azurite.ts';
import { fixtureDir } from './support/gdal.ts';

const CONTAINER = 'cogs';

let azurite: Azurite;
let running: RunningServer;
let engine: Engine;
let url = '';

before(async () => {
  const dir = await fixtureDir();
  azurite = await startAzurite();
  const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(CONTAINER);
  await container.create();
  for (const n of ['utm31', 'utm32'])
    await container.getBlockBlobClient(`utm/${n}.tif`).uploadData(await readFile(path.join(dir, `${n}.tif`)));
  const config = await loadConfig({
    overrides: {
      log: { level: 'warn' },
      mosaics: [
        { id: 'az', sources: [`az://${CONTAINER}/utm/`] },
        { id: 'disk', sources: ['utm31', 'utm32'].map((n) => path.join(dir, `${n}.tif`)) },
      ],
    },
  });
  engine = new Engine({
    roots: [dir],
    allowedUrlPrefixes: [`az://${CONTAINER}/`],
    azure: { account: azurite.account, accountKey: azurite.accountKey, endpoint: azurite.endpoint },
  });
  const quiet = new Writable({ write: (_c, _e, cb) => cb() });
  const deps = await buildServices(config, { log: createLogger(config, quiet), engine });
  assert.deepEqual(deps.catalog.problems(), []);
  running = await startServer(deps, '127.0.0.1', 0);
  url = running.url;
});

after(async () => {
  await running?.close(500);
  await azurite?.stop();
});

const bytes = async (p: string, headers: Record<string, string> = {}) => {
  const r = await fetch(`${url}${p}`, { headers });
  assert.ok(r.status === 200 || r.status === 206, `${p}: HTTP ${r.status} ${r.status >= 400 ? await r.text() : ''}`);
  return Buffer.from(await r.arrayBuffer());
};

describe('serving a mosaic whose sources are in Azure Blob Storage', () => {
  test('tiles equal those of the same files on disk', async () => {
    const before = engine.sourceStats().az?.requests ?? 0;
    let compared = 0;
    const distinct = new Set<string>();
    for (const [z, lon, lat] of [
      [10, 6.0, 45.0],
      [12, 6.0, 45.0],
      [13, 5.99, 45.01],
      [14, 6.02, 44.99],
    ] as const) {
      const [x, y] = lonLatToTile(lon, lat, z);
      for (const q of ['rescale=0,4000', 'rescale=0,4000&colormap=viridis']) {
        const a = await bytes(`/mosaics/az/tiles/${z}/${x}/${y}.png?${q}`);
        const d = await bytes(`/mosaics/disk/tiles/${z}/${x}/${y}.png?${q}`);
        assert.ok(a.equals(d), `tile ${z}/${x}/${y}?${q} differs`);
        distinct.add(a.toString('base64'));
        compared++;
      }
    }
    assert.equal(compared, 8);
    assert.equal(distinct.size, 8, 'every tile compared is a different image (none is empty)');
    assert.ok((engine.sourceStats().az?.requests ?? 0) > before, 'the tiles read the Azure sources');
  });

  test('the virtual COG equals the one over the same files on disk', async () => {
    const head = await fetch(`${url}/mosaics/az.tif`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    const size = Number(head.headers.get('content-length'));
    assert.equal(
      size,
      Number((await fetch(`${url}/mosaics/disk.tif`, { method: 'HEAD' })).headers.get('content-length')),
    );
    // the header, and ranges spread over the tile data
    let nonZero = 0;
    const ranges = [
      [0, 16383],
      [Math.floor(size / 3), Math.floor(size / 3) + 300_000],
      [Math.floor(size / 2), Math.floor(size / 2) + 300_000],
      [size - 200_000, size - 1],
    ];
    for (const [a, b] of ranges) {
      const az = await bytes('/mosaics/az.tif', { range: `bytes=${a}-${b}` });
      const disk = await bytes('/mosaics/disk.tif', { range: `bytes=${a}-${b}` });
      assert.equal(az.byteLength, b - a + 1);
      assert.ok(az.equals(disk), `bytes ${a}-${b} differ`);
      if (a > 0) nonZero += az.reduce((n, v) => n + (v !== 0 ? 1 : 0), 0);
    }
    assert.ok(nonZero > 100_000, `the tile data compared holds pixels (${nonZero} non-zero bytes)`);
  });

  test('/readyz stats an Azure source; /metrics counts Azure source requests and bytes', async () => {
    const r = await fetch(`${url}/readyz`);
    const body = (await r.json()) as { status: string; mosaics: { id: string; status: string }[] };
    assert.equal(r.status, 200, JSON.stringify(body));
    assert.deepEqual(body.mosaics.map((m) => [m.id, m.status]).sort(), [
      ['az', 'ok'],
      ['disk', 'ok'],
    ]);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name}\\{kind="az"\\} (\\d+)`, 'm').exec(metrics)?.[1]);
    assert.ok(value('cogmill_source_requests_total') > 0, 'Azure source requests are counted');
    assert.ok(value('cogmill_source_bytes_total') > 0, 'Azure source bytes are counted');
    assert.equal(value('cogmill_source_retries_total'), 0);
  });
});
