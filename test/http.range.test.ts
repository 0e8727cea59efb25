import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  coalesceRanges,
  contentRange,
  ifMatchPasses,
  ifNoneMatchHits,
  ifRangeHolds,
  makeBoundary,
  multipartLayout,
  parseEntityTags,
  parseRange,
  type RangedRepresentation,
  rangedHeaders,
  rangedResponse,
} from '../src/server/http.range.ts';

const SIZE = 1000;
const REP: RangedRepresentation = {
  size: SIZE,
  etag: '"abc"',
  lastModified: new Date('2026-03-04T05:06:07.890Z'),
  contentType: 'image/tiff',
};

describe('parseRange', () => {
  it('reads single, open-ended and suffix ranges, clipped to the size', () => {
    assert.deepEqual(parseRange('bytes=0-99', SIZE), { kind: 'ranges', ranges: [{ start: 0, end: 99 }] });
    assert.deepEqual(parseRange('bytes=900-', SIZE), { kind: 'ranges', ranges: [{ start: 900, end: 999 }] });
    assert.deepEqual(parseRange('bytes=990-5000', SIZE), { kind: 'ranges', ranges: [{ start: 990, end: 999 }] });
    assert.deepEqual(parseRange('bytes=-10', SIZE), { kind: 'ranges', ranges: [{ start: 990, end: 999 }] });
    assert.deepEqual(parseRange('bytes=-5000', SIZE), { kind: 'ranges', ranges: [{ start: 0, end: 999 }] });
    assert.deepEqual(parseRange('BYTES = 5-5', SIZE), { kind: 'ranges', ranges: [{ start: 5, end: 5 }] });
  });

  it('keeps the order of disjoint ranges and coalesces touching or overlapping ones', () => {
    assert.deepEqual(parseRange('bytes=500-599, 0-9', SIZE), {
      kind: 'ranges',
      ranges: [
        { start: 500, end: 599 },
        { start: 0, end: 9 },
      ],
    });
    assert.deepEqual(parseRange('bytes=50-149,0-99', SIZE), { kind: 'ranges', ranges: [{ start: 0, end: 149 }] });
    assert.deepEqual(parseRange('bytes=0-9,10-19,30-39', SIZE), {
      kind: 'ranges',
      ranges: [
        { start: 0, end: 19 },
        { start: 30, end: 39 },
      ],
    });
    assert.deepEqual(
      coalesceRanges([
        { start: 5, end: 9 },
        { start: 0, end: 3 },
      ]),
      [
        { start: 5, end: 9 },
        { start: 0, end: 3 },
      ],
    );
  });

  it('drops unsatisfiable members and answers unsatisfiable when none is left', () => {
    assert.deepEqual(parseRange('bytes=0-9,5000-6000', SIZE), { kind: 'ranges', ranges: [{ start: 0, end: 9 }] });
    assert.deepEqual(parseRange('bytes=1000-', SIZE), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange('bytes=99999999999999999999999-', SIZE), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange('bytes=-0', SIZE), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange('bytes=0-', 0), { kind: 'unsatisfiable' });
  });

  it('ignores malformed headers and other units (RFC 9110: a server ignores an invalid Range)', () => {
    for (const h of [
      'bytes=abc',
      'bytes=5-2',
      'bytes=',
      'bytes=1-2-3',
      'bytes 0-5',
      'items=0-5',
      'bytes=0x10-20',
      '',
      'bytes=--5',
    ]) {
      assert.equal(parseRange(h, SIZE).kind, 'ignored', h);
    }
    assert.deepEqual(parseRange(undefined, SIZE), { kind: 'none' });
  });

  it('rejects more ranges than the limit', () => {
    const many = `bytes=${Array.from({ length: 11 }, (_, i) => `${i * 10}-${i * 10 + 1}`).join(',')}`;
    assert.equal(parseRange(many, SIZE, 10).kind, 'rejected');
    assert.equal(parseRange(many, SIZE, 11).kind, 'ranges');
  });
});

describe('entity tags and dates', () => {
  it('parses lists with weak tags, stars and empty elements', () => {
    assert.deepEqual(parseEntityTags('"a", W/"b" ,, "c"'), [
      { weak: false, opaque: 'a' },
      { weak: true, opaque: 'b' },
      { weak: false, opaque: 'c' },
    ]);
    assert.equal(parseEntityTags(' * '), '*');
    assert.equal(parseEntityTags('abc'), undefined);
  });

  it('If-None-Match compares weakly, If-Match and If-Range strongly', () => {
    assert.ok(ifNoneMatchHits('W/"abc"', '"abc"'));
    assert.ok(ifNoneMatchHits('"x", "abc"', '"abc"'));
    assert.ok(ifNoneMatchHits('*', '"abc"'));
    assert.ok(!ifNoneMatchHits('"abcd"', '"abc"'));
    assert.ok(!ifNoneMatchHits('garbage', '"abc"'));
    assert.ok(ifMatchPasses('"abc"', '"abc"'));
    assert.ok(!ifMatchPasses('W/"abc"', '"abc"'));
    assert.ok(ifRangeHolds('"abc"', '"abc"', REP.lastModified));
    assert.ok(!ifRangeHolds('W/"abc"', '"abc"', REP.lastModified));
    assert.ok(!ifRangeHolds('"abd"', '"abc"', REP.lastModified));
    assert.ok(ifRangeHolds(REP.lastModified.toUTCString(), '"abc"', REP.lastModified), 'same second');
    assert.ok(!ifRangeHolds(new Date(REP.lastModified.getTime() + 1000).toUTCString(), '"abc"', REP.lastModified));
    assert.ok(!ifRangeHolds('yesterday', '"abc"', REP.lastModified));
  });
});

describe('rangedResponse', () => {
  const plan = (h: Partial<Parameters<typeof rangedResponse>[0]>) => rangedResponse({ method: 'GET', ...h }, REP);

  it('answers 200 with the whole representation without a Range', () => {
    const p = plan({});
    assert.equal(p.status, 200);
    assert.ok(p.status === 200);
    assert.deepEqual(p.parts, [{ start: 0, end: 999 }]);
    assert.equal(p.bodyBytes, SIZE);
    const h = rangedHeaders(p, REP);
    assert.equal(h['content-length'], '1000');
    assert.equal(h['accept-ranges'], 'bytes');
    assert.equal(h.etag, '"abc"');
    assert.equal(h['last-modified'], 'Wed, 04 Mar 2026 05:06:07 GMT');
    assert.equal(h['content-range'], undefined);
  });

  it('answers 206 with Content-Range for one range', () => {
    const p = plan({ range: 'bytes=-100' });
    assert.equal(p.status, 206);
    const h = rangedHeaders(p, REP);
    assert.equal(h['content-range'], 'bytes 900-999/1000');
    assert.equal(h['content-length'], '100');
    assert.equal(h['content-type'], 'image/tiff');
  });

  it('lays out multipart/byteranges with an exact length', () => {
    const p = plan({ range: 'bytes=0-9,500-519' });
    assert.ok(p.status === 206 && p.multipart);
    const h = rangedHeaders(p, REP);
    assert.equal(h['content-type'], `multipart/byteranges; boundary=${p.multipart.boundary}`);
    assert.equal(h['content-range'], undefined);
    const body = `${p.multipart.heads[0]}${'x'.repeat(10)}${p.multipart.heads[1]}${'y'.repeat(20)}${p.multipart.tail}`;
    assert.equal(Buffer.byteLength(body), p.bodyBytes);
    assert.equal(String(p.bodyBytes), h['content-length']);
    assert.match(
      p.multipart.heads[1],
      /^\r\n--cogmill-byteranges-[0-9a-f]{8}\r\nContent-Type: image\/tiff\r\nContent-Range: bytes 500-519\/1000\r\n\r\n$/,
    );
    assert.equal(p.multipart.tail, `\r\n--${p.multipart.boundary}--\r\n`);
    assert.equal(makeBoundary('a'), makeBoundary('a'));
    assert.notEqual(makeBoundary('a'), makeBoundary('b'));
    const lone = multipartLayout([{ start: 0, end: 0 }], 1, 'a/b', 'B');
    assert.equal(
      lone.bodyBytes,
      '--B\r\nContent-Type: a/b\r\nContent-Range: bytes 0-0/1\r\n\r\n'.length + 1 + '\r\n--B--\r\n'.length,
    );
  });

  it('answers 416 with bytes */SIZE for unsatisfiable or rejected ranges', () => {
    for (const range of ['bytes=1000-', `bytes=${Array.from({ length: 201 }, (_, i) => `${i}-${i}`).join(',')}`]) {
      const p = plan({ range });
      assert.equal(p.status, 416, range.slice(0, 20));
      assert.equal(rangedHeaders(p, REP)['content-range'], 'bytes */1000');
    }
  });

  it('ignores a malformed Range (200, with the reason kept for the log)', () => {
    const p = plan({ range: 'bytes=abc' });
    assert.ok(p.status === 200);
    assert.match(p.rangeIgnored ?? '', /not a byte range/);
  });

  it('evaluates preconditions in RFC order: If-Match, If-None-Match, If-Modified-Since, If-Range', () => {
    assert.equal(plan({ ifMatch: '"zzz"', ifNoneMatch: '"abc"' }).status, 412);
    assert.equal(plan({ ifMatch: '"abc"', range: 'bytes=0-0' }).status, 206);
    assert.equal(plan({ ifUnmodifiedSince: 'Tue, 03 Mar 2026 00:00:00 GMT' }).status, 412);
    assert.equal(plan({ ifNoneMatch: '"abc"', range: 'bytes=0-0' }).status, 304);
    assert.equal(plan({ ifNoneMatch: '"nope"', range: 'bytes=0-0' }).status, 206);
    assert.equal(plan({ ifModifiedSince: REP.lastModified.toUTCString() }).status, 304);
    assert.equal(plan({ ifModifiedSince: 'Tue, 03 Mar 2026 00:00:00 GMT' }).status, 200);
    // If-None-Match wins over If-Modified-Since
    assert.equal(plan({ ifNoneMatch: '"nope"', ifModifiedSince: REP.lastModified.toUTCString() }).status, 200);
    assert.equal(plan({ ifRange: '"abc"', range: 'bytes=0-9' }).status, 206);
    const stale = plan({ ifRange: '"old"', range: 'bytes=0-9' });
    assert.equal(stale.status, 200);
    assert.ok(stale.status === 200 && stale.bodyBytes === SIZE);
    assert.equal(rangedHeaders({ status: 304 }, REP)['content-length'], undefined);
  });

  it('formats Content-Range', () => {
    assert.equal(contentRange({ start: 0, end: 0 }, 1), 'bytes 0-0/1');
  });
});
