/**
 * Materialise to S3 (a local Ceph radosgw, memstore) vs to a local file, same mosaic, same options: the upload's
 * overhead in wall time (target < 15%), parts, peak RSS. The S3 object is validated once with GDAL through /vsis3/.
 *
 *   node bench/s3.bench.ts [--small]
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { CreateBucketCommand, HeadObjectCommand } from '@aws-sdk/client-s3';
import { createS3Client, type S3Settings } from '../src/render/s3.client.ts';
import { startCeph } from '../test/support/ceph.ts';
import { type Bench, runStandalone } from './harness.ts';
import { type CogmillRun, cogmillMaterialize, validateCog, warmInputs } from './materialize.bench.ts';
import { median, mib, note, round, table } from './support.ts';

const BUCKET = 'bench';

export const s3Bench: Bench = {
  name: 's3',
  title: 'Materialise to S3 (radosgw) vs to a local file',
  async run(ctx) {
    const { s2West, s2East } = ctx.data;
    const spec = { id: 'same-zone', sources: [s2West.cog, s2East.cog] };
    const roots = [ctx.data.dir];
    await warmInputs(spec.sources);
    const t0 = performance.now();
    const ceph = await startCeph();
    note(`  radosgw up in ${Math.round(performance.now() - t0)} ms at ${ceph.endpoint}`);
    try {
      const s3: S3Settings = {
        endpoint: ceph.endpoint,
        region: ceph.region,
        accessKeyId: ceph.accessKeyId,
        secretAccessKey: ceph.secretAccessKey,
        forcePathStyle: true,
      };
      const client = createS3Client(s3);
      await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
      const repeats = ctx.small ? 1 : 2;
      const file: CogmillRun[] = [];
      const remote: CogmillRun[] = [];
      for (let i = 0; i < repeats; i++) {
        const order = i % 2 === 0 ? ['file', 's3'] : ['s3', 'file'];
        for (const where of order) {
          if (where === 'file') {
            const r = await cogmillMaterialize(spec, path.join(ctx.outDir, `file-${i}.tif`), roots);
            file.push(r);
            note(`  file: ${round(r.wallMs / 1000)} s`);
          } else {
            const r = await cogmillMaterialize(spec, `s3://${BUCKET}/bench/run-${i}.tif`, roots, {}, { s3 });
            remote.push(r);
            note(`  s3: ${round(r.wallMs / 1000)} s`);
          }
        }
      }
      const head = await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'bench/run-0.tif' }));
      const fileBytes = (await stat(path.join(ctx.outDir, 'file-0.tif'))).size;
      const env = {
        AWS_S3_ENDPOINT: new URL(ceph.endpoint).host,
        AWS_HTTPS: 'NO',
        AWS_VIRTUAL_HOSTING: 'FALSE',
        AWS_ACCESS_KEY_ID: ceph.accessKeyId,
        AWS_SECRET_ACCESS_KEY: ceph.secretAccessKey,
        AWS_REGION: ceph.region,
      };
      const v = await validateCog(`/vsis3/${BUCKET}/bench/run-0.tif`, env);
      client.destroy();
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
          sink: 's3 (radosgw)',
          wallS: round(med(remote) / 1000),
          cpuS: round(median(remote.map((r) => r.cpuSeconds))),
          peakRssMiB: mib(Math.max(...remote.map((r) => r.peakRssBytes))),
          bytes: Number(head.ContentLength),
          parts: head.ETag?.replace(/"/g, '').split('-')[1] ?? '',
          valid: v.valid ? 'yes' : `NO: ${v.message}`,
        },
      ];
      const overheadPct = round((med(remote) / med(file) - 1) * 100, 1);
      for (const r of rows) ctx.emit(r);
      ctx.emit({
        overheadPct,
        repeats,
        walls: { file: file.map((r) => Math.round(r.wallMs)), s3: remote.map((r) => Math.round(r.wallMs)) },
      });
      note(`  S3 overhead ${overheadPct}%`);
      return {
        sections: [
          {
            title: `S2 same-zone mosaic (2 scenes), median of ${repeats} runs each: S3 overhead ${overheadPct}% (target < 15%)`,
            body: `${table(rows)}\n\nradosgw (memstore) runs on the same machine and takes CPU from the pipeline while it stores the parts.`,
          },
        ],
      };
    } finally {
      await ceph.stop();
    }
  },
};

if (import.meta.main) await runStandalone(s3Bench);
