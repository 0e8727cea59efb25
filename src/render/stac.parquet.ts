/**
 * stac-geoparquet input, read with hyparquet: the one import site of hyparquet. hyparquet is pure JavaScript (no
 * native build, so the container image and CI stay simple), reads only the footer and the column chunks asked for,
 * and reads row groups one at a time through any byte source, so a catalogue on HTTP or S3 costs a few range
 * requests and a large one never sits in memory whole. DuckDB's node API would read the same files but brings a
 * native binary per platform and a query engine cogmill does not need.
 *
 * Only the columns the item model needs are read (id, bbox, times, collection, assets, proj:*, eo:cloud_cover and
 * the sortby fields): geometry and links are skipped.
 */
import { type AsyncBuffer, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import { RenderError } from './errors.ts';
import type { Source } from './source.ts';
import { type CatalogItem, parseStacItem, type StacParseOptions } from './stac.ts';

/** "PAR1": the first and last four bytes of a parquet file. */
export function isParquet(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x50 && head[1] === 0x41 && head[2] === 0x52 && head[3] === 0x31;
}

/** A hyparquet byte buffer over a Source (range reads). */
export function sourceAsyncBuffer(source: Source, size: number, signal?: AbortSignal): AsyncBuffer {
  return {
    byteLength: size,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const stop = end ?? size;
      const r = await source.read(start, stop - start, { signal });
      const b = r.bytes;
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
    },
  };
}

const BASE_COLUMNS = [
  'id',
  'bbox',
  'datetime',
  'start_datetime',
  'end_datetime',
  'collection',
  'assets',
  'proj:code',
  'proj:epsg',
  'proj:shape',
  'proj:transform',
  'eo:cloud_cover',
];

function bboxOf(v: unknown): number[] | undefined {
  if (Array.isArray(v)) return v.map(Number);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if ('xmin' in o) return [o.xmin, o.ymin, o.xmax, o.ymax].map(Number);
  }
  return undefined;
}

/** The items of a stac-geoparquet file, one row group at a time. */
export async function readStacParquet(
  source: Source,
  options: StacParseOptions & { signal?: AbortSignal } = {},
): Promise<CatalogItem[]> {
  const { size } = await source.stat({ signal: options.signal });
  const file = sourceAsyncBuffer(source, size, options.signal);
  let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    throw new RenderError('corrupt', `${source.url} is not a readable parquet file: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const top = new Set(parquetSchema(metadata).children.map((c) => c.element.name));
  const wanted = [...new Set([...BASE_COLUMNS, ...(options.sortFields ?? [])])].filter((c) => top.has(c));
  if (!wanted.includes('id') || !wanted.includes('assets')) {
    throw new RenderError('bad-request', `${source.url} is not stac-geoparquet: it has no id or assets column`);
  }
  const out: CatalogItem[] = [];
  let rowStart = 0;
  for (const rg of metadata.row_groups) {
    const rowEnd = rowStart + Number(rg.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file, metadata, columns: wanted, rowStart, rowEnd, rowFormat: 'object' });
    } catch (e) {
      throw new RenderError('corrupt', `${source.url}: rows ${rowStart}-${rowEnd}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    for (const row of rows) {
      const { id, bbox, assets, collection, ...props } = row;
      out.push(parseStacItem({ id, bbox: bboxOf(bbox), assets, collection, properties: props }, options));
    }
    rowStart = rowEnd;
  }
  return out;
}
