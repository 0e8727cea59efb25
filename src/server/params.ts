/** Request parameters read the same way by every route: integers in canonical decimal digits. */
import { RequestError } from './errors.ts';

/** A decimal integer as a person writes it: digits only, no sign, exponent, hex prefix, spaces or leading zeros. */
const DECIMAL_INTEGER = /^(0|[1-9][0-9]{0,14})$/;

/**
 * Parse an integer path/query parameter or answer 400 naming it. Only canonical decimal integers are accepted
 * (`Number()` would also take `1e1`, `0x10`, `+1` and ` 1`, and several spellings of one tile would be cached
 * apart).
 */
export function intParam(value: string | undefined, name: string, min: number, max: number): number {
  const n = value !== undefined && DECIMAL_INTEGER.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new RequestError(
      'bad-request',
      `${name} must be an integer between ${min} and ${max}, in decimal digits (got "${(value ?? '').slice(0, 30)}")`,
    );
  }
  return n;
}
