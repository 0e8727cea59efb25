/**
 * `cogmill materialize`: write a mosaic as a COG to S3 (multipart upload, header last) or to a file, with a
 * progress bar on a terminal (plain periodic lines otherwise) and a JSON summary on stdout. Ctrl-C cancels
 * cleanly: the multipart upload is aborted (or the temporary file removed), nothing appears at the destination.
 */

import { readFile, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import { catalogueOptions, configFor, intFlag, MOSAIC_OPTIONS, shardIndexFromEnv } from './cli.main.ts';
import { ConfigError } from './config.error.ts';
import { runPrepared } from './materialize/coordinator.ts';
import { createSink, parseDestination } from './materialize/destination.ts';
import { checkJobOptions, parseJobOptions } from './materialize/jobs.options.ts';
import {
  completeInProcess,
  type MaterializeProgress,
  materialize,
  runShardsInProcess,
} from './materialize/pipeline.ts';
import { explainMaterialization } from './materialize/plan.explain.ts';
import { clusterOptions, type MaterializePlan, parsePlan, shardsOfWorker } from './materialize/plan.ts';
import { choosePredictor } from './materialize/predictor.choice.ts';
import { doneReports, openPlanMosaic, PLAN_NOTE, type Prepared, prepare, saveReport } from './materialize/run.ts';
import type { ShardReport } from './materialize/shard.ts';
import { isStaged, type SinkStaged } from './materialize/sink.ts';
import { Catalog } from './render/catalog.ts';
import { Engine } from './render/engine.ts';
import { CogmillError, errorMessage } from './render/errors.ts';
import { MiB } from './render/types.ts';
import { azureSettingsOf, engineSettings, s3Settings } from './settings.ts';

export const MATERIALIZE_USAGE = `usage: cogmill materialize [--config FILE --mosaic ID | SOURCE...] --out s3://bucket/key.tif|az://container/blob.tif|FILE [options]

  Render the mosaic and write it as a Cloud Optimized GeoTIFF (GDAL's COG layout): to S3 by a multipart upload
  whose first part (the header) is sent last, to an Azure block blob (blocks staged in parallel, the header block
  last, one block list committed), or to a local file (a temporary file renamed into place).

  --config, -c FILE        configuration file (default: the COGMILL_CONFIG variable)
  --mosaic, -m ID          a mosaic of the configuration (default: the only one, or the SOURCE arguments)
  --assets, --composite, --sortby, --datetime, --period, --period-bands
                           a SOURCE that is a STAC catalogue, as for cogmill serve
  --out, -o DEST           s3://bucket/key.tif, az://container/blob.tif, or a file path
  --compress NAME          deflate (default), lzw, zstd, none, jpeg, webp (jpeg/webp: uint8 RGB)
  --level N                deflate 1-9, zstd 1-22
  --quality N              jpeg/webp quality 1-100
  --predictor P            auto (default: 2 for integers / 3 for floats, or 1 where full-resolution tiles of
                           the mosaic compress smaller without: class data), 1, 2, 3
  --blocksize N            tile size in pixels (default: the mosaic's, 512)
  --resampling NAME        full-resolution resampling (default: the mosaic's)
  --overview-resampling NAME  average (default; mode for categorical mosaics), nearest, mode, bilinear, cubic
  --overviews HOW          finer: each overview level from the level below it, as GDAL does (default for average,
                           mode, nearest when a source has no overviews); sources: every level rendered from the
                           sources, as the virtual COG (default when every source has overviews, and with
                           --redis or --plan-out: the finer pass would run in one process)
  --no-statistics          leave band statistics out of GDAL_METADATA
  --recompress             compress every tile (default: a tile that is exactly one source block stored with deflate
                           and the same predictor keeps the source's bytes where they measure <= 1.5% larger)
  --workers N              render/compress threads (default: materialize.workers, else one per core)
  --max-uploads N          parts uploaded at once (default: materialize.maxConcurrentUploads)
  --s3-endpoint URL        S3-compatible endpoint (MinIO, Ceph radosgw, ...); default: s3.endpoint, else AWS
  --s3-region NAME         signing region (default: s3.region)
  --shards N               runs of tiles rendered and uploaded independently (default: one per worker thread)
  --part-size-mib N        size of the parts (default 8; grows so that 10,000 parts hold the output)
  --dry-run                print the plan (levels, tiles, shards, parts, sources per level, sizes) and stop;
                           only headers are read (and the tiles that choose an auto predictor)
  --no-resume              start a new upload even when the destination holds a resumable one
  --abort-stale            abort the other unfinished uploads to the same key (runs that cannot be resumed)

  Many machines (s3:// and az:// destinations): the plan and each shard's report are kept next to the object
  (KEY.cogmill/, BLOB.cogmill/); running the same command again after a crash resumes: only shards whose parts
  are missing (S3 ListParts, Azure's uncommitted blocks) run again.
  --plan-out PLAN          plan, create the upload, save the plan to the file PLAN (and next to the object); stop
  --plan PLAN [--shard I/N]  run shards of a saved plan (PLAN: the file, or the s3:// or az:// destination):
                           shards I, I+N, ... (I defaults to JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX;
                           N to the plan's shard count, so index I runs shard I)
  --plan PLAN --complete   once every shard reported: glue, write the header, complete the upload
  --redis redis://H:P      run the shards on cogmill worker processes through this Redis (BullMQ); s3:// and az://

  --progress MODE          auto (bar on a terminal, lines otherwise), bar, lines, none
  --quiet, -q              same as --progress none

  S3 credentials: s3.accessKeyId/secretAccessKey (COGMILL_S3_ACCESS_KEY_ID, ...), else the standard AWS chain
  (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web identity, instance role).
  Azure credentials: azure.* (COGMILL_AZURE_ACCOUNT, COGMILL_AZURE_ACCOUNT_KEY, ...), else AZURE_STORAGE_CONNECTION_STRING,
  AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN, else DefaultAzureCredential.
  Prints a JSON summary on stdout; exits 1 on failure, 130 when interrupted (Ctrl-C).
`;

/** how often plain progress lines are written when stderr is not a terminal */
const LINE_INTERVAL_MS = 5_000;
/** how often the terminal bar is redrawn at most */
const BAR_INTERVAL_MS = 200;
const BAR_WIDTH = 28;
const EXIT_INTERRUPTED = 130;

function formatBytes(n: number): string {
  if (n >= 1024 * MiB) return `${(n / (1024 * MiB)).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${(n / 1024).toFixed(1)} KiB`;
}

function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** One progress line (without the bar). */
export function progressText(p: MaterializeProgress): string {
  const pct = p.tilesTotal > 0 ? (100 * p.tilesDone) / p.tilesTotal : 0;
  const rate = p.bytesWritten / Math.max(p.elapsedMs / 1000, 1e-3);
  return [
    `${pct.toFixed(1)}%`,
    `${p.tilesDone}/${p.tilesTotal} tiles`,
    `${formatBytes(p.bytesWritten)} written (${formatBytes(rate)}/s)`,
    p.parts > 0 ? `${p.parts} parts` : '',
    p.retries > 0 ? `${p.retries} retries` : '',
    `ETA ${formatDuration(p.etaSeconds)}`,
  ]
    .filter(Boolean)
    .join(', ');
}

function bar(p: MaterializeProgress): string {
  const f = p.tilesTotal > 0 ? p.tilesDone / p.tilesTotal : 0;
  const full = Math.round(f * BAR_WIDTH);
  return `[${'#'.repeat(full)}${'.'.repeat(BAR_WIDTH - full)}]`;
}

type ProgressMode = 'bar' | 'lines' | 'none';

function progressReporter(
  mode: ProgressMode,
  out: NodeJS.WriteStream,
): { report(p: MaterializeProgress): void; end(final?: MaterializeProgress): void } {
  let last = 0;
  let drawn = false;
  let shown: MaterializeProgress | undefined;
  const draw = (p: MaterializeProgress) => {
    shown = p;
    if (mode === 'bar') {
      out.write(`\r\x1b[K${bar(p)} ${progressText(p)}`);
      drawn = true;
    } else if (mode === 'lines') {
      out.write(`cogmill: ${progressText(p)}\n`);
    }
  };
  return {
    report(p) {
      if (mode === 'none') return;
      const now = performance.now();
      const every = mode === 'bar' ? BAR_INTERVAL_MS : LINE_INTERVAL_MS;
      if (last !== 0 && now - last < every) return;
      last = now;
      draw(p);
    },
    /** the last state is always shown (a finished job says 100%) */
    end(final) {
      if (mode !== 'none' && final && final !== shown) draw(final);
      if (drawn) out.write('\n');
      drawn = false;
    },
  };
}

export async function cmdMaterialize(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...MOSAIC_OPTIONS,
      out: { type: 'string', short: 'o' },
      compress: { type: 'string' },
      level: { type: 'string' },
      quality: { type: 'string' },
      predictor: { type: 'string' },
      blocksize: { type: 'string' },
      resampling: { type: 'string' },
      'overview-resampling': { type: 'string' },
      overviews: { type: 'string' },
      'no-statistics': { type: 'boolean' },
      recompress: { type: 'boolean' },
      workers: { type: 'string' },
      'max-uploads': { type: 'string' },
      's3-endpoint': { type: 'string' },
      's3-region': { type: 'string' },
      progress: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
      shards: { type: 'string' },
      'dry-run': { type: 'boolean' },
      'no-resume': { type: 'boolean' },
      'abort-stale': { type: 'boolean' },
      'plan-out': { type: 'string' },
      plan: { type: 'string' },
      shard: { type: 'string' },
      complete: { type: 'boolean' },
      redis: { type: 'string' },
      'min-part-bytes': { type: 'string' },
      'part-size-mib': { type: 'string' },
    },
  });
  if (values.help) {
    process.stdout.write(MATERIALIZE_USAGE);
    return;
  }
  if (values.plan !== undefined) return planStep(values, positionals);
  if (!values.out)
    throw new ConfigError(`--out is required (s3://bucket/key.tif or a file path)\n\n${MATERIALIZE_USAGE}`);
  if (values.mosaic && positionals.length)
    throw new ConfigError('give either --mosaic ID or SOURCE arguments, not both');
  const progressMode = values.quiet ? 'none' : (values.progress ?? 'auto');
  if (!['auto', 'bar', 'lines', 'none'].includes(progressMode)) {
    throw new ConfigError(`--progress must be auto, bar, lines or none (got "${progressMode}")`);
  }
  const workers = intFlag('workers', values.workers, 0, 256);
  const maxUploads = intFlag('max-uploads', values['max-uploads'], 1, 64);
  const shards = intFlag('shards', values.shards, 1, 4096);
  // test-only: S3's 5 MiB smallest part, lowered for small test mosaics (stores that allow it, like radosgw)
  const minPartBytes = intFlag('min-part-bytes', values['min-part-bytes'], 1, 5 * MiB);
  const partSizeMiB = intFlag('part-size-mib', values['part-size-mib'], 1, 5 * 1024);

  const s3: Record<string, unknown> = {};
  if (values['s3-endpoint']) s3.endpoint = values['s3-endpoint'];
  if (values['s3-region']) s3.region = values['s3-region'];
  const config = await configFor(
    values.config,
    positionals,
    Object.keys(s3).length ? { s3 } : {},
    catalogueOptions(values),
  );

  let mosaicId = values.mosaic ?? (positionals.length ? 'default' : undefined);
  if (mosaicId === undefined) {
    if (config.mosaics.length !== 1) {
      const ids = config.mosaics.map((m) => m.id).join(', ') || 'none';
      throw new ConfigError(`name the mosaic with --mosaic ID (configured: ${ids}), or give SOURCE arguments`);
    }
    mosaicId = config.mosaics[0].id;
  }
  const def = config.mosaics.find((m) => m.id === mosaicId);
  if (!def)
    throw new ConfigError(
      `no mosaic "${mosaicId}" in the configuration (configured: ${config.mosaics.map((m) => m.id).join(', ') || 'none'})`,
    );

  let parsed: ReturnType<typeof parseJobOptions>;
  try {
    parsed = parseJobOptions({
      compress: values.compress,
      level: values.level,
      quality: values.quality,
      predictor: values.predictor,
      blocksize: values.blocksize,
      resampling: values.resampling,
      overview_resampling: values['overview-resampling'],
      overviews: values.overviews,
      statistics: values['no-statistics'] ? 'false' : undefined,
      recompress: values.recompress ? 'true' : undefined,
    });
  } catch (e) {
    // name the flag, not the API parameter
    throw new ConfigError(`--${errorMessage(e).replace(/^overview_resampling/, 'overview-resampling')}`);
  }
  const dest = parseDestination(values.out);

  const engine = new Engine(engineSettings(config));
  const controller = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) {
      process.stderr.write('\ncogmill: second interrupt: exiting now; an S3 multipart upload may be left to abort\n');
      process.exit(EXIT_INTERRUPTED);
    }
    interrupted = true;
    process.stderr.write('\ncogmill: interrupted: stopping and aborting the upload (Ctrl-C again to quit at once)\n');
    controller.abort(new CogmillError('bad-request', 'interrupted'));
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  const mode: ProgressMode =
    progressMode === 'auto' ? (process.stderr.isTTY ? 'bar' : 'lines') : (progressMode as ProgressMode);
  const progress = progressReporter(mode, process.stderr);
  try {
    // command-line and configured mosaics are trusted (a catalogue's assets are allowed with it)
    const mosaic = await new Catalog(engine).open(def, controller.signal, { trusted: true });
    checkJobOptions(mosaic, parsed.options);
    const sink = await createSink(dest, {
      s3: s3Settings(config),
      azure: azureSettingsOf(config.azure),
      ...(minPartBytes !== undefined ? { s3Sink: { minPartBytes } } : {}),
    });
    const t0 = performance.now();
    let last: MaterializeProgress | undefined;
    const threads = workers ?? (config.materialize.workers || undefined);
    // a plan many processes run (queue, static shards) renders overviews from the sources unless told otherwise
    const cluster = values.redis !== undefined || values['plan-out'] !== undefined;
    const options = {
      ...(cluster ? clusterOptions(parsed.options) : parsed.options),
      workers: threads,
      maxConcurrentUploads: maxUploads ?? config.materialize.maxConcurrentUploads,
      ...(minPartBytes !== undefined ? { minPartBytes } : {}),
      ...(partSizeMiB !== undefined ? { minPartSizeBytes: partSizeMiB * MiB } : {}),
    };
    const shardCount = shards ?? Math.max(1, threads ?? availableParallelism());
    const onProgress = (p: MaterializeProgress) => {
      last = p;
      progress.report(p);
    };
    if (values['dry-run']) {
      const explained = await explainMaterialization(engine, mosaic, sink, options, shardCount, controller.signal);
      process.stdout.write(`${JSON.stringify(explained, null, 2)}\n`);
      return;
    }
    let extra: Record<string, unknown> = {};
    let result: Awaited<ReturnType<typeof materialize>>;
    if (isStaged(sink)) {
      // an unreachable queue fails before the upload exists
      if (values.redis)
        await (await import('./materialize/queue.ts')).pingQueue(values.redis, { signal: controller.signal });
      const prep = await prepare(mosaic, sink, {
        options: await choosePredictor(engine, mosaic, options, controller.signal),
        shards: shardCount,
        resume: !values['no-resume'],
        abortStale: values['abort-stale'] === true,
        signal: controller.signal,
      });
      reportPrepared(prep, sink);
      if (values['plan-out'] !== undefined) {
        await writePlan(values['plan-out'], prep.plan);
        process.stdout.write(`${JSON.stringify(planSummary(prep.plan), null, 2)}\n`);
        return;
      }
      const run = await runPrepared(
        engine,
        mosaic,
        prep,
        sink,
        { options, redisUrl: values.redis },
        {
          signal: controller.signal,
          onProgress,
        },
      );
      result = { ...run.result, elapsedMs: Math.round(performance.now() - t0) };
      extra = {
        resumed: prep.resumed,
        shards: prep.plan.shards.length,
        shardsRun: run.shardsRun,
        tilesRendered: run.tilesRendered,
        staleUploads: prep.stale.map((u) => u.uploadId),
        abortedUploads: prep.aborted,
      };
    } else {
      result = await materialize(engine, mosaic, sink, options, { signal: controller.signal, onProgress });
    }
    progress.end(last);
    const seconds = (performance.now() - t0) / 1000;
    const summary = {
      mosaic: mosaic.id,
      location: result.location,
      bytes: result.bytes,
      etag: result.etag ?? null,
      parts: result.parts ?? null,
      tiles: result.tiles,
      levels: result.levels,
      bigTiff: result.bigTiff,
      width: mosaic.grid.width,
      height: mosaic.grid.height,
      bands: mosaic.bandCount,
      dtype: mosaic.dtype,
      options: parsed.asked,
      retries: last?.retries ?? sink.stats.retries,
      elapsedMs: result.elapsedMs,
      bytesPerSecond: Math.round(result.bytes / Math.max(seconds, 1e-3)),
      ...extra,
    };
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  } catch (e) {
    progress.end();
    if (interrupted) {
      process.stderr.write(`cogmill: cancelled; nothing was written to ${values.out}\n`);
      process.exitCode = EXIT_INTERRUPTED;
      return;
    }
    throw e;
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
    await engine.close();
  }
}

type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

function reportPrepared(prep: Prepared, sink: SinkStaged): void {
  if (prep.resumed) {
    const done = prep.reports.filter(Boolean).length;
    process.stderr.write(
      `cogmill: resuming upload ${prep.plan.uploadId} of ${sink.location}: ${done} of ${prep.plan.shards.length} shards already done\n`,
    );
  }
  for (const id of prep.aborted) process.stderr.write(`cogmill: aborted the stale upload ${id}\n`);
  if (prep.stale.length) {
    process.stderr.write(
      `cogmill: ${prep.stale.length} other unfinished upload(s) to ${sink.location} (${prep.stale
        .map((u) => `${u.uploadId} from ${u.initiated ?? '?'}`)
        .join(', ')}): --abort-stale removes them, or a lifecycle rule (AbortIncompleteMultipartUpload) will\n`,
    );
  }
}

async function writePlan(where: string, plan: MaterializePlan): Promise<void> {
  const text = `${JSON.stringify(plan, null, 2)}\n`;
  if (where === '-') process.stdout.write(text);
  else await writeFile(where, text);
}

function planSummary(plan: MaterializePlan) {
  return {
    plan: plan.id,
    destination: plan.destination,
    uploadId: plan.uploadId,
    tiles: plan.tileCount,
    shards: plan.shards.length,
    partSizeBytes: plan.partSizeBytes,
    fingerprint: plan.fingerprint,
  };
}

/** `--plan PLAN --shard I/N` and `--plan PLAN --complete`. */
async function planStep(values: Values, positionals: string[]): Promise<void> {
  const where = String(values.plan);
  const s3: Record<string, unknown> = {};
  if (values['s3-endpoint']) s3.endpoint = values['s3-endpoint'];
  if (values['s3-region']) s3.region = values['s3-region'];
  let text: string;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(where)) {
    const config = await configFor(values.config as string | undefined, [], Object.keys(s3).length ? { s3 } : {});
    const sink = await createSink(parseDestination(where), {
      s3: s3Settings(config),
      azure: azureSettingsOf(config.azure),
    });
    if (!isStaged(sink)) throw new ConfigError(`--plan ${where}: plans live next to s3:// and az:// destinations only`);
    const t = await sink.getNote(PLAN_NOTE);
    if (t === undefined) throw new ConfigError(`--plan ${where}: no plan is saved there (make one with --plan-out)`);
    text = t;
  } else {
    try {
      text = await readFile(where, 'utf8');
    } catch (e) {
      throw new ConfigError(`--plan ${where}: ${(e as Error).message}`);
    }
  }
  const plan = parsePlan(text);
  if (positionals.length) throw new ConfigError('--plan takes no SOURCE: the plan names its mosaic');
  // the plan's sources are trusted like command-line sources
  const config = await configFor(
    values.config as string | undefined,
    plan.mosaic.sources,
    Object.keys(s3).length ? { s3 } : {},
  );
  const engine = new Engine(engineSettings(config));
  const workers = intFlag('workers', values.workers as string | undefined, 0, 256);
  try {
    const mosaic = await openPlanMosaic(engine, plan);
    // a sink of its own (the one that read the plan does not know the plan's smallest part)
    const sink = await createSink(parseDestination(plan.destination), {
      s3: s3Settings(config),
      s3Sink: { minPartBytes: plan.minPartBytes },
      azure: azureSettingsOf(config.azure),
    });
    if (!isStaged(sink)) throw new ConfigError(`the plan's destination ${plan.destination} takes no shards`);
    if (plan.uploadId === null) throw new ConfigError('the plan has no upload: make it with --plan-out');
    sink.attach(plan.uploadId);
    const options = {
      workers: workers ?? (config.materialize.workers || undefined),
      maxConcurrentUploads: config.materialize.maxConcurrentUploads,
    };
    if (values.complete) {
      const reports = await doneReports(sink, plan);
      const done = await completeInProcess(engine, mosaic, plan, sink, reports, options);
      await sink.clearNotes().catch(() => {});
      process.stdout.write(
        `${JSON.stringify({ location: done.location, bytes: done.bytes, etag: done.etag ?? null, parts: done.parts ?? null, tiles: done.tiles, levels: done.levels, bigTiff: done.bigTiff, tilesRendered: done.tilesRendered }, null, 2)}\n`,
      );
      return;
    }
    let spec = values.shard as string | undefined;
    if (spec === undefined || spec.startsWith('/')) {
      const index = shardIndexFromEnv();
      if (index === undefined)
        throw new ConfigError('--shard I/N is needed (or JOB_COMPLETION_INDEX / AWS_BATCH_JOB_ARRAY_INDEX)');
      spec = `${index}/${spec === undefined ? plan.shards.length : spec.slice(1)}`;
    }
    const mine = shardsOfWorker(spec, plan.shards.length);
    const reports: ShardReport[] = await runShardsInProcess(
      engine,
      mosaic,
      plan,
      sink,
      { ...options, only: mine },
      { onReport: (r) => saveReport(sink, r) },
    );
    process.stdout.write(
      `${JSON.stringify({ plan: plan.id, shards: mine, tilesRendered: reports.reduce((a, r) => a + r.tilesRendered, 0), parts: reports.reduce((a, r) => a + r.parts.length, 0) }, null, 2)}\n`,
    );
  } finally {
    await engine.close();
  }
}
