/**
 * The virtual COG (`GET /mosaics/{id}.tif`) read by GDAL through /vsicurl/, behind a counting proxy:
 * - requests GDAL needs for `gdalinfo` (with GDAL's defaults, and with GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR);
 * - requests and time for a 2048 x 2048 window (`gdal_translate -srcwin`);
 * - `gdal_translate` of the whole virtual COG (MB/s of uncompressed pixels), and of its first overview.
 *
 *   node bench/vcog.bench.ts [--small]
 */
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { type Bench, type BenchContext, runStandalone } from './harness.ts';
import { startCogmillServer } from './server.ts';
import { mib, note, round, run, table } from './support.ts';
import { tileSetup } from './tiles.bench.ts';

interface Counted {
  requests: number;
  byMethod: Record<string, number>;
  byStatus: Record<string, number>;
  bytes: number;
  /** request lines "METHOD path range -> status" */
  log: string[];
}

/** An HTTP proxy in front of the server that counts what passes (loopback only). */
async function countingProxy(
  target: string,
): Promise<{ url: string; counted: Counted; reset(): void; close(): Promise<void> }> {
  const t = new URL(target);
  const counted: Counted = { requests: 0, byMethod: {}, byStatus: {}, bytes: 0, log: [] };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    counted.requests++;
    counted.byMethod[req.method ?? '?'] = (counted.byMethod[req.method ?? '?'] ?? 0) + 1;
    const up = request(
      { host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers, timeout: 300_000 },
      (upRes) => {
        const status = upRes.statusCode ?? 0;
        counted.byStatus[status] = (counted.byStatus[status] ?? 0) + 1;
        if (counted.log.length < 2000)
          counted.log.push(`${req.method} ${req.url} ${req.headers.range ?? ''} -> ${status}`);
        res.writeHead(status, upRes.headers);
        upRes.on('data', (b: Buffer) => {
          counted.bytes += b.byteLength;
        });
        upRes.pipe(res);
      },
    );
    up.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502);
      res.end(String(e));
    });
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    counted,
    reset() {
      counted.requests = 0;
      counted.byMethod = {};
      counted.byStatus = {};
      counted.bytes = 0;
      counted.log = [];
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** request lines of each step shown in RESULTS.md */
const LOGGED_REQUESTS = 12;
const EMPTY_DIR = { GDAL_DISABLE_READDIR_ON_OPEN: 'EMPTY_DIR' };

/**
 * The QC case of the speed issue, as a new user meets it: the four bench scenes (two UTM zones) as one mosaic at
 * 1 m in a fresh server; the time to GDAL's first HEAD (the header of every tile is planned then), and the whole
 * mosaic drawn 1,000 px wide (`gdal_translate -outsize 1000 0` over /vsicurl/, which reads the top overviews).
 */
async function qcTimings(ctx: BenchContext): Promise<Record<string, unknown>[]> {
  const { s2West, s2East, s2Zone31, s2Quarter } = ctx.data;
  const spec = {
    id: 'qc',
    sources: [s2West.cog, s2East.cog, s2Zone31.cog, s2Quarter.cog],
    crs: 32632,
    resolution: [1, 1] as const,
  };
  const server = await startCogmillServer(ctx.outDir, [spec], { roots: [ctx.data.dir], logLevel: 'warn' });
  const rows: Record<string, unknown>[] = [];
  try {
    const url = `${server.url}/mosaics/qc.tif`;
    const t0 = performance.now();
    const head = await fetch(url, { method: 'HEAD' });
    const headS = (performance.now() - t0) / 1000;
    const size = Number(head.headers.get('content-length'));
    const row1 = {
      step: 'QC 1 m mosaic of 4 scenes: first HEAD (fresh server)',
      env: '-',
      requests: 1,
      byMethod: '{"HEAD":1}',
      byStatus: JSON.stringify({ [head.status]: 1 }),
      bytesMiB: 0,
      wallS: round(headS, 3),
      MBps: '',
      note: `Content-Length ${size.toLocaleString('en')} bytes`,
    };
    rows.push(row1);
    ctx.emit(row1);
    note(`  QC first HEAD: ${row1.wallS} s (${head.status})`);
    const r = await run(
      'gdal_translate',
      ['-q', '-outsize', '1000', '0', `/vsicurl/${url}`, path.join(ctx.outDir, 'qc-1000.tif')],
      { env: { ...process.env, ...EMPTY_DIR }, timeoutMs: 3_600_000 },
    );
    const row2 = {
      step: 'QC 1 m mosaic: whole mosaic 1,000 px wide (gdal_translate -outsize 1000 0, after the HEAD)',
      env: 'GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR',
      requests: '',
      byMethod: '',
      byStatus: '',
      bytesMiB: '',
      wallS: round(r.wallMs / 1000, 2),
      MBps: '',
      note: 'targets: HEAD < 0.5 s, 1,000 px wide < 2 s',
    };
    rows.push(row2);
    ctx.emit(row2);
    note(`  QC 1,000 px wide: ${row2.wallS} s`);
  } finally {
    await server.stop();
  }
  return rows;
}

export const vcogBench: Bench = {
  name: 'vcog',
  title: 'Virtual COG through /vsicurl/: requests for gdalinfo and a 2048 x 2048 window, whole-file MB/s',
  async run(ctx) {
    const { spec } = await tileSetup(ctx);
    const server = await startCogmillServer(ctx.outDir, [spec], { roots: [ctx.data.dir] });
    const proxy = await countingProxy(server.url);
    const rows: Record<string, unknown>[] = [];
    const logs: string[] = [];
    try {
      const vsi = `/vsicurl/${proxy.url}/mosaics/${spec.id}.tif`;
      const gdal = async (
        label: string,
        cmd: string,
        args: string[],
        env: Record<string, string>,
        pixels = 0,
        bytesPerPixel = 2,
      ) => {
        proxy.reset();
        const r = await run(cmd, args, { env: { ...process.env, ...env }, timeoutMs: 3_600_000 });
        const c = proxy.counted;
        const row = {
          step: label,
          env: Object.keys(env).length
            ? Object.entries(env)
                .map(([k, v]) => `${k}=${v}`)
                .join(' ')
            : 'defaults',
          requests: c.requests,
          byMethod: JSON.stringify(c.byMethod),
          byStatus: JSON.stringify(c.byStatus),
          bytesMiB: mib(c.bytes),
          wallS: round(r.wallMs / 1000),
          ...(pixels ? { MBps: round((pixels * bytesPerPixel) / 1e6 / (r.wallMs / 1000), 1) } : {}),
        };
        rows.push(row);
        ctx.emit(row);
        note(`  ${label}: ${row.requests} requests, ${row.wallS} s${'MBps' in row ? `, ${row.MBps} MB/s` : ''}`);
        logs.push(
          `${label} (${row.env}):\n${c.log.slice(0, LOGGED_REQUESTS).join('\n')}${c.log.length > LOGGED_REQUESTS ? `\n... ${c.log.length - LOGGED_REQUESTS} more` : ''}`,
        );
        return r;
      };
      // first contact renders nothing; the header is computed from metadata
      const info = await gdal('gdalinfo', 'gdalinfo', ['-json', vsi], {});
      await gdal('gdalinfo', 'gdalinfo', [vsi], EMPTY_DIR);
      const meta = JSON.parse(info.stdout) as {
        size: [number, number];
        bands: { overviews?: { size: [number, number] }[] }[];
      };
      const [w, h] = meta.size;
      const win = Math.min(2048, w, h);
      const x0 = Math.max(0, Math.floor(w / 2 - win / 2));
      const y0 = Math.max(0, Math.floor(h / 2 - win / 2));
      await gdal(
        `gdal_translate ${win} x ${win} window (cold)`,
        'gdal_translate',
        ['-q', '-srcwin', String(x0), String(y0), String(win), String(win), vsi, path.join(ctx.outDir, 'window.tif')],
        EMPTY_DIR,
        win * win,
      );
      await gdal(
        `gdal_translate ${win} x ${win} window (again)`,
        'gdal_translate',
        ['-q', '-srcwin', String(x0), String(y0), String(win), String(win), vsi, path.join(ctx.outDir, 'window2.tif')],
        EMPTY_DIR,
        win * win,
      );
      const ov = meta.bands[0]?.overviews?.[0]?.size;
      if (ov) {
        await gdal(
          `gdal_translate overview 1 (${ov[0]} x ${ov[1]})`,
          'gdal_translate',
          ['-q', '-ovr', '0', vsi, path.join(ctx.outDir, 'ovr.tif')],
          EMPTY_DIR,
          ov[0] * ov[1],
        );
      }
      await gdal(
        `gdal_translate whole file (${w} x ${h})`,
        'gdal_translate',
        ['-q', vsi, path.join(ctx.outDir, 'whole.tif')],
        EMPTY_DIR,
        w * h,
      );
      const peak = await server.child.peakRssBytes();
      ctx.emit({ serverPeakRssMiB: mib(peak) });
      const qc = await qcTimings(ctx);
      rows.push(...qc);
      return {
        sections: [
          {
            title: `Virtual COG of the S2 mosaic (3 scenes, 2 zones), GDAL through a counting proxy (server peak RSS ${mib(peak)} MiB)`,
            body: `${table(rows)}\n\nMB/s counts the uncompressed pixels GDAL wrote (width x height x 2 bytes) over the command's wall time.`,
          },
          { title: `Requests (first ${LOGGED_REQUESTS} of each step)`, body: `\`\`\`\n${logs.join('\n\n')}\n\`\`\`` },
        ],
      };
    } finally {
      await proxy.close();
      await server.stop();
    }
  },
};

if (import.meta.main) await runStandalone(vcogBench);
