/**
 * A real cogmill server as a child process (`node bin/cogmill.js serve --config FILE`, as the `cogmill` command), and an HTTP load generator
 * with bounded concurrency (loopback only) that records the latency of every request.
 */
import { writeFile } from 'node:fs/promises';
import { Agent, get } from 'node:http';
import path from 'node:path';
import type { MosaicSpec } from '../src/render/mosaic.ts';
import { type Child, NODE, REPO_DIR, startChild } from './support.ts';

export interface ServerChild {
  readonly url: string;
  readonly child: Child;
  stop(): Promise<void>;
}

/** Start `cogmill serve` on a free loopback port with these mosaics; resolves once it listens. */
export async function startCogmillServer(
  dir: string,
  mosaics: readonly MosaicSpec[],
  opts: {
    roots: readonly string[];
    logLevel?: string;
    nodeArgs?: readonly string[];
    extra?: Record<string, unknown>;
  } = { roots: [] },
): Promise<ServerChild> {
  const config = {
    ...opts.extra,
    server: { host: '127.0.0.1', port: 0 },
    sources: { roots: opts.roots },
    log: { level: opts.logLevel ?? 'info' },
    mosaics: mosaics.map((m) => ({
      id: m.id,
      sources: m.sources,
      ...(m.crs ? { crs: m.crs } : {}),
      ...(m.resolution ? { resolution: [...m.resolution] } : {}),
    })),
  };
  const file = path.join(dir, `cogmill-${mosaics.map((m) => m.id).join('-')}.json`);
  await writeFile(file, JSON.stringify(config, null, 2));
  const child = startChild(NODE, [
    ...(opts.nodeArgs ?? []),
    path.join(REPO_DIR, 'bin', 'cogmill.js'),
    'serve',
    '--config',
    file,
  ]);
  try {
    const m = await child.waitFor(/cogmill listening on (http:\/\/[^\s]+)/, 60_000);
    return { url: m[1], child, stop: () => child.stop(10_000) };
  } catch (e) {
    await child.stop(1_000);
    throw e;
  }
}

export interface LoadResult {
  readonly requests: number;
  readonly wallMs: number;
  readonly latenciesMs: number[];
  readonly bytes: number;
  /** status code -> count */
  readonly statuses: Record<string, number>;
  readonly failures: string[];
}

/**
 * GET every URL once with `concurrency` clients pulling from one queue over keep-alive connections, reading each
 * body to the end; every request is bounded by timeoutMs. node:http rather than fetch: on 2 cores the client's
 * own cost counts, and fetch's costs about twice as much CPU per request (a /healthz ceiling of ~3,500 vs ~7,000/s
 * here).
 */
export async function load(urls: readonly string[], concurrency: number, timeoutMs = 60_000): Promise<LoadResult> {
  const latencies: number[] = new Array(urls.length);
  const statuses: Record<string, number> = {};
  const failures: string[] = [];
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let bytes = 0;
  let next = 0;
  const one = (url: string) =>
    new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
      const req = get(url, { agent, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (b: Buffer) => chunks.push(b));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
    });
  const t0 = performance.now();
  const client = async () => {
    while (next < urls.length) {
      const i = next++;
      const t = performance.now();
      try {
        const { status, body } = await one(urls[i]);
        bytes += body.byteLength;
        statuses[status] = (statuses[status] ?? 0) + 1;
        if (status !== 200 && failures.length < 5)
          failures.push(`${status} ${urls[i]}: ${body.toString().slice(0, 200)}`);
      } catch (e) {
        statuses.error = (statuses.error ?? 0) + 1;
        if (failures.length < 5) failures.push(`${urls[i]}: ${(e as Error).message}`);
      }
      latencies[i] = performance.now() - t;
    }
  };
  try {
    await Promise.all(Array.from({ length: concurrency }, client));
  } finally {
    agent.destroy();
  }
  return { requests: urls.length, wallMs: performance.now() - t0, latenciesMs: latencies, bytes, statuses, failures };
}
