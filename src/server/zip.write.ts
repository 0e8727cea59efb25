/**
 * A small ZIP writer (PKWARE APPNOTE 6.3: local headers, deflated data, central directory, end record) for the
 * few small files of a download such as a QGIS `.qgz` project. Entries are deflated with node:zlib (method 8)
 * unless that does not make them smaller (then stored, method 0). No ZIP64: the whole archive stays under 4 GiB
 * and 65,535 entries, which callers of this module never approach; larger input is refused.
 */
import { crc32, deflateRawSync } from 'node:zlib';

export interface ZipEntry {
  /** path inside the archive, `/`-separated, ASCII or UTF-8 */
  readonly name: string;
  readonly data: Uint8Array;
  /** modification time written in the entry (default: 1980-01-01, so equal input gives equal bytes) */
  readonly modified?: Date;
}

const LOCAL_HEADER = 0x04034b50;
const CENTRAL_HEADER = 0x02014b50;
const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const VERSION_NEEDED = 20;
/** bit 11: the name is UTF-8 */
const FLAG_UTF8 = 0x0800;
const MAX_ZIP_BYTES = 0xffffffff;
const MAX_ENTRIES = 0xffff;

/** MS-DOS date and time of a Date (local fields as UTC; two-second resolution; 1980 at the earliest). */
function dosDateTime(d: Date | undefined): { time: number; date: number } {
  if (!d || d.getUTCFullYear() < 1980) return { time: 0, date: (0 << 9) | (1 << 5) | 1 };
  const time = (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | Math.floor(d.getUTCSeconds() / 2);
  const date = ((d.getUTCFullYear() - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate();
  return { time, date };
}

/** The bytes of a ZIP archive holding `entries`, in that order. */
export function zipArchive(entries: readonly ZipEntry[]): Uint8Array {
  if (entries.length > MAX_ENTRIES) throw new RangeError(`a zip archive holds at most ${MAX_ENTRIES} entries`);
  const encoder = new TextEncoder();
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = encoder.encode(e.name);
    const deflated = new Uint8Array(deflateRawSync(e.data, { level: 9 }));
    const stored = deflated.byteLength >= e.data.byteLength;
    const body = stored ? e.data : deflated;
    const crc = crc32(e.data);
    const { time, date } = dosDateTime(e.modified);
    const local = new Uint8Array(30 + name.byteLength);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, LOCAL_HEADER, true);
    lv.setUint16(4, VERSION_NEEDED, true);
    lv.setUint16(6, FLAG_UTF8, true);
    lv.setUint16(8, stored ? 0 : 8, true);
    lv.setUint16(10, time, true);
    lv.setUint16(12, date, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.byteLength, true);
    lv.setUint32(22, e.data.byteLength, true);
    lv.setUint16(26, name.byteLength, true);
    lv.setUint16(28, 0, true);
    local.set(name, 30);
    const central = new Uint8Array(46 + name.byteLength);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, CENTRAL_HEADER, true);
    cv.setUint16(4, VERSION_NEEDED, true);
    cv.setUint16(6, VERSION_NEEDED, true);
    cv.setUint16(8, FLAG_UTF8, true);
    cv.setUint16(10, stored ? 0 : 8, true);
    cv.setUint16(12, time, true);
    cv.setUint16(14, date, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, body.byteLength, true);
    cv.setUint32(24, e.data.byteLength, true);
    cv.setUint16(28, name.byteLength, true);
    // extra, comment, disk number, internal attributes: 0; external attributes: 0 (a plain file)
    cv.setUint32(42, offset, true);
    central.set(name, 46);
    locals.push(local, body);
    centrals.push(central);
    offset += local.byteLength + body.byteLength;
    if (offset > MAX_ZIP_BYTES) throw new RangeError('a zip archive without ZIP64 stays under 4 GiB');
  }
  const centralSize = centrals.reduce((n, c) => n + c.byteLength, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, END_OF_CENTRAL_DIRECTORY, true);
  ev.setUint16(8, entries.length, true);
  ev.setUint16(10, entries.length, true);
  ev.setUint32(12, centralSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + centralSize + end.byteLength);
  let pos = 0;
  for (const part of [...locals, ...centrals, end]) {
    out.set(part, pos);
    pos += part.byteLength;
  }
  return out;
}
