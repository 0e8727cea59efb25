/**
 * The hostile load the event-loop test and the hostile benchmark share: a folder of decompression bombs (one per
 * codec) and a noise raster, the eight requests sent at once over them, and a /healthz poller that runs while they
 * are in flight.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { COMPRESSION, deflateBomb, hostileTiff, lzwBomb, noiseTiff, packbitsBomb, zstdBomb } from './tiff.hostile.ts';

const MiB = 1024 * 1024;

/** Mosaic ids (one source each, `ID.tif` in the folder) of the hostile set. */
export const HOSTILE_MOSAICS = ['deflate', 'zstd', 'lzw', 'packbits', 'noise'] as const;

/** Write the hostile set into `folder`: 512 x 512 uint16 bombs of 256 MiB (PackBits 64 MiB), 2048 x 2048 of noise. */
export async function writeHostileSet(folder: string): Promise<void> {
  const bombs: [string, number, Uint8Array][] = [
    ['deflate', COMPRESSION.deflate, await deflateBomb(256 * MiB)],
    ['zstd', COMPRESSION.zstd, await zstdBomb(256 * MiB)],
    ['lzw', COMPRESSION.lzw, lzwBomb(256 * MiB)],
    ['packbits', COMPRESSION.packbits, packbitsBomb(64 * MiB)],
  ];
  for (const [name, compression, bomb] of bombs) {
    await writeFile(
      path.join(folder, `${name}.tif`),
      hostileTiff({
        width: 512,
        height: 512,
        tileSize: 256,
        bitsPerSample: 16,
        compression,
        tiles: [bomb, bomb, bomb, bomb],
        nodata: '0',
      }),
    );
  }
  // 2048 x 2048 of noise: statistics sort 4 M values per band
  await writeFile(path.join(folder, 'noise.tif'), noiseTiff(2048, 2048, 11));
}

/** Eight hostile requests over the hostile set: bombs decoded, 4 M values sorted, a large preview. */
export const HOSTILE_REQUESTS = [
  '/mosaics/deflate/preview.png?max_size=512',
  '/mosaics/zstd/preview.png?max_size=512',
  '/mosaics/lzw/preview.png?max_size=512',
  '/mosaics/packbits/preview.png?max_size=512',
  '/mosaics/noise/statistics?bins=1000',
  '/mosaics/noise/statistics?bins=999',
  '/mosaics/noise/preview.png?max_size=1024',
  '/mosaics/deflate/statistics?bins=1000',
] as const;

/** Ask `url`/healthz again and again (5 ms apart) while `running()` says so, at least `min` times. */
export async function pollHealthz(
  url: string,
  running: () => boolean,
  min = 0,
): Promise<{ status: number; latencyMs: number }[]> {
  const out: { status: number; latencyMs: number }[] = [];
  while (running() || out.length < min) {
    const t0 = performance.now();
    const r = await fetch(`${url}/healthz`);
    await r.arrayBuffer();
    out.push({ status: r.status, latencyMs: performance.now() - t0 });
    await new Promise((res) => setTimeout(res, 5));
  }
  return out;
}
