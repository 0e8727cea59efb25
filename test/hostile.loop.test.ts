/**
 * The event loop stays free while hostile requests are in flight: decompression bombs of every codec, statistics
 * of millions of values with 1,000 bins, a large preview. The server counts event-loop stalls (the main thread
 * busy for more than 100 ms without a break: cogmill_event_loop_stalls_total); none may happen, and /healthz
 * keeps answering meanwhile. In its own file, so the test process holds nothing else (a large heap makes long
 * garbage collections, which would count as stalls). The latency figure is in bench/hostile.bench.ts.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startTestServer, type TestServer } from './support/app.ts';
import { HOSTILE_MOSAICS, HOSTILE_REQUESTS, pollHealthz, writeHostileSet } from './support/hostile.load.ts';

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
    await writeHostileSet(data);
    s = await startTestServer({
      sources: { roots: [dir] },
      limits: { maxStatisticsPixels: 2048 * 2048 },
      mosaics: [...HOSTILE_MOSAICS.map((id) => ({ id, sources: [path.join(data, `${id}.tif`)] }))],
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
    let done = false;
    const answered = HOSTILE_REQUESTS.map(async (p) => {
      const r = await fetch(`${s.url}${p}`);
      await r.arrayBuffer();
      return r.status;
    });
    const all = Promise.all(answered).finally(() => {
      done = true;
    });
    const health = (await pollHealthz(s.url, () => !done)).filter((h) => h.status === 200).length;
    const statuses = await all;
    for (const st of statuses) assert.ok(st === 200, `statuses ${statuses.join(',')}`);
    assert.ok(health >= 1, 'healthz answered while the requests ran');
    assert.equal(await stalls(), before, 'the event loop was blocked for more than 100 ms');
  });
});
