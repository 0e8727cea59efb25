/**
 * Catalogue-scale mosaics: 200, 2,000 and 20,000 STAC items (two UTM zones, four dates, one 64 x 64 COG per band)
 * served over HTTP with Range support. Per size, in a fresh process each: time to open, source requests to open,
 * RSS after opening, time to the first z12 tile and the source requests of that tile (first valid pixel by date, and
 * median; and the same catalogue as stac-geoparquet with nested asset structs, first valid pixel). The peer in the same run: the plain list of the same B04 files, whose opening reads every header
 * (200 and 2,000 only; the ratio is what matters, not the times).
 *
 *   node bench/stac.bench.ts [--small] [--no-record]      (--small: 200 and 2,000 items)
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { crsFromEpsg } from '../src/render/crs.ts';
import { lonLatToTile } from '../src/render/tilematrix.ts';
import { createTransformer } from '../src/render/transform.ts';
import { startStaticServer } from '../test/support/http.server.ts';
import { SCENE_M, writeCatalogue, ZONES } from '../test/support/stac.catalog.ts';
import type { Bench } from './harness.ts';
import { appendResults, emit, note, round, run, table } from './support.ts';

const CHILD = path.join(import.meta.dirname, 'stac.child.ts');

async function child(args: string[]): Promise<Record<string, number>> {
  const r = await run(process.execPath, ['--expose-gc', CHILD, ...args], { timeoutMs: 3_600_000 });
  if (r.code !== 0) throw new Error(`stac.child ${args.join(' ')} failed: ${r.stderr.slice(0, 2000)}`);
  return JSON.parse(r.stdout) as Record<string, number>;
}

export const stacBench: Bench = {
  name: 'stac',
  title: 'Catalogue mosaics: open, first tile and requests per tile for 200 / 2,000 / 20,000 STAC items',
  async run(ctx) {
    const sizes = ctx.small ? [200, 2000] : [200, 2000, 20_000];
    const rows: Record<string, unknown>[] = [];
    for (const n of sizes) {
      const dir = path.join(ctx.outDir, String(n));
      await mkdir(dir, { recursive: true });
      const server = await startStaticServer(dir);
      try {
        const scenes = n / 8;
        const cols = Math.round(Math.sqrt(scenes * 2.5));
        const t0 = performance.now();
        await writeCatalogue(dir, { scenesPerZone: scenes, cols, baseUrl: server.url });
        note(`  ${n} items written in ${Math.round(performance.now() - t0)} ms`);
        // a z12 tile at the middle of zone 32N's block of scenes
        const rowsOfScenes = Math.ceil(scenes / cols);
        const [epsg, ox, oy] = ZONES[0];
        const [lon, lat] = createTransformer(crsFromEpsg(epsg), crsFromEpsg(4326)).point(
          ox + (cols / 2) * SCENE_M,
          oy - (rowsOfScenes / 2) * SCENE_M,
        );
        const [x, y] = lonLatToTile(lon, lat, 12);
        const tile = `12/${x}/${y}`;
        for (const [mode, composite, doc] of [
          ['catalogue', 'first', 'items.json'],
          ['catalogue', 'median', 'items.json'],
          ['catalogue', 'first', 'items.parquet'],
          ...(n <= 2000 ? [['plain', 'first', 'items.json']] : []),
        ] as const) {
          const r = await child([mode, `${server.url}/${doc}`, tile, composite, `${server.url}/`]);
          const row = {
            items: n,
            mosaic:
              mode === 'plain'
                ? 'plain list of B04 files'
                : doc === 'items.json'
                  ? 'STAC items.json'
                  : 'stac-geoparquet items.parquet',
            composite,
            ...r,
          };
          rows.push(row);
          ctx.emit(row);
          note(`  ${JSON.stringify(row)}`);
        }
      } finally {
        await server.stop();
        await rm(dir, { recursive: true, force: true });
      }
    }
    const ratio = (n: number) => {
      const c = rows.find((r) => r.items === n && r.mosaic !== 'plain list of B04 files' && r.composite === 'first');
      const p = rows.find((r) => r.items === n && r.mosaic === 'plain list of B04 files');
      return c && p ? round((p.openMs as number) / Math.max(1, c.openMs as number), 1) : null;
    };
    const summary = sizes.filter((n) => n <= 2000).map((n) => ({ items: n, plainOpenOverCatalogueOpen: ratio(n) }));
    ctx.emit({ summary });
    return {
      sections: [
        { title: 'per size (fresh process each)', body: table(rows) },
        { title: 'opening: plain list / catalogue (time ratio)', body: table(summary) },
      ],
    };
  },
};

if (import.meta.main) {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { small: { type: 'boolean', default: false }, 'no-record': { type: 'boolean', default: false } },
  });
  const outDir = await mkdtemp(path.join(tmpdir(), 'cogmill-bench-stac-'));
  try {
    const report = await stacBench.run({
      data: undefined as never,
      small: values.small ?? false,
      outDir,
      emit: (r) => emit('stac', r),
    });
    if (!values['no-record']) await appendResults(stacBench.title, values.small ?? false, report.sections);
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}
