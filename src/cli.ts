#!/usr/bin/env node
/**
 * cogmill command line: serve | info | materialize | validate | demo.
 * This is the only place that reads process.argv and process.env.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { crsFromEpsg } from './render/crs.ts';
import { Engine } from './render/engine.ts';
import { CogmillError } from './render/errors.ts';
import { transformBounds } from './render/transform.ts';
import { gridBounds } from './render/types.ts';
import { buildServices, createLogger, engineSettings, startServer } from './main.ts';

const USAGE = `usage:
  cogmill serve [--config FILE] [--host H] [--port N] [SOURCE...]
      serve the configured mosaics; SOURCE arguments (files, folders, globs, http(s):// URLs, s3://bucket/key,
      s3://bucket/prefix/) form one more mosaic with id "default"
  cogmill info SOURCE...
      print what cogmill sees in each source (size, CRS, bands, dtype, nodata, overviews, bounds) as JSON
  cogmill materialize [--config FILE --mosaic ID | SOURCE...] --out s3://bucket/key.tif|FILE [options]
      write the mosaic as a COG (see cogmill materialize --help)
  cogmill demo [--dir DIR] [--port N]
      generate a small demo mosaic in DIR (default ./demo-data) and serve it
`;

function isUrl(s: string): boolean {
  return /^(https?|s3):\/\//i.test(s);
}

/** Command-line sources are trusted: their folders become roots and their URL prefixes become allowed. */
export function cliSourcePolicy(sources: readonly string[]): { roots: string[]; allowedUrlPrefixes: string[] } {
  const roots = new Set<string>();
  const prefixes = new Set<string>();
  for (const s of sources) {
    if (isUrl(s)) {
      prefixes.add(s.endsWith('/') ? s : s.slice(0, s.lastIndexOf('/') + 1));
    } else {
      const glob = s.search(/[*?[{]/);
      const fixed = glob >= 0 ? s.slice(0, glob) : s;
      const abs = path.resolve(fixed || '.');
      roots.add(glob >= 0 || /\.(tif|tiff)$/i.test(abs) ? path.dirname(abs) : abs);
    }
  }
  return { roots: [...roots], allowedUrlPrefixes: [...prefixes] };
}

async function configFor(file: string | undefined, sources: string[], extra: Record<string, unknown> = {}): Promise<Config> {
  const policy = cliSourcePolicy(sources);
  const base = await loadConfig({ file, env: process.env });
  const overrides: Record<string, unknown> = {
    ...extra,
    sources: {
      roots: [...base.sources.roots, ...policy.roots],
      allowedUrlPrefixes: [...base.sources.allowedUrlPrefixes, ...policy.allowedUrlPrefixes],
    },
  };
  if (sources.length) overrides.mosaics = [...base.mosaics, { id: 'default', title: 'default', sources }];
  return loadConfig({ file, env: process.env, overrides });
}

async function cmdServe(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { config: { type: 'string', short: 'c' }, host: { type: 'string' }, port: { type: 'string', short: 'p' } },
  });
  const server: Record<string, unknown> = {};
  if (values.host) server.host = values.host;
  if (values.port) server.port = Number(values.port);
  const config = await configFor(values.config, positionals, Object.keys(server).length ? { server } : {});
  await serveConfig(config);
}

export async function serveConfig(config: Config): Promise<void> {
  const log = createLogger(config);
  const deps = await buildServices(config, { log });
  const running = await startServer(deps);
  log.info({ url: running.url, mosaics: deps.catalog.list().map((e) => e.id) }, 'cogmill listening');
  process.stderr.write(`cogmill listening on ${running.url}  (viewer: ${running.url}/)\n`);
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    await running.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
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
    });
  }
  await engine.close();
  process.stdout.write(`${JSON.stringify(out.length === 1 ? out[0] : out, null, 2)}\n`);
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return cmdServe(rest);
    case 'info':
      return cmdInfo(rest);
    case 'materialize': {
      const { cmdMaterialize } = await import('./cli.materialize.ts');
      return cmdMaterialize(rest);
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
    if (e instanceof ConfigError || e instanceof CogmillError) {
      process.stderr.write(`cogmill: ${e.message}\n`);
      process.exitCode = e instanceof ConfigError ? 2 : 1;
    } else {
      process.stderr.write(`cogmill: ${(e as Error)?.stack ?? e}\n`);
      process.exitCode = 1;
    }
  });
}

if (import.meta.main) run();
