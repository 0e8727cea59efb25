/**
 * `cogmill worker --redis redis://HOST:PORT [--concurrency N]`: the sidecar on each node of a cluster. It takes
 * shard and complete jobs of any materialisation from the queue, renders on worker threads and stages its parts
 * straight to the destination with its own credentials. Loads no HTTP server code. SIGTERM/SIGINT: finishes the
 * running shards, then exits (a killed worker's shards are taken over by others once its lock expires).
 */
import { parseArgs } from 'node:util';
import { configFor } from './cli.main.ts';
import { ConfigError } from './config.error.ts';
import { trustedSourcePolicy } from './config.ts';
import { createSink, parseDestination } from './materialize/destination.ts';
import { isStaged } from './materialize/sink.ts';
import { Engine } from './render/engine.ts';
import { errorMessage } from './render/errors.ts';
import { azureSettingsOf, engineSettings, s3Settings } from './settings.ts';

export const WORKER_USAGE = `usage: cogmill worker --redis redis://HOST:PORT [--concurrency N] [--threads N] [--config FILE]

  Run materialisation shards from the queue (see cogmill materialize --redis).
  --redis URL          the Redis the coordinators enqueue to (redis://[user:pass@]host:port[/db])
  --concurrency N      shards at once (default 1)
  --threads N          render/compress threads per shard (default: materialize.workers, else one per core)
  --lock-ms N          a worker silent this long loses its shard to another (default 30000)
  --config FILE        S3 and Azure settings, credentials and source roots as for cogmill serve
  --s3-endpoint URL, --s3-region NAME
  Destinations: s3:// (multipart parts) and az:// (block blob blocks), with this worker's own credentials
  (COGMILL_S3_*, COGMILL_AZURE_*, else the AWS chain, AZURE_STORAGE_*, DefaultAzureCredential).
`;

/** how long each wait for Redis lasts before the worker says it is still waiting */
const REDIS_WAIT_MS = 5_000;

function int(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    throw new ConfigError(`--${name} must be an integer from ${min} to ${max} (got "${v}")`);
  return Number(v);
}

export async function cmdWorker(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      redis: { type: 'string' },
      concurrency: { type: 'string' },
      threads: { type: 'string' },
      'lock-ms': { type: 'string' },
      config: { type: 'string', short: 'c' },
      's3-endpoint': { type: 'string' },
      's3-region': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(WORKER_USAGE);
    return;
  }
  if (!values.redis) throw new ConfigError(`--redis is required\n\n${WORKER_USAGE}`);
  const s3: Record<string, unknown> = {};
  if (values['s3-endpoint']) s3.endpoint = values['s3-endpoint'];
  if (values['s3-region']) s3.region = values['s3-region'];
  const config = await configFor(values.config, [], Object.keys(s3).length ? { s3 } : {});
  const { pingQueue, startWorker } = await import('./materialize/queue.ts');
  // a sidecar may start before its Redis: say so, and keep trying
  for (;;) {
    try {
      await pingQueue(values.redis, { timeoutMs: REDIS_WAIT_MS });
      break;
    } catch (e) {
      if (e instanceof ConfigError || (e as { kind?: string }).kind === 'bad-request') throw e;
      process.stderr.write(`cogmill worker: ${errorMessage(e)}; still trying\n`);
    }
  }
  const worker = await startWorker({
    redisUrl: values.redis,
    concurrency: int('concurrency', values.concurrency, 1, 64),
    threads: int('threads', values.threads, 0, 256) ?? (config.materialize.workers || undefined),
    lockMs: int('lock-ms', values['lock-ms'], 1000, 3_600_000),
    maxConcurrentUploads: config.materialize.maxConcurrentUploads,
    // one engine per open plan; the worker closes it with the plan (completed, or idle)
    engineFor: (plan) => {
      // a plan's sources are trusted like configured ones (the worker threads get them as roots too)
      const s = engineSettings(config);
      const t = trustedSourcePolicy(plan.mosaic.sources);
      return new Engine({
        ...s,
        roots: [...(s.roots ?? []), ...t.roots],
        allowedUrlPrefixes: [...(s.allowedUrlPrefixes ?? []), ...t.allowedUrlPrefixes],
      });
    },
    sinkFor: async (destination, minPartBytes) => {
      const sink = await createSink(parseDestination(destination), {
        s3: s3Settings(config),
        azure: azureSettingsOf(config.azure),
        ...(minPartBytes !== undefined ? { s3Sink: { minPartBytes } } : {}),
      });
      if (!isStaged(sink))
        throw new ConfigError(`${destination}: a worker writes to s3:// and az:// destinations only`);
      return sink;
    },
    log: (line) => process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), ...line })}\n`),
  });
  process.stderr.write(`cogmill worker: waiting for shards on ${values.redis}\n`);
  const stop = () => {
    process.stderr.write('cogmill worker: stopping after the running shards\n');
    worker.close().catch(() => {});
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await worker.closed;
}
