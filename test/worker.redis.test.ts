/**
 * `cogmill worker` started before its Redis (a sidecar next to a Redis that is still starting): it says it is
 * waiting, names the Redis (never its password), and takes jobs once Redis answers.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, test } from 'node:test';
import { freePort, spawnWorker, startRedis, type TestRedis } from './support/queue.ts';

const children = new Set<ChildProcess>();
let redis: TestRedis | undefined;

after(() => {
  for (const c of children) c.kill('SIGKILL');
  redis?.stop();
});

async function until(check: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('a worker whose Redis is not up yet says so, keeps trying, and starts once Redis answers', async () => {
  const port = await freePort();
  const worker = spawnWorker(`redis://:hush-secret@127.0.0.1:${port}`, {}, ['--threads', '1'], children);
  await until(() => worker.log().includes('still trying'), 'the worker to say it waits');
  assert.match(worker.log(), new RegExp(`Redis at 127\\.0\\.0\\.1:${port} did not answer`));
  assert.doesNotMatch(worker.log(), /hush-secret/);
  assert.doesNotMatch(worker.log(), /waiting for shards/);
  assert.equal(worker.child.exitCode, null, 'the worker is still running');
  redis = await startRedis(port);
  await redis.cli('CONFIG', 'SET', 'requirepass', 'hush-secret');
  await worker.ready;
  assert.match(worker.log(), /waiting for shards/);
  worker.stop();
});
