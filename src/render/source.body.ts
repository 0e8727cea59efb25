/** Response bodies of remote sources (S3, Azure) read into one array, checked against their declared length. */
import { addAbortSignal, type Readable } from 'node:stream';

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
