/**
 * Temporary `.partial` files written next to a local destination, and the removal of the ones a killed writer
 * left behind. A partial is named `.NAME.HOST-PID-RANDOM.partial` (HOST: a short hash of the host name): the next
 * writer of the same destination removes the partials of that destination whose writer is gone, i.e. written on
 * this host by a process that no longer runs, or by this very process (a restarted container often gets the same
 * pid) without being one it is writing now. Partials of other hosts (a shared folder) are left alone.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';

const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

/** Partials this process is writing now. */
const active = new Set<string>();

/** A fresh temporary path next to `destination`, registered as being written by this process. */
export function partialPath(destination: string): string {
  const p = path.join(
    path.dirname(destination),
    `.${path.basename(destination)}.${HOST_TAG}-${process.pid}-${randomBytes(6).toString('hex')}.partial`,
  );
  active.add(p);
  return p;
}

/** The partial is finished or removed: it is no longer this process's. */
export function releasePartial(p: string): void {
  active.delete(p);
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove the partials of `destination` left by writers that are gone (see the module comment). Returns the
 * removed names. Never throws: a partial that cannot be removed is left for the next run.
 */
export async function removeStalePartials(destination: string): Promise<string[]> {
  const dir = path.dirname(destination);
  const prefix = `.${path.basename(destination)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^([0-9a-f]{8})-(\d+)-[0-9a-f]{12}\.partial(\.big)?$/.exec(name.slice(prefix.length));
    if (!m || m[1] !== HOST_TAG) continue;
    const pid = Number(m[2]);
    const full = path.join(dir, name);
    const base = m[3] ? full.slice(0, -'.big'.length) : full;
    const gone = pid === process.pid ? !active.has(base) : !running(pid);
    if (!gone) continue;
    try {
      await rm(full, { force: true });
      removed.push(name);
    } catch {
      // left for the next run
    }
  }
  return removed;
}
