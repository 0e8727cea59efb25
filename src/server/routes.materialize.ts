/**
 * Materialisation over HTTP:
 * - `GET /materialize?mosaic=ID&dest=s3://bucket/key.tif&compress=deflate&...` and `POST /materialize` (JSON body,
 *   same fields) start a job: `202` with `{ id, state, links }` and `Location: /jobs/{id}`;
 * - `GET /jobs`, `GET /jobs/{id}` (state, progress, result, error), `GET /jobs/{id}/events` (server-sent events:
 *   `state` and `progress`, ending with the final `state`), `DELETE /jobs/{id}` (cancel: the upload is aborted);
 * - `GET /mosaics/{id}/export.tif` renders the COG into a spool file, then streams it (the header comes first in
 *   a COG, so nothing can be sent before the last tile is done): it can take a while; for big mosaics use
 *   /materialize.
 * All of them need the bearer token (wired in app.ts); destinations must be under materialize.allowedDestinations.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, rm, stat, statfs } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Context } from 'hono';
import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import { materializeResumable, queueShardCount } from '../materialize/coordinator.ts';
import { createSink, destinationLocation, type SinkDestination } from '../materialize/destination.ts';
import { checkJobOptions, JOB_OPTION_NAMES, parseJobOptions } from '../materialize/jobs.options.ts';
import { isFinalState, type JobEvent, JobQueueFullError, JobRegistry, type JobView } from '../materialize/jobs.ts';
import { cogSpecFor, type MaterializeOptions, materialize } from '../materialize/pipeline.ts';
import { explainMaterialization } from '../materialize/plan.explain.ts';
import { clusterOptions } from '../materialize/plan.ts';
import { SinkFile } from '../materialize/sink.file.ts';
import { isStaged } from '../materialize/sink.ts';
import { CogmillError, type ErrorKind } from '../render/errors.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { bytesPerSample } from '../render/types.ts';
import { azureSettingsOf } from '../settings.ts';
import { checkDestination } from './auth.ts';
import type { AppDeps } from './deps.ts';
import { RequestError } from './errors.ts';
import { OverloadedError } from './limits.ts';
import { appMetrics } from './metrics.ts';
import { jsonBody } from './params.ts';
import type { AppEnv } from './request.ts';
import { baseUrl, MOSAIC_ID } from './urls.ts';

/** how long DELETE /jobs/{id} waits for the upload to be aborted before answering 202 */
const CANCEL_WAIT_MS = 10_000;
/** a comment line on idle event streams so proxies keep them open */
const SSE_KEEPALIVE_MS = 15_000;
/** seconds a client is asked to wait when the job queue is full */
const RETRY_AFTER_S = 30;
const JOB_ID = '[0-9a-f-]{36}';
const REQUEST_KEYS = new Set<string>(['mosaic', 'dest', 'dryRun', ...JOB_OPTION_NAMES]);
const ERROR_KINDS = new Set<string>([
  'bad-request',
  'not-found',
  'forbidden',
  'too-large',
  'unsupported',
  'corrupt',
  'changed',
  'unreachable',
  'timeout',
  'internal',
]);

function sinkLabel(destination: string): string {
  if (destination === 'download') return 'http';
  return destination.startsWith('s3://') ? 's3' : destination.startsWith('az://') ? 'azure' : 'file';
}

/** Unknown parameters are refused (a typo would otherwise be silently ignored). */
function rejectUnknown(input: Record<string, unknown>, allowed: ReadonlySet<string>): void {
  for (const k of Object.keys(input)) {
    if (!allowed.has(k)) {
      throw new RequestError('bad-request', `unknown parameter "${k}"; known parameters: ${[...allowed].join(', ')}`);
    }
  }
}

/** An optional boolean parameter: true, false, 1, 0, yes, no (query strings) or a JSON boolean. */
function flag(input: Record<string, unknown>, name: string): boolean {
  const v = input[name];
  if (v === undefined || v === '') return false;
  if (typeof v === 'boolean') return v;
  const t = typeof v === 'string' ? v.trim().toLowerCase() : undefined;
  if (t === 'true' || t === '1' || t === 'yes') return true;
  if (t === 'false' || t === '0' || t === 'no') return false;
  throw new RequestError('bad-request', `${name} must be true or false (got ${JSON.stringify(v)})`);
}

function requiredString(input: Record<string, unknown>, name: string, hint: string): string {
  const v = input[name];
  if (typeof v !== 'string' || v.trim() === '') throw new RequestError('bad-request', `${name} is required: ${hint}`);
  return v.trim();
}

/** Options of a request; option errors (thrown by the parser as 400s naming the option) pass through. */
function jobOptions(
  input: Record<string, unknown>,
  mosaic: Mosaic,
): { options: MaterializeOptions; asked: Record<string, unknown> } {
  const parsed = parseJobOptions(input);
  checkJobOptions(mosaic, parsed.options);
  return parsed;
}

/** A job view with links, as answered. */
function jobBody(view: JobView, base: string) {
  const self = `${base}/jobs/${view.id}`;
  return { ...view, links: { self, events: `${self}/events` } };
}

/** A finished job's error, thrown again for a request waiting on it. */
function jobFailure(view: JobView): CogmillError {
  if (view.state === 'cancelled')
    return new OverloadedError(view.error?.message ?? 'the export was cancelled', RETRY_AFTER_S);
  const kind = (ERROR_KINDS.has(view.error?.kind ?? '') ? view.error!.kind : 'internal') as ErrorKind;
  return new CogmillError(kind, view.error?.message ?? `the export ended as ${view.state}`);
}

/** An upper bound of the bytes a COG of `mosaic` takes (uncompressed, overviews included, plus headers). */
function spoolEstimateBytes(mosaic: Mosaic, options: MaterializeOptions): number {
  const spec = cogSpecFor(mosaic, options);
  const fullRes = spec.width * spec.height * spec.bands * bytesPerSample(spec.dtype);
  return Math.ceil(fullRes * (4 / 3)) + 1024 * 1024;
}

export function materializeRoutes(deps: AppDeps): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  const { config, log } = deps;
  const metrics = appMetrics(deps.metrics);
  const jobs = new JobRegistry({
    maxConcurrentJobs: config.materialize.maxConcurrentJobs,
    onStart: () => metrics.jobsRunning.inc(),
    onFinish: (job) => {
      if (job.startedAt !== null) metrics.jobsRunning.dec();
      metrics.jobs.inc({ state: job.state });
      const sink = sinkLabel(job.destination);
      metrics.parts.inc({ sink }, job.progress.parts);
      metrics.bytesWritten.inc({ sink }, job.progress.bytesWritten);
      metrics.retries.inc({ sink }, job.progress.retries);
      const line = {
        job: job.id,
        mosaic: job.mosaic,
        destination: job.destination,
        state: job.state,
        tiles: job.progress.tilesDone,
        bytes: job.result?.bytes ?? job.progress.bytesWritten,
        parts: job.progress.parts,
        retries: job.progress.retries,
        elapsedMs: job.progress.elapsedMs,
        error: job.error?.message,
      };
      if (job.state === 'failed') log.error(line, 'materialisation failed');
      else log.info(line, `materialisation ${job.state}`);
    },
  });
  // SIGTERM: cancel every job, which aborts its multipart upload (nothing is left at the destination)
  deps.shutdownHooks.push((signal) => jobs.cancelAll('cancelled: the server is shutting down', signal));

  const refuseWhileDraining = () => {
    if (deps.state.draining) {
      throw new OverloadedError(
        'the server is shutting down and starts no new materialisations; try another instance',
        RETRY_AFTER_S,
      );
    }
  };

  const startJob = async (c: Context<AppEnv>, input: Record<string, unknown>) => {
    rejectUnknown(input, REQUEST_KEYS);
    const dryRun = flag(input, 'dryRun');
    if (!dryRun) refuseWhileDraining();
    const mosaicId = requiredString(input, 'mosaic', 'the id of a configured mosaic (GET /mosaics lists them)');
    const destText = requiredString(input, 'dest', 's3://bucket/key.tif or an absolute file path');
    const mosaic = deps.catalog.get(mosaicId);
    const { options, asked } = jobOptions(input, mosaic);
    const dest: SinkDestination = checkDestination(destText, config);
    const location = destinationLocation(dest);
    if (dryRun) {
      // the plan as the job would make it, explained; no upload is created and no pixel is read
      const sink = await createSink(dest, { s3: config.s3, azure: azureSettingsOf(config.azure) });
      const workers = config.materialize.workers || undefined;
      const queued = config.materialize.redis !== undefined && isStaged(sink);
      const shards = queued
        ? queueShardCount(mosaic, options, config.materialize.shards)
        : Math.max(1, workers ?? availableParallelism());
      const explained = await explainMaterialization(
        deps.engine,
        mosaic,
        sink,
        queued ? clusterOptions({ ...options, workers }) : { ...options, workers },
        shards,
        c.get('req').signal,
      );
      return c.json(explained, 200);
    }
    const busy = jobs.activeFor(location);
    if (busy) {
      throw new RequestError(
        'changed',
        `job ${busy.id} is already writing ${location}; wait for it or cancel it (DELETE /jobs/${busy.id})`,
      );
    }
    const sink = await createSink(dest, { s3: config.s3, azure: azureSettingsOf(config.azure) });
    const pipelineOptions: MaterializeOptions = {
      ...options,
      workers: config.materialize.workers || undefined,
      maxConcurrentUploads: config.materialize.maxConcurrentUploads,
    };
    // queue mode: shards run on cogmill worker processes, which can reach S3 and Azure but not this server's files
    const redisUrl = config.materialize.redis;
    const queued = redisUrl !== undefined && isStaged(sink) ? sink : undefined;
    let view: JobView;
    try {
      view = jobs.create({
        mosaic: mosaic.id,
        destination: location,
        options: asked,
        run: (hooks) =>
          queued
            ? materializeResumable(
                deps.engine,
                mosaic,
                queued,
                {
                  options: clusterOptions(pipelineOptions),
                  shards: queueShardCount(mosaic, pipelineOptions, config.materialize.shards),
                  redisUrl,
                  abortOnFailure: true,
                },
                hooks,
              ).then((done) => done.result)
            : materialize(deps.engine, mosaic, sink, pipelineOptions, hooks),
        recentErrors: () => ('recentErrors' in sink ? sink.recentErrors : []),
      });
    } catch (e) {
      if (e instanceof JobQueueFullError) throw new OverloadedError(e.message, RETRY_AFTER_S);
      throw e;
    }
    const info = c.get('req');
    info.fields.job = view.id;
    info.log.info({ job: view.id, mosaic: mosaic.id, destination: location, options: asked }, 'materialisation queued');
    c.header('Location', `/jobs/${view.id}`);
    const body = jobBody(view, baseUrl(c, config));
    return c.json(
      { id: view.id, state: view.state, mosaic: view.mosaic, destination: view.destination, links: body.links },
      202,
    );
  };

  r.get('/materialize', (c) => startJob(c, c.req.query()));

  r.post('/materialize', async (c) => {
    const body = await jsonBody(c, 'POST /materialize takes a JSON body');
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new RequestError(
        'bad-request',
        'the request body must be a JSON object like {"mosaic": "...", "dest": "s3://bucket/key.tif"}',
      );
    }
    return startJob(c, body as Record<string, unknown>);
  });

  const findJob = (id: string): JobView => {
    const view = jobs.get(id);
    if (!view)
      throw new RequestError(
        'not-found',
        `no job with id "${id}"; finished jobs are forgotten after a while (GET /jobs lists them)`,
      );
    return view;
  };

  r.get('/jobs', (c) => {
    const base = baseUrl(c, config);
    return c.json({ jobs: jobs.list().map((v) => jobBody(v, base)), ...jobs.counts });
  });

  r.get(`/jobs/:id{${JOB_ID}}`, (c) => c.json(jobBody(findJob(c.req.param('id')), baseUrl(c, config))));

  r.delete(`/jobs/:id{${JOB_ID}}`, async (c) => {
    const id = c.req.param('id');
    findJob(id);
    jobs.cancel(id);
    const view = (await jobs.wait(id, CANCEL_WAIT_MS)) ?? findJob(id);
    c.get('req').fields.job = id;
    return c.json(jobBody(view, baseUrl(c, config)), isFinalState(view.state) ? 200 : 202);
  });

  r.get(`/jobs/:id{${JOB_ID}}/events`, (c) => {
    const id = c.req.param('id');
    findJob(id);
    const signal = c.get('req').signal;
    return streamSSE(c, async (stream) => {
      const queue: JobEvent[] = [];
      let wake: (() => void) | undefined;
      const unsubscribe = jobs.subscribe(id, (event) => {
        queue.push(event);
        wake?.();
      });
      const onAbort = () => wake?.();
      signal.addEventListener('abort', onAbort, { once: true });
      stream.onAbort(onAbort);
      let seq = 0;
      const send = (type: JobEvent['type'], job: JobView) =>
        stream.writeSSE({ event: type, id: String(seq++), data: JSON.stringify(job) });
      try {
        const first = jobs.get(id);
        if (!first) return;
        await send('state', first);
        if (isFinalState(first.state)) return;
        while (!signal.aborted && !stream.aborted) {
          if (queue.length === 0) {
            let timer: NodeJS.Timeout | undefined;
            await new Promise<void>((resolve) => {
              wake = resolve;
              timer = setTimeout(resolve, SSE_KEEPALIVE_MS);
            });
            clearTimeout(timer);
            wake = undefined;
            if (queue.length === 0) {
              if (!signal.aborted && !stream.aborted) await stream.write(': keep-alive\n\n');
              continue;
            }
          }
          // a slow reader gets the latest progress, not a backlog; state changes are all delivered
          const batch = queue.splice(0);
          const lastProgress = batch.findLast((e) => e.type === 'progress');
          for (const event of batch) {
            if (event.type === 'progress' && event !== lastProgress) continue;
            await send(event.type, event.job);
            if (event.type === 'state' && isFinalState(event.job.state)) return;
          }
        }
      } finally {
        unsubscribe();
        signal.removeEventListener('abort', onAbort);
      }
    });
  });

  r.get(`/mosaics/:id{${MOSAIC_ID}}/export.tif`, async (c) => {
    // Hono answers HEAD with the GET handler: a HEAD must not render a whole mosaic
    if (c.req.method === 'HEAD') return c.body(null, 405, { allow: 'GET' });
    refuseWhileDraining();
    const input = c.req.query();
    rejectUnknown(input, new Set(JOB_OPTION_NAMES));
    const mosaic = deps.catalog.get(c.req.param('id'));
    const { options, asked } = jobOptions(input, mosaic);
    const spool = config.materialize.spoolDir ?? tmpdir();
    await mkdir(spool, { recursive: true });
    const needBytes = spoolEstimateBytes(mosaic, options);
    const fs = await statfs(spool);
    const freeBytes = fs.bavail * fs.bsize;
    if (needBytes > freeBytes) {
      throw new RequestError(
        'too-large',
        `exporting mosaic ${mosaic.id} may need up to ${needBytes} bytes of spool space and ${spool} has ${freeBytes} free; use POST /materialize to write it to S3, or set materialize.spoolDir`,
      );
    }
    const sink = new SinkFile(path.join(spool, `cogmill-export-${randomUUID()}.tif`), { keep: true });
    let view: JobView;
    try {
      view = jobs.create({
        mosaic: mosaic.id,
        destination: 'download',
        options: asked,
        // the spool path stays on the server: clients see "download"
        run: async (hooks) => ({
          ...(await materialize(
            deps.engine,
            mosaic,
            sink,
            { ...options, workers: config.materialize.workers || undefined },
            hooks,
          )),
          location: 'download',
        }),
      });
    } catch (e) {
      if (e instanceof JobQueueFullError) throw new OverloadedError(e.message, RETRY_AFTER_S);
      throw e;
    }
    const info = c.get('req');
    info.fields.job = view.id;
    const signal = info.signal;
    const onGone = () => jobs.cancel(view.id, 'cancelled: the client went away');
    signal.addEventListener('abort', onGone, { once: true });
    let done: JobView;
    try {
      done = (await jobs.wait(view.id))!;
    } finally {
      signal.removeEventListener('abort', onGone);
    }
    if (done.state !== 'succeeded' || !done.result) throw jobFailure(done);
    const file = sink.temporaryPath;
    const remove = () => {
      rm(file, { force: true }).catch((e: unknown) =>
        log.warn({ err: e, file }, 'could not remove an export spool file'),
      );
    };
    if (signal.aborted) {
      remove();
      throw jobFailure({
        ...done,
        state: 'cancelled',
        error: { kind: 'bad-request', status: 400, message: 'the client went away' },
      });
    }
    let size: number;
    try {
      size = (await stat(file)).size;
    } catch (e) {
      remove();
      throw e;
    }
    const body = createReadStream(file);
    // deleted when the stream ends, fails, or the client goes away mid-download
    body.once('close', remove);
    return new Response(Readable.toWeb(body) as ReadableStream<Uint8Array>, {
      status: 200,
      headers: {
        'content-type': 'image/tiff; application=geotiff; profile=cloud-optimized',
        'content-length': String(size),
        'content-disposition': `attachment; filename="${mosaic.id}.tif"`,
        'cache-control': 'no-store',
        'x-job-id': view.id,
      },
    });
  });

  return r;
}
