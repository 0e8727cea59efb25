/**
 * Node's compile cache for this process, its worker threads and its child processes: each worker thread of the
 * tile pools strips the TypeScript of the same ~60 modules and compiles them again, about a quarter of the CPU
 * of a small materialisation; with the cache a worker starts on half the CPU (measured: 0.57 -> 0.25 CPU s for
 * two workers loading the tile job). `module.enableCompileCache()` covers the calling thread only; worker threads
 * copy the environment when they are created and read NODE_COMPILE_CACHE from it, so the directory goes there.
 * NODE_DISABLE_COMPILE_CACHE=1 turns it off (Node's own switch).
 */
import module from 'node:module';
import path from 'node:path';

/**
 * Enable the cache in `dir` (default `env.NODE_COMPILE_CACHE`, else Node's default directory) and name it in
 * `env` for the threads and processes started later; returns the directory Node uses.
 */
export function enableCompileCache(env: NodeJS.ProcessEnv, dir?: string): string | undefined {
  if (env.NODE_DISABLE_COMPILE_CACHE) return undefined;
  try {
    module.enableCompileCache?.(dir ?? (env.NODE_COMPILE_CACHE || undefined));
    // Node's directory is the given one plus a version folder; threads given the same base find the same folder
    const used = module.getCompileCacheDir?.();
    if (used) env.NODE_COMPILE_CACHE = path.dirname(used);
    return used;
  } catch {
    // a cache that cannot be made (read-only disk) only costs start-up time
    return undefined;
  }
}
