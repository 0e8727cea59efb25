/**
 * cogmill command line: serve | info | materialize | validate | demo.
 * This is the only place that reads process.argv and process.env.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from './config.error.ts';
import { redactConfig } from './config.redact.ts';
import type { Config } from './config.schema.ts';
import { loadConfig, trustedSourcePolicy, withCommandLineMosaic } from './config.ts';
import { crsFromEpsg } from './render/crs.ts';
import { Engine } from './render/engine.ts';
import { CogmillError } from './render/errors.ts';
import { mosaicZooms } from './render/grid.request.ts';
import type { Mosaic } from './render/mosaic.ts';
import type { TileRequest } from './render/tile.pipeline.ts';
import { tmsTileGrid, WORLD_SET_MAX_LEVEL, worldTileMatrixSet } from './render/tilematrix.sets.ts';
import { lonLatToTile } from './render/tilematrix.ts';
import { transformBounds } from './render/transform.ts';
import { gridBounds } from './render/types.ts';
import { engineSettings } from './settings.ts';

const USAGE = `usage:
  cogmill serve [--config FILE] [--host H] [--port N] [SOURCE...] [catalogue options]
      serve the configured mosaics; SOURCE arguments (files, folders, globs, http(s):// URLs, s3://bucket/key,
      s3://bucket/prefix/, az://container/blob, az://container/prefix/) form one more mosaic with id "default".
      One SOURCE that is a STAC ItemCollection, a stac-geoparquet file, a mosaic index or a STAC API URL
      (recognised by its content) is a catalogue mosaic:
        --assets B04,B03,B02   one band per asset (default: the items' only raster asset)
        --composite RULE       first, last, min, max, mean, median, count
        --sortby FIELDS        e.g. eo:cloud_cover or -datetime (items in this order; first valid wins)
        --datetime INTERVAL    only items in this RFC 3339 interval
        --period P1M           periods (P1D, P1W, P1M, P1Y) picked with ?datetime= on tiles
        --period-bands         one band set per period (B04@2024-01, ...) instead of one over every item
      The config file may also be named by COGMILL_CONFIG; with neither a config nor a SOURCE, the GeoTIFFs
      under the current folder are served. Settings can be overridden by COGMILL_<SECTION>_<KEY> variables
      (see cogmill config --reference).
  cogmill index SOURCE... -o INDEX.json
      read every GeoTIFF header once and write a mosaic index (a STAC ItemCollection with proj:* fields):
      serving INDEX.json later opens the mosaic without reading a header, and reads only the files under each tile
  cogmill explain [--config FILE --mosaic ID | SOURCE... [catalogue options]] (--tile Z/X/Y | --bbox MINX,MINY,MAXX,MAXY
                  [--crs EPSG:N] [--resolution R]) [--datetime INTERVAL] [--headers]
      print what a render of that window would read (items, assets, overview level and window, requests, bytes,
      empty fraction) as JSON, without reading pixels (headers only with --headers)
  cogmill info SOURCE...
      print what cogmill sees in each source (size, CRS, bands, dtype, nodata, overviews, bounds) as JSON
  cogmill materialize [--config FILE --mosaic ID | SOURCE...] --out s3://bucket/key.tif|az://container/blob.tif|FILE [options]
      write the mosaic as a COG (see cogmill materialize --help)
  cogmill worker --redis redis://HOST:PORT [--concurrency N]
      run materialisation shards from a queue (see cogmill worker --help)
  cogmill config [--config FILE] [SOURCE...] | --reference
      print the effective configuration (secrets redacted) as YAML, or the table of every setting
  cogmill demo [--dir DIR] [--port N]
      generate a small demo mosaic in DIR (default ./demo-data) and serve it
`;

/**
 * The shard index a batch system gives this process: Kubernetes Indexed Jobs set JOB_COMPLETION_INDEX, AWS Batch
 * array jobs AWS_BATCH_JOB_ARRAY_INDEX.
 */
export function shardIndexFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.JOB_COMPLETION_INDEX ?? env.AWS_BATCH_JOB_ARRAY_INDEX;
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v)) throw new ConfigError(`the shard index "${v}" (JOB_COMPLETION_INDEX) is not a number`);
  return Number(v);
}

/** Command-line sources are trusted: their folders become roots and their URL prefixes become allowed. */
export function cliSourcePolicy(sources: readonly string[]): { roots: string[]; allowedUrlPrefixes: string[] } {
  return trustedSourcePolicy(sources);
}

/**
 * The configuration of a command: the config file (`--config`, else the COGMILL_CONFIG variable), environment
 * overrides, then `extra` (command-line options). SOURCE arguments add a mosaic with id "default".
 */
export async function configFor(
  file: string | undefined,
  sources: readonly string[],
  extra: Record<string, unknown> = {},
  mosaic: CatalogueOptions = {},
): Promise<Config> {
  const base = await loadConfig({
    file: file ?? (process.env.COGMILL_CONFIG || undefined),
    env: process.env,
    overrides: extra,
  });
  if (sources.length === 0) return base;
  const local = sources.map((s) => (/^[a-z][a-z0-9+.-]*:\/\//i.test(s) ? s : path.resolve(s)));
  const { sortby, datetime, ...rest } = mosaic;
  let def: Record<string, unknown> = { id: 'default', title: 'default', sources: local, ...rest };
  if (sortby !== undefined || datetime !== undefined) {
    // a query needs a catalogue: the one SOURCE is one (a STAC API search when its path ends in /search)
    if (local.length !== 1)
      throw new ConfigError('--sortby and --datetime take one SOURCE: a STAC catalogue or a STAC API URL');
    const only = local[0];
    const isSearch = /^https?:\/\/[^?#]*\/search(\?|#|$)/i.test(only);
    def = {
      id: 'default',
      title: 'default',
      ...rest,
      stac: {
        ...(isSearch ? { search: only } : { items: only }),
        ...(sortby !== undefined ? { sortby } : {}),
        ...(datetime !== undefined ? { datetime } : {}),
      },
    };
  }
  return withCommandLineMosaic(base, def);
}

/** Options of a command-line catalogue mosaic (serve, explain, materialize). */
export interface CatalogueOptions {
  assets?: string[];
  composite?: string;
  sortby?: string;
  datetime?: string;
  period?: string;
  periodBands?: boolean;
}

export const CATALOGUE_OPTIONS = {
  assets: { type: 'string' },
  composite: { type: 'string' },
  sortby: { type: 'string' },
  datetime: { type: 'string' },
  period: { type: 'string' },
  'period-bands': { type: 'boolean' },
} as const;

/** The options of a command that works on one mosaic: a config file and a mosaic in it, or SOURCE arguments. */
export const MOSAIC_OPTIONS = {
  config: { type: 'string', short: 'c' },
  mosaic: { type: 'string', short: 'm' },
  ...CATALOGUE_OPTIONS,
} as const;

/** An integer option from `min` to `max`, or undefined when it is not given. */
export function intFlag(name: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max)
    throw new ConfigError(`--${name} must be an integer from ${min} to ${max} (got "${v}")`);
  return n;
}

export function catalogueOptions(values: Record<string, unknown>): CatalogueOptions {
  const out: CatalogueOptions = {};
  if (typeof values.assets === 'string')
    out.assets = values.assets
      .split(',')
      .map((a) => a.trim())
      .filter(Boolean);
  if (typeof values.composite === 'string') out.composite = values.composite;
  if (typeof values.sortby === 'string') out.sortby = values.sortby;
  if (typeof values.datetime === 'string') out.datetime = values.datetime;
  if (typeof values.period === 'string') out.period = values.period;
  if (values['period-bands'] === true) out.periodBands = true;
  return out;
}

async function cmdServe(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      host: { type: 'string' },
      port: { type: 'string', short: 'p' },
      ...CATALOGUE_OPTIONS,
    },
  });
  const server: Record<string, unknown> = {};
  if (values.host) server.host = values.host;
  if (values.port !== undefined) {
    if (!/^\d+$/.test(values.port)) throw new ConfigError(`--port must be a number (got "${values.port}")`);
    server.port = Number(values.port);
  }
  let sources = positionals;
  if (sources.length === 0 && !values.config && !process.env.COGMILL_CONFIG) {
    sources = [process.cwd()];
    process.stderr.write(`cogmill: no --config and no SOURCE given: serving the GeoTIFFs under ${process.cwd()}\n`);
  }
  const config = await configFor(
    values.config,
    sources,
    Object.keys(server).length ? { server } : {},
    catalogueOptions(values),
  );
  await serveConfig(config);
}

/** Serve `config` until SIGTERM or SIGINT, then drain (bounded by server.shutdownGraceMs) and exit 0. */
export async function serveConfig(config: Config): Promise<void> {
  // the HTTP server (Hono, pino, prom-client) is loaded by the commands that serve only
  const { buildServices, createLogger, startServer } = await import('./main.ts');
  const log = createLogger(config);
  let stopSignal: string | undefined;
  let stop: (signal: string) => void = (signal) => {
    stopSignal = signal;
  };
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopSignal !== undefined && signal === 'SIGINT') {
      log.warn({ signal }, 'second interrupt: exiting without draining');
      process.exit(130);
    }
    stop(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  log.info({ config: redactConfig(config) }, 'configuration');
  const deps = await buildServices(config, { log });
  // ready to render when it says it listens: the tile workers are started, loaded, and have drawn a few tiles of the
  // first mosaics (their render code compiled) first
  await deps.tilePool?.warmUp(warmUpTiles(deps.catalog.list().flatMap((e) => (e.mosaic ? [e.mosaic] : []))));
  const running = await startServer(deps);
  log.info({ url: running.url, mosaics: deps.catalog.list().map((e) => e.id) }, 'cogmill listening');
  process.stderr.write(
    `cogmill listening on ${running.url}  (viewer: ${running.url}/, API docs: ${running.url}/docs)\n`,
  );
  stop = (signal: string) => {
    stopSignal = signal;
    log.info(
      { signal, graceMs: config.server.shutdownGraceMs },
      'draining: no new connections, finishing in-flight requests',
    );
    running.close().then(
      (inTime) => {
        log.info({ inTime }, 'stopped');
        process.exit(0);
      },
      (e: unknown) => {
        log.error({ err: e }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  if (stopSignal !== undefined) stop(stopSignal);
}

async function cmdConfig(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, reference: { type: 'boolean' } },
  });
  if (values.reference) {
    const { configReferenceMarkdown } = await import('./config.reference.ts');
    process.stdout.write(`${configReferenceMarkdown()}\n`);
    return;
  }
  const config = await configFor(values.config, positionals);
  const YAML = (await import('yaml')).default;
  process.stdout.write(YAML.stringify(redactConfig(config)));
}

async function cmdInfo(argv: string[]): Promise<void> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  if (positionals.length === 0) throw new ConfigError('cogmill info needs at least one SOURCE');
  const config = await configFor(undefined, positionals);
  const engine = new Engine(engineSettings(config));
  const locations = await engine.expand(positionals);
  const out = [];
  for (const loc of locations) {
    const r = await engine.openRaster(loc);
    const i = r.info;
    const grid = { crs: i.crs, transform: i.transform, width: i.width, height: i.height };
    const b = gridBounds(grid);
    out.push({
      source: loc,
      bytes: i.size,
      width: i.width,
      height: i.height,
      bands: i.bandCount,
      dtype: i.dtype,
      nodata: i.nodata === undefined ? null : Number.isNaN(i.nodata) ? 'nan' : i.nodata,
      crs: { epsg: i.crs.epsg, name: i.crs.name },
      transform: i.transform,
      bounds: b,
      boundsWgs84: transformBounds(b, i.crs, crsFromEpsg(4326)),
      blockSize: [i.blockWidth, i.blockHeight],
      compression: i.compression,
      interleave: i.interleave,
      photometric: i.photometric,
      mask: i.hasMask,
      overviews: i.levels.slice(1).map((l) => ({ width: l.width, height: l.height })),
      ...(i.warnings.length > 0 ? { warnings: i.warnings } : {}),
    });
  }
  await engine.close();
  process.stdout.write(`${JSON.stringify(out.length === 1 ? out[0] : out, null, 2)}\n`);
}

/** The usage lines of one command (its entry of USAGE). */
export function commandUsage(cmd: string): string | undefined {
  const lines = USAGE.split('\n');
  const at = lines.findIndex((l) => l.startsWith(`  cogmill ${cmd}`));
  if (at < 0) return undefined;
  let end = at + 1;
  while (end < lines.length && lines[end].startsWith('      ')) end++;
  return `usage:\n${lines.slice(at, end).join('\n')}\n`;
}

const HELP_FLAGS = new Set(['-h', '--help']);

export async function main(argv: string[] = process.argv.slice(2)): Promise<void> {
  const [cmd, ...rest] = argv;
  if (cmd !== 'materialize' && cmd !== undefined && rest.some((a) => HELP_FLAGS.has(a))) {
    const usage = commandUsage(cmd);
    if (usage) {
      process.stdout.write(usage);
      return;
    }
  }
  switch (cmd) {
    case 'serve':
      return cmdServe(rest);
    case 'info':
      return cmdInfo(rest);
    case 'config':
      return cmdConfig(rest);
    case 'materialize': {
      const { cmdMaterialize } = await import('./cli.materialize.ts');
      return cmdMaterialize(rest);
    }
    case 'index': {
      const { cmdIndex } = await import('./cli.index.ts');
      return cmdIndex(rest);
    }
    case 'explain': {
      const { cmdExplain } = await import('./cli.index.ts');
      return cmdExplain(rest);
    }
    case 'worker': {
      const { cmdWorker } = await import('./cli.worker.ts');
      return cmdWorker(rest);
    }
    case 'demo': {
      const { cmdDemo } = await import('./cli.demo.ts');
      return cmdDemo(rest);
    }
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return;
    default:
      process.stderr.write(`unknown command "${cmd}"\n${USAGE}`);
      process.exitCode = 2;
  }
}

export function run(): void {
  main().catch((e: unknown) => {
    const code = (e as { code?: unknown })?.code;
    if (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS')) {
      // an unknown or malformed option: say which, and how to ask for help
      process.stderr.write(
        `cogmill: ${(e as Error).message.split('. ')[0]}\n(cogmill COMMAND --help shows the options)\n`,
      );
      process.exitCode = 2;
    } else if (e instanceof ConfigError || e instanceof CogmillError) {
      process.stderr.write(`cogmill: ${e.message}\n`);
      process.exitCode = e instanceof ConfigError ? 2 : 1;
    } else {
      process.stderr.write(`cogmill: ${(e as Error)?.stack ?? e}\n`);
      process.exitCode = 1;
    }
  });
}

/** Mosaics whose tiles warm the tile workers up before the server listens. */
const WARM_MOSAICS = 4;

/**
 * WebMercatorQuad PNG tiles at the mosaic's finest zoom and the one above, around its centre (four in all), with a
 * fixed stretch (no statistics are computed for them), for the first WARM_MOSAICS plain mosaics.
 */
export function warmUpTiles(mosaics: readonly Mosaic[]): TileRequest[] {
  const set = worldTileMatrixSet('WebMercatorQuad');
  const out: TileRequest[] = [];
  for (const m of mosaics.filter((x) => !x.items).slice(0, WARM_MOSAICS)) {
    const { maxzoom } = mosaicZooms(m, set.matrix(0).tileWidth, WORLD_SET_MAX_LEVEL);
    const [w, s, e, n] = m.boundsWgs84;
    for (const z of [maxzoom, Math.max(0, maxzoom - 1)]) {
      const [cx, cy] = lonLatToTile((w + e) / 2, (s + n) / 2, z);
      for (const dx of [0, 1]) {
        const grid = tmsTileGrid(set, z, cx + dx, cy);
        out.push({
          mosaicId: m.id,
          mosaicEtag: m.etag,
          grid,
          format: 'png',
          style: { rescale: [[0, 255]] },
          inside: true,
          ranges: [[0, 255]],
        });
      }
    }
  }
  return out;
}
