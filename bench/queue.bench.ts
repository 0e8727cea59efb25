/**
 * The queue path's overhead at equal cores: the same plan (same mosaic, shards and part size) materialised to S3
 * (a local radosgw) by the single-process pipeline and by 1, 2 and 3 `cogmill worker` OS processes pulling its
 * shards from BullMQ on a local redis-server, every run with 2 render threads in all (the queue runs: 1 worker x 2
 * shards at once, 2 workers x 1, 3 workers x 1 with 1 thread each: 3 threads on 2 cores, the closest split).
 * Reported: wall time (coordinator start to exit; the workers are already running, as sidecars are), CPU of every
 * cogmill process, the overhead against the single-process run (target <= 10%), the bytes Redis received against
 * the object's size, and that every object is byte-identical. The single-process run is repeated last to show the
 * drift of a shared machine. Run it once: it takes several minutes at full size.
 *
 *   node bench/queue.bench.ts [--small] [--data DIR]
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { createS3Client } from '../src/render/s3.client.ts';
import { startCeph } from '../test/support/ceph.ts';
import { type Bench, runStandalone } from './harness.ts';
import { warmInputs } from './materialize.bench.ts';
import { type Child, measured, NODE, note, REPO_DIR, round, run, sleep, startChild, table } from './support.ts';

const BUCKET = 'bench-queue';
const CLI = path.join(REPO_DIR, 'bin', 'cogmill.js');
const SHARDS = 6;
const THREADS = 2;

/** user + system CPU seconds a running process used so far */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the line (11 and 12 after the command name)
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

async function sha256Of(client: S3Client, key: string): Promise<{ hash: string; bytes: number }> {
  const res = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  const h = createHash('sha256');
  let bytes = 0;
  for await (const chunk of res.Body as AsyncIterable<Uint8Array>) {
    h.update(chunk);
    bytes += chunk.byteLength;
  }
  return { hash: h.digest('hex'), bytes };
}

interface Row {
  run: string;
  processes: number;
  threads: string;
  wallS: number;
  cpuS: number;
  overheadPct?: number;
  cpuOverheadPct?: number;
  redisInputKiB?: number;
  objectMiB: number;
  identical?: string;
  load1: string;
}

export const queueBench: Bench = {
  name: 'queue',
  title: 'Many processes: 1, 2 and 3 cogmill worker processes on BullMQ vs the single-process pipeline, to S3',
  async run(ctx) {
    const source = ctx.data.s2West.cog;
    await warmInputs([source]);
    const ceph = await startCeph();
    const redisPort = 20_000 + Math.floor(Math.random() * 20_000);
    const redis = startChild('redis-server', [
      '--port',
      String(redisPort),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
    ]);
    const redisUrl = `redis://127.0.0.1:${redisPort}`;
    const workers: Child[] = [];
    try {
      await redis.waitFor(/Ready to accept connections/, 30_000);
      const client = createS3Client({
        endpoint: ceph.endpoint,
        region: ceph.region,
        accessKeyId: ceph.accessKeyId,
        secretAccessKey: ceph.secretAccessKey,
        forcePathStyle: true,
      });
      await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
      const env = {
        ...process.env,
        COGMILL_S3_ENDPOINT: ceph.endpoint,
        COGMILL_S3_REGION: ceph.region,
        COGMILL_S3_ACCESS_KEY_ID: ceph.accessKeyId,
        COGMILL_S3_SECRET_ACCESS_KEY: ceph.secretAccessKey,
      };
      const redisInput = async () => {
        const r = await run('redis-cli', ['-p', String(redisPort), 'INFO', 'stats']);
        return Number(/total_net_input_bytes:(\d+)/.exec(r.stdout)?.[1] ?? 0);
      };
      // overviews named: the single-process and the queue defaults may differ, the plan must not
      const common = [
        '--shards',
        String(SHARDS),
        '--part-size-mib',
        '5',
        '--overviews',
        'sources',
        '--progress',
        'none',
      ];
      const rows: Row[] = [];
      let reference: string | undefined;
      let single = 0;
      let singleCpu = 0;

      const measure = async (name: string, processes: number, threads: string, args: string[]) => {
        const key = `bench/${name.replace(/[^a-z0-9]+/gi, '-')}.tif`;
        const before = await Promise.all(workers.map((w) => cpuSeconds(w.pid)));
        const redisBefore = await redisInput();
        const m = await measured(
          NODE,
          [CLI, 'materialize', source, '--out', `s3://${BUCKET}/${key}`, ...common, ...args],
          {
            env,
            timeoutMs: 3_600_000,
          },
        );
        const after = await Promise.all(workers.map((w) => cpuSeconds(w.pid)));
        const redisBytes = (await redisInput()) - redisBefore;
        const cpu = m.cpuSeconds + after.reduce((a, c, i) => a + c - before[i], 0);
        const obj = await sha256Of(client, key);
        await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
        reference ??= obj.hash;
        const row: Row = {
          run: name,
          processes,
          threads,
          wallS: round(m.wallMs / 1000),
          cpuS: round(cpu),
          objectMiB: round(obj.bytes / 1024 / 1024, 1),
          identical: obj.hash === reference ? 'yes' : 'NO',
          load1: os.loadavg()[0].toFixed(1),
        };
        if (args.includes('--redis')) {
          row.overheadPct = round((m.wallMs / single - 1) * 100, 1);
          row.cpuOverheadPct = round((cpu / singleCpu - 1) * 100, 1);
          row.redisInputKiB = round(redisBytes / 1024, 1);
        } else if (single === 0) {
          single = m.wallMs;
          singleCpu = cpu;
        }
        rows.push(row);
        ctx.emit({ ...row });
        note(`  ${name}: ${row.wallS} s wall, ${row.cpuS} s CPU, load ${row.load1}`);
      };

      const startWorkers = async (n: number, args: string[]) => {
        for (let i = 0; i < n; i++)
          workers.push(startChild(NODE, [CLI, 'worker', '--redis', redisUrl, ...args], { env, cwd: REPO_DIR }));
        await Promise.all(workers.map((w) => w.waitFor(/waiting for shards/, 60_000)));
      };
      const stopWorkers = async () => {
        await Promise.all(workers.splice(0).map((w) => w.stop(10_000)));
      };

      const loadBefore = os.loadavg().map((x) => x.toFixed(1));
      await measure('single process', 1, `${THREADS}`, ['--workers', String(THREADS)]);
      await startWorkers(1, ['--concurrency', '2', '--threads', '1']);
      await measure('1 worker', 2, '2 (1 x 2 shards)', ['--redis', redisUrl]);
      await stopWorkers();
      await startWorkers(2, ['--threads', '1']);
      await measure('2 workers', 3, '2 (2 x 1)', ['--redis', redisUrl]);
      await stopWorkers();
      await startWorkers(3, ['--threads', '1']);
      await measure('3 workers', 4, '3 (3 x 1, on 2 cores)', ['--redis', redisUrl]);
      await stopWorkers();
      await sleep(1000);
      await measure('single process again', 1, `${THREADS}`, ['--workers', String(THREADS)]);
      client.destroy();

      const again = rows.at(-1)!.wallS * 1000;
      const drift = round((again / single - 1) * 100, 1);
      const body = [
        table(rows as unknown as Record<string, unknown>[]),
        '',
        `Source: one Sentinel-2-like scene (${path.basename(source)}), deflate, ${SHARDS} shards, 5 MiB parts, the same`,
        'plan in every run. `overheadPct`: wall time against the first single-process run; `cpuOverheadPct`: CPU time',
        'likewise; `cpuS`: every cogmill process',
        '(coordinator + workers); `redisInputKiB`: every byte Redis received during the run (tile bytes never go through it).',
        `Load average (1, 5, 15 min) before: ${loadBefore.join(' ')}; after: ${os
          .loadavg()
          .map((x) => x.toFixed(1))
          .join(' ')}.`,
        `The single-process run repeated last differs from the first by ${drift}%: on this shared machine that is`,
        'the noise floor of every percentage above. radosgw and redis-server run on the same 2 cores.',
      ].join('\n');
      return {
        sections: [{ title: `${SHARDS} shards of one S2 scene, 2 render threads in all`, body }],
      };
    } finally {
      for (const w of workers) await w.stop(5_000).catch(() => {});
      await redis.stop(5_000).catch(() => {});
      await ceph.stop();
    }
  },
};

if (import.meta.main) await runStandalone(queueBench);
