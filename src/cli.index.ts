/**
 * `cogmill index SOURCE... -o INDEX.json`: read every GeoTIFF header once (bounded concurrency, bounded open
 * files) and write a mosaic index, a STAC ItemCollection with proj:* and raster:bands per file, so that serving the
 * index later opens the mosaic without a request and reads only the files under each window.
 *
 * `cogmill explain`: what a render of a window would read, as JSON, without reading pixels.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { catalogueOptions, configFor, intFlag, MOSAIC_OPTIONS } from './cli.main.ts';
import { ConfigError } from './config.error.ts';
import { Catalog } from './render/catalog.ts';
import { parseCrs } from './render/crs.ts';
import { Engine } from './render/engine.ts';
import { explainRender } from './render/mosaic.explain.ts';
import { indexItem } from './render/mosaic.index.ts';
import { parseInterval } from './render/stac.ts';
import { xyzTileGrid } from './render/tilematrix.ts';
import type { Grid } from './render/types.ts';
import { engineSettings } from './settings.ts';

export const INDEX_USAGE = `usage: cogmill index SOURCE... -o INDEX.json [--concurrency N]
  SOURCE: files, folders, globs, http(s):// URLs, s3://bucket/key, s3://bucket/prefix/
  Writes a STAC ItemCollection with each file's grid (proj:code, proj:shape, proj:transform) and sample type
  (raster:bands). Local files are listed relative to the index, so the folder can move with it.
  Serve it with: cogmill serve INDEX.json
`;

export async function cmdIndex(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      out: { type: 'string', short: 'o' },
      concurrency: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(INDEX_USAGE);
    return;
  }
  if (positionals.length === 0) throw new ConfigError(`cogmill index needs at least one SOURCE\n\n${INDEX_USAGE}`);
  if (!values.out) throw new ConfigError(`--out (-o) is required\n\n${INDEX_USAGE}`);
  const concurrency = intFlag('concurrency', values.concurrency, 1, 256) ?? 16;
  const config = await configFor(undefined, positionals);
  const engine = new Engine({ ...engineSettings(config), openConcurrency: concurrency });
  const out = path.resolve(values.out);
  try {
    const locations = await engine.expand(positionals);
    if (locations.length === 0) throw new ConfigError(`no GeoTIFF matches ${positionals.join(', ')}`);
    const features = new Array<Record<string, unknown>>(locations.length);
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < locations.length) {
        const i = next++;
        const loc = locations[i];
        const info = (await engine.openRaster(loc)).info;
        // the parsed raster is not needed again: keep memory flat over thousands of files
        engine.forget(loc);
        const local = !/^[a-z][a-z0-9+.-]*:\/\//i.test(loc);
        const href = local ? `./${path.relative(path.dirname(out), loc).split(path.sep).join('/')}` : loc;
        const id = local ? path.relative(path.dirname(out), loc).split(path.sep).join('/') : loc;
        features[i] = indexItem(id, href, info);
        if (++done % 500 === 0) process.stderr.write(`cogmill: ${done} / ${locations.length} headers read\n`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, locations.length) }, worker));
    await writeFile(out, `${JSON.stringify({ type: 'FeatureCollection', features })}\n`);
    process.stderr.write(`cogmill: wrote ${out} (${features.length} sources)\n`);
  } finally {
    await engine.close();
  }
}

export async function cmdExplain(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...MOSAIC_OPTIONS,
      tile: { type: 'string' },
      bbox: { type: 'string' },
      crs: { type: 'string' },
      resolution: { type: 'string' },
      headers: { type: 'boolean' },
    },
  });
  const { datetime, ...opts } = catalogueOptions(values);
  const config = await configFor(values.config, positionals, {}, opts);
  const id = values.mosaic ?? (positionals.length ? 'default' : config.mosaics[0]?.id);
  const def = config.mosaics.find((m) => m.id === id);
  if (!def) throw new ConfigError(`no mosaic "${id ?? ''}": give SOURCE arguments or --config FILE --mosaic ID`);
  const engine = new Engine(engineSettings(config));
  try {
    const mosaic = await new Catalog(engine).open(def, undefined, { trusted: true });
    let grid: Grid;
    if (values.tile) {
      const t = /^(\d{1,2})\/(\d{1,9})\/(\d{1,9})$/.exec(values.tile);
      if (!t) throw new ConfigError(`--tile must be Z/X/Y (got "${values.tile}")`);
      grid = xyzTileGrid(Number(t[1]), Number(t[2]), Number(t[3]));
    } else if (values.bbox) {
      const b = values.bbox.split(',').map(Number);
      if (b.length !== 4 || !b.every(Number.isFinite) || !(b[0] < b[2] && b[1] < b[3]))
        throw new ConfigError('--bbox must be MINX,MINY,MAXX,MAXY');
      const crs = values.crs ? parseCrs(values.crs) : mosaic.grid.crs;
      const res = values.resolution ? Number(values.resolution) : Math.abs(mosaic.grid.transform[1]);
      if (!(res > 0)) throw new ConfigError('--resolution must be a positive number');
      const width = Math.max(1, Math.round((b[2] - b[0]) / res));
      const height = Math.max(1, Math.round((b[3] - b[1]) / res));
      grid = { crs, transform: [b[0], res, 0, b[3], 0, -res], width, height };
    } else {
      throw new ConfigError('cogmill explain needs --tile Z/X/Y or --bbox MINX,MINY,MAXX,MAXY');
    }
    const out = await explainRender(engine, mosaic, grid, {
      headers: values.headers === true,
      ...(datetime ? { datetime: parseInterval(datetime) } : {}),
    });
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    await engine.close();
  }
}
