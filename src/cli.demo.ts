/** `cogmill demo`: generate the demo mosaic with the project's own writer, then serve it. */
import { access } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { serveConfig } from './cli.main.ts';
import { loadConfig } from './config.ts';
import { writeDemoMosaic } from './demo.data.ts';

export async function cmdDemo(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: 'string' },
      port: { type: 'string', short: 'p' },
      host: { type: 'string' },
      size: { type: 'string' },
    },
  });
  const dir = path.resolve(values.dir ?? 'demo-data');
  const marker = path.join(dir, 'scene-32N.tif');
  const exists = await access(marker).then(
    () => true,
    () => false,
  );
  if (!exists) {
    process.stderr.write(`generating the demo mosaic in ${dir} ...\n`);
    await writeDemoMosaic(dir, values.size ? Number(values.size) : 2048);
  }
  const config = await loadConfig({
    env: process.env,
    overrides: {
      server: { host: values.host ?? '127.0.0.1', port: values.port ? Number(values.port) : 8080 },
      sources: { roots: [dir] },
      auth: { allowUnauthenticated: true },
      materialize: { allowedDestinations: [path.join(dir, 'exports') + path.sep] },
      mosaics: [
        { id: 'scenes', title: 'Two uint16 scenes across UTM 31N/32N', sources: [path.join(dir, 'scene-*.tif')] },
        { id: 'rgb', title: 'RGB uint8 in Web Mercator', sources: [path.join(dir, 'rgb')] },
      ],
    },
  });
  await serveConfig(config);
}
