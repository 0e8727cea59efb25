/** Start the real app on port 0 for integration tests, with a config built from overrides. */
import { Writable } from 'node:stream';
import type { Config } from '../../src/config.schema.ts';
import { loadConfig } from '../../src/config.ts';
import { buildServices, createLogger, type RunningServer, startServer } from '../../src/main.ts';
import type { AppDeps } from '../../src/server/deps.ts';

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
