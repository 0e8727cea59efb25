/** The multipart plan: for any tile sizes and run counts, the parts are legal S3 parts that rebuild the file. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { prng } from '../src/demo.data.ts';
import { Gluer, type Part, planParts, RunWriter, S3_MAX_PARTS } from '../src/materialize/part.plan.ts';

const KiB = 1024;

/** Stream tiles of the given sizes through the plan, finishing runs in a shuffled order; check the parts. */
function simulate(sizes: number[], runCount: number, minPartBytes: number, minPartSizeBytes: number, seed: number) {
  const upper = sizes.map((s) => s + 64);
  const plan = planParts(upper, runCount, { minPartBytes, minPartSizeBytes });
  const parts = new Map<number, Uint8Array>();
  let maxHeld = 0;
  const emit = (p: Part) => {
    assert.ok(!parts.has(p.partNumber), `part ${p.partNumber} emitted twice`);
    const buf = new Uint8Array(p.bytes);
    let o = 0;
    for (const c of p.chunks) {
      buf.set(c, o);
      o += c.byteLength;
    }
    assert.equal(o, p.bytes);
    parts.set(p.partNumber, buf);
  };
  const gluer = new Gluer(plan, emit);
  const writers = plan.runs.map((r) => new RunWriter(plan, r, emit));
  // the file's data: tile i is filled with bytes derived from i
  const tile = (i: number) => {
    const t = new Uint8Array(sizes[i]);
    for (let k = 0; k < t.length; k += 97) t[k] = (i * 31 + k) & 255;
    return t;
  };
  const rnd = prng(seed);
  const order = plan.runs.map((r) => r.index).sort(() => rnd() - 0.5);
  for (const r of order) {
    const run = plan.runs[r];
    for (let i = run.firstTile; i < run.endTile; i++) writers[r].push(tile(i));
    const res = writers[r].finish();
    maxHeld = Math.max(maxHeld, res.headBytes + res.tailBytes);
    gluer.runFinished(res);
  }
  const header = new Uint8Array(1000).fill(7);
  const { headerPart } = gluer.finish(header);
  emit(headerPart);
  // legal S3 parts
  const numbers = [...parts.keys()].sort((a, b) => a - b);
  assert.equal(numbers[0], 1);
  assert.ok(numbers[numbers.length - 1] <= S3_MAX_PARTS);
  numbers.forEach((n, k) => {
    const size = parts.get(n)!.byteLength;
    if (k < numbers.length - 1) assert.ok(size >= minPartBytes, `part ${n} is ${size} bytes, below the minimum`);
  });
  // concatenated in number order they are the header followed by the tiles in file order
  const expected = [header, ...sizes.map((_, i) => tile(i))];
  const want = new Uint8Array(expected.reduce((a, b) => a + b.byteLength, 0));
  let o = 0;
  for (const e of expected) {
    want.set(e, o);
    o += e.byteLength;
  }
  const got = new Uint8Array(want.byteLength);
  o = 0;
  for (const n of numbers) {
    const p = parts.get(n)!;
    assert.ok(o + p.byteLength <= got.byteLength, 'parts hold more bytes than the file');
    got.set(p, o);
    o += p.byteLength;
  }
  assert.equal(o, want.byteLength);
  assert.ok(Buffer.from(got).equals(Buffer.from(want)), 'parts do not rebuild the file');
  return { plan, parts: numbers.length, part1: parts.get(1)!.byteLength, maxHeld };
}

describe('multipart plan', () => {
  test('random tile sizes, 1 to 8 runs, any finishing order: legal parts that rebuild the file', () => {
    const rnd = prng(42);
    for (let trial = 0; trial < 60; trial++) {
      const n = 1 + Math.floor(rnd() * 300);
      const compressible = rnd() < 0.5;
      const sizes = Array.from({ length: n }, () => Math.floor(rnd() * (compressible ? 2 * KiB : 64 * KiB)));
      simulate(sizes, 1 + Math.floor(rnd() * 8), 64 * KiB, 96 * KiB, trial);
    }
  });

  test('highly compressible data in many runs: part 1 holds only the header and the first minimum part', () => {
    // 400 tiles of 1 KiB in 8 runs: no run is big enough for middle parts of its own
    const sizes = Array.from({ length: 400 }, () => 1 * KiB);
    const r = simulate(sizes, 8, 32 * KiB, 64 * KiB, 7);
    assert.ok(r.part1 < 1000 + 32 * KiB + 2 * 50 * KiB, `part 1 is ${r.part1} bytes`);
    assert.ok(r.parts > 5, `only ${r.parts} parts`);
  });

  test('part size grows so that the largest possible output fits 10,000 parts', () => {
    // 200 GB of upper-bound bytes (a 100k x 100k x 10-band uint16 mosaic)
    const tiles = 40_000;
    const upper = new Float64Array(tiles).fill(5_000_000);
    const plan = planParts(upper, 4);
    const slots = plan.runs.reduce((a, r) => a + r.partSlots, 1);
    assert.ok(slots <= S3_MAX_PARTS, `${slots} slots`);
    assert.ok(plan.partSizeBytes >= 5 * 1024 * 1024);
    assert.ok(plan.partSizeBytes * (S3_MAX_PARTS - 20) >= 200e9);
    assert.equal(plan.runs[0].firstTile, 0);
    assert.equal(plan.runs[3].endTile, tiles);
  });
});
