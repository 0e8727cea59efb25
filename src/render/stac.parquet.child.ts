/**
 * The process that decodes a stac-geoparquet file (see stac.parquet.ts): bytes come from the parent range by range
 * over the IPC channel, items go back to it one row group at a time; it exits when done.
 */
import type { AsyncBuffer } from 'hyparquet';
import { RenderError } from './errors.ts';
import {
  decodeStacParquet,
  type StacParquetChildInit,
  type StacParquetChildMessage,
  type StacParquetReadReply,
} from './stac.parquet.ts';

const post = (m: StacParquetChildMessage) =>
  new Promise<void>((resolve) => {
    process.send!(m, undefined, undefined, () => resolve());
  });

const pending = new Map<number, { resolve: (b: ArrayBuffer) => void; reject: (e: unknown) => void }>();
let nextId = 1;
let init: StacParquetChildInit | undefined;
process.on('message', (r: StacParquetReadReply | { init: StacParquetChildInit }) => {
  if ('init' in r) {
    init = r.init;
    void run(init);
    return;
  }
  const p = pending.get(r.id);
  if (!p) return;
  pending.delete(r.id);
  if ('bytes' in r) {
    const b = r.bytes;
    p.resolve(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
  } else p.reject(new RenderError(r.kind, r.message));
});
// the parent went away: nothing left to do
process.on('disconnect', () => process.exit(0));

async function run(init: StacParquetChildInit): Promise<void> {
  const file: AsyncBuffer = {
    byteLength: init.size,
    slice(start: number, end?: number): Promise<ArrayBuffer> {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        void post({ type: 'read', id, start, end: end ?? init.size });
      });
    },
  };
  try {
    await decodeStacParquet(file, init.url, init.footer, init.options, (items) => void post({ type: 'items', items }));
    await post({ type: 'done' });
  } catch (e) {
    const kind = e instanceof RenderError ? e.kind : 'corrupt';
    await post({ type: 'error', kind, message: e instanceof Error ? e.message : String(e) });
  }
  process.disconnect?.();
}
