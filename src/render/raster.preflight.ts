/**
 * The IFD pre-flight: the chain of IFDs walked before geotiff.js parses it, so that a hostile or corrupt TIFF is
 * refused before a parser allocates or loops for it.
 */
import { RenderError } from './errors.ts';
import type { HeaderReader } from './raster.header.ts';

/** The most IFDs (images, overviews, masks) one file may hold. */
export const MAX_IFDS = 64;

/** Byte size of each TIFF field type. */
const FIELD_SIZE: Record<number, number> = {
  1: 1,
  2: 1,
  3: 2,
  4: 4,
  5: 8,
  6: 1,
  7: 1,
  8: 2,
  9: 4,
  10: 8,
  11: 4,
  12: 8,
  13: 4,
  16: 8,
  17: 8,
  18: 8,
};

/**
 * Walk the IFD chain before geotiff.js does, and refuse what would make a parser allocate or loop without bound:
 * unknown field types, arrays larger than the file, offsets past the end, IFD loops, too many IFDs.
 */
export async function preflight(reader: HeaderReader, url: string): Promise<void> {
  const head = new Uint8Array((await reader.fetch([{ offset: 0, length: 16 }]))[0]);
  if (head.byteLength < 8) throw new RenderError('corrupt', `${url} is too short to be a TIFF`);
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const bo = dv.getUint16(0, false);
  if (bo !== 0x4949 && bo !== 0x4d4d) throw new RenderError('corrupt', `${url} is not a TIFF (bad byte-order mark)`);
  const le = bo === 0x4949;
  const magic = dv.getUint16(2, le);
  if (magic !== 42 && magic !== 43)
    throw new RenderError('corrupt', `${url} is not a TIFF (bad magic number ${magic})`);
  const big = magic === 43;
  const size = reader.size;
  const u64 = (d: DataView, o: number) =>
    d.getUint32(o + (le ? 4 : 0), le) * 2 ** 32 + d.getUint32(o + (le ? 0 : 4), le);
  let next = big ? u64(dv, 8) : dv.getUint32(4, le);
  const seen = new Set<number>();
  let count = 0;
  while (next !== 0) {
    if (seen.has(next)) throw new RenderError('corrupt', `${url}: the IFD chain loops back on itself`);
    seen.add(next);
    if (++count > MAX_IFDS) throw new RenderError('corrupt', `${url}: more than ${MAX_IFDS} IFDs`);
    if (next >= size)
      throw new RenderError('corrupt', `${url}: an IFD offset points past the end of the file (truncated?)`);
    const cntBytes = new Uint8Array((await reader.fetch([{ offset: next, length: big ? 8 : 2 }]))[0]);
    if (cntBytes.byteLength < (big ? 8 : 2)) throw new RenderError('corrupt', `${url}: truncated IFD`);
    const cdv = new DataView(cntBytes.buffer, cntBytes.byteOffset, cntBytes.byteLength);
    const n = big ? u64(cdv, 0) : cdv.getUint16(0, le);
    const entrySize = big ? 20 : 12;
    if (n === 0 || n > 4096) throw new RenderError('corrupt', `${url}: an IFD with ${n} entries`);
    const ifdLen = (big ? 8 : 2) + n * entrySize + (big ? 8 : 4);
    const ifd = new Uint8Array((await reader.fetch([{ offset: next, length: ifdLen }]))[0]);
    if (ifd.byteLength < ifdLen) throw new RenderError('corrupt', `${url}: truncated IFD`);
    const idv = new DataView(ifd.buffer, ifd.byteOffset, ifd.byteLength);
    for (let i = 0; i < n; i++) {
      const e = (big ? 8 : 2) + i * entrySize;
      const type = idv.getUint16(e + 2, le);
      const cnt = big ? u64(idv, e + 4) : idv.getUint32(e + 4, le);
      const fs = FIELD_SIZE[type];
      if (!fs) throw new RenderError('corrupt', `${url}: tag ${idv.getUint16(e, le)} has unknown field type ${type}`);
      const bytes = cnt * fs;
      if (bytes > (big ? 8 : 4)) {
        const off = big ? u64(idv, e + 12) : idv.getUint32(e + 8, le);
        if (off + bytes > size) {
          throw new RenderError(
            'corrupt',
            `${url}: tag ${idv.getUint16(e, le)} claims ${cnt} values past the end of the file`,
          );
        }
      }
    }
    next = big ? u64(idv, ifdLen - 8) : idv.getUint32(ifdLen - 4, le);
  }
}

// ---------------------------------------------------------------------------------------------------------------
