/**
 * A real one-node Ceph cluster with radosgw, for tests that need an S3 server.
 *
 * One monitor and one OSD on `memstore` (objects live in the OSD's memory), pool size 1, no cephx between the
 * daemons, radosgw (beast) on a free loopback port, everything else (monitor store, sockets, logs) in a fresh
 * temporary folder. Each call boots its own cluster on its own ports, so test files can run side by side.
 *
 * Needs the Debian packages `ceph-mon ceph-osd radosgw ceph-common` (and `setpriv` from util-linux).
 * Every daemon runs under `setpriv --pdeathsig KILL`, in its own process group: it dies with the process that
 * started it even when that process is killed without a chance to clean up.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, openSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListBucketsCommand } from '@aws-sdk/client-s3';
import { createS3Client } from '../../src/render/s3.client.ts';

export interface CephS3 {
  /** `http://127.0.0.1:PORT`, path-style S3 */
  readonly endpoint: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** the cluster's temporary folder (configuration, monitor store, logs in `log/`) */
  readonly dir: string;
  /** kill every daemon and remove the temporary folder; safe to call twice */
  stop(): Promise<void>;
}

export interface CephOptions {
  /** parent folder for the cluster's temporary folder (default: the OS temp folder) */
  readonly dir?: string;
  /** S3's smallest part (every part but the last), lowered so small test mosaics have many parts (default 5 MiB) */
  readonly multipartMinPartBytes?: number;
  /** how long the boot may take before it fails (default 180 s: a loaded machine boots slowly) */
  readonly timeoutMs?: number;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** capacity memstore reports; data only takes memory when written */
const STORE_BYTES = 4 * GiB;
const BOOT_TIMEOUT_MS = 180_000;
/** a command-line tool call (ceph, radosgw-admin, mkfs) never takes longer than this */
const TOOL_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 5_000;
const LOG_TAIL_LINES = 25;
const BOOT_ATTEMPTS = 3;
const REGION = 'us-east-1';

/**
 * Thrown inside one boot attempt; `portTaken` means another process grabbed a port we picked: try again. (Ceph's
 * monitor and radosgw take their ports from the configuration, so the ports are picked free, then released, and a
 * boot that lost one of them is retried on new ones.)
 */
class CephBootError extends Error {
  readonly portTaken: boolean;
  constructor(message: string, portTaken: boolean) {
    super(message);
    this.portTaken = portTaken;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Ask the kernel for `count` distinct free loopback ports (all held open together, then released). */
async function freePorts(count: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no port from the kernel');
      ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

function cephConf(dir: string, fsid: string, monPort: number, rgwPort: number, minPartBytes?: number): string {
  // `$name` is expanded by Ceph to `mon.a`, `osd.0`, `client.rgw`, ...
  return `[global]
fsid = ${fsid}
mon host = [v2:127.0.0.1:${monPort}]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
# a port taken by another process fails the boot at once (and it is retried on new ports)
ms bind retry count = 1
auth cluster required = none
auth service required = none
auth client required = none
# client daemons (radosgw) default to "secure" only, which needs cephx
ms mon client mode = crc secure
keyring = /dev/null
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
log file = ${dir}/log/$name.log
crash dir = ${dir}/crash
mon cluster log file = ${dir}/log/cluster.log
debug ms = 0/0
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail warn = 0
mon data avail crit = 0
# a one-monitor cluster commits map changes at once instead of batching them for a second
paxos propose interval = 0.01

[mon.a]
mon data = ${dir}/mon

[osd.0]
osd data = ${dir}/osd
osd objectstore = memstore
memstore device bytes = ${STORE_BYTES}
# the OSD is placed in the CRUSH map by hand; updating it at start sometimes keeps the OSD from ever coming up
osd crush update on start = false

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort} tcp_nodelay=1
rgw data = ${dir}/rgw
${minPartBytes !== undefined ? `rgw multipart min part size = ${minPartBytes}\n` : ''}`;
}

/** Run a Ceph command-line tool to completion; its output, or an error naming the command and its stderr. */
function runTool(cmd: string, args: readonly string[], timeoutMs = TOOL_TIMEOUT_MS): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * MiB }, (err, stdout, stderr) => {
      if (err) {
        const detail = `${stderr}`.trim().split('\n').slice(-10).join('\n');
        const why = err.killed ? `timed out after ${timeoutMs} ms` : `exit code ${err.code}`;
        reject(new Error(`\`${cmd} ${args.join(' ')}\` failed (${why}): ${detail}`));
      } else {
        resolve(`${stdout}`);
      }
    });
  });
}

interface Daemon {
  readonly name: string;
  readonly child: ChildProcess;
  /** resolves when the process is gone */
  readonly exited: Promise<void>;
  exitCode: number | null;
  exitSignal: NodeJS.Signals | null;
}

function spawnDaemon(name: string, cmd: string, args: readonly string[], logDir: string): Daemon {
  const out = openSync(join(logDir, `${name}.out`), 'a');
  let child: ChildProcess;
  try {
    child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', cmd, ...args], {
      detached: true,
      stdio: ['ignore', out, out],
    });
  } finally {
    closeSync(out);
  }
  const daemon: Daemon = {
    name,
    child,
    exitCode: null,
    exitSignal: null,
    exited: new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        daemon.exitCode = code;
        daemon.exitSignal = signal;
        resolve();
      });
      child.once('error', () => {
        // could not even start (setpriv or the daemon is missing): the log tail says which
        daemon.exitCode = -1;
        resolve();
      });
    }),
  };
  return daemon;
}

function killGroup(daemon: Daemon): void {
  const pid = daemon.child.pid;
  if (pid === undefined || daemon.exitCode !== null || daemon.exitSignal !== null) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // the group is already gone
  }
}

async function logTail(dir: string): Promise<string> {
  const logDir = join(dir, 'log');
  let names: string[];
  try {
    names = (await readdir(logDir)).sort();
  } catch {
    return '(no logs)';
  }
  const parts: string[] = [];
  for (const name of names) {
    const text = await readFile(join(logDir, name), 'utf8').catch(() => '');
    const lines = text.trimEnd().split('\n').slice(-LOG_TAIL_LINES);
    if (lines.join('').trim() !== '') parts.push(`--- ${name} ---\n${lines.join('\n')}`);
  }
  return parts.join('\n') || '(logs are empty)';
}

/** One boot attempt in `dir`; the daemons it started are pushed onto `daemons` as they start. */
async function bootCluster(
  dir: string,
  daemons: Daemon[],
  deadline: number,
  minPartBytes?: number,
): Promise<CephS3Keys> {
  const [monPort, rgwPort] = await freePorts(2);
  const fsid = randomUUID();
  const conf = join(dir, 'ceph.conf');
  const logDir = join(dir, 'log');
  for (const sub of ['run', 'log', 'mon', 'osd', 'rgw', 'crash']) await mkdir(join(dir, sub), { recursive: true });
  await writeFile(conf, cephConf(dir, fsid, monPort, rgwPort, minPartBytes));

  const remainingMs = () => Math.max(1, deadline - Date.now());
  const tool = (cmd: string, args: readonly string[]) => runTool(cmd, args, Math.min(TOOL_TIMEOUT_MS, remainingMs()));
  const ceph = (...args: string[]) => tool('ceph', ['-c', conf, '--connect-timeout', '15', ...args]);

  /** fail at once when a daemon died: waiting on would only end in the timeout */
  const checkDaemons = async () => {
    for (const d of daemons) {
      if (d.exitCode === null && d.exitSignal === null) continue;
      const tail = await logTail(dir);
      const portTaken = /address already in use|bind.*(failed|unable)|unable to bind/i.test(tail);
      throw new CephBootError(`${d.name} exited (code ${d.exitCode}, signal ${d.exitSignal})`, portTaken);
    }
  };
  /** run `step` in parallel with the daemon watch, so a crashed daemon fails the step early */
  const watched = async <T>(step: Promise<T>): Promise<T> => {
    let done = false;
    const watch = (async () => {
      while (!done) {
        await checkDaemons();
        await sleep(50);
      }
    })();
    try {
      return await Promise.race([step, watch.then(() => step)]);
    } finally {
      done = true;
      await watch.catch(() => {});
    }
  };

  // monitor
  await tool('monmaptool', [
    '--create',
    '--clobber',
    '--fsid',
    fsid,
    '--addv',
    'a',
    `[v2:127.0.0.1:${monPort}]`,
    join(dir, 'monmap'),
  ]);
  await tool('ceph-mon', ['-c', conf, '--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap')]);
  daemons.push(spawnDaemon('mon.a', 'ceph-mon', ['-c', conf, '-i', 'a', '-f'], logDir));

  // one OSD, placed by hand in the CRUSH map
  const osdUuid = randomUUID();
  const osdId = (await watched(ceph('osd', 'create', osdUuid))).trim();
  if (osdId !== '0') throw new CephBootError(`expected OSD id 0, got "${osdId}"`, false);
  await watched(
    Promise.all([
      tool('ceph-osd', ['-c', conf, '-i', '0', '--mkfs', '--osd-uuid', osdUuid]),
      ceph('osd', 'crush', 'add', 'osd.0', '1', 'root=default', 'host=localhost'),
    ]),
  );
  daemons.push(spawnDaemon('osd.0', 'ceph-osd', ['-c', conf, '-i', '0', '-f'], logDir));

  // radosgw waits for the OSD by itself while it creates its pools
  daemons.push(spawnDaemon('client.rgw', 'radosgw', ['-c', conf, '-n', 'client.rgw', '-f'], logDir));
  const endpoint = `http://127.0.0.1:${rgwPort}`;
  await watched(waitForS3(endpoint, deadline));

  const accessKeyId = `CM${randomBytes(9).toString('hex').toUpperCase()}`;
  const secretAccessKey = randomBytes(20).toString('base64url');
  await watched(
    tool('radosgw-admin', [
      '-c',
      conf,
      'user',
      'create',
      '--uid=cogmill',
      '--display-name=cogmill tests',
      `--access-key=${accessKeyId}`,
      `--secret-key=${secretAccessKey}`,
    ]),
  );
  // the ports were free when picked, but another process may have bound the radosgw port before radosgw did (it
  // would then answer the anonymous probe above): only our radosgw knows the user just made, so a signed request
  // that is refused means the port is someone else's, and the boot is tried again on new ports
  const client = createS3Client({ endpoint, accessKeyId, secretAccessKey, maxAttempts: 1 });
  try {
    await client.send(new ListBucketsCommand({}));
  } catch (e) {
    throw new CephBootError(`the server at ${endpoint} is not this cluster's radosgw: ${(e as Error).message}`, true);
  } finally {
    client.destroy();
  }
  return { endpoint, accessKeyId, secretAccessKey };
}

interface CephS3Keys {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** Poll until radosgw answers an (anonymous) S3 ListBuckets with its XML. */
async function waitForS3(endpoint: string, deadline: number): Promise<void> {
  let last = 'no answer yet';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(2_000) });
      const body = await res.text();
      if (res.status === 200 && body.includes('ListAllMyBucketsResult')) return;
      last = `HTTP ${res.status}: ${body.slice(0, 200)}`;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(50);
  }
  throw new CephBootError(`radosgw at ${endpoint} did not answer S3 requests in time (last: ${last})`, false);
}

/** Daemons of clusters that are running, killed when the process exits however it exits. */
const running = new Set<{ daemons: Daemon[]; dir: string }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const cluster of running) {
      for (const d of cluster.daemons) killGroup(d);
      rmSync(cluster.dir, { recursive: true, force: true });
    }
  });
}

async function killAll(daemons: readonly Daemon[]): Promise<void> {
  for (const d of daemons) killGroup(d);
  let timer: NodeJS.Timeout | undefined;
  const giveUp = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, STOP_TIMEOUT_MS);
  });
  await Promise.race([Promise.all(daemons.map((d) => d.exited)), giveUp]);
  clearTimeout(timer);
}

/**
 * Boot a one-node Ceph cluster with radosgw and an S3 user; resolves when radosgw answers S3 requests.
 * Rejects after `timeoutMs` (default 180 s: a loaded machine boots slowly) with the tail of every daemon's log.
 */
export async function startCeph(opts: CephOptions = {}): Promise<CephS3> {
  const timeoutMs = opts.timeoutMs ?? BOOT_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  installExitHook();
  for (let attempt = 1; ; attempt++) {
    const dir = await mkdtemp(join(opts.dir ?? tmpdir(), 'cogmill-ceph-'));
    const cluster = { daemons: [] as Daemon[], dir };
    running.add(cluster);
    try {
      const keys = await bootCluster(dir, cluster.daemons, deadline, opts.multipartMinPartBytes);
      let stopped: Promise<void> | undefined;
      return {
        ...keys,
        region: REGION,
        dir,
        stop: () => {
          stopped ??= (async () => {
            await killAll(cluster.daemons);
            await rm(dir, { recursive: true, force: true });
            running.delete(cluster);
          })();
          return stopped;
        },
      };
    } catch (e) {
      const tail = await logTail(dir);
      await killAll(cluster.daemons);
      await rm(dir, { recursive: true, force: true });
      running.delete(cluster);
      const retry = e instanceof CephBootError && e.portTaken && attempt < BOOT_ATTEMPTS && Date.now() < deadline;
      if (retry) continue;
      const why = Date.now() >= deadline ? `did not boot within ${timeoutMs} ms` : 'failed to boot';
      throw new Error(`Ceph test cluster ${why}: ${(e as Error).message}\n${tail}`, { cause: e });
    }
  }
}
