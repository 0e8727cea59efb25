/**
 * The sparse tiles of a virtual COG: which tiles hold data, decided from the sources' footprints (metadata only),
 * with an exact per-tile test only at the edges of the footprints.
 */
import type { Mosaic, MosaicSource } from '../render/mosaic.ts';
import type { RasterInfo } from '../render/raster.info.ts';
import { createTransformer, transformBounds } from '../render/transform.ts';
import { type Bounds, gridBounds } from '../render/types.ts';
import type { CogLayout, CogLevel } from './cog.layout.ts';
import { type CogTileOptions, cogTileGrid, levelGrid, tileTouchesSources } from './cog.tiles.ts';
import { classifyTile, type FootprintPolygon, footprintPolygon } from './footprint.polygon.ts';

/**
 * A source's footprint in the mosaic's CRS: a box that surely contains it, one it surely covers (if any), and for
 * a reprojected source its densified outline (tiles between the boxes are decided on it, see footprint.polygon.ts)
 * with the reach of a resampling footprint in mosaic units.
 */
interface Footprint {
  readonly outer: Bounds;
  readonly inner: Bounds | undefined;
  readonly polygon?: FootprintPolygon;
  readonly sourceReach: number;
}

/** Source pixels of margin around a footprint: the widest resampling kernel (cubic, radius 2) plus two. */
const FOOTPRINT_MARGIN_SOURCE_PX = 4;
/** Relative margin for what densified edges can miss of a curved footprint. */
const FOOTPRINT_MARGIN_FRACTION = 0.005;
const FOOTPRINT_EDGE_POINTS = 64;

function sourceFootprint(mosaic: Mosaic, info: RasterInfo): Footprint | undefined {
  const crs = mosaic.grid.crs;
  const srcBounds = gridBounds({ crs: info.crs, transform: info.transform, width: info.width, height: info.height });
  let outer: Bounds;
  let inner: Bounds | undefined;
  let polygon: FootprintPolygon | undefined;
  try {
    if (info.crs.epsg === crs.epsg) {
      outer = srcBounds;
      const gt = info.transform;
      inner = gt[2] === 0 && gt[4] === 0 ? srcBounds : undefined;
    } else {
      outer = transformBounds(srcBounds, info.crs, crs, FOOTPRINT_EDGE_POINTS);
      // the box inside the transformed edges: right of the left edge, left of the right edge, and so on
      const tr = createTransformer(info.crs, crs);
      polygon = footprintPolygon(srcBounds, tr, FOOTPRINT_EDGE_POINTS);
      const n = FOOTPRINT_EDGE_POINTS + 1;
      const [x0, y0, x1, y1] = srcBounds;
      const edge = (fx: (t: number) => number, fy: (t: number) => number) => {
        const xs = new Float64Array(n);
        const ys = new Float64Array(n);
        for (let i = 0; i < n; i++) {
          xs[i] = fx(i / (n - 1));
          ys[i] = fy(i / (n - 1));
        }
        tr.forward(xs, ys);
        return { xs: [...xs], ys: [...ys] };
      };
      const left = edge(
        () => x0,
        (t) => y0 + t * (y1 - y0),
      );
      const right = edge(
        () => x1,
        (t) => y0 + t * (y1 - y0),
      );
      const bottom = edge(
        (t) => x0 + t * (x1 - x0),
        () => y0,
      );
      const top = edge(
        (t) => x0 + t * (x1 - x0),
        () => y1,
      );
      const all = [...left.xs, ...right.xs, ...bottom.xs, ...top.xs, ...left.ys, ...right.ys, ...bottom.ys, ...top.ys];
      const ib: Bounds = [Math.max(...left.xs), Math.max(...bottom.ys), Math.min(...right.xs), Math.min(...top.ys)];
      inner = all.every(Number.isFinite) && ib[0] < ib[2] && ib[1] < ib[3] ? ib : undefined;
    }
  } catch {
    return undefined; // the source cannot be placed in the mosaic's CRS: it never paints
  }
  if (!outer.every(Number.isFinite)) return undefined;
  const w = outer[2] - outer[0];
  const h = outer[3] - outer[1];
  // what densified edges can miss of a curved footprint (none when no reprojection is involved)
  const curveX = info.crs.epsg === crs.epsg ? 0 : w * FOOTPRINT_MARGIN_FRACTION;
  const curveY = info.crs.epsg === crs.epsg ? 0 : h * FOOTPRINT_MARGIN_FRACTION;
  const mx = (w / info.width) * FOOTPRINT_MARGIN_SOURCE_PX + curveX;
  const my = (h / info.height) * FOOTPRINT_MARGIN_SOURCE_PX + curveY;
  outer = [outer[0] - mx, outer[1] - my, outer[2] + mx, outer[3] + my];
  if (inner) {
    inner = [inner[0] + curveX, inner[1] + curveY, inner[2] - curveX, inner[3] - curveY];
    if (!(inner[0] < inner[2] && inner[1] < inner[3])) inner = undefined;
  }
  const sourceReach = Math.max(w / info.width, h / info.height) * FOOTPRINT_MARGIN_SOURCE_PX;
  return { outer, inner, polygon, sourceReach };
}

/**
 * Which tiles hold data. A tile overlapping a source's inner box by more than a pixel surely does; one that misses
 * every outer box (grown by two pixels of its level, the reach of any resampling footprint) surely does not; only
 * the tiles in between (at the outer edge of the footprints) take the exact per-tile test, `tileTouchesSources`,
 * with the sources whose box reaches them. `exhaustive` tests every tile exactly, with every source.
 * Marking a tile present that renders empty costs file size, never a pixel: the pixels are the same either way.
 */
export function presentTiles(
  mosaic: Mosaic,
  layout: CogLayout,
  levels: readonly CogLevel[],
  tileOptions: CogTileOptions,
  exhaustive: boolean,
): { present: Uint8Array; exactTests: number } {
  const present = new Uint8Array(layout.tileCount);
  let exactTests = 0;
  const rotated = mosaic.grid.transform[2] !== 0 || mosaic.grid.transform[4] !== 0;
  // a catalogue mosaic has no opened sources: each tile asks its spatial index (tileTouchesSources)
  const quick = !exhaustive && !rotated && !mosaic.items;
  const footprints: (Footprint & { readonly source: MosaicSource })[] = [];
  if (quick) {
    for (const source of mosaic.sources) {
      const f = sourceFootprint(mosaic, source.raster.info);
      if (f) footprints.push({ ...f, source });
    }
  }
  const bs = tileOptions.blockSize;
  for (const level of layout.levels) {
    const resampling = level.level === 0 ? tileOptions.resampling! : tileOptions.overviewResampling!;
    const lt = levelGrid(mosaic, levels[level.level]).transform;
    const px = Math.abs(lt[1]) * 2;
    const py = Math.abs(lt[5]) * 2;
    for (let ty = 0; ty < level.tilesY; ty++) {
      // tile bounds grown by two pixels of the level (north-up or south-up grids; rotated ones take the exact test)
      const ya = lt[3] + ty * bs * lt[5];
      const yb = lt[3] + Math.min(level.height, (ty + 1) * bs) * lt[5];
      const by0 = Math.min(ya, yb);
      const by1 = Math.max(ya, yb);
      const row = quick ? footprints.filter((f) => by0 - py < f.outer[3] && by1 + py > f.outer[1]) : [];
      for (let tx = 0; tx < level.tilesX; tx++) {
        const grid = () => cogTileGrid(mosaic, levels[level.level], tx, ty, bs);
        if (!quick) {
          exactTests++;
          if (tileTouchesSources(mosaic, grid(), resampling))
            present[level.fileIndexStart + ty * level.tilesX + tx] = 1;
          continue;
        }
        const xa = lt[0] + tx * bs * lt[1];
        const xb = lt[0] + Math.min(level.width, (tx + 1) * bs) * lt[1];
        const bx0 = Math.min(xa, xb);
        const bx1 = Math.max(xa, xb);
        const near: MosaicSource[] = [];
        let inside = false;
        for (const f of row) {
          if (bx0 - px >= f.outer[2] || bx1 + px <= f.outer[0]) continue;
          const i = f.inner;
          // overlapping the inner box by more than a pixel: some pixel of the tile lies inside the source
          if (i && bx0 + px / 2 < i[2] && bx1 - px / 2 > i[0] && by0 + py / 2 < i[3] && by1 - py / 2 > i[1]) {
            inside = true;
            break;
          }
          if (f.polygon) {
            // a pixel-wide disc deep inside the outline lies in the tile: it holds data; the tile grown by the
            // reach of both resamplings misses the outline: this source paints nothing there
            const verdict = classifyTile(
              f.polygon,
              [bx0, by0, bx1, by1],
              Math.max(px, py) / 2,
              Math.max(px, py) + f.sourceReach,
            );
            if (verdict === 'in') {
              inside = true;
              break;
            }
            if (verdict === 'out') continue;
          }
          near.push(f.source);
        }
        // the exact test needs only the sources whose footprint box reaches the tile
        if (!inside && near.length > 0) exactTests++;
        const verdict =
          inside || (near.length > 0 && tileTouchesSources({ ...mosaic, sources: near }, grid(), resampling));
        if (verdict) present[level.fileIndexStart + ty * level.tilesX + tx] = 1;
      }
    }
  }
  return { present, exactTests };
}
