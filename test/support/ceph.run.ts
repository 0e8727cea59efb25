/**
 * Start a one-node Ceph cluster with radosgw and keep it running until SIGINT or SIGTERM.
 * Prints one JSON line: { endpoint, region, accessKeyId, secretAccessKey, dir, bootMs }.
 *
 *   node test/support/ceph.run.ts
 */
import { startCeph } from './ceph.ts';

const t0 = performance.now();
const ceph = await startCeph();
const bootMs = Math.round(performance.now() - t0);
const { endpoint, region, accessKeyId, secretAccessKey, dir } = ceph;
process.stdout.write(`${JSON.stringify({ endpoint, region, accessKeyId, secretAccessKey, dir, bootMs })}\n`);

let stopping = false;
const stop = async (signal: NodeJS.Signals) => {
  if (stopping) return;
  stopping = true;
  await ceph.stop();
  process.stderr.write(`ceph stopped (${signal})\n`);
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
// keep the event loop alive until a signal arrives
setInterval(() => {}, 1 << 30);
