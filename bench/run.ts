/**
 * Every benchmark, side by side with GDAL, on deterministic inputs generated on first use (bench/data.ts).
 *
 *   npm run bench                       full size (generates ~1.6 GB of inputs once, then takes a while)
 *   npm run bench -- --small            small inputs: the whole run in under a minute
 *   npm run bench -- --only tiles,vcog  some of them: materialize, s3, queue, azure, tiles, tiles-mapserver, vcog, memory, decode, deflate, stac
 *   npm run bench -- --no-record        print JSON lines only; do not append to bench/RESULTS.md
 *
 * Each benchmark prints JSON lines on stdout (progress on stderr) and appends a dated section with the machine's
 * description to bench/RESULTS.md.
 */
import { enableCompileCache } from '../src/compile.cache.ts';
import { azureBench } from './azure.bench.ts';
import { decodeBench } from './decode.bench.ts';
import { deflateBench } from './deflate.bench.ts';
import { type Bench, parseHarnessArgs, runBenches } from './harness.ts';
import { materializeBench } from './materialize.bench.ts';
import { memoryBench } from './memory.bench.ts';
import { predictorBench } from './predictor.bench.ts';
import { queueBench } from './queue.bench.ts';
import { s3Bench } from './s3.bench.ts';
import { stacBench } from './stac.bench.ts';
import { tilesBench, tilesMapServerBench } from './tiles.bench.ts';
import { vcogBench } from './vcog.bench.ts';

export const BENCHES: readonly Bench[] = [
  decodeBench,
  deflateBench,
  predictorBench,
  materializeBench,
  memoryBench,
  s3Bench,
  queueBench,
  stacBench,
  azureBench,
  tilesBench,
  tilesMapServerBench,
  vcogBench,
];

if (import.meta.main) {
  // the cogmill processes started below find Node's compile cache in their environment, as `cogmill` (bin/cogmill.js)
  // turns it on before its first TypeScript file: their entry files are not stripped again at every start
  enableCompileCache(process.env);
  const { failed } = await runBenches(BENCHES, parseHarnessArgs(process.argv.slice(2)));
  if (failed.length) process.exitCode = 1;
}
