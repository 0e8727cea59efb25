/**
 * The hostile fuzz run, in its own process so its peak RSS can be measured (test/raster.test.ts starts it):
 * honest tiled TIFFs of every compression cogmill decodes in JavaScript or zlib (none, deflate, LZW, PackBits,
 * zstd) mutated at random, plus decompression bombs of each kind and lying byte counts and offsets. Each case
 * must end in success or a typed error. Prints one JSON line: counts, untyped failures, peak RSS. Run with
 * --expose-gc (the harness's garbage is collected every 10 cases, so the peak is what one case holds).
 */
import * as zlib from 'node:zlib';
import { Engine } from '../../src/render/engine.ts';
import { CogmillError } from '../../src/render/errors.ts';
import { Raster } from '../../src/render/raster.ts';
import { SourceMemory } from './memory.source.ts';
import { COMPRESSION, deflateBomb, hostileTiff, lzwBomb, lzwEncode, packbitsBomb, zstdBomb } from './tiff.hostile.ts';

const MiB = 1024 * 1024;
const CASES = Number(process.argv[2] ?? 600);
const BOMB_BYTES = Number(process.argv[3] ?? 256 * MiB);

let state = 4242;
const rand = () => {
  state = (state * 1103515245 + 12345) & 0x7fffffff;
  return state / 0x7fffffff;
};

function tile(seed: number): Uint8Array {
  const a = new Uint16Array(256 * 256);
  for (let i = 0; i < a.length; i++) a[i] = (seed * 31 + (i % 256) * 3 + (i >> 8)) & 0xffff;
  return new Uint8Array(a.buffer);
}

function packbits(t: Uint8Array): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < t.length; i += 128) {
    const run = t.subarray(i, Math.min(t.length, i + 128));
    out.push(run.length - 1, ...run);
  }
  return new Uint8Array(out);
}

const zstd = (zlib as unknown as { zstdCompressSync: (b: Uint8Array) => Buffer }).zstdCompressSync;
const ENCODERS: [number, (t: Uint8Array) => Uint8Array][] = [
  [COMPRESSION.none, (t) => t],
  [COMPRESSION.deflate, (t) => new Uint8Array(zlib.deflateSync(t))],
  [COMPRESSION.lzw, lzwEncode],
  [COMPRESSION.packbits, packbits],
  [COMPRESSION.zstd, (t) => new Uint8Array(zstd(t))],
];

function honest(compression: number, encode: (t: Uint8Array) => Uint8Array, extra = {}): Uint8Array {
  return hostileTiff({
    width: 512,
    height: 512,
    tileSize: 256,
    bitsPerSample: 16,
    compression,
    tiles: [0, 1, 2, 3].map((i) => encode(tile(i))),
    nodata: '0',
    ...extra,
  });
}

let peak = 0;
const sampler = setInterval(() => {
  peak = Math.max(peak, process.memoryUsage().rss);
}, 5);

const bombs: [number, Uint8Array][] = [
  [COMPRESSION.deflate, await deflateBomb(BOMB_BYTES)],
  [COMPRESSION.zstd, await zstdBomb(BOMB_BYTES)],
  [COMPRESSION.lzw, lzwBomb(BOMB_BYTES)],
  [COMPRESSION.packbits, packbitsBomb(Math.min(BOMB_BYTES, 64 * MiB))],
];
const seeds = ENCODERS.map(([c, e]) => honest(c, e));
const baselineRss = process.memoryUsage().rss;

let ok = 0;
let typed = 0;
const kinds: Record<string, number> = {};
const untyped: string[] = [];
for (let i = 0; i < CASES; i++) {
  const pick = i % 10;
  let bytes: Uint8Array;
  let kind: string;
  if (pick < 2) {
    // a bomb in one or all tiles
    const [compression, bomb] = bombs[i % bombs.length];
    const all = rand() < 0.5;
    const enc = ENCODERS.find(([c]) => c === compression)![1];
    bytes = hostileTiff({
      width: 512,
      height: 512,
      tileSize: 256,
      bitsPerSample: 16,
      compression,
      tiles: [0, 1, 2, 3].map((k) => (all || k === 0 ? bomb : enc(tile(k)))),
    });
    kind = `bomb-${compression}`;
  } else if (pick < 4) {
    // lying byte counts and offsets
    const [compression, enc] = ENCODERS[i % ENCODERS.length];
    const lie = () =>
      [0xffffffff, 0x7fffffff, 0, 1, Math.floor(rand() * 2 ** 32), Math.floor(rand() * 300_000)][
        Math.floor(rand() * 6)
      ];
    bytes = honest(compression, enc, {
      byteCounts: { [Math.floor(rand() * 4)]: lie() },
      offsets: rand() < 0.5 ? { [Math.floor(rand() * 4)]: lie() } : {},
    });
    kind = 'lying-counts';
  } else {
    // random mutations of an honest file, in its header or anywhere
    const base = seeds[i % seeds.length];
    bytes = new Uint8Array(base);
    const flips = 1 + Math.floor(rand() * 8);
    for (let k = 0; k < flips; k++) {
      const at = rand() < 0.6 ? Math.floor(rand() * 400) : Math.floor(rand() * bytes.byteLength);
      bytes[at] = rand() < 0.5 ? Math.floor(rand() * 256) : bytes[at] ^ (1 << Math.floor(rand() * 8));
    }
    kind = 'mutation';
  }
  kinds[kind] = (kinds[kind] ?? 0) + 1;
  // the harness's own garbage (a fresh engine and file per case) is collected, so the peak is what a case holds
  if (i % 10 === 0) (globalThis as { gc?: () => void }).gc?.();
  try {
    const r = await Raster.open(new SourceMemory(`mem://fuzz${i}.tif`, bytes), new Engine().caches);
    const lvl = r.info.levels[0];
    await r.readWindow(0, 0, 0, Math.min(lvl.width, 512), Math.min(lvl.height, 512), [0]);
    ok++;
  } catch (e) {
    if (e instanceof CogmillError) typed++;
    else untyped.push(`case ${i} (${kind}): ${(e as Error)?.stack ?? e}`);
  }
}
clearInterval(sampler);
peak = Math.max(peak, process.memoryUsage().rss, process.resourceUsage().maxRSS * 1024);
process.stdout.write(
  `${JSON.stringify({ cases: CASES, ok, typed, kinds, untyped: untyped.slice(0, 5), baselineRss, peakRss: peak })}\n`,
);
