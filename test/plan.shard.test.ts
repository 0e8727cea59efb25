/**
 * The pure parts of plan -> shard -> complete: how a shard cuts its bytes into parts, how the complete step glues
 * what the shards held back, and statistics that do not depend on how tiles were grouped.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { planCompletion } from '../src/materialize/complete.ts';
import type { MaterializePlan } from '../src/materialize/plan.ts';
import { parsePlan, planShards, shardsOfWorker } from '../src/materialize/plan.ts';
import { type ShardReport, ShardWriter } from '../src/materialize/shard.ts';
import { StatsExact } from '../src/materialize/statistics.exact.ts';

const MIN = 100;
const PART = 300;

function planOf(shardCount: number, tileCount: number): MaterializePlan {
  // tiles of at most 130 bytes: the shards' part ranges are sized like planShards sizes them
  const shards = [];
  let base = 2;
  for (let i = 0; i < shardCount; i++) {
    const firstTile = Math.floor((i * tileCount) / shardCount);
    const endTile = Math.floor(((i + 1) * tileCount) / shardCount);
    const partSlots = Math.ceil(((endTile - firstTile) * 130) / PART) + 2;
    shards.push({ index: i, firstTile, endTile, partBase: base, partSlots });
    base += partSlots;
  }
  return {
    kind: 'cogmill.materialize.plan',
    version: 1,
    id: 'p',
    fingerprint: 'f',
    createdAt: '',
    mosaic: { id: 'm', sources: [] },
    destination: 's3://b/k.tif',
    uploadId: 'u',
    options: { compression: 'deflate' } as MaterializePlan['options'],
    width: 1,
    height: 1,
    bands: 1,
    dtype: 'uint8',
    tileCount,
    partSizeBytes: PART,
    minPartBytes: MIN,
    maxParts: 10_000,
    shards,
  };
}

/** Run a ShardWriter over `sizes` (one chunk each) and report like a shard would. */
function shardOf(plan: MaterializePlan, index: number, sizes: number[]): ShardReport {
  const parts: { partNumber: number; bytes: number; etag: string; offset: number }[] = [];
  const w = new ShardWriter(plan, plan.shards[index], (p, offset) => {
    parts.push({ partNumber: p.partNumber, bytes: p.bytes, etag: `e${p.partNumber}`, offset });
  });
  for (const n of sizes) w.push(new Uint8Array(n));
  const { bytes, held } = w.finish();
  return {
    kind: 'cogmill.materialize.shard',
    planId: 'p',
    fingerprint: 'f',
    uploadId: 'u',
    shard: index,
    bytes,
    tileBytes: sizes,
    parts,
    held,
    stats: null,
    tilesRendered: sizes.length,
  };
}

/** a deterministic pseudo-random generator */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('shard parts', () => {
  test('a shard stages parts of exactly the part size, the last one between m and P + m; shard 0 holds its head', () => {
    const plan = planOf(3, 30);
    const r0 = shardOf(plan, 0, Array(10).fill(97));
    assert.deepEqual(r0.held, [{ offset: 0, bytes: MIN }]);
    assert.equal(r0.bytes, 970);
    // 870 bytes after the head: 300 + 300 + 270 (a part goes once P + m = 400 bytes wait; the rest is >= m)
    assert.deepEqual(
      r0.parts.map((p) => [p.partNumber, p.offset, p.bytes]),
      [
        [plan.shards[0].partBase + 1, 100, 300],
        [plan.shards[0].partBase + 2, 400, 300],
        [plan.shards[0].partBase + 3, 700, 270],
      ],
    );
    const r1 = shardOf(plan, 1, [40, 30]);
    assert.deepEqual(r1.parts, [], 'a shard of fewer than m bytes stages nothing');
    assert.deepEqual(r1.held, [{ offset: 0, bytes: 70 }]);
  });

  test('complete: every part but the last >= m, numbers increase in file order, every byte exactly once', () => {
    const random = rng(42);
    for (let trial = 0; trial < 300; trial++) {
      const shardCount = 1 + Math.floor(random() * 6);
      const plan = planOf(shardCount, shardCount * 8);
      const reports = plan.shards.map((s) => {
        // shards from empty to several parts, with tiny ones among them
        const scale = random() < 0.4 ? 5 : 120;
        return shardOf(
          plan,
          s.index,
          Array.from({ length: s.endTile - s.firstTile }, () => Math.floor(random() * scale)),
        );
      });
      const total = reports.reduce((a, r) => a + r.bytes, 0);
      const c = planCompletion(plan, reports);
      assert.equal(c.dataBytes, total);
      let at = c.part1End;
      let last = 1;
      for (const [i, p] of c.parts.entries()) {
        assert.equal(p.start, at, `trial ${trial}: part ${p.partNumber} starts where the previous ended`);
        assert.ok(p.partNumber > last, `trial ${trial}: part numbers increase`);
        if (i < c.parts.length - 1) assert.ok(p.end - p.start >= MIN, `trial ${trial}: part ${p.partNumber} >= m`);
        if (p.source === 'staged') assert.ok(p.end - p.start <= PART + MIN);
        at = p.end;
        last = p.partNumber;
      }
      assert.equal(at, total, `trial ${trial}: the parts cover the data`);
      if (c.parts.length > 0) assert.ok(c.part1End >= MIN, `trial ${trial}: part 1 holds at least m data bytes`);
      // a part number is used once, and within its shard's range
      for (const p of c.parts) {
        const owner = plan.shards.find((s) => p.partNumber >= s.partBase && p.partNumber < s.partBase + s.partSlots);
        assert.ok(owner, `part ${p.partNumber} belongs to a shard`);
      }
    }
  });
});

describe('plans', () => {
  test('shards cover the tiles in order with disjoint part ranges; a plan survives JSON and a broken one is refused', () => {
    const plan = planOf(4, 10);
    assert.deepEqual(
      plan.shards.map((s) => [s.firstTile, s.endTile]),
      [
        [0, 2],
        [2, 5],
        [5, 7],
        [7, 10],
      ],
    );
    assert.deepEqual(parsePlan(JSON.stringify(plan)), plan);
    const broken = { ...plan, shards: plan.shards.slice(1) };
    assert.throws(() => parsePlan(JSON.stringify(broken)), /shard 0 does not follow/);
    assert.throws(() => parsePlan(JSON.stringify({ ...plan, version: 2 })), /version 2/);
    assert.throws(() => parsePlan('{'), /not JSON/);
    // planShards: 10,000 parts hold even incompressible data, part numbers follow each other
    const big = planShards(1000, 64 * 1024 * 1024, 3, {
      minPartBytes: 5 << 20,
      maxPartBytes: 5 * 2 ** 30,
      maxParts: 10_000,
    });
    assert.ok(big.partSizeBytes * (10_000 - 7) >= 1000 * 64 * 1024 * 1024);
    assert.equal(big.shards[1].partBase, big.shards[0].partBase + big.shards[0].partSlots);
    assert.ok(big.shards[2].partBase + big.shards[2].partSlots - 1 <= 10_000);
  });

  test('--shard I/N picks every Nth shard from I', () => {
    assert.deepEqual(shardsOfWorker('1/3', 8), [1, 4, 7]);
    assert.deepEqual(shardsOfWorker('0/1', 3), [0, 1, 2]);
    assert.throws(() => shardsOfWorker('3/3', 8), /from 0 to N-1/);
    assert.throws(() => shardsOfWorker('x', 8), /I\/N/);
  });
});

describe('exact statistics', () => {
  test('the same sums whatever the grouping and order of the tiles', () => {
    const random = rng(7);
    const tiles = Array.from({ length: 200 }, () => [
      { count: 10, sum: random() * 1e6, sumSq: random() * 1e12, min: random(), max: 1 + random() },
    ]);
    const whole = new StatsExact(1);
    for (const t of tiles) whole.addTile(t);
    const grouped = new StatsExact(1);
    for (const cut of [
      [0, 13],
      [13, 150],
      [150, 200],
    ]) {
      const part = new StatsExact(1);
      for (const t of tiles.slice(cut[0], cut[1]).reverse()) part.addTile(t);
      grouped.addExact(JSON.parse(JSON.stringify(part)));
    }
    assert.deepEqual(grouped.toAccumulators(), whole.toAccumulators());
    // and the rounding is the correct one: plain left-to-right addition differs for some order, the exact does not
    let plain = 0;
    for (const t of tiles) plain += t[0].sum;
    assert.ok(Math.abs(whole.toAccumulators()[0].sum - plain) <= Math.abs(plain) * 1e-12);
  });
});

describe('help of the scale commands', () => {
  test('materialize and worker name both s3:// and az:// destinations, and no "s3:// only" is left', async () => {
    const { MATERIALIZE_USAGE } = await import('../src/cli.materialize.ts');
    const { WORKER_USAGE } = await import('../src/cli.worker.ts');
    for (const [name, text] of [
      ['materialize', MATERIALIZE_USAGE],
      ['worker', WORKER_USAGE],
    ] as const) {
      assert.doesNotMatch(text, /s3:\/\/ (destinations )?only|\(S3 destinations\)/, name);
      assert.match(text, /az:\/\//, name);
    }
    assert.match(MATERIALIZE_USAGE, /Many machines \(s3:\/\/ and az:\/\/ destinations\)/);
    assert.match(WORKER_USAGE, /Destinations: s3:\/\/ \(multipart parts\) and az:\/\//);
  });
});
