/**
 * The engine's own speed, in this process:
 * - decoding a deflate (+ predictor 2) uint16 512 x 512 tile through the reader (Raster.readWindow with an empty
 *   block cache, the file held in memory) vs a bare node:zlib inflate of the same compressed bytes (target <= 1.5x);
 * - render time per 256 x 256 WebMercator window of the S2 mosaic (three scenes, two UTM zones) at several zooms,
 *   with a fresh engine (cold block cache) and again (warm).
 *
 *   node bench/decode.bench.ts [--small]
 */
import { readFile } from 'node:fs/promises';
import { inflateSync } from 'node:zlib';
import { Engine } from '../src/render/engine.ts';
import type { ReadOptions, Source, SourceRead } from '../src/render/source.ts';
import { xyzTileGrid } from '../src/render/tilematrix.ts';
import { type Bench, type BenchContext, runStandalone } from './harness.ts';
import { note, percentile, round, table } from './support.ts';
import { benchZooms, nativeZoom, tileList } from './tile.list.ts';

/** A file held in memory that remembers the bytes of its last read (the compressed tile the reader fetched). */
class SourceMemoryRecording implements Source {
  readonly url: string;
  private readonly bytes: Uint8Array;
  last: Uint8Array | undefined;
  constructor(url: string, bytes: Uint8Array) {
    this.url = url;
    this.bytes = bytes;
  }
  async read(offset: number, length: number, _options?: ReadOptions): Promise<SourceRead> {
    const b = this.bytes.subarray(offset, Math.min(this.bytes.byteLength, offset + length));
    this.last = b;
    return { bytes: b, size: this.bytes.byteLength, etag: '"bench"' };
  }
  async stat() {
    return { size: this.bytes.byteLength, etag: '"bench"' };
  }
}

function ms(t0: number): number {
  return performance.now() - t0;
}

async function decodeVsInflate(ctx: BenchContext) {
  const file = ctx.data.s2West.cog;
  const source = new SourceMemoryRecording(file, new Uint8Array(await readFile(file)));
  const engine = new Engine({ roots: [] }, { sourceFactory: async () => source });
  const raster = await engine.openRaster(file);
  const lvl = raster.info.levels[0];
  const bs = lvl.blockWidth;
  // whole tiles (not the right and bottom edges) in the lower right half, away from the nodata wedge
  const tiles: [number, number][] = [];
  for (let ty = Math.floor(lvl.blocksDown / 2); ty < lvl.blocksDown - 1; ty++)
    for (let tx = Math.floor(lvl.blocksAcross / 2) - 1; tx < lvl.blocksAcross - 1; tx++) tiles.push([tx, ty]);
  const sample = tiles.slice(0, 40);
  const compressed = new Map<string, Uint8Array>();
  // warm-up (JIT), and capture the compressed bytes of each tile
  for (const [tx, ty] of sample) {
    engine.caches.tiles.clear();
    source.last = undefined;
    await raster.readWindow(0, tx * bs, ty * bs, bs, bs, [0]);
    if (!source.last) throw new Error('the reader did not read the tile');
    compressed.set(`${tx},${ty}`, new Uint8Array(source.last));
    inflateSync(source.last);
  }
  const reps = ctx.small ? 10 : 5;
  const reader: number[] = [];
  const bare: number[] = [];
  for (let r = 0; r < reps; r++) {
    for (const [tx, ty] of sample) {
      engine.caches.tiles.clear();
      let t0 = performance.now();
      await raster.readWindow(0, tx * bs, ty * bs, bs, bs, [0]);
      reader.push(ms(t0));
      const bytes = compressed.get(`${tx},${ty}`)!;
      t0 = performance.now();
      inflateSync(bytes);
      bare.push(ms(t0));
    }
  }
  await engine.close();
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const meanCompressed = sum([...compressed.values()].map((b) => b.byteLength)) / compressed.size;
  return {
    tiles: sample.length,
    repeats: reps,
    tileBytes: Math.round(meanCompressed),
    compressionRatio: round((bs * bs * 2) / meanCompressed),
    readerP50Ms: round(percentile(reader, 50), 3),
    inflateP50Ms: round(percentile(bare, 50), 3),
    ratioP50: round(percentile(reader, 50) / percentile(bare, 50)),
    ratioTotal: round(sum(reader) / sum(bare)),
  };
}

async function renderWindows(ctx: BenchContext) {
  const { s2West, s2East, s2Zone31 } = ctx.data;
  const spec = { id: 's2', sources: [s2West.cog, s2East.cog, s2Zone31.cog] };
  const roots = [ctx.data.dir];
  const res = s2West.transform[1];
  let engine = new Engine({ roots });
  const mosaic0 = await engine.openMosaic(spec);
  const b = mosaic0.boundsWgs84;
  const zooms = benchZooms(nativeZoom(res, (b[1] + b[3]) / 2));
  const tiles = tileList(b, zooms, ctx.small ? 25 : 60, 7);
  await engine.close();
  const rows: Record<string, unknown>[] = [];
  const byZoom = new Map<string, number[]>();
  // cold: a fresh engine (no parsed headers, no decoded blocks); warm: the same engine again
  engine = new Engine({ roots });
  const tOpen = performance.now();
  const mosaic = await engine.openMosaic(spec);
  const openMs = ms(tOpen);
  for (const pass of ['cold', 'warm'] as const) {
    for (const t of tiles) {
      const t0 = performance.now();
      await engine.render(mosaic, xyzTileGrid(t.z, t.x, t.y));
      const dt = ms(t0);
      for (const key of [`${pass}|${t.z}`, `${pass}|all`]) {
        const list = byZoom.get(key) ?? [];
        list.push(dt);
        byZoom.set(key, list);
      }
    }
  }
  await engine.close();
  for (const pass of ['cold', 'warm'] as const) {
    for (const z of [...zooms.map(String), 'all']) {
      const xs = byZoom.get(`${pass}|${z}`) ?? [];
      rows.push({
        pass,
        zoom: z,
        windows: xs.length,
        p50Ms: round(percentile(xs, 50)),
        p99Ms: round(percentile(xs, 99)),
        meanMs: round(xs.reduce((a, c) => a + c, 0) / xs.length),
      });
    }
  }
  return { rows, openMs: round(openMs), zooms };
}

export const decodeBench: Bench = {
  name: 'decode',
  title: 'Deflate tile decode vs bare node:zlib inflate; render time per 256 px WebMercator window',
  async run(ctx) {
    const d = await decodeVsInflate(ctx);
    ctx.emit({ measure: 'decode', ...d });
    note(`  decode: reader ${d.readerP50Ms} ms vs inflate ${d.inflateP50Ms} ms per tile (ratio ${d.ratioP50})`);
    const r = await renderWindows(ctx);
    for (const row of r.rows) ctx.emit({ measure: 'render-window', ...row });
    const all = r.rows.filter((x) => x.zoom === 'all');
    note(`  render 256 px windows: ${all.map((x) => `${x.pass} p50 ${x.p50Ms} ms`).join(', ')}`);
    return {
      sections: [
        {
          title: 'Deflate + predictor 2 uint16 512 x 512 tile: reader vs bare inflate (target ratio <= 1.5)',
          body: table([d]),
        },
        {
          title: `Render time per 256 x 256 WebMercator window, S2 mosaic of 3 scenes in 2 zones, nearest (opening the mosaic: ${r.openMs} ms)`,
          body: table(r.rows),
        },
      ],
    };
  },
};

if (import.meta.main) await runStandalone(decodeBench);
