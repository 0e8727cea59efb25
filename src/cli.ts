#!/usr/bin/env node
/**
 * The `cogmill` command (bin/cogmill.js runs this file): serve | info | materialize | validate | demo, in
 * cli.main.ts. Node's compile cache is turned on first, before the commands' modules load, so that a second run
 * neither strips their TypeScript nor compiles them again (a materialisation: ~0.27 -> ~0.13 s before its first
 * line); worker threads and child processes started later inherit the cache directory. `materialize` starts its
 * render threads here too, so that they load their modules while this thread loads its own. builtin.hooks.ts
 * keeps geotiff's unused HTTP client from loading Node's fetch implementation.
 */
import { availableParallelism } from 'node:os';
import './builtin.hooks.ts';
import { enableCompileCache } from './compile.cache.ts';
import { startTileWorkers, threadsToStartAhead } from './materialize/tile.pool.start.ts';

enableCompileCache(process.env);
const [command, ...args] = process.argv.slice(2);
if (command === 'materialize') startTileWorkers(threadsToStartAhead(args, availableParallelism()));
const { run } = await import('./cli.main.ts');
run();
