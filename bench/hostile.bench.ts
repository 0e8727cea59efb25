/**
 * Hostile load against a real `cogmill serve` child process:
 *
 * 1. /healthz latency while 8 hostile requests are in flight (decompression bombs of each codec, statistics of
 *    4 M values with 1,000 bins, a large preview), against /healthz on the idle server: the event loop must stay
 *    free (the target is an answer within 100 ms).
 * 2. Soak: RSS after a warm-up of ordinary tile requests, then after bursts of the heaviest legal requests; it
 *    must come back to within 20% of the warm level once the burst is over (memory a burst took is given back).
 *
 *   node bench/hostile.bench.ts [--rounds N]
 *   MALLOC_MMAP_THRESHOLD_=131072 node bench/hostile.bench.ts    (as the container runs it)
 *
 * Prints one JSON line per phase and a summary.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { HOSTILE_MOSAICS, HOSTILE_REQUESTS, pollHealthz, writeHostileSet } from '../test/support/hostile.load.ts';
import { noiseTiff } from '../test/support/tiff.hostile.ts';
import { load, startCogmillServer } from './server.ts';
import { MiB, percentile, round } from './support.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' } } });
const ROUNDS = Number(values.rounds);

async function metricsOf(url: string): Promise<string> {
  // a kept-alive connection the server has just closed resets once: ask again on a new one
  for (let attempt = 0; ; attempt++) {
    try {
      return await (await fetch(`${url}/metrics`)).text();
    } catch (e) {
      if (attempt >= 2) throw e;
    }
  }
}

function metric(text: string, name: string): number {
  let sum = 0;
  for (const l of text.split('\n')) if (l.startsWith(name) && !l.startsWith('#')) sum += Number(l.split(' ').at(-1));
  return sum;
}

async function rssOf(url: string): Promise<number> {
  return metric(await metricsOf(url), 'cogmill_process_resident_memory_bytes');
}

/** Where the memory is: RSS, V8 heap, ArrayBuffers/Buffers outside the heap, and cogmill's caches (MiB). */
async function memoryOf(url: string): Promise<Record<string, number>> {
  const t = await metricsOf(url);
  return {
    rssMiB: round(metric(t, 'cogmill_process_resident_memory_bytes') / MiB, 1),
    heapUsedMiB: round(metric(t, 'cogmill_nodejs_heap_size_used_bytes') / MiB, 1),
    heapTotalMiB: round(metric(t, 'cogmill_nodejs_heap_size_total_bytes') / MiB, 1),
    externalMiB: round(metric(t, 'cogmill_nodejs_external_memory_bytes') / MiB, 1),
    cachesMiB: round(metric(t, 'cogmill_cache_bytes') / MiB, 1),
  };
}

async function healthLatencies(url: string, whileRunning: () => boolean, min = 20): Promise<number[]> {
  return (await pollHealthz(url, whileRunning, min)).map((h) => h.latencyMs);
}

const dir = await mkdtemp(path.join(tmpdir(), 'cogmill-hostile-bench-'));
const data = path.join(dir, 'data');
await mkdir(data);
await writeHostileSet(data);
await writeFile(path.join(data, 'big.tif'), noiseTiff(4096, 4096, 12));

const server = await startCogmillServer(
  dir,
  [
    ...HOSTILE_MOSAICS.map((id) => ({ id, sources: [path.join(data, `${id}.tif`)] })),
    { id: 'big', sources: [path.join(data, 'big.tif')] },
  ],
  { roots: [dir], logLevel: 'warn', extra: { limits: { maxStatisticsPixels: 2048 * 2048, maxPreviewSize: 2048 } } },
);
try {
  const url = server.url;
  // 1. /healthz latency, idle and under 8 hostile requests
  await fetch(`${url}/mosaics/noise/preview.png?max_size=64&rescale=0,60000`);
  const idle = await healthLatencies(url, () => false, 50);
  let running = true;
  const t0 = performance.now();
  const work = load(
    HOSTILE_REQUESTS.map((p) => `${url}${p}`),
    8,
  ).finally(() => {
    running = false;
  });
  const busy = await healthLatencies(url, () => running);
  const result = await work;
  const phase1 = {
    phase: 'healthz under 8 hostile requests',
    loadAverage: round(loadavg()[0], 1),
    hostileWallMs: round(performance.now() - t0),
    hostileStatuses: result.statuses,
    healthzIdleMaxMs: round(Math.max(...idle)),
    healthzIdleP50Ms: round(percentile(idle, 50)),
    healthzBusyMaxMs: round(Math.max(...busy)),
    healthzBusyP50Ms: round(percentile(busy, 50)),
    healthzBusyCount: busy.length,
    eventLoopStalls: metric(await metricsOf(url), 'cogmill_event_loop_stalls_total'),
    eventLoopDelayMaxMs: round(metric(await metricsOf(url), 'cogmill_event_loop_delay_max_seconds') * 1000),
  };
  process.stdout.write(`${JSON.stringify(phase1)}\n`);

  // 2. soak: warm with ordinary tiles, then bursts of the heaviest legal requests
  const tiles: string[] = [];
  for (let i = 0; i < 400; i++) tiles.push(`${url}/mosaics/big/preview.png?max_size=${64 + (i % 200)}&rescale=0,60000`);
  await load(tiles, 4);
  await new Promise((r) => setTimeout(r, 3000));
  const warm = await rssOf(url);
  const warmMemory = await memoryOf(url);
  const heavy: string[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    for (let k = 0; k < 4; k++) {
      heavy.push(`${url}/mosaics/big/preview.png?max_size=${2048 - r * 8 - k}`);
      heavy.push(`${url}/mosaics/big/statistics?bins=${1000 - r * 4 - k}`);
      heavy.push(`${url}/mosaics/${HOSTILE_MOSAICS[k]}/preview.png?max_size=${512 + r * 4 + k}`);
      heavy.push(`${url}/mosaics/big/bbox/${await bboxOf(url)}.tif?width=${2000 - r * 4 - k}`);
    }
  }
  let peak = warm;
  let bursting = true;
  const sampler = (async () => {
    while (bursting) {
      peak = Math.max(peak, await rssOf(url));
      await new Promise((res) => setTimeout(res, 200));
    }
  })();
  const burst = await load(heavy, 8, 300_000);
  bursting = false;
  await sampler;
  const after: number[] = [];
  for (let i = 0; i < 30; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    after.push(await rssOf(url));
    if (after.at(-1)! <= warm * 1.2 && i >= 4) break;
  }
  const settled = after.at(-1)!;
  const phase2 = {
    phase: 'soak',
    // glibc's malloc: a fixed mmap threshold hands large freed buffers back to the OS (see README, Memory)
    mallocMmapThreshold: process.env.MALLOC_MMAP_THRESHOLD_ ?? 'glibc default (dynamic)',
    loadAverage: round(loadavg()[0], 1),
    heavyRequests: heavy.length,
    heavyStatuses: burst.statuses,
    warmRssMiB: round(warm / MiB, 1),
    peakRssMiB: round(peak / MiB, 1),
    afterRssMiB: round(settled / MiB, 1),
    afterOverWarmPct: round((settled / warm - 1) * 100, 1),
    secondsToSettle: after.length,
    withinTwentyPct: settled <= warm * 1.2,
    warmMemory,
    afterMemory: await memoryOf(url),
  };
  process.stdout.write(`${JSON.stringify(phase2)}\n`);
} finally {
  await server.stop();
  await rm(dir, { recursive: true, force: true });
}

async function bboxOf(url: string): Promise<string> {
  const m = (await (await fetch(`${url}/mosaics/big`)).json()) as { boundsWgs84: number[] };
  const [a, b, c, d] = m.boundsWgs84;
  return [a, b, a + (c - a) * 0.9, b + (d - b) * 0.9].map((v) => v.toFixed(6)).join(',');
}
