/**
 * stac-geoparquet input, read with hyparquet: the one import site of hyparquet. hyparquet is pure JavaScript (no
 * native build, so the container image and CI stay simple), reads only the footer and the column chunks asked for,
 * and reads row groups one at a time through any byte source, so a catalogue on HTTP or S3 costs a few range
 * requests and a large one never sits in memory whole. DuckDB's node API would read the same files but brings a
 * native binary per platform and a query engine cogmill does not need.
 *
 * Only the columns the item model needs are read (id, bbox, times, collection, assets, proj:*, eo:cloud_cover and
 * the sortby fields): geometry and links are skipped.
 *
 * The footer is read here; a file of more than 5,000 rows is decoded in a short-lived child process
 * (stac.parquet.child.ts), a smaller one here. hyparquet assembles nested structs (the stac-geoparquet `assets`
 * column) through many short-lived arrays and objects: for 20,000 items this process's heap grew by ~200 MiB while it
 * ran, and V8 keeps the pages of a grown heap, so the process held 400-450 MiB after opening (the same items from an
 * ItemCollection: ~225 MiB). A worker thread does not help: V8 pools the freed pages process-wide, and RSS stayed at
 * 290-345 MiB after the worker exited. A child process gives everything back when it exits; only the compact items
 * cross over (one row group per message), and the open costs one process start (~0.1 s idle, ~1 s on a loaded
 * machine). The child reads no bytes itself: it asks this process for each range, so the source (URL policy,
 * retries, request counters) stays here. Its heap is capped: a hostile file stops the child with a clear error.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { AsyncBuffer, parquetMetadataAsync } from 'hyparquet';
import { type ErrorKind, RenderError } from './errors.ts';
import type { Source } from './source.ts';
import { type CatalogItem, parseStacItem, type StacParseOptions } from './stac.ts';

/** "PAR1": the first and last four bytes of a parquet file. */
export function isParquet(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x50 && head[1] === 0x41 && head[2] === 0x52 && head[3] === 0x31;
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

export type ParquetMetadata = Awaited<ReturnType<typeof parquetMetadataAsync>>;

/** hyparquet loads with the first parquet catalogue: a thread that reads none never loads it (~10 ms each) */
const hyparquet = () => import('hyparquet');

/** A stac-geoparquet file's footer and the columns to read from it (the footer is read where the source is). */
export async function readStacParquetFooter(
  file: AsyncBuffer,
  url: string,
  options: StacParseOptions,
): Promise<{ metadata: ParquetMetadata; columns: string[]; rows: number }> {
  const { parquetMetadataAsync, parquetSchema } = await hyparquet();
  let metadata: ParquetMetadata;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    if (e instanceof RenderError) throw e;
    throw new RenderError('corrupt', `${url} is not a readable parquet file: ${(e as Error).message}`, { cause: e });
  }
  const top = new Set(parquetSchema(metadata).children.map((c) => c.element.name));
  const columns = [...new Set([...BASE_COLUMNS, ...(options.sortFields ?? [])])].filter((c) => top.has(c));
  if (!columns.includes('id') || !columns.includes('assets')) {
    throw new RenderError('bad-request', `${url} is not stac-geoparquet: it has no id or assets column`);
  }
  return { metadata, columns, rows: Number(metadata.num_rows) };
}

/**
 * Decode the items of a stac-geoparquet file, one row group at a time, handing each row group's items to
 * `onItems`. Runs wherever it is called (this process for small files, the decoder process for large ones).
 */
export async function decodeStacParquet(
  file: AsyncBuffer,
  url: string,
  footer: { metadata: ParquetMetadata; columns: string[] },
  options: StacParseOptions,
  onItems: (items: CatalogItem[]) => void,
): Promise<void> {
  const { metadata, columns: wanted } = footer;
  const { parquetReadObjects } = await hyparquet();
  let rowStart = 0;
  for (const rg of metadata.row_groups) {
    const rowEnd = rowStart + Number(rg.num_rows);
    let rows: Record<string, unknown>[];
    try {
      rows = await parquetReadObjects({ file, metadata, columns: wanted, rowStart, rowEnd, rowFormat: 'object' });
    } catch (e) {
      if (e instanceof RenderError) throw e;
      throw new RenderError('corrupt', `${url}: rows ${rowStart}-${rowEnd}: ${(e as Error).message}`, { cause: e });
    }
    const items: CatalogItem[] = [];
    for (const row of rows) {
      const { id, bbox, assets, collection, ...props } = row;
      items.push(parseStacItem({ id, bbox: bboxOf(bbox), assets, collection, properties: props }, options));
    }
    onItems(items);
    rowStart = rowEnd;
  }
}

/** The decoder process's heap limit: a hostile file makes it stop with a clear error, not this process. */
const PARQUET_DECODER_HEAP_MB = 1024;

/** Messages from the decoder process. */
export type StacParquetChildMessage =
  | { readonly type: 'read'; readonly id: number; readonly start: number; readonly end: number }
  | { readonly type: 'items'; readonly items: CatalogItem[] }
  | { readonly type: 'done' }
  | { readonly type: 'error'; readonly kind: ErrorKind; readonly message: string };

/** Messages to the decoder process: the bytes of a read, or why it failed. */
export type StacParquetReadReply =
  | { readonly id: number; readonly bytes: Uint8Array }
  | { readonly id: number; readonly kind: ErrorKind; readonly message: string };

export interface StacParquetChildInit {
  readonly url: string;
  readonly size: number;
  readonly options: StacParseOptions;
  readonly footer: { readonly metadata: ParquetMetadata; readonly columns: string[] };
}

/**
 * Up to this many rows a file is decoded in this process: its garbage is a few MiB, and a process start (~0.1 s
 * idle, ~1 s on a loaded machine) would cost more than the decoding.
 */
export const PARQUET_IN_PROCESS_MAX_ROWS = 5_000;

/** The items of a stac-geoparquet file: decoded here, or in a child process above `inProcessMaxRows` rows. */
export async function readStacParquet(
  source: Source,
  options: StacParseOptions & { signal?: AbortSignal; inProcessMaxRows?: number } = {},
): Promise<CatalogItem[]> {
  const { signal, inProcessMaxRows = PARQUET_IN_PROCESS_MAX_ROWS, ...parse } = options;
  signal?.throwIfAborted();
  const { size } = await source.stat({ signal });
  const file: AsyncBuffer = {
    byteLength: size,
    async slice(start: number, end?: number): Promise<ArrayBuffer> {
      const b = (await source.read(start, (end ?? size) - start, { signal })).bytes;
      return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
    },
  };
  const { rows, ...footer } = await readStacParquetFooter(file, source.url, parse);
  const out: CatalogItem[] = [];
  if (rows <= inProcessMaxRows) {
    await decodeStacParquet(file, source.url, footer, parse, (items) => {
      for (const it of items) out.push(it);
    });
    return out;
  }
  const init: StacParquetChildInit = { url: source.url, size, options: parse, footer };
  const child = fork(fileURLToPath(new URL('./stac.parquet.child.ts', import.meta.url)), [], {
    serialization: 'advanced',
    execArgv: [`--max-old-space-size=${PARQUET_DECODER_HEAP_MB}`],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  child.send({ init });
  // a failed read is reported as it was (its class, kind and cause), not as the decoder's account of it
  let readError: unknown;
  try {
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const finish = (e?: unknown) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        if (e === undefined) resolve();
        else reject(e);
      };
      const onAbort = () => finish(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      const reply = (r: StacParquetReadReply) => {
        if (child.connected) child.send(r);
      };
      child.on('message', (m: StacParquetChildMessage) => {
        if (m.type === 'read') {
          source.read(m.start, m.end - m.start, { signal }).then(
            (r) => {
              // a view of a larger buffer would send the whole buffer: send exactly the bytes read
              const b = r.bytes;
              reply({ id: m.id, bytes: b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b : b.slice() });
            },
            (e: unknown) => {
              readError ??= e;
              reply({ id: m.id, kind: e instanceof RenderError ? e.kind : 'unreachable', message: String(e) });
            },
          );
        } else if (m.type === 'items') {
          for (const it of m.items) out.push(it);
        } else if (m.type === 'done') {
          finish();
        } else {
          finish(readError ?? new RenderError(m.kind, m.message));
        }
      });
      child.on('error', (e) =>
        finish(new RenderError('internal', `${source.url}: the parquet decoder failed`, { cause: e })),
      );
      // 'close' comes after the last message has been read
      child.on('close', (code, sig) => {
        const oom = /heap out of memory|allocation failed/i.test(stderr);
        finish(
          new RenderError(
            oom ? 'too-large' : 'internal',
            `${source.url}: the parquet decoder stopped (${sig ?? `exit code ${code}`}) before the last row group${oom ? `: it needed more than ${PARQUET_DECODER_HEAP_MB} MiB` : ''}`,
          ),
        );
      });
    });
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill();
  }
  return out;
}
