/**
 * A real cogmill server as a child process (`node src/cli.ts serve --config FILE`), and an HTTP load generator
 * with bounded concurrency (loopback only) that records the latency of every request.
 */
import { writeFile } from 'node:fs/promises';
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
    mosaics: mosaics.map((m) => ({ id: m.id, sources: m.sources, ...(m.crs ? { crs: m.crs } : {}) })),
  };
  const file = path.join(dir, `cogmill-${mosaics.map((m) => m.id).join('-')}.json`);
  await writeFile(file, JSON.stringify(config, null, 2));
  const child = startChild(NODE, [
    ...(opts.nodeArgs ?? []),
    path.join(REPO_DIR, 'src', 'cli.ts'),
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
 * GET every URL once with `concurrency` clients pulling from one queue (keep-alive connections), reading each
 * body to the end. Each request is bounded by timeoutMs.
 */
export async function load(urls: readonly string[], concurrency: number, timeoutMs = 60_000): Promise<LoadResult> {
  const latencies: number[] = new Array(urls.length);
  const statuses: Record<string, number> = {};
  const failures: string[] = [];
  let bytes = 0;
  let next = 0;
  const t0 = performance.now();
  const client = async () => {
    while (next < urls.length) {
      const i = next++;
      const t = performance.now();
      try {
        const res = await fetch(urls[i], { signal: AbortSignal.timeout(timeoutMs) });
        const body = await res.arrayBuffer();
        bytes += body.byteLength;
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        if (res.status !== 200 && failures.length < 5)
          failures.push(`${res.status} ${urls[i]}: ${Buffer.from(body).toString().slice(0, 200)}`);
      } catch (e) {
        statuses.error = (statuses.error ?? 0) + 1;
        if (failures.length < 5) failures.push(`${urls[i]}: ${(e as Error).message}`);
      }
      latencies[i] = performance.now() - t;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, client));
  return { requests: urls.length, wallMs: performance.now() - t0, latenciesMs: latencies, bytes, statuses, failures };
}
