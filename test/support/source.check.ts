/** What the tests of the remote sources (S3, Azure) share: a byte pattern no shifted range can pass, error checks. */
import assert from 'node:assert/strict';
import { SourceError } from '../../src/render/errors.ts';

/** a byte pattern in which every offset has a distinct-looking value, so a shifted range cannot pass */
export function pattern(size: number, salt = 0): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + (i >>> 8) * 7 + (i >>> 16) + salt) & 0xff;
  return out;
}

/** `p` rejects with a SourceError of `kind` (whose message includes `messageIncludes`); returns the error. */
export async function rejectsWithKind(
  p: Promise<unknown>,
  kind: string,
  messageIncludes?: string,
): Promise<SourceError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof SourceError, `expected a SourceError, got ${String(e)}`);
    assert.equal(e.kind, kind, e.message);
    if (messageIncludes) assert.ok(e.message.includes(messageIncludes), e.message);
    return e;
  }
  assert.fail(`expected a SourceError of kind ${kind}`);
}
