/**
 * A fixed, seeded list of WebMercatorQuad tiles over a mosaic at several zooms, from an overview of the whole
 * mosaic down to its native resolution: what a person panning and zooming in QGIS asks for.
 */
import { prng } from '../src/demo.data.ts';
import { tilesForBounds, zoomForResolution } from '../src/render/tilematrix.ts';
import type { Bounds } from '../src/render/types.ts';

export interface Tile {
  readonly z: number;
  readonly x: number;
  readonly y: number;
}

/** The zoom whose pixels match `resolutionM` ground metres at latitude `lat` (Web Mercator stretches by 1/cos). */
export function nativeZoom(resolutionM: number, lat: number): number {
  return zoomForResolution(resolutionM / Math.cos((lat * Math.PI) / 180), 256, 'upper');
}

/** The zooms of the list: native, native-1, native-2, native-4, native-6 (not below 0). */
export function benchZooms(native: number): number[] {
  return [...new Set([native - 6, native - 4, native - 2, native - 1, native].map((z) => Math.max(0, z)))];
}

/**
 * Up to `perZoom` tiles per zoom, drawn without repetition (seeded) from the tiles that intersect `boundsWgs84`;
 * all of them when there are fewer. Ordered zoom by zoom, shuffled within a zoom.
 */
export function tileList(boundsWgs84: Bounds, zooms: readonly number[], perZoom: number, seed = 42): Tile[] {
  const rnd = prng(seed);
  const out: Tile[] = [];
  for (const z of zooms) {
    const r = tilesForBounds(boundsWgs84, z);
    const all: Tile[] = [];
    for (let y = r.minY; y <= r.maxY; y++) for (let x = r.minX; x <= r.maxX; x++) all.push({ z, x, y });
    for (let i = all.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [all[i], all[j]] = [all[j], all[i]];
    }
    out.push(...all.slice(0, perZoom));
  }
  return out;
}
