/**
 * One materialisation in a process of its own, so the benchmark can measure its wall time and peak RSS like a
 * GDAL command's. The job is one JSON argument; the result is one JSON line on stdout.
 *
 *   node bench/materialize.child.ts '{"spec":{"id":"m","sources":[...]},"out":"/tmp/x.tif","roots":["/data"]}'
 */

import { availableParallelism } from 'node:os';
import '../src/builtin.hooks.ts';
import { enableCompileCache } from '../src/compile.cache.ts';
import type { MaterializeOptions } from '../src/materialize/pipeline.ts';
import { startTileWorkers } from '../src/materialize/tile.pool.start.ts';
import type { AzureSettings } from '../src/render/azure.client.ts';
import type { EngineSettings } from '../src/render/engine.ts';
import type { MosaicSpec } from '../src/render/mosaic.ts';
import type { S3Settings } from '../src/render/s3.client.ts';

export interface MaterializeJob {
  readonly spec: MosaicSpec;
  /** a file path, s3://bucket/key.tif or az://container/blob.tif */
  readonly out: string;
  /** folders the sources may be read from */
  readonly roots: readonly string[];
  readonly s3?: S3Settings;
  readonly azure?: AzureSettings;
  readonly options?: MaterializeOptions;
  /** engine settings (cache sizes) for this process and its workers */
  readonly engine?: Partial<EngineSettings>;
}

// as the CLI does (src/cli.ts): the compile cache first, the render threads, then this thread's modules
enableCompileCache(process.env);
const job = JSON.parse(process.argv[2] ?? '{}') as MaterializeJob;
startTileWorkers(job.options?.workers ?? availableParallelism());
const { createSink, parseDestination } = await import('../src/materialize/destination.ts');
const { materialize } = await import('../src/materialize/pipeline.ts');
const { Engine } = await import('../src/render/engine.ts');
const t0 = performance.now();
const engine = new Engine({ ...job.engine, roots: job.roots, allowedUrlPrefixes: [] });
const mosaic = await engine.openMosaic(job.spec);
const sink = await createSink(parseDestination(job.out), { s3: job.s3 ?? {}, azure: job.azure });
const result = await materialize(engine, mosaic, sink, job.options ?? {});
await engine.close();
process.stdout.write(
  `${JSON.stringify({
    ...result,
    width: mosaic.grid.width,
    height: mosaic.grid.height,
    epsg: mosaic.grid.crs.epsg,
    totalMs: Math.round(performance.now() - t0),
  })}\n`,
);
