/**
 * A generated STAC catalogue for the catalogue-scale tests and benchmarks: small COGs written by cogmill's own COG
 * writer, in two UTM zones, on several dates, with per-band assets at 10 m (B04, B03) and 20 m (B11), listed as a
 * STAC ItemCollection and as stac-geoparquet. Every value is a known function of (item, band, pixel), so a test
 * can compute what a composite must be by hand.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { cogBytes } from '../../src/materialize/cog.write.ts';
import type { GeoTransform } from '../../src/render/types.ts';

export const SCENE_PX = 64;
export const RES_M = 10;
export const SCENE_M = SCENE_PX * RES_M;
export const DATES = ['2024-01-03T10:00:00Z', '2024-01-17T10:00:00Z', '2024-02-02T10:00:00Z', '2024-02-20T10:00:00Z'];
/** [epsg, x origin of the first column of scenes, y origin (top) of the first row] */
export const ZONES: readonly (readonly [number, number, number])[] = [
  [32632, 780_000, 5_000_000],
  [32633, 220_000, 5_000_000],
];
export const BANDS = [
  { name: 'B04', res: 10, code: 4 },
  { name: 'B03', res: 10, code: 3 },
  { name: 'B11', res: 20, code: 11 },
] as const;

export interface GeneratedItem {
  readonly id: string;
  readonly zone: number;
  readonly epsg: number;
  readonly col: number;
  readonly row: number;
  readonly date: number;
  readonly cloud: number;
  /** top-left corner in the zone's CRS */
  readonly x0: number;
  readonly y0: number;
  readonly json: Record<string, unknown>;
}

/** The value of band `code` of the scene at (zone, col, row) on date `date` at pixel (px, py) of that band; 0 = nodata. */
export function sceneValue(
  zone: number,
  col: number,
  row: number,
  date: number,
  code: number,
  px: number,
  py: number,
): number {
  // date 1 has a nodata corner (the triangle px + py < 16 at 10 m), so pixels there have one value fewer
  const scale = code === 11 ? 2 : 1;
  if (date === 1 && (px + py) * scale < 16) return 0;
  return 1 + date * 1000 + code * 50 + ((px * 7 + py * 3 + col * 11 + row * 5 + zone * 13) % 47);
}

/** Cloud cover of an item: distinct per date of one scene, and not in date order. */
export function cloudOf(col: number, row: number, date: number): number {
  return ((date * 37 + col * 11 + row * 7) % 4) * 20 + date + 1;
}

export interface Catalogue {
  readonly dir: string;
  readonly items: GeneratedItem[];
  /** ItemCollection file (hrefs relative to it unless a base URL was given) */
  readonly itemsJson: string;
  /** stac-geoparquet with nested structs, as stac-geoparquet writers make it */
  readonly itemsParquet: string;
  /** the same with the assets in one JSON column */
  readonly itemsParquetJsonAssets: string;
}

/**
 * Write `scenesPerZone` scenes (a block `cols` wide) x DATES per zone. `baseUrl`: asset hrefs as URLs under it
 * (served from `dir`), else relative paths.
 */
export async function writeCatalogue(
  dir: string,
  opts: { scenesPerZone: number; cols: number; dates?: number; baseUrl?: string; writeRasters?: boolean },
): Promise<Catalogue> {
  const dates = opts.dates ?? DATES.length;
  await mkdir(path.join(dir, 'cogs'), { recursive: true });
  const items: GeneratedItem[] = [];
  const jobs: Promise<void>[] = [];
  for (let z = 0; z < ZONES.length; z++) {
    const [epsg, ox, oy] = ZONES[z];
    for (let s = 0; s < opts.scenesPerZone; s++) {
      const col = s % opts.cols;
      const row = Math.floor(s / opts.cols);
      for (let d = 0; d < dates; d++) {
        const id = `S${z}_${col}_${row}_${d}`;
        const x0 = ox + col * SCENE_M;
        const y0 = oy - row * SCENE_M;
        const assets: Record<string, unknown> = {};
        for (const b of BANDS) {
          const n = SCENE_M / b.res;
          const file = `cogs/${id}_${b.name}.tif`;
          const transform: GeoTransform = [x0, b.res, 0, y0, 0, -b.res];
          if (opts.writeRasters !== false) {
            const data = new Uint16Array(n * n);
            for (let py = 0; py < n; py++)
              for (let px = 0; px < n; px++) data[py * n + px] = sceneValue(z, col, row, d, b.code, px, py);
            jobs.push(
              cogBytes(
                { width: n, height: n, dtype: 'uint16', bands: [data], transform, epsg, geographic: false, nodata: 0 },
                { blockSize: 64 },
              ).then((bytes) => writeFile(path.join(dir, file), bytes)),
            );
            if (jobs.length >= 64) await Promise.all(jobs.splice(0));
          }
          assets[b.name] = {
            href: opts.baseUrl ? `${opts.baseUrl}/${file}` : `./${file}`,
            type: 'image/tiff; application=geotiff; profile=cloud-optimized',
            roles: ['data'],
            'proj:shape': [n, n],
            'proj:transform': [b.res, 0, x0, 0, -b.res, y0],
            'raster:bands': [{ data_type: 'uint16', nodata: 0 }],
          };
        }
        const cloud = cloudOf(col, row, d);
        // a longitude/latitude box a little larger than the footprint (as writers round outwards)
        const json = {
          type: 'Feature',
          stac_version: '1.1.0',
          id,
          collection: 'generated-s2',
          bbox: [0, 0, 0, 0],
          geometry: null,
          properties: { datetime: DATES[d], 'eo:cloud_cover': cloud, 'proj:code': `EPSG:${epsg}` },
          assets,
          links: [],
        };
        items.push({ id, zone: z, epsg, col, row, date: d, cloud, x0, y0, json });
      }
    }
  }
  await Promise.all(jobs);
  await fillBboxes(items);
  const itemsJson = path.join(dir, 'items.json');
  await writeFile(itemsJson, JSON.stringify({ type: 'FeatureCollection', features: items.map((i) => i.json) }));
  const itemsParquet = path.join(dir, 'items.parquet');
  await writeFile(itemsParquet, new Uint8Array(stacParquet(items.map((i) => i.json))));
  const itemsParquetJsonAssets = path.join(dir, 'items.json-assets.parquet');
  await writeFile(
    itemsParquetJsonAssets,
    new Uint8Array(
      stacParquet(
        items.map((i) => i.json),
        true,
      ),
    ),
  );
  return { dir, items, itemsJson, itemsParquet, itemsParquetJsonAssets };
}

/** bbox of every item from its footprint, with proj4 (as a catalogue writer would). */
async function fillBboxes(items: GeneratedItem[]): Promise<void> {
  const { transformBounds } = await import('../../src/render/transform.ts');
  const { crsFromEpsg } = await import('../../src/render/crs.ts');
  const wgs = crsFromEpsg(4326);
  for (const it of items) {
    const b = transformBounds([it.x0, it.y0 - SCENE_M, it.x0 + SCENE_M, it.y0], crsFromEpsg(it.epsg), wgs);
    it.json.bbox = [b[0] - 1e-7, b[1] - 1e-7, b[2] + 1e-7, b[3] + 1e-7];
  }
}

/**
 * stac-geoparquet bytes as the stac-geoparquet writers lay them out: one row per item, properties as top-level
 * columns, bbox as a struct of xmin/ymin/xmax/ymax, assets as a struct of per-asset structs (href, type, roles,
 * proj:shape, proj:transform, raster:bands as lists). `assetsAsJson`: the assets in one JSON column instead.
 */
export function stacParquet(features: readonly Record<string, unknown>[], assetsAsJson = false): ArrayBuffer {
  const props = (f: Record<string, unknown>) => f.properties as Record<string, unknown>;
  const utf8 = { type: 'BYTE_ARRAY', converted_type: 'UTF8' } as const;
  const list = (name: string, element: Record<string, unknown>[]) => [
    { name, repetition_type: 'OPTIONAL', converted_type: 'LIST', num_children: 1 },
    { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
    ...element,
  ];
  const assetSchema = BANDS.flatMap((b) => [
    { name: b.name, repetition_type: 'OPTIONAL', num_children: 6 },
    { name: 'href', ...utf8, repetition_type: 'OPTIONAL' },
    { name: 'type', ...utf8, repetition_type: 'OPTIONAL' },
    ...list('roles', [{ name: 'element', ...utf8, repetition_type: 'OPTIONAL' }]),
    ...list('proj:shape', [{ name: 'element', type: 'INT32', repetition_type: 'OPTIONAL' }]),
    ...list('proj:transform', [{ name: 'element', type: 'DOUBLE', repetition_type: 'OPTIONAL' }]),
    ...list('raster:bands', [
      { name: 'element', repetition_type: 'OPTIONAL', num_children: 2 },
      { name: 'data_type', ...utf8, repetition_type: 'OPTIONAL' },
      { name: 'nodata', type: 'DOUBLE', repetition_type: 'OPTIONAL' },
    ]),
  ]);
  const columnData = [
    { name: 'id', data: features.map((f) => String(f.id)) },
    { name: 'collection', data: features.map((f) => String(f.collection)) },
    { name: 'datetime', data: features.map((f) => BigInt(Date.parse(String(props(f).datetime)))) },
    { name: 'eo:cloud_cover', data: features.map((f) => Number(props(f)['eo:cloud_cover'])) },
    { name: 'proj:code', data: features.map((f) => String(props(f)['proj:code'])) },
    {
      name: 'bbox',
      data: features.map((f) => {
        const b = f.bbox as number[];
        return { xmin: b[0], ymin: b[1], xmax: b[2], ymax: b[3] };
      }),
    },
    { name: 'assets', data: features.map((f) => f.assets) },
  ];
  return parquetWriteBuffer({
    columnData,
    schema: [
      { name: 'root', num_children: columnData.length },
      { name: 'id', ...utf8, repetition_type: 'REQUIRED' },
      { name: 'collection', ...utf8, repetition_type: 'OPTIONAL' },
      { name: 'datetime', type: 'INT64', converted_type: 'TIMESTAMP_MILLIS', repetition_type: 'OPTIONAL' },
      { name: 'eo:cloud_cover', type: 'DOUBLE', repetition_type: 'OPTIONAL' },
      { name: 'proj:code', ...utf8, repetition_type: 'OPTIONAL' },
      { name: 'bbox', repetition_type: 'OPTIONAL', num_children: 4 },
      ...['xmin', 'ymin', 'xmax', 'ymax'].map((name) => ({ name, type: 'DOUBLE', repetition_type: 'REQUIRED' })),
      ...(assetsAsJson
        ? [{ name: 'assets', type: 'BYTE_ARRAY', converted_type: 'JSON', repetition_type: 'OPTIONAL' }]
        : [{ name: 'assets', repetition_type: 'OPTIONAL', num_children: BANDS.length }, ...assetSchema]),
    ] as never,
    rowGroupSize: 500,
  });
}
