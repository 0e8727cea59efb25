/**
 * A bounded load test of the real service: `cogmill serve` as a child process on loopback, N keep-alive
 * connections for a fixed time over a mixed, seeded list of requests (XYZ tiles at every zoom and a few styles,
 * virtual COG byte ranges, catalog / TileJSON / point / statistics / health requests). It reports errors, latency
 * per class, the server's open file descriptors (/proc/PID/fd) and resident memory (VmRSS) before, during and
 * after, checks one summary log line per request and a clean SIGTERM exit, and appends a section to
 * bench/RESULTS.md.
 *
 *   node bench/load.bench.ts [--duration 120] [--connections 32] [--small] [--no-record]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { prng } from '../src/demo.data.ts';
import { ensureBenchData } from './data.ts';
import { appendResults, MiB, NODE, note, percentile, REPO_DIR, round, sleep, table } from './support.ts';

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    duration: { type: 'string', default: '120' },
    connections: { type: 'string', default: '32' },
    small: { type: 'boolean', default: false },
    'no-record': { type: 'boolean', default: false },
  },
});
const DURATION_MS = Number(values.duration) * 1000;
const CONNECTIONS = Number(values.connections);
const REQUEST_TIMEOUT_MS = 60_000;
const SAMPLE_EVERY_MS = 2_000;
if (!(DURATION_MS > 0 && DURATION_MS <= 30 * 60_000) || !(CONNECTIONS >= 1 && CONNECTIONS <= 1024)) {
  throw new Error('--duration must be 1..1800 seconds and --connections 1..1024');
}

type RequestClass = 'tile' | 'vcog' | 'info';

interface Planned {
  readonly cls: RequestClass;
  readonly method: 'GET' | 'HEAD';
  readonly path: string;
  readonly headers?: Record<string, string>;
  /** statuses that count as success */
  readonly ok: readonly number[];
}

function tileRange(b: readonly number[], z: number): { x0: number; x1: number; y0: number; y1: number } {
  const n = 2 ** z;
  const x = (lon: number) => Math.min(n - 1, Math.max(0, Math.floor(((lon + 180) / 360) * n)));
  const y = (lat: number) => {
    const r = (lat * Math.PI) / 180;
    return Math.min(n - 1, Math.max(0, Math.floor(((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2) * n)));
  };
  return { x0: x(b[0]), x1: x(b[2]), y0: y(b[3]), y1: y(b[1]) };
}

/** One HTTP exchange; the body is read to the end. */
function exchange(
  agent: Agent,
  base: URL,
  p: Planned,
): Promise<{ status: number; bytes: number; ms: number; error?: string }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = request(
      { agent, host: base.hostname, port: base.port, method: p.method, path: p.path, headers: p.headers },
      (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.byteLength;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, ms: performance.now() - t0 }));
        res.on('error', (e) => resolve({ status: 0, bytes, ms: performance.now() - t0, error: e.message }));
      },
    );
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', (e) => resolve({ status: 0, bytes: 0, ms: performance.now() - t0, error: e.message }));
    req.end();
  });
}

async function getJson<T>(base: string, p: string): Promise<T> {
  const res = await fetch(`${base}${p}`, { signal: AbortSignal.timeout(30_000) });
  if (!res.ok) throw new Error(`${p}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return -1;
  }
}

async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = /^VmRSS:\s*(\d+)\s*kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

async function startServer(
  configFile: string,
  logFile: string,
): Promise<{ proc: ChildProcess; url: string; exit: Promise<number | null> }> {
  const out = openSync(logFile, 'w');
  const proc = spawn(NODE, [path.join(REPO_DIR, 'bin', 'cogmill.js'), 'serve', '--config', configFile], {
    cwd: REPO_DIR,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
    stdio: ['ignore', out, 'pipe'],
  });
  closeSync(out);
  const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let err = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cogmill did not start within 120 s: ${err}`)), 120_000);
    proc.stderr?.on('data', (d) => {
      err += String(d);
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`cogmill exited with ${code}: ${err}`));
    });
  });
  return { proc, url, exit };
}

async function main(): Promise<void> {
  const data = await ensureBenchData({ small: values.small });
  const dir = await mkdtemp(path.join(tmpdir(), 'cogmill-load-'));
  const configFile = path.join(dir, 'cogmill.json');
  const logFile = path.join(dir, 'cogmill.log');
  // caches smaller than the defaults so they fill (and must evict) within the run
  const config = {
    server: { host: '127.0.0.1', port: 0, shutdownGraceMs: 15_000 },
    cache: { headerBytes: 32 * MiB, blockBytes: 128 * MiB, tileBytes: 64 * MiB, virtualCogBytes: 64 * MiB },
    log: { level: 'info' },
    mosaics: [
      { id: 's2', sources: [data.s2West.cog, data.s2East.cog, data.s2Zone31.cog] },
      { id: 'rgb', sources: [data.rgb.cog] },
    ],
  };
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const server = await startServer(configFile, logFile);
  const pid = server.proc.pid ?? -1;
  note(`cogmill ${server.url} (pid ${pid}); ${CONNECTIONS} connections for ${DURATION_MS / 1000} s`);
  try {
    for (let i = 0; i < 60; i++) {
      const r = await fetch(`${server.url}/readyz`).catch(() => undefined);
      if (r?.status === 200) break;
      await sleep(1000);
    }

    // ---- the request mix (seeded)
    const rand = prng(20250101);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
    const plans: Planned[] = [];
    const styles: Record<string, string[]> = {
      s2: ['', '?rescale=0,4000', '?rescale=200,3500&colormap=viridis', '?resampling=bilinear&rescale=0,4000'],
      rgb: ['', '?rescale=20,230'],
    };
    for (const id of ['s2', 'rgb']) {
      const tj = await getJson<{ minzoom: number; maxzoom: number; bounds: number[] }>(
        server.url,
        `/mosaics/${id}/tilejson.json`,
      );
      const m = await getJson<{ boundsWgs84: number[] }>(server.url, `/mosaics/${id}`);
      const head = await fetch(`${server.url}/mosaics/${id}.tif`, { method: 'HEAD' });
      const size = Number(head.headers.get('content-length'));
      for (let i = 0; i < 1500; i++) {
        const z = tj.minzoom + Math.floor(rand() * (tj.maxzoom - tj.minzoom + 1));
        const r = tileRange(tj.bounds, z);
        const x = r.x0 + Math.floor(rand() * (r.x1 - r.x0 + 1));
        const y = r.y0 + Math.floor(rand() * (r.y1 - r.y0 + 1));
        plans.push({
          cls: 'tile',
          method: 'GET',
          path: `/mosaics/${id}/tiles/${z}/${x}/${y}.png${pick(styles[id])}`,
          ok: [200],
        });
      }
      for (let i = 0; i < 700; i++) {
        const header = rand() < 0.2;
        const start = header ? 0 : Math.floor(rand() * (size - 262_144));
        const end = header ? 16_383 : start + 65_536 + Math.floor(rand() * 196_608);
        plans.push({
          cls: 'vcog',
          method: 'GET',
          path: `/mosaics/${id}.tif`,
          headers: { range: `bytes=${start}-${end}` },
          ok: [206],
        });
      }
      plans.push({ cls: 'vcog', method: 'HEAD', path: `/mosaics/${id}.tif`, ok: [200] });
      const [w, s, e, n] = m.boundsWgs84;
      for (let i = 0; i < 200; i++) {
        const lon = w + rand() * (e - w);
        const lat = s + rand() * (n - s);
        // a point inside the WGS 84 bounds may fall outside the native grid's corners: 404 is a right answer
        plans.push({
          cls: 'info',
          method: 'GET',
          path: `/mosaics/${id}/point?lon=${lon.toFixed(6)}&lat=${lat.toFixed(6)}`,
          ok: [200, 404],
        });
      }
      for (const p of [
        `/mosaics/${id}`,
        `/mosaics/${id}/tilejson.json`,
        `/mosaics/${id}/statistics`,
        `/mosaics/${id}/WMTSCapabilities.xml`,
      ]) {
        for (let i = 0; i < 40; i++) plans.push({ cls: 'info', method: 'GET', path: p, ok: [200] });
      }
    }
    for (let i = 0; i < 60; i++) {
      plans.push({ cls: 'info', method: 'GET', path: '/mosaics', ok: [200] });
      plans.push({ cls: 'info', method: 'GET', path: '/healthz', ok: [200] });
    }
    // shuffle (Fisher-Yates, seeded)
    for (let i = plans.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [plans[i], plans[j]] = [plans[j], plans[i]];
    }

    // ---- before
    await sleep(1000);
    const before = { fds: fdCount(pid), rss: await rssBytes(pid) };
    const samples: { t: number; fds: number; rss: number }[] = [];

    // ---- load: CONNECTIONS clients until the deadline
    const agent = new Agent({ keepAlive: true, maxSockets: CONNECTIONS });
    const base = new URL(server.url);
    const results: Record<RequestClass, number[]> = { tile: [], vcog: [], info: [] };
    const statuses: Record<string, number> = {};
    const errors: string[] = [];
    let errorCount = 0;
    let bytes = 0;
    let next = 0;
    const t0 = performance.now();
    const deadline = t0 + DURATION_MS;
    const sampler = setInterval(() => {
      void rssBytes(pid).then((rss) => samples.push({ t: performance.now() - t0, fds: fdCount(pid), rss }));
    }, SAMPLE_EVERY_MS);
    const client = async () => {
      while (performance.now() < deadline) {
        const p = plans[next++ % plans.length];
        const r = await exchange(agent, base, p);
        bytes += r.bytes;
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        results[p.cls].push(r.ms);
        if (!p.ok.includes(r.status)) {
          errorCount++;
          if (errors.length < 10) errors.push(`${r.status} ${p.method} ${p.path}${r.error ? `: ${r.error}` : ''}`);
        }
      }
    };
    await Promise.all(Array.from({ length: CONNECTIONS }, client));
    const wallMs = performance.now() - t0;
    clearInterval(sampler);
    const metricsText = await (await fetch(`${server.url}/metrics`)).text();
    agent.destroy();
    await sleep(2000);
    const after = { fds: fdCount(pid), rss: await rssBytes(pid) };

    // ---- stop: SIGTERM must drain and exit 0
    const tStop = performance.now();
    server.proc.kill('SIGTERM');
    const code = await Promise.race([server.exit, sleep(30_000).then(() => 'timeout' as const)]);
    const stopMs = performance.now() - tStop;
    const logLines = (await readFile(logFile, 'utf8')).split('\n').filter((l) => l.includes('"msg":"request"'));
    const rejected = Number(/^cogmill_render_rejected_total (\d+)/m.exec(metricsText)?.[1] ?? 'NaN');
    const metricMiB = (name: string) => {
      const line = metricsText.split('\n').find((l) => l.startsWith(`${name} `));
      return line ? round(Number(line.slice(name.length + 1)) / MiB, 1) : null;
    };
    const memory = {
      heapUsed: metricMiB('cogmill_nodejs_heap_size_used_bytes'),
      external: metricMiB('cogmill_nodejs_external_memory_bytes'),
      headerCache: metricMiB('cogmill_cache_bytes{cache="header"}'),
      blockCache: metricMiB('cogmill_cache_bytes{cache="block"}'),
      tileCache: metricMiB('cogmill_cache_bytes{cache="tile"}'),
    };

    // ---- report
    const warmIndex = Math.floor(samples.length / 4);
    const warm = samples[warmIndex] ?? samples[0];
    const last = samples[samples.length - 1];
    const maxRss = Math.max(...samples.map((s) => s.rss));
    const maxFds = Math.max(...samples.map((s) => s.fds));
    const done = results.tile.length + results.vcog.length + results.info.length;
    const rows = (['tile', 'vcog', 'info'] as const).map((cls) => ({
      class: cls,
      requests: results[cls].length,
      'p50 ms': round(percentile(results[cls], 50), 1),
      'p90 ms': round(percentile(results[cls], 90), 1),
      'p99 ms': round(percentile(results[cls], 99), 1),
      'max ms': round(Math.max(...results[cls]), 1),
    }));
    const summary = {
      bench: 'load',
      connections: CONNECTIONS,
      durationS: round(wallMs / 1000, 1),
      requests: done,
      requestsPerSecond: round(done / (wallMs / 1000), 1),
      mbReceived: round(bytes / MiB, 1),
      errors: errorCount,
      statuses,
      renderRejected503: rejected,
      fds: { before: before.fds, maxDuring: maxFds, after: after.fds },
      rssMiB: {
        before: round(before.rss / MiB, 1),
        afterWarmup: round(warm.rss / MiB, 1),
        end: round(last.rss / MiB, 1),
        max: round(maxRss / MiB, 1),
        afterIdle: round(after.rss / MiB, 1),
      },
      rssGrowthAfterWarmupPercent: round(((last.rss - warm.rss) / warm.rss) * 100, 1),
      memoryAtEndMiB: memory,
      rssTraceMiB: samples.map((x) => round(x.rss / MiB, 0)),
      fdTrace: samples.map((x) => x.fds),
      summaryLogLines: logLines.length,
      sigtermExit: code,
      sigtermMs: round(stopMs, 0),
      firstErrors: errors,
    };
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    if (!values['no-record']) {
      const trace = samples
        .filter((_, i) => i % Math.max(1, Math.floor(samples.length / 12)) === 0)
        .map((s) => ({ 't s': round(s.t / 1000, 0), fds: s.fds, 'RSS MiB': round(s.rss / MiB, 1) }));
      await appendResults(
        `load: ${CONNECTIONS} connections for ${round(wallMs / 1000, 0)} s, mixed tiles / virtual COG ranges / info (bench/load.bench.ts)`,
        values.small,
        [
          {
            title: 'Requests',
            body: [
              `${done} requests in ${round(wallMs / 1000, 1)} s (${summary.requestsPerSecond}/s), ${summary.mbReceived} MiB received, ` +
                `**${errorCount} errors**; statuses ${JSON.stringify(statuses)}; 503 (render queue full) ${rejected}.`,
              '',
              'Mosaics: `s2` = three Sentinel-2-like uint16 scenes (two UTM zones, reprojected), `rgb` = an RGB uint8 image ' +
                'in EPSG:3857. Tiles at every zoom from minzoom to maxzoom of each mosaic with four styles, virtual COG ' +
                'ranges of 16-256 KiB (a fifth of them the header), points, catalog, TileJSON, WMTS, statistics and health. ' +
                'Caches were set below their defaults (tiles 64 MiB, blocks 128 MiB, virtual COG 64 MiB) so that they fill and evict.',
              '',
              table(rows),
            ].join('\n'),
          },
          {
            title: 'Resources of the server process',
            body: [
              `Open file descriptors: ${before.fds} before, at most ${maxFds} during (the ${CONNECTIONS} client sockets included), ${after.fds} after the clients closed.`,
              `RSS: ${summary.rssMiB.before} MiB before, ${summary.rssMiB.afterWarmup} MiB after the first quarter, ` +
                `${summary.rssMiB.end} MiB at the end (${summary.rssGrowthAfterWarmupPercent}% after warm-up), at most ${summary.rssMiB.max} MiB.`,
              `At the end (from /metrics, MiB): ${JSON.stringify(memory)}.`,
              `Summary log lines: ${logLines.length} for ${done} requests (+ the setup requests; successful /healthz probes are logged at debug, so not counted). SIGTERM: exit ${code} after ${summary.sigtermMs} ms.`,
              '',
              table(trace),
            ].join('\n'),
          },
        ],
      );
    }
  } finally {
    if (server.proc.exitCode === null) server.proc.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
