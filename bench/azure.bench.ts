/**
 * Materialise to Azure Blob Storage (Azurite, in memory) vs to a local file, same mosaic, same options: the
 * upload's overhead in wall time, blocks, peak RSS. The blob is validated once with GDAL through /vsiaz/.
 *
 *   node bench/azure.bench.ts [--small]
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import type { AzureSettings } from '../src/render/azure.client.ts';
import { startAzurite } from '../test/support/azurite.ts';
import { type Bench, runStandalone } from './harness.ts';
import { type CogmillRun, cogmillMaterialize, validateCog, warmInputs } from './materialize.bench.ts';
import { median, mib, note, round, table } from './support.ts';

const CONTAINER = 'bench';

export const azureBench: Bench = {
  name: 'azure',
  title: 'Materialise to Azure Blob Storage (Azurite) vs to a local file',
  async run(ctx) {
    const { s2West, s2East } = ctx.data;
    const spec = { id: 'same-zone', sources: [s2West.cog, s2East.cog] };
    const roots = [ctx.data.dir];
    await warmInputs(spec.sources);
    const t0 = performance.now();
    const azurite = await startAzurite();
    note(`  Azurite up in ${Math.round(performance.now() - t0)} ms at ${azurite.endpoint}`);
    try {
      const azure: AzureSettings = {
        account: azurite.account,
        accountKey: azurite.accountKey,
        endpoint: azurite.endpoint,
      };
      const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(CONTAINER);
      await container.create();
      const repeats = ctx.small ? 1 : 2;
      const file: CogmillRun[] = [];
      const remote: CogmillRun[] = [];
      for (let i = 0; i < repeats; i++) {
        const order = i % 2 === 0 ? ['file', 'azure'] : ['azure', 'file'];
        for (const where of order) {
          if (where === 'file') {
            const r = await cogmillMaterialize(spec, path.join(ctx.outDir, `file-${i}.tif`), roots);
            file.push(r);
            note(`  file: ${round(r.wallMs / 1000)} s`);
          } else {
            const r = await cogmillMaterialize(spec, `az://${CONTAINER}/bench/run-${i}.tif`, roots, {}, { azure });
            remote.push(r);
            note(`  azure: ${round(r.wallMs / 1000)} s`);
          }
        }
      }
      const blob = container.getBlockBlobClient('bench/run-0.tif');
      const props = await blob.getProperties();
      const blocks = (await blob.getBlockList('committed')).committedBlocks?.length ?? 0;
      const fileBytes = (await stat(path.join(ctx.outDir, 'file-0.tif'))).size;
      const v = await validateCog(`/vsiaz/${CONTAINER}/bench/run-0.tif`, {
        AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
      });
      const med = (rs: CogmillRun[]) => median(rs.map((r) => r.wallMs));
      const rows = [
        {
          sink: 'file',
          wallS: round(med(file) / 1000),
          cpuS: round(median(file.map((r) => r.cpuSeconds))),
          peakRssMiB: mib(Math.max(...file.map((r) => r.peakRssBytes))),
          bytes: fileBytes,
          valid: 'yes (materialize bench)',
        },
        {
          sink: 'azure (Azurite)',
          wallS: round(med(remote) / 1000),
          cpuS: round(median(remote.map((r) => r.cpuSeconds))),
          peakRssMiB: mib(Math.max(...remote.map((r) => r.peakRssBytes))),
          bytes: Number(props.contentLength),
          blocks,
          valid: v.valid ? 'yes' : `NO: ${v.message}`,
        },
      ];
      const overheadPct = round((med(remote) / med(file) - 1) * 100, 1);
      for (const r of rows) ctx.emit(r);
      ctx.emit({
        overheadPct,
        repeats,
        walls: { file: file.map((r) => Math.round(r.wallMs)), azure: remote.map((r) => Math.round(r.wallMs)) },
      });
      note(`  Azure overhead ${overheadPct}%`);
      return {
        sections: [
          {
            title: `S2 same-zone mosaic (2 scenes), median of ${repeats} runs each: Azure overhead ${overheadPct}%`,
            body: `${table(rows)}\n\nAzurite (in memory, one Node process) runs on the same machine and takes CPU from the pipeline while it stores the blocks.`,
          },
        ],
      };
    } finally {
      await azurite.stop();
    }
  },
};

if (import.meta.main) await runStandalone(azureBench);
