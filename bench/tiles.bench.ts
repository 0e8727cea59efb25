/**
 * XYZ tiles from a real server: tiles/s and p50/p99 latency at 8 concurrent clients over a fixed list of tiles at
 * several zooms, on the deflate uint16 S2 mosaic (three scenes, two UTM zones), PNG and WebP, cold (a fresh server:
 * nothing parsed, decoded or rendered yet) and warm (the same list again). GDAL reference: the same tiles warped
 * from the same sources with GDAL's Python bindings, in 2 processes (bench/gdal.tiles.py).
 *
 *   node bench/tiles.bench.ts [--small]
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Engine } from '../src/render/engine.ts';
import { type Bench, type BenchContext, runStandalone } from './harness.ts';
import { load, startCogmillServer } from './server.ts';
import { BENCH_DIR, mib, note, PYTHON, percentile, round, startChild, table } from './support.ts';
import { benchZooms, nativeZoom, type Tile, tileList } from './tile.list.ts';

export const CLIENTS = 8;
const FORMATS = ['png', 'webp'] as const;
/** the warm pass repeats the tile list up to this many requests (--small: fewer) */
const WARM_REQUESTS = 10_000;
const WARM_REQUESTS_SMALL = 2_000;

/** The S2 mosaic of the tile benchmarks and its tile list. */
export async function tileSetup(ctx: BenchContext) {
  const { s2West, s2East, s2Zone31 } = ctx.data;
  const spec = { id: 's2', sources: [s2West.cog, s2East.cog, s2Zone31.cog] };
  const engine = new Engine({ roots: [ctx.data.dir] });
  const mosaic = await engine.openMosaic(spec);
  const b = mosaic.boundsWgs84;
  await engine.close();
  const zooms = benchZooms(nativeZoom(s2West.transform[1], (b[1] + b[3]) / 2));
  const tiles = tileList(b, zooms, ctx.small ? 40 : 250);
  return { spec, tiles, zooms };
}

interface GdalPass {
  readonly tilesPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly wallMs: number;
}

/** GDAL's time for the same tiles: 2 processes, each half of the list, two passes (cold, warm). */
async function gdalTiles(
  sources: readonly string[],
  tiles: readonly Tile[],
  format: string,
  dir: string,
): Promise<GdalPass[]> {
  const job = path.join(dir, `gdal-tiles-${format}.json`);
  await writeFile(
    job,
    JSON.stringify({
      sources: [...sources].reverse(),
      tiles: tiles.map((t) => [t.z, t.x, t.y]),
      format,
      scale: [200, 6000],
      passes: 2,
    }),
  );
  const workers = 2;
  const children = Array.from({ length: workers }, (_, w) =>
    startChild(PYTHON, [path.join(BENCH_DIR, 'gdal.tiles.py'), job, String(w), String(workers)]),
  );
  try {
    await Promise.all(children.map((c) => c.waitFor(/"pass": 1[^\n]*\n/, 1_800_000)));
  } finally {
    await Promise.all(children.map((c) => c.stop(2_000)));
  }
  const passes: GdalPass[] = [];
  for (const p of [0, 1]) {
    const lines = children.map((c) => {
      const line = c
        .output()
        .split('\n')
        .find((l) => l.startsWith(`{"pass": ${p},`));
      if (!line) throw new Error(`gdal.tiles.py printed no pass ${p}: ${c.output().slice(-1000)}`);
      return JSON.parse(line) as { tiles: number; wallMs: number; latenciesMs: number[] };
    });
    const lat = lines.flatMap((l) => l.latenciesMs);
    // the processes run side by side: the pass lasts as long as the slower one
    const wallMs = Math.max(...lines.map((l) => l.wallMs));
    passes.push({
      tilesPerSecond: round(tiles.length / (wallMs / 1000), 1),
      p50Ms: round(percentile(lat, 50)),
      p99Ms: round(percentile(lat, 99)),
      wallMs: Math.round(wallMs),
    });
  }
  return passes;
}

export const tilesBench: Bench = {
  name: 'tiles',
  title: `XYZ tiles at ${CLIENTS} concurrent clients, cold and warm, PNG and WebP, vs GDAL`,
  async run(ctx) {
    const { spec, tiles, zooms } = await tileSetup(ctx);
    note(`  ${tiles.length} tiles at zooms ${zooms.join(', ')}`);
    const rows: Record<string, unknown>[] = [];
    const warmRequests = ctx.small ? WARM_REQUESTS_SMALL : WARM_REQUESTS;
    for (const format of FORMATS) {
      const server = await startCogmillServer(ctx.outDir, [spec], { roots: [ctx.data.dir] });
      try {
        const urls = tiles.map((t) => `${server.url}/mosaics/${spec.id}/tiles/${t.z}/${t.x}/${t.y}.${format}`);
        for (const pass of ['cold', 'warm'] as const) {
          // warm: the same list again, repeated to at least WARM_REQUESTS requests so the rate is measurable
          const list =
            pass === 'cold' ? urls : Array.from({ length: Math.ceil(warmRequests / urls.length) }, () => urls).flat();
          const r = await load(list, CLIENTS);
          const row = {
            tool: 'cogmill',
            format,
            pass,
            tiles: r.requests,
            tilesPerSecond: round(r.requests / (r.wallMs / 1000), 1),
            p50Ms: round(percentile(r.latenciesMs, 50)),
            p99Ms: round(percentile(r.latenciesMs, 99)),
            maxMs: round(Math.max(...r.latenciesMs)),
            status: Object.entries(r.statuses)
              .map(([k, v]) => `${k}:${v}`)
              .join(' '),
            meanKiB: round(r.bytes / r.requests / 1024, 1),
            serverPeakRssMiB: mib(await server.child.peakRssBytes()),
          };
          rows.push(row);
          ctx.emit(row);
          note(
            `  cogmill ${format} ${pass}: ${row.tilesPerSecond} tiles/s, p50 ${row.p50Ms} ms, p99 ${row.p99Ms} ms (${row.status})`,
          );
          if (r.failures.length) note(`  failures: ${r.failures.join(' | ')}`);
        }
        if (format === 'png') {
          // the ceiling of this set-up: a route that does nothing, same client, same concurrency
          const r = await load(
            Array.from({ length: warmRequests }, () => `${server.url}/healthz`),
            CLIENTS,
          );
          const row = {
            tool: 'cogmill /healthz (ceiling)',
            format: 'json',
            pass: '-',
            tiles: r.requests,
            tilesPerSecond: round(r.requests / (r.wallMs / 1000), 1),
            p50Ms: round(percentile(r.latenciesMs, 50)),
            p99Ms: round(percentile(r.latenciesMs, 99)),
          };
          rows.push(row);
          ctx.emit(row);
          note(`  /healthz ceiling: ${row.tilesPerSecond} requests/s`);
        }
      } finally {
        await server.stop();
      }
      const g = await gdalTiles(spec.sources, tiles, format, ctx.outDir);
      for (const [i, p] of g.entries()) {
        const row = {
          tool: 'GDAL (2 processes)',
          format,
          pass: i === 0 ? 'cold' : 'warm',
          tiles: tiles.length,
          tilesPerSecond: p.tilesPerSecond,
          p50Ms: p.p50Ms,
          p99Ms: p.p99Ms,
        };
        rows.push(row);
        ctx.emit(row);
        note(`  GDAL ${format} ${row.pass}: ${p.tilesPerSecond} tiles/s, p50 ${p.p50Ms} ms, p99 ${p.p99Ms} ms`);
      }
    }
    const pick = (tool: string, format: string, pass: string) =>
      rows.find((r) => r.tool === tool && r.format === format && r.pass === pass);
    const ratios = FORMATS.flatMap((f) =>
      (['cold', 'warm'] as const).map((pass) => ({
        format: f,
        pass,
        cogmillOverGdal: round(
          Number(pick('cogmill', f, pass)?.tilesPerSecond) /
            Number(pick('GDAL (2 processes)', f, pass)?.tilesPerSecond),
        ),
      })),
    );
    ctx.emit({ ratios });
    return {
      sections: [
        {
          title: `${tiles.length} tiles at zooms ${zooms.join(', ')}; ${CLIENTS} concurrent clients on loopback (the load generator shares the CPUs)`,
          body: `${table(rows)}\n\nTargets: cold >= 150 PNG tiles/s, p99 < 100 ms cold; warm >= 5,000 tiles/s.`,
        },
        { title: 'Throughput ratio cogmill / GDAL', body: table(ratios) },
      ],
    };
  },
};

if (import.meta.main) await runStandalone(tilesBench);
