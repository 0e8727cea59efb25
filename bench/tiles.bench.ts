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
import { decodeImage } from '../src/render/encode.ts';
import { Engine } from '../src/render/engine.ts';
import { type Bench, type BenchContext, parseHarnessArgs, runBenches } from './harness.ts';
import { type MapServerLayer, startMapServer } from './mapserver.ts';
import { warmInputs } from './materialize.bench.ts';
import { load, startCogmillServer } from './server.ts';
import { BENCH_DIR, mib, note, PYTHON, percentile, round, startChild, table } from './support.ts';
import { benchZooms, nativeZoom, type Tile, tileList } from './tile.list.ts';
import { runWrk } from './wrk.ts';

export const CLIENTS = 8;
const FORMATS = ['png', 'webp'] as const;
/** the warm pass repeats the tile list up to this many requests (--small: fewer) */
const WARM_REQUESTS = 10_000;
const WARM_REQUESTS_SMALL = 2_000;
/** the warm pass with wrk lasts this long (--small: shorter) */
const WRK_SECONDS = 10;
const WRK_SECONDS_SMALL = 3;

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
        // warm again with wrk: a separate C process, one thread, the same 8 connections, for a fixed time
        const wrkS = ctx.small ? WRK_SECONDS_SMALL : WRK_SECONDS;
        const paths = urls.map((u) => u.slice(server.url.length));
        for (const [tool, list] of [
          ['cogmill (wrk)', paths],
          ...(format === 'png' ? [['cogmill /healthz (ceiling, wrk)', ['/healthz']] as const] : []),
        ] as const) {
          const w = await runWrk(server.url, list, { dir: ctx.outDir, connections: CLIENTS, durationS: wrkS });
          const row = {
            tool,
            format: tool.includes('healthz') ? 'json' : format,
            pass: tool.includes('healthz') ? '-' : 'warm',
            tiles: w.requests,
            tilesPerSecond: round(w.requestsPerSecond, 1),
            p50Ms: w.p50Ms,
            p99Ms: w.p99Ms,
            status: `non-2xx:${w.non2xx} errors:${w.errors}`,
            serverPeakRssMiB: mib(await server.child.peakRssBytes()),
          };
          rows.push(row);
          ctx.emit(row);
          note(
            `  ${tool} ${format}: ${row.tilesPerSecond} requests/s, p50 ${w.p50Ms} ms, p99 ${w.p99Ms} ms (${row.status})`,
          );
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

/** A case of the MapServer comparison: one mosaic, one zoom, its tile list, the same on both servers. */
interface PeerCase {
  readonly name: string;
  readonly zoom: number;
  /** cogmill's mosaic */
  readonly spec: { readonly id: string; readonly sources: readonly string[] };
  /** MapServer's layer (the same rasters; painted in reverse so the first source is on top, as cogmill's `first`) */
  readonly layer: MapServerLayer;
  /** cogmill's style query (the same linear scale as MapServer's) */
  readonly query: string;
}

/** Tiles per case (all of them where the zoom has fewer), and the tiles whose pixels are compared. */
const PEER_TILES = 500;
const PEER_TILES_SMALL = 60;
const COMPARED_TILES = 6;
const S2_SCALE = [200, 6000] as const;

function peerCases(ctx: BenchContext): PeerCase[] {
  const { rgb, s2West, s2East, s2Zone31 } = ctx.data;
  const s2 = (name: string, kind: 'cog' | 'tiled', zoom: number): PeerCase => {
    const inputs = [s2West, s2East, s2Zone31];
    return {
      name,
      zoom,
      spec: { id: `s2-${kind}`, sources: inputs.map((i) => i[kind]) },
      layer: {
        name: `s2-${kind}`,
        rasters: [...inputs].reverse().map((i) => ({ file: i[kind], epsg: i.epsg })),
        nodata: 0,
        scale: S2_SCALE,
      },
      query: `?rescale=${S2_SCALE.join(',')}`,
    };
  };
  return [
    {
      name: 'RGB uint8 COG, z14',
      zoom: 14,
      spec: { id: 'rgb', sources: [rgb.cog] },
      layer: { name: 'rgb', rasters: [{ file: rgb.cog, epsg: rgb.epsg }] },
      query: '',
    },
    s2('S2 two zones, COG sources, z13', 'cog', 13),
    s2('S2 two zones, plain tiled sources (no overviews), z13', 'tiled', 13),
    s2('S2 two zones, plain tiled sources (no overviews), z11', 'tiled', 11),
  ];
}

interface PeerPass {
  readonly tilesPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly status: string;
  readonly peakRssMiB: number;
  readonly failures: readonly string[];
  /** the bodies of the compared tiles */
  readonly samples: readonly Uint8Array[];
}

/** One cold pass over `urls` at CLIENTS, then the compared tiles fetched once more. */
async function peerPass(
  urls: readonly string[],
  sampleUrls: readonly string[],
  rss: () => Promise<number>,
): Promise<PeerPass> {
  const r = await load(urls, CLIENTS);
  const samples: Uint8Array[] = [];
  for (const u of sampleUrls) {
    const res = await fetch(u);
    if (res.status !== 200) throw new Error(`${u}: ${res.status} ${(await res.text()).slice(0, 300)}`);
    samples.push(new Uint8Array(await res.arrayBuffer()));
  }
  return {
    tilesPerSecond: round(r.requests / (r.wallMs / 1000), 1),
    p50Ms: round(percentile(r.latenciesMs, 50)),
    p99Ms: round(percentile(r.latenciesMs, 99)),
    status: Object.entries(r.statuses)
      .map(([k, v]) => `${k}:${v}`)
      .join(' '),
    peakRssMiB: mib(await rss()),
    failures: r.failures,
    samples,
  };
}

/**
 * How alike two tiles are: over the pixels both draw (alpha > 0), the mean absolute difference of the colour
 * samples (0..255); and the share of pixels one draws and the other leaves transparent.
 */
export async function compareTiles(
  a: Uint8Array,
  b: Uint8Array,
): Promise<{ meanAbsDiff: number; alphaMismatch: number }> {
  const [da, db] = await Promise.all([decodeImage(a), decodeImage(b)]);
  if (da.width !== db.width || da.height !== db.height) throw new Error('tiles of different sizes');
  const rgba = (d: typeof da, i: number): [number, number, number, number] => {
    const p = i * d.channels;
    const s = d.data;
    switch (d.channels) {
      case 1:
        return [s[p], s[p], s[p], 255];
      case 2:
        return [s[p], s[p], s[p], s[p + 1]];
      case 3:
        return [s[p], s[p + 1], s[p + 2], 255];
      default:
        return [s[p], s[p + 1], s[p + 2], s[p + 3]];
    }
  };
  let both = 0;
  let diff = 0;
  let mismatch = 0;
  const n = da.width * da.height;
  for (let i = 0; i < n; i++) {
    const pa = rgba(da, i);
    const pb = rgba(db, i);
    if (pa[3] > 0 !== pb[3] > 0) mismatch++;
    if (pa[3] > 0 && pb[3] > 0) {
      both++;
      diff += Math.abs(pa[0] - pb[0]) + Math.abs(pa[1] - pb[1]) + Math.abs(pa[2] - pb[2]);
    }
  }
  return { meanAbsDiff: both ? diff / (both * 3) : 0, alphaMismatch: mismatch / n };
}

export const tilesMapServerBench: Bench = {
  name: 'tiles-mapserver',
  title: `Cold XYZ tiles at ${CLIENTS} concurrent clients vs MapServer 8 (2 FastCGI mapserv behind nginx)`,
  async run(ctx) {
    const cases = peerCases(ctx);
    const perCase = ctx.small ? PEER_TILES_SMALL : PEER_TILES;
    const rows: Record<string, unknown>[] = [];
    const ratios: Record<string, unknown>[] = [];
    const likeness: Record<string, unknown>[] = [];
    for (const [i, c] of cases.entries()) {
      // COGMILL_BENCH_CASE=RGB: only the cases whose name holds that text (profiling one case)
      if (process.env.COGMILL_BENCH_CASE && !c.name.includes(process.env.COGMILL_BENCH_CASE)) continue;
      const engine = new Engine({ roots: [ctx.data.dir] });
      const mosaic = await engine.openMosaic(c.spec);
      await engine.close();
      const tiles = tileList(mosaic.boundsWgs84, [c.zoom], perCase, 42 + i);
      // compared tiles: spread over the list
      const compared = Array.from(
        { length: Math.min(COMPARED_TILES, tiles.length) },
        (_, k) => tiles[Math.floor((k * tiles.length) / Math.min(COMPARED_TILES, tiles.length))],
      );
      note(`  ${c.name}: ${tiles.length} tiles`);
      const cogmillUrl = (base: string, t: Tile) =>
        `${base}/mosaics/${c.spec.id}/tiles/${t.z}/${t.x}/${t.y}.png${c.query}`;
      // both tools read the sources from the page cache (not whichever runs second: a materialisation just
      // before can have pushed them out)
      await warmInputs(c.spec.sources);
      // cogmill: a fresh process (nothing parsed, decoded or rendered yet), tile cache off
      const server = await startCogmillServer(ctx.outDir, [c.spec], {
        // COGMILL_BENCH_PROFILE=DIR: the server's CPU profiles (every thread) go there (bench/profile.ts reads them)
        nodeArgs: process.env.COGMILL_BENCH_PROFILE
          ? ['--cpu-prof', `--cpu-prof-dir=${process.env.COGMILL_BENCH_PROFILE}`]
          : [],
        roots: [ctx.data.dir],
        logLevel: 'warn',
        extra: { cache: { tileBytes: 1 } },
      });
      let ours: PeerPass;
      try {
        ours = await peerPass(
          tiles.map((t) => cogmillUrl(server.url, t)),
          compared.map((t) => cogmillUrl(server.url, t)),
          () => server.child.peakRssBytes(),
        );
      } finally {
        await server.stop();
      }
      await warmInputs(c.spec.sources);
      const ms = await startMapServer(path.join(ctx.outDir, `mapserver-${i}`), [c.layer]);
      let theirs: PeerPass;
      try {
        theirs = await peerPass(
          tiles.map((t) => ms.tileUrl(c.layer.name, t)),
          compared.map((t) => ms.tileUrl(c.layer.name, t)),
          () => ms.peakRssBytes(),
        );
      } finally {
        await ms.stop();
      }
      for (const [tool, p] of [
        ['cogmill', ours],
        ['MapServer 8 (2 processes)', theirs],
      ] as const) {
        const row = {
          case: c.name,
          tool,
          tiles: tiles.length,
          tilesPerSecond: p.tilesPerSecond,
          p50Ms: p.p50Ms,
          p99Ms: p.p99Ms,
          status: p.status,
          peakRssMiB: p.peakRssMiB,
        };
        rows.push(row);
        ctx.emit(row);
        note(`  ${tool}: ${p.tilesPerSecond} tiles/s, p50 ${p.p50Ms} ms, p99 ${p.p99Ms} ms (${p.status})`);
        if (p.failures.length) note(`  failures: ${p.failures.join(' | ')}`);
      }
      const diffs = await Promise.all(ours.samples.map((s, k) => compareTiles(s, theirs.samples[k])));
      const like = {
        case: c.name,
        tilesCompared: diffs.length,
        worstMeanAbsDiff: round(Math.max(...diffs.map((d) => d.meanAbsDiff)), 3),
        worstAlphaMismatch: round(Math.max(...diffs.map((d) => d.alphaMismatch)), 4),
      };
      likeness.push(like);
      ctx.emit(like);
      const ratio = {
        case: c.name,
        cogmillOverMapServer: round(ours.tilesPerSecond / theirs.tilesPerSecond),
        p99CogmillMs: ours.p99Ms,
        p99MapServerMs: theirs.p99Ms,
      };
      ratios.push(ratio);
      ctx.emit(ratio);
    }
    return {
      sections: [
        {
          title: `Cold tiles, ${CLIENTS} concurrent clients on loopback (the load generator shares the CPUs), a fresh process of each server per case`,
          body: `${table(rows)}\n\nTargets: cold throughput >= MapServer's (goal 2x); p99 < 150 ms at z13/z14 (goal 100 ms).`,
        },
        { title: 'Throughput ratio cogmill / MapServer', body: table(ratios) },
        {
          title:
            'Like with like: the same tiles from both (colour difference over pixels both draw, 0..255; share of pixels only one draws)',
          body: table(likeness),
        },
      ],
    };
  },
};

if (import.meta.main) {
  // both by default; --only tiles / --only tiles-mapserver picks one
  const { failed } = await runBenches([tilesBench, tilesMapServerBench], parseHarnessArgs(process.argv.slice(2)));
  if (failed.length) process.exitCode = 1;
}
