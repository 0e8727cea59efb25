/**
 * HTTP range requests and conditional requests (RFC 9110 sections 13 and 14) as pure functions: parse `Range`,
 * `If-Range`, `If-None-Match`, `If-Match`, `If-Modified-Since`, `If-Unmodified-Since`, decide the status
 * (200, 206, 304, 412, 416) and the parts of the body, and lay out `multipart/byteranges`. No IO here, so every
 * rule is unit-tested; the routes only fetch the bytes of the parts this module chose.
 *
 * Choices (all allowed by RFC 9110):
 * - A `Range` header that is not valid `bytes=` syntax (or names another unit) is ignored (section 14.2): the
 *   answer is what a request without it gets. Never a 500.
 * - In a range set, unsatisfiable ranges are dropped; if none is left the answer is 416 with
 *   `Content-Range: bytes *\/SIZE`.
 * - Overlapping or touching ranges are coalesced (sorted, merged); otherwise parts keep the request's order.
 *   One range left: a plain 206 with `Content-Range`. Several: `multipart/byteranges`.
 * - More than `maxRanges` ranges is rejected with 416 (section 14.2 lets a server reject such sets: they are a
 *   sign of a broken client or a denial-of-service attempt).
 * - `If-Range` with an entity tag must match strongly; with a date, it must equal `Last-Modified` to the second.
 *   When it fails the `Range` is ignored and the full representation is the answer, as the RFC says.
 */
import { createHash } from 'node:crypto';

/** An inclusive byte range, as `Content-Range` writes it. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

export type RangeRequest =
  /** no Range header */
  | { readonly kind: 'none' }
  /** invalid syntax or another unit: ignored, the full representation is the answer */
  | { readonly kind: 'ignored'; readonly reason: string }
  /** valid, but no range overlaps the representation */
  | { readonly kind: 'unsatisfiable' }
  /** valid, but refused (too many ranges) */
  | { readonly kind: 'rejected'; readonly reason: string }
  /** satisfiable ranges, clipped and coalesced */
  | { readonly kind: 'ranges'; readonly ranges: readonly ByteRange[] };

export const DEFAULT_MAX_RANGES = 200;

const RANGE_SPEC = /^(?:(\d+)-(\d*)|-(\d+))$/;

/** Coalesce overlapping or adjacent ranges (sorted by start); ranges that do not touch keep the given order. */
export function coalesceRanges(ranges: readonly ByteRange[]): ByteRange[] {
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  let touching = false;
  for (let i = 1; i < sorted.length && !touching; i++) touching = sorted[i].start <= sorted[i - 1].end + 1;
  if (!touching) return [...ranges];
  const out: ByteRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.start <= last.end + 1) out[out.length - 1] = { start: last.start, end: Math.max(last.end, r.end) };
    else out.push(r);
  }
  return out;
}

/** Parse a `Range` header against a representation of `size` bytes. */
export function parseRange(
  header: string | undefined | null,
  size: number,
  maxRanges = DEFAULT_MAX_RANGES,
): RangeRequest {
  if (header === undefined || header === null) return { kind: 'none' };
  const m = /^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(.*)$/s.exec(header);
  if (!m) return { kind: 'ignored', reason: 'not of the form bytes=<ranges>' };
  if (m[1].toLowerCase() !== 'bytes') return { kind: 'ignored', reason: `unknown range unit "${m[1].slice(0, 20)}"` };
  const specs = m[2]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (specs.length === 0) return { kind: 'ignored', reason: 'no range in the header' };
  const satisfiable: ByteRange[] = [];
  for (const spec of specs) {
    const r = RANGE_SPEC.exec(spec);
    if (!r) return { kind: 'ignored', reason: `"${spec.slice(0, 40)}" is not a byte range` };
    if (r[3] !== undefined) {
      const suffix = Number(r[3]);
      if (suffix > 0 && size > 0) satisfiable.push({ start: Math.max(0, size - suffix), end: size - 1 });
      continue;
    }
    const first = Number(r[1]);
    const last = r[2] === '' ? Number.POSITIVE_INFINITY : Number(r[2]);
    if (last < first) return { kind: 'ignored', reason: `"${spec.slice(0, 40)}" ends before it starts` };
    if (first < size) satisfiable.push({ start: first, end: Math.min(last, size - 1) });
  }
  if (specs.length > maxRanges) {
    return { kind: 'rejected', reason: `${specs.length} ranges in one request; at most ${maxRanges} are served` };
  }
  if (satisfiable.length === 0) return { kind: 'unsatisfiable' };
  return { kind: 'ranges', ranges: coalesceRanges(satisfiable) };
}

export function contentRange(range: ByteRange, size: number): string {
  return `bytes ${range.start}-${range.end}/${size}`;
}

export function unsatisfiedContentRange(size: number): string {
  return `bytes */${size}`;
}

/** One entity tag of a list: `"abc"` or `W/"abc"`. */
export interface EntityTag {
  readonly weak: boolean;
  readonly opaque: string;
}

/** Parse an entity tag list (`If-None-Match`, `If-Match`); `*` matches any; undefined for invalid syntax. */
export function parseEntityTags(header: string): '*' | EntityTag[] | undefined {
  const s = header.trim();
  if (s === '*') return '*';
  const out: EntityTag[] = [];
  const re = /\s*(W\/)?"([\x21\x23-\x7e\x80-\xff]*)"\s*(,|$)/gy;
  let pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) {
      // tolerate empty list elements ("a, , b")
      const comma = /\s*,/y;
      comma.lastIndex = pos;
      if (comma.exec(s)) {
        pos = comma.lastIndex;
        continue;
      }
      return undefined;
    }
    out.push({ weak: m[1] !== undefined, opaque: m[2] });
    pos = re.lastIndex;
  }
  return out;
}

function parseTag(tag: string): EntityTag | undefined {
  const t = parseEntityTags(tag);
  return t && t !== '*' && t.length === 1 ? t[0] : undefined;
}

/** Weak comparison (RFC 9110 8.8.3.2): opaque parts equal, weakness ignored. */
export function weakMatch(a: EntityTag, b: EntityTag): boolean {
  return a.opaque === b.opaque;
}

/** Strong comparison: both strong and opaque parts equal. */
export function strongMatch(a: EntityTag, b: EntityTag): boolean {
  return !a.weak && !b.weak && a.opaque === b.opaque;
}

/** True when an `If-None-Match` list matches the current ETag (weak comparison): answer 304 to GET/HEAD. */
export function ifNoneMatchHits(header: string, etag: string): boolean {
  const tags = parseEntityTags(header);
  if (tags === undefined) return false;
  if (tags === '*') return true;
  const cur = parseTag(etag);
  return cur !== undefined && tags.some((t) => weakMatch(t, cur));
}

/** True when a request's `If-None-Match` (absent: never) matches `etag`: the answer is a 304. */
export function ifNoneMatch(header: string | undefined, etag: string): boolean {
  return header !== undefined && ifNoneMatchHits(header, etag);
}

/** A strong ETag of a response that depends only on `parts` (hashed; 27 base64url characters). */
export function strongEtag(...parts: string[]): string {
  return `"${createHash('sha256').update(parts.join('\n')).digest('base64url').slice(0, 27)}"`;
}

/** True when an `If-Match` list passes (strong comparison); false means 412. */
export function ifMatchPasses(header: string, etag: string): boolean {
  const tags = parseEntityTags(header);
  if (tags === undefined) return false;
  if (tags === '*') return true;
  const cur = parseTag(etag);
  return cur !== undefined && tags.some((t) => strongMatch(t, cur));
}

/** An HTTP date, or undefined when the text is not one. */
export function parseHttpDate(text: string): Date | undefined {
  const ms = Date.parse(text);
  return Number.isFinite(ms) ? new Date(ms) : undefined;
}

function seconds(d: Date): number {
  return Math.floor(d.getTime() / 1000);
}

/** True when the `Range` may be honoured under this `If-Range` (strong ETag match or exact Last-Modified). */
export function ifRangeHolds(header: string, etag: string, lastModified: Date): boolean {
  const s = header.trim();
  if (s.startsWith('"') || s.startsWith('W/')) {
    const tag = parseTag(s);
    const cur = parseTag(etag);
    return tag !== undefined && cur !== undefined && strongMatch(tag, cur);
  }
  const d = parseHttpDate(s);
  return d !== undefined && seconds(d) === seconds(lastModified);
}

/** What is being served: exact size, validators and media type. */
export interface RangedRepresentation {
  readonly size: number;
  readonly etag: string;
  readonly lastModified: Date;
  readonly contentType: string;
}

/** The request fields that matter (header values as received, or undefined). */
export interface RangedRequest {
  readonly method: string;
  readonly range?: string;
  readonly ifRange?: string;
  readonly ifNoneMatch?: string;
  readonly ifMatch?: string;
  readonly ifModifiedSince?: string;
  readonly ifUnmodifiedSince?: string;
}

/** The layout of a multipart/byteranges body: the text before each part and after the last. */
export interface MultipartLayout {
  readonly boundary: string;
  readonly heads: readonly string[];
  readonly tail: string;
}

export type RangedAnswer =
  | { readonly status: 304 }
  | { readonly status: 412 }
  | { readonly status: 416; readonly reason: string }
  | {
      readonly status: 200 | 206;
      /** the byte ranges of the representation the body carries, in body order */
      readonly parts: readonly ByteRange[];
      /** set for more than one part */
      readonly multipart?: MultipartLayout;
      /** exact Content-Length */
      readonly bodyBytes: number;
      /** why a Range header was not honoured (logged) */
      readonly rangeIgnored?: string;
    };

/** A boundary for multipart/byteranges (RFC 2046: up to 70 characters, not in the parts). */
export function makeBoundary(seed: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 0x01000193) >>> 0;
  return `cogmill-byteranges-${h.toString(16).padStart(8, '0')}`;
}

/** Lay out a multipart/byteranges body: `--B CRLF headers CRLF CRLF bytes CRLF` per part, then `--B--`. */
export function multipartLayout(
  parts: readonly ByteRange[],
  size: number,
  contentType: string,
  boundary: string,
): MultipartLayout & { readonly bodyBytes: number } {
  const heads = parts.map(
    (p, i) =>
      `${i === 0 ? '' : '\r\n'}--${boundary}\r\nContent-Type: ${contentType}\r\nContent-Range: ${contentRange(p, size)}\r\n\r\n`,
  );
  const tail = `\r\n--${boundary}--\r\n`;
  let bodyBytes = tail.length;
  for (let i = 0; i < parts.length; i++) bodyBytes += heads[i].length + (parts[i].end - parts[i].start + 1);
  return { boundary, heads, tail, bodyBytes };
}

/**
 * Decide the answer to a GET/HEAD of a representation: preconditions first (If-Match, If-Unmodified-Since,
 * If-None-Match, If-Modified-Since, in RFC 9110 13.2.2 order), then If-Range, then Range.
 */
export function rangedResponse(
  req: RangedRequest,
  rep: RangedRepresentation,
  options: { readonly maxRanges?: number } = {},
): RangedAnswer {
  const full = (rangeIgnored?: string): RangedAnswer => ({
    status: 200,
    parts: rep.size > 0 ? [{ start: 0, end: rep.size - 1 }] : [],
    bodyBytes: rep.size,
    rangeIgnored,
  });
  if (req.ifMatch !== undefined) {
    if (!ifMatchPasses(req.ifMatch, rep.etag)) return { status: 412 };
  } else if (req.ifUnmodifiedSince !== undefined) {
    const d = parseHttpDate(req.ifUnmodifiedSince);
    if (d !== undefined && seconds(rep.lastModified) > seconds(d)) return { status: 412 };
  }
  if (req.ifNoneMatch !== undefined) {
    if (ifNoneMatchHits(req.ifNoneMatch, rep.etag)) return { status: 304 };
  } else if (req.ifModifiedSince !== undefined) {
    const d = parseHttpDate(req.ifModifiedSince);
    if (d !== undefined && seconds(rep.lastModified) <= seconds(d)) return { status: 304 };
  }
  if (req.range === undefined) return full();
  if (req.ifRange !== undefined && !ifRangeHolds(req.ifRange, rep.etag, rep.lastModified)) {
    return full('If-Range does not match the current representation');
  }
  const parsed = parseRange(req.range, rep.size, options.maxRanges);
  switch (parsed.kind) {
    case 'none':
      return full();
    case 'ignored':
      return full(`Range ignored: ${parsed.reason}`);
    case 'unsatisfiable':
      return { status: 416, reason: `no requested range starts before the end of the ${rep.size} bytes` };
    case 'rejected':
      return { status: 416, reason: parsed.reason };
    case 'ranges': {
      const parts = parsed.ranges;
      if (parts.length === 1) return { status: 206, parts, bodyBytes: parts[0].end - parts[0].start + 1 };
      const boundary = makeBoundary(`${rep.etag}|${req.range}`);
      const layout = multipartLayout(parts, rep.size, rep.contentType, boundary);
      return { status: 206, parts, multipart: layout, bodyBytes: layout.bodyBytes };
    }
  }
}

/** The response headers of a answer (without Cache-Control and other route-specific ones). */
export function rangedHeaders(answer: RangedAnswer, rep: RangedRepresentation): Record<string, string> {
  const h: Record<string, string> = {
    'accept-ranges': 'bytes',
    etag: rep.etag,
    'last-modified': rep.lastModified.toUTCString(),
  };
  switch (answer.status) {
    case 304:
      return h;
    case 412:
      return { ...h, 'content-length': '0' };
    case 416:
      return { ...h, 'content-range': unsatisfiedContentRange(rep.size) };
    default:
      h['content-length'] = String(answer.bodyBytes);
      if (answer.multipart) {
        h['content-type'] = `multipart/byteranges; boundary=${answer.multipart.boundary}`;
      } else {
        h['content-type'] = rep.contentType;
        if (answer.status === 206) h['content-range'] = contentRange(answer.parts[0], rep.size);
      }
      return h;
  }
}
