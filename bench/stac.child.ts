/**
 * One measurement of bench/stac.bench.ts in a fresh process: open a mosaic (a STAC catalogue, or the plain list of
 * the same files, which reads every header), then render one 256 px tile. Prints one JSON line.
 * argv: catalogue|plain LOCATION Z/X/Y COMPOSITE [ALLOWED_PREFIX]
 */
import { Engine } from '../src/render/engine.ts';
import type { MosaicSpec } from '../src/render/mosaic.ts';
import { parseSortby } from '../src/render/stac.ts';
import { xyzTileGrid } from '../src/render/tilematrix.ts';
import type { Composite } from '../src/render/types.ts';

const [mode, location, tile, composite, prefix] = process.argv.slice(2);
const engine = new Engine({ allowedUrlPrefixes: [prefix ?? location.replace(/[^/]*$/, '')] });
const requests = () => Object.values(engine.sourceStats()).reduce((a, s) => a + s.requests, 0);
let spec: MosaicSpec;
if (mode === 'catalogue') {
  spec = {
    id: 'b',
    sources: [],
    catalogue: { items: location, sortby: parseSortby('datetime'), trusted: true },
    assets: ['B04'],
    composite: composite as Composite,
  };
} else {
  const doc = (await (await fetch(location)).json()) as { features: { assets: { B04: { href: string } } }[] };
  const base = location.replace(/[^/]*$/, '');
  spec = {
    id: 'b',
    sources: doc.features.map((f) => new URL(f.assets.B04.href, base).href),
    composite: composite as Composite,
  };
}
const t0 = performance.now();
const mosaic = await engine.openMosaic(spec);
const openMs = performance.now() - t0;
const openRequests = requests();
(globalThis as { gc?: () => void }).gc?.();
const rssAfterOpen = process.memoryUsage().rss;
const [z, x, y] = tile.split('/').map(Number);
const t1 = performance.now();
const px = await engine.render(mosaic, xyzTileGrid(z, x, y), {});
const firstTileMs = performance.now() - t1;
let valid = 0;
for (const v of px.mask) if (v) valid++;
process.stdout.write(
  `${JSON.stringify({
    openMs: Math.round(openMs),
    openRequests,
    rssAfterOpenMiB: Math.round(rssAfterOpen / 2 ** 20),
    firstTileMs: Math.round(firstTileMs),
    tileRequests: requests() - openRequests,
    tileValidFraction: Math.round((valid / px.mask.length) * 1000) / 1000,
  })}\n`,
);
await engine.close();
