/**
 * wrk (Debian `wrk`, C, epoll) as a load generator that costs the server's CPUs little: a separate process, one
 * thread, N keep-alive connections, cycling through a list of paths for a fixed time. Loopback only.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from './support.ts';

export const WRK = '/usr/bin/wrk';

export interface WrkResult {
  readonly requests: number;
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** answers other than 2xx / 3xx */
  readonly non2xx: number;
  /** connect, read, write and timeout errors */
  readonly errors: number;
}

function ms(value: string, unit: string): number {
  const v = Number(value);
  return unit === 'us' ? v / 1000 : unit === 's' ? v * 1000 : v;
}

/** Parse wrk's report (`--latency`). */
export function parseWrk(text: string): WrkResult {
  const num = (re: RegExp) => {
    const m = re.exec(text);
    return m ? Number(m[1]) : 0;
  };
  const pct = (p: string) => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(text);
    return m ? Math.round(ms(m[1], m[2]) * 100) / 100 : Number.NaN;
  };
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  return {
    requests: num(/(\d+) requests in/),
    requestsPerSecond: num(/Requests\/sec:\s+([\d.]+)/),
    p50Ms: pct('50'),
    p99Ms: pct('99'),
    non2xx: num(/Non-2xx or 3xx responses: (\d+)/),
    errors: errors ? errors.slice(1).reduce((s, x) => s + Number(x), 0) : 0,
  };
}

/** GET `paths` of `baseUrl` round robin over `connections` connections for `durationS` seconds. */
export async function runWrk(
  baseUrl: string,
  paths: readonly string[],
  opts: { dir: string; connections: number; durationS: number; threads?: number },
): Promise<WrkResult> {
  if (!existsSync(WRK)) throw new Error(`${WRK} is missing: apt-get install wrk`);
  const list = path.join(opts.dir, `wrk-paths-${process.pid}.txt`);
  await writeFile(list, `${paths.join('\n')}\n`);
  const script = path.join(opts.dir, `wrk-${process.pid}.lua`);
  await writeFile(
    script,
    `local paths = {}
for line in io.lines(${JSON.stringify(list)}) do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
`,
  );
  const r = await run(
    WRK,
    [
      '--latency',
      '-t',
      String(opts.threads ?? 1),
      '-c',
      String(opts.connections),
      '-d',
      `${opts.durationS}s`,
      '-s',
      script,
      baseUrl,
    ],
    { timeoutMs: (opts.durationS + 60) * 1000 },
  );
  return parseWrk(r.stdout);
}
