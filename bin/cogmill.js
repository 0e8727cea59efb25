#!/usr/bin/env node
// Entry point of the `cogmill` command: runs the TypeScript sources directly (Node >= 22.18 strips types).
// Node's compile cache goes on here, before the first TypeScript file loads: Node would otherwise strip that file
// with its TypeScript loader, a WebAssembly module compiled afresh at every start (~30 ms before the first line
// of src/cli.ts). src/compile.cache.ts, called again there, names the directory for threads and child processes.
// NODE_DISABLE_COMPILE_CACHE=1 turns it off (Node's own switch).
import module from 'node:module';

if (!process.env.NODE_DISABLE_COMPILE_CACHE) {
  try {
    module.enableCompileCache?.(process.env.NODE_COMPILE_CACHE || undefined);
  } catch {
    // a cache that cannot be made (read-only disk) only costs start-up time
  }
}
await import('../src/cli.ts');
