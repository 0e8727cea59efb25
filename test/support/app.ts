/** Start the real app on port 0 for integration tests, with a config built from overrides. */
import path from 'node:path';
import { Writable } from 'node:stream';
import type { Config } from '../../src/config.schema.ts';
import { loadConfig } from '../../src/config.ts';
import { buildServices, createLogger, type RunningServer, startServer } from '../../src/main.ts';
import type { AppDeps } from '../../src/server/deps.ts';
import { fixtureDir, tempDir } from './gdal.ts';

export interface TestServer {
  readonly url: string;
  readonly deps: AppDeps;
  readonly running: RunningServer;
  /** JSON log lines written so far */
  readonly logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

/** Start the app and fail at once (naming the mosaic and why) when a configured mosaic could not be opened. */
export async function startTestServerOpen(overrides: Record<string, unknown>): Promise<TestServer> {
  const server = await startTestServer(overrides);
  const problems = server.deps.catalog.problems();
  if (problems.length) {
    await server.stop();
    throw new Error(problems.map((p) => `mosaic ${p.id}: ${p.error?.message}`).join('; '));
  }
  return server;
}

export async function startTestServer(overrides: Record<string, unknown>): Promise<TestServer> {
  const config: Config = await loadConfig({ overrides: { log: { level: 'info' }, ...overrides } });
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line.trim()) logs.push(JSON.parse(line));
      cb();
    },
  });
  const log = createLogger(config, sink);
  const deps = await buildServices(config, { log });
  const running = await startServer(deps, '127.0.0.1', 0);
  return {
    url: running.url,
    deps,
    running,
    logs,
    stop: async () => {
      await running.close(500);
    },
  };
}

export interface FixtureServer {
  readonly server: TestServer;
  /** the fixture folder (the server's source root) */
  readonly dir: string;
  /** a temporary folder for the test's own files */
  readonly work: string;
  /** the path of a fixture: file('utm32') */
  readonly file: (name: string) => string;
}

/** A server whose sources are the fixtures, with the mosaics `mosaics(file)` makes of them, and a work folder. */
export async function startFixtureServer(
  workPrefix: string,
  mosaics: (file: (name: string) => string) => readonly Record<string, unknown>[],
): Promise<FixtureServer> {
  const [dir, work] = await Promise.all([fixtureDir(), tempDir(workPrefix)]);
  const file = (name: string) => path.join(dir, `${name}.tif`);
  const server = await startTestServer({ sources: { roots: [dir] }, mosaics: mosaics(file) });
  return { server, dir, work, file };
}
