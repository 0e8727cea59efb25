/**
 * The event loop stays free while hostile requests are in flight: decompression bombs of every codec, statistics
 * of millions of values with 1,000 bins, a large preview. The server counts event-loop stalls (the main thread
 * busy for more than 100 ms without a break: cogmill_event_loop_stalls_total); none may happen, and /healthz
 * keeps answering meanwhile. In its own file, so the test process holds nothing else (a large heap makes long
 * garbage collections, which would count as stalls). The latency figure is in bench/hostile.bench.ts.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as zlib from 'node:zlib';
import { startTestServer, type TestServer } from './support/app.ts';
import { COMPRESSION, deflateBomb, hostileTiff, lzwBomb, packbitsBomb, zstdBomb } from './support/tiff.hostile.ts';

const MiB = 1024 * 1024;

function metric(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(name) && !l.startsWith('#'));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

let dir = '';
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cogmill-loop-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the event loop stays free while hostile requests are in flight', () => {
  let s: TestServer;
  before(async () => {
    const data = path.join(dir, 'loop');
    await mkdir(data, { recursive: true });
    const bombs: [string, number, Uint8Array][] = [
      ['deflate', COMPRESSION.deflate, await deflateBomb(256 * MiB)],
      ['zstd', COMPRESSION.zstd, await zstdBomb(256 * MiB)],
      ['lzw', COMPRESSION.lzw, lzwBomb(256 * MiB)],
      ['packbits', COMPRESSION.packbits, packbitsBomb(64 * MiB)],
    ];
    for (const [name, compression, bomb] of bombs) {
      await writeFile(
        path.join(data, `${name}.tif`),
        hostileTiff({
          width: 512,
          height: 512,
          tileSize: 256,
          bitsPerSample: 16,
          compression,
          tiles: [bomb, bomb, bomb, bomb],
          nodata: '0',
        }),
      );
    }
    // 2048 x 2048 of noise: statistics sort 4 M values per band
    const tiles: Uint8Array[] = [];
    let seed = 11;
    for (let i = 0; i < 64; i++) {
      const t = new Uint16Array(256 * 256);
      for (let k = 0; k < t.length; k++) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        t[k] = 1 + (seed % 60000);
      }
      tiles.push(new Uint8Array(zlib.deflateSync(new Uint8Array(t.buffer), { level: 1 })));
    }
    await writeFile(
      path.join(data, 'noise.tif'),
      hostileTiff({ width: 2048, height: 2048, tileSize: 256, bitsPerSample: 16, compression: 8, tiles, nodata: '0' }),
    );
    s = await startTestServer({
      sources: { roots: [dir] },
      limits: { maxStatisticsPixels: 2048 * 2048 },
      mosaics: [
        ...bombs.map(([name]) => ({ id: name, sources: [path.join(data, `${name}.tif`)] })),
        { id: 'noise', sources: [path.join(data, 'noise.tif')] },
      ],
    });
  });
  after(async () => {
    await s.stop();
  });

  test('8 hostile requests at once: no event-loop stall over 100 ms in the server, /healthz keeps answering', async () => {
    const stalls = async () =>
      metric(await (await fetch(`${s.url}/metrics`)).text(), 'cogmill_event_loop_stalls_total');
    // warm: the first request of a kind loads code (sharp, decoders) once
    await fetch(`${s.url}/mosaics/noise/preview.png?max_size=64&rescale=0,60000`);
    await fetch(`${s.url}/healthz`);
    const before = await stalls();
    const hostile = [
      '/mosaics/deflate/preview.png?max_size=512',
      '/mosaics/zstd/preview.png?max_size=512',
      '/mosaics/lzw/preview.png?max_size=512',
      '/mosaics/packbits/preview.png?max_size=512',
      '/mosaics/noise/statistics?bins=1000',
      '/mosaics/noise/statistics?bins=999',
      '/mosaics/noise/preview.png?max_size=1024',
      '/mosaics/deflate/statistics?bins=1000',
    ];
    let done = false;
    const answered = hostile.map(async (p) => {
      const r = await fetch(`${s.url}${p}`);
      await r.arrayBuffer();
      return r.status;
    });
    const all = Promise.all(answered).finally(() => {
      done = true;
    });
    let health = 0;
    while (!done) {
      const h = await fetch(`${s.url}/healthz`);
      if (h.status === 200) health++;
      await h.arrayBuffer();
    }
    const statuses = await all;
    for (const st of statuses) assert.ok(st === 200, `statuses ${statuses.join(',')}`);
    assert.ok(health >= 1, 'healthz answered while the requests ran');
    assert.equal(await stalls(), before, 'the event loop was blocked for more than 100 ms');
  });
});
