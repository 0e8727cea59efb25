#!/usr/bin/env node
/**
 * The `cogmill` command (bin/cogmill.js runs this file): serve | info | materialize | validate | demo, in
 * cli.main.ts. Node's compile cache is turned on first, before the commands' modules load, so that a second run
 * neither strips their TypeScript nor compiles them again (a materialisation: ~0.27 -> ~0.13 s before its first
 * line); worker threads and child processes started later inherit the cache directory.
 */
import { enableCompileCache } from './compile.cache.ts';

enableCompileCache(process.env);
const { run } = await import('./cli.main.ts');
run();
