/** A small TIFF/BigTIFF IFD walker for tests, independent of the code under test. */

export interface TiffEntry {
  readonly tag: number;
  readonly type: number;
  readonly count: number;
  /** the values of numeric types (BYTE, SHORT, LONG, DOUBLE, LONG8); empty for ASCII */
  readonly values: number[];
  /** the text of an ASCII entry, its NUL terminator included; '' otherwise */
  readonly text: string;
  /** where the values are in the file, or -1 when they sit inline in the entry */
  readonly valueOffset: number;
}

export interface TiffIfd {
  readonly offset: number;
  readonly entries: TiffEntry[];
}

const TYPE_BYTES: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 12: 8, 16: 8 };

/** Every IFD of a TIFF or BigTIFF (little-endian) with every entry and its values. */
export function parseTiff(bytes: Uint8Array): { bigTiff: boolean; ifds: TiffIfd[] } {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bigTiff = v.getUint16(2, true) === 43;
  const u64 = (p: number) => v.getUint32(p, true) + v.getUint32(p + 4, true) * 2 ** 32;
  let offset = bigTiff ? u64(8) : v.getUint32(4, true);
  const ifds: TiffIfd[] = [];
  while (offset !== 0) {
    const n = bigTiff ? u64(offset) : v.getUint16(offset, true);
    const entries: TiffEntry[] = [];
    for (let i = 0; i < n; i++) {
      const p = offset + (bigTiff ? 8 + 20 * i : 2 + 12 * i);
      const tag = v.getUint16(p, true);
      const type = v.getUint16(p + 2, true);
      const count = bigTiff ? u64(p + 4) : v.getUint32(p + 4, true);
      const valuePos = p + (bigTiff ? 12 : 8);
      const inline = count * (TYPE_BYTES[type] ?? 1) <= (bigTiff ? 8 : 4);
      const at = inline ? valuePos : bigTiff ? u64(valuePos) : v.getUint32(valuePos, true);
      const values: number[] = [];
      if (type !== 2) {
        for (let k = 0; k < count; k++) {
          if (type === 3) values.push(v.getUint16(at + 2 * k, true));
          else if (type === 4) values.push(v.getUint32(at + 4 * k, true));
          else if (type === 16) values.push(u64(at + 8 * k));
          else if (type === 12) values.push(v.getFloat64(at + 8 * k, true));
          else values.push(v.getUint8(at + k));
        }
      }
      const text = type === 2 ? Buffer.from(bytes.subarray(at, at + count)).toString('latin1') : '';
      entries.push({ tag, type, count, values, text, valueOffset: inline ? -1 : at });
    }
    ifds.push({ offset, entries });
    const nextPos = offset + (bigTiff ? 8 + 20 * n : 2 + 12 * n);
    offset = bigTiff ? u64(nextPos) : v.getUint32(nextPos, true);
  }
  return { bigTiff, ifds };
}

/** The entry of `tag` in `ifd`, if there is one. */
export function tiffEntry(ifd: TiffIfd, tag: number): TiffEntry | undefined {
  return ifd.entries.find((e) => e.tag === tag);
}

/** Every tile of IFD `ifd` of a TIFF file as stored: its bytes, in tile order. */
export function storedTiles(file: Uint8Array, ifd: number): Buffer[] {
  const d = parseTiff(file).ifds[ifd];
  const offsets = tiffEntry(d, 324)!.values;
  const counts = tiffEntry(d, 325)!.values;
  return offsets.map((o, i) => Buffer.from(file.subarray(o, o + counts[i])));
}
