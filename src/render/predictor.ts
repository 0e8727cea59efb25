/**
 * Undoing TIFF predictors on a decoded block, in place: horizontal differencing (predictor 2) over 8, 16, 32 and
 * 64-bit samples and the floating-point predictor (3, TIFF Technical Note 3). One monomorphic loop per sample
 * width over one typed view of the whole block (no per-row views or allocations), the running value kept in a
 * local for one-sample pixels. Samples are little-endian, as the host (the reader refuses big-endian predictors).
 */
import { predictor2Native } from './deflate.ts';

export interface PredictorShape {
  /** pixels per row of the block */
  readonly width: number;
  /** rows of the block (a last strip may hold fewer: only whole rows present are undone) */
  readonly height: number;
  /** bytes of one sample: 1, 2, 4 or 8 */
  readonly bytesPerSample: number;
  /** samples per pixel in one row: the band count when pixel-interleaved, 1 when planar */
  readonly samplesPerPixel: number;
}

function undo8(a: Uint8Array, rowLen: number, rows: number, stride: number): void {
  for (let r = 0, base = 0; r < rows; r++, base += rowLen) {
    const end = base + rowLen;
    if (stride === 1) {
      let prev = a[base];
      for (let i = base + 1; i < end; i++) {
        prev = (prev + a[i]) & 0xff;
        a[i] = prev;
      }
    } else if (stride === 3 && rowLen % 3 === 0) {
      // RGB: one running value per band in locals, no reload of what was just stored
      let p0 = a[base];
      let p1 = a[base + 1];
      let p2 = a[base + 2];
      for (let i = base + 3; i < end; i += 3) {
        p0 = (p0 + a[i]) & 0xff;
        a[i] = p0;
        p1 = (p1 + a[i + 1]) & 0xff;
        a[i + 1] = p1;
        p2 = (p2 + a[i + 2]) & 0xff;
        a[i + 2] = p2;
      }
    } else if (stride === 4 && rowLen % 4 === 0) {
      let p0 = a[base];
      let p1 = a[base + 1];
      let p2 = a[base + 2];
      let p3 = a[base + 3];
      for (let i = base + 4; i < end; i += 4) {
        p0 = (p0 + a[i]) & 0xff;
        a[i] = p0;
        p1 = (p1 + a[i + 1]) & 0xff;
        a[i + 1] = p1;
        p2 = (p2 + a[i + 2]) & 0xff;
        a[i + 2] = p2;
        p3 = (p3 + a[i + 3]) & 0xff;
        a[i + 3] = p3;
      }
    } else {
      for (let i = base + stride; i < end; i++) a[i] = a[i] + a[i - stride];
    }
  }
}

function undo16(a: Uint16Array, rowLen: number, rows: number, stride: number): void {
  for (let r = 0, base = 0; r < rows; r++, base += rowLen) {
    const end = base + rowLen;
    if (stride === 1) {
      let prev = a[base];
      for (let i = base + 1; i < end; i++) {
        prev = (prev + a[i]) & 0xffff;
        a[i] = prev;
      }
    } else if (stride === 3 && rowLen % 3 === 0) {
      // RGB: one running value per band in locals, no reload of what was just stored
      let p0 = a[base];
      let p1 = a[base + 1];
      let p2 = a[base + 2];
      for (let i = base + 3; i < end; i += 3) {
        p0 = (p0 + a[i]) & 0xffff;
        a[i] = p0;
        p1 = (p1 + a[i + 1]) & 0xffff;
        a[i + 1] = p1;
        p2 = (p2 + a[i + 2]) & 0xffff;
        a[i + 2] = p2;
      }
    } else if (stride === 4 && rowLen % 4 === 0) {
      let p0 = a[base];
      let p1 = a[base + 1];
      let p2 = a[base + 2];
      let p3 = a[base + 3];
      for (let i = base + 4; i < end; i += 4) {
        p0 = (p0 + a[i]) & 0xffff;
        a[i] = p0;
        p1 = (p1 + a[i + 1]) & 0xffff;
        a[i + 1] = p1;
        p2 = (p2 + a[i + 2]) & 0xffff;
        a[i + 2] = p2;
        p3 = (p3 + a[i + 3]) & 0xffff;
        a[i + 3] = p3;
      }
    } else {
      for (let i = base + stride; i < end; i++) a[i] = a[i] + a[i - stride];
    }
  }
}

function undo32(a: Uint32Array, rowLen: number, rows: number, stride: number): void {
  for (let r = 0, base = 0; r < rows; r++, base += rowLen) {
    const end = base + rowLen;
    if (stride === 1) {
      let prev = a[base];
      for (let i = base + 1; i < end; i++) {
        prev = (prev + a[i]) >>> 0;
        a[i] = prev;
      }
    } else {
      for (let i = base + stride; i < end; i++) a[i] = a[i] + a[i - stride];
    }
  }
}

function undo64(a: BigUint64Array, rowLen: number, rows: number, stride: number): void {
  for (let r = 0, base = 0; r < rows; r++, base += rowLen) {
    for (let i = base + stride; i < base + rowLen; i++) a[i] = a[i] + a[i - stride];
  }
}

/** Predictor 3: per row, bytewise accumulation with a stride of one pixel, then bytes regrouped into samples. */
function undoFloat(a: Uint8Array, rowSamples: number, rows: number, stride: number, bytes: number): void {
  const rowBytes = rowSamples * bytes;
  const row = new Uint8Array(rowBytes);
  for (let r = 0, base = 0; r < rows; r++, base += rowBytes) {
    row.set(a.subarray(base, base + rowBytes));
    for (let i = stride; i < rowBytes; i++) row[i] = row[i] + row[i - stride];
    // byte plane p holds byte (bytes - 1 - p) of every sample (most significant first)
    for (let p = 0; p < bytes; p++) {
      const plane = p * rowSamples;
      for (let s = 0, o = base + bytes - 1 - p; s < rowSamples; s++, o += bytes) a[o] = row[plane + s];
    }
  }
}

/**
 * Undo `predictor` (1: nothing, 2: horizontal, 3: floating point) in `block` (an ArrayBuffer holding only the
 * block, as decoders return it). Returns the same buffer.
 */
export function undoPredictorInPlace(block: ArrayBuffer, predictor: number, shape: PredictorShape): ArrayBuffer {
  if (predictor !== 2 && predictor !== 3) return block;
  const { width, bytesPerSample: bytes, samplesPerPixel: stride } = shape;
  const rowSamples = width * stride;
  const rows = Math.min(shape.height, Math.floor(block.byteLength / (rowSamples * bytes)));
  if (rows <= 0 || rowSamples <= 0) return block;
  if (predictor === 3) {
    undoFloat(new Uint8Array(block), rowSamples, rows, stride, bytes);
    return block;
  }
  const n = rows * rowSamples;
  if (predictor2Native(new Uint8Array(block, 0, n * bytes), rowSamples, rows, stride, bytes, true)) return block;
  switch (bytes) {
    case 1:
      undo8(new Uint8Array(block, 0, n), rowSamples, rows, stride);
      break;
    case 2:
      undo16(new Uint16Array(block, 0, n), rowSamples, rows, stride);
      break;
    case 4:
      undo32(new Uint32Array(block, 0, n), rowSamples, rows, stride);
      break;
    case 8:
      undo64(new BigUint64Array(block, 0, n), rowSamples, rows, stride);
      break;
    default:
      throw new RangeError(`predictor ${predictor} with ${bytes * 8}-bit samples`);
  }
  return block;
}
