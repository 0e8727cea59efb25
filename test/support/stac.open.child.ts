/**
 * Child process for memory measurements: open a catalogue mosaic from a STAC document and report the memory the
 * process holds afterwards (after a full GC), as one JSON line on stdout. Run with --expose-gc.
 * argv: CATALOGUE [ASSETS] (assets comma-separated), or --generate DIR SCENES_PER_ZONE (writes a catalogue
 * without rasters, so the measuring process and the test runner hold none of it).
 */
import { Engine } from '../../src/render/engine.ts';

if (process.argv[2] === '--generate') {
  const { writeCatalogue } = await import('./stac.catalog.ts');
  const c = await writeCatalogue(process.argv[3], {
    scenesPerZone: Number(process.argv[4]),
    cols: 50,
    writeRasters: false,
  });
  process.stdout.write(
    `${JSON.stringify({ items: c.items.length, itemsJson: c.itemsJson, itemsParquet: c.itemsParquet })}\n`,
  );
  process.exit(0);
}

const [catalogue, assets = 'B04,B03,B11'] = process.argv.slice(2);
const engine = new Engine({ roots: ['/'] });
const before = process.memoryUsage();
const t0 = performance.now();
const mosaic = await engine.openMosaic({
  id: 'm',
  sources: [],
  catalogue: { items: catalogue, trusted: true },
  assets: assets.split(','),
  crs: 32632,
  resolution: [10, 10],
});
const openMs = performance.now() - t0;
const gc = (globalThis as { gc?: () => void }).gc;
gc?.();
gc?.();
const after = process.memoryUsage();
process.stdout.write(
  `${JSON.stringify({
    items: mosaic.items?.items.length,
    openMs: Math.round(openMs),
    rssBytes: after.rss,
    heapUsedBytes: after.heapUsed,
    rssBeforeBytes: before.rss,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    heapTotalBytes: after.heapTotal,
    externalBytes: after.external,
    arrayBuffersBytes: after.arrayBuffers,
    sourceRequests: Object.values(engine.sourceStats()).reduce((a, s) => a + s.requests, 0),
  })}\n`,
);
await engine.close();
