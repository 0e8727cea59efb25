/**
 * What the remote object sources (S3, Azure) share about an answer: the byte range asked for is checked, the body
 * read into one array and checked against its declared length, the Content-Range parsed.
 */
import { addAbortSignal, type Readable } from 'node:stream';
import { SourceError } from './errors.ts';

/** Refuse a byte range no read can mean (a negative or fractional offset, a length that is not an integer). */
export function checkByteRange(url: string, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length)) {
    throw new SourceError('bad-request', `${url}: bad byte range offset=${offset} length=${length}`);
  }
}

/** `bytes 0-99/1234` -> start and total (NaN when the total is unknown); undefined when malformed or absent. */
export function parseContentRange(contentRange: string | undefined): { start: number; total: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(contentRange?.trim() ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[3] === '*' ? Number.NaN : Number(m[3]) };
}

/**
 * Collect a response body into one array, sized up front when the length is known. A body longer than its
 * Content-Length fails; a shorter one fails as a cut connection (ECONNRESET, so the caller retries it).
 */
export async function readBody(
  body: Readable | undefined,
  expectedBytes: number | undefined,
  signal?: AbortSignal,
): Promise<Uint8Array> {
  if (!body) return new Uint8Array(0);
  if (signal) addAbortSignal(signal, body);
  if (expectedBytes !== undefined && Number.isSafeInteger(expectedBytes) && expectedBytes >= 0) {
    const out = new Uint8Array(expectedBytes);
    let at = 0;
    for await (const chunk of body as AsyncIterable<Uint8Array>) {
      if (at + chunk.byteLength > expectedBytes)
        throw new Error(`body longer than its Content-Length ${expectedBytes}`);
      out.set(chunk, at);
      at += chunk.byteLength;
    }
    if (at !== expectedBytes)
      throw Object.assign(new Error(`body ended after ${at} of ${expectedBytes} bytes`), { code: 'ECONNRESET' });
    return out;
  }
  const chunks: Uint8Array[] = [];
  for await (const chunk of body as AsyncIterable<Uint8Array>) chunks.push(chunk);
  return new Uint8Array(Buffer.concat(chunks));
}
