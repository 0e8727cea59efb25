/**
 * Azurite (Microsoft's Azure Storage emulator, the npm package `azurite`) as the real Azure Blob service of the
 * tests: `azurite-blob` on a free loopback port (port 0, the port it reports), in-memory persistence, no telemetry,
 * no access log, with an account of its own (random name suffix and random key, so a test that uses the well-known
 * development key fails). Each call starts its own emulator; `stop()` kills it.
 *
 * The emulator runs under `setpriv --pdeathsig KILL` in its own process group: it dies with the process that
 * started it even when that process is killed without a chance to clean up.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface Azurite {
  /** `http://127.0.0.1:PORT/ACCOUNT`: the blob endpoint (path-style, as emulators are addressed) */
  readonly endpoint: string;
  readonly account: string;
  /** the account's shared key (base64) */
  readonly accountKey: string;
  /** a connection string naming the endpoint, the account and the key */
  readonly connectionString: string;
  /** the emulator's working folder (nothing is persisted: only what Azurite writes beside its data) */
  readonly dir: string;
  stop(): Promise<void>;
}

/** the `azurite-blob` program of the installed `azurite` package (its package.json names it) */
function azuriteBlobBin(): string {
  const pkgFile = createRequire(import.meta.url).resolve('azurite/package.json');
  const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { bin: Record<string, string> };
  return path.join(path.dirname(pkgFile), pkg.bin['azurite-blob']);
}
/** how long the emulator may take to listen (a guard against a hung start: a loaded machine starts node slowly) */
const BOOT_TIMEOUT_MS = 180_000;
const STOP_TIMEOUT_MS = 5_000;
/** in-memory extent storage limit: far above any test's data, far below the machine's memory */
const EXTENT_LIMIT_MB = 2048;

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const c of running) killGroup(c);
  });
}

/** Start Azurite's blob service; resolves once it listens. */
export async function startAzurite(opts: { timeoutMs?: number } = {}): Promise<Azurite> {
  installExitHook();
  const account = `cogmill${randomBytes(3).toString('hex')}`;
  const accountKey = randomBytes(64).toString('base64');
  const dir = await mkdtemp(path.join(tmpdir(), 'cogmill-azurite-'));
  const child = spawn(
    'setpriv',
    [
      '--pdeathsig',
      'KILL',
      '--',
      process.execPath,
      azuriteBlobBin(),
      '--blobHost',
      '127.0.0.1',
      '--blobPort',
      '0',
      '--inMemoryPersistence',
      '--extentMemoryLimit',
      String(EXTENT_LIMIT_MB),
      '--disableTelemetry',
      '--silent',
      '--skipApiVersionCheck',
    ],
    {
      cwd: dir,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, AZURITE_ACCOUNTS: `${account}:${accountKey}` },
    },
  );
  running.add(child);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let output = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`Azurite did not start within ${opts.timeoutMs ?? BOOT_TIMEOUT_MS} ms:\n${output}`)),
      opts.timeoutMs ?? BOOT_TIMEOUT_MS,
    );
    const onData = (d: Buffer) => {
      output += d.toString();
      const m = /successfully listens on http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`Azurite exited (code ${code}, signal ${signal}) before it listened:\n${output}`));
    });
  }).catch(async (e) => {
    killGroup(child);
    running.delete(child);
    await rm(dir, { recursive: true, force: true });
    throw e;
  });
  // keep draining its output so it never blocks on a full pipe
  child.stdout?.resume();
  child.stderr?.resume();
  const endpoint = `http://127.0.0.1:${port}/${account}`;
  let stopped: Promise<void> | undefined;
  return {
    endpoint,
    account,
    accountKey,
    connectionString: `DefaultEndpointsProtocol=http;AccountName=${account};AccountKey=${accountKey};BlobEndpoint=${endpoint};`,
    dir,
    stop() {
      stopped ??= (async () => {
        killGroup(child);
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([exited, new Promise<void>((r) => (timer = setTimeout(r, STOP_TIMEOUT_MS)))]);
        clearTimeout(timer);
        running.delete(child);
        await rm(dir, { recursive: true, force: true });
      })();
      return stopped;
    },
  };
}
