/**
 * MapServer 8 as the tile benchmark's peer: a mapfile for the benchmark's sources, two FastCGI `mapserv`
 * processes (spawn-fcgi, one shared socket) behind nginx, both on free loopback ports, everything (config, pid
 * files, logs, nginx's temp folders) under one scratch folder. XYZ tiles are WMS GetMap requests with the tile's
 * EPSG:3857 BBOX (256 x 256 PNG, transparent).
 *
 * Debian: mapserver-bin cgi-mapserver spawn-fcgi nginx-light (installed by .ci/setup).
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { type Child, run, sleep, startChild } from './support.ts';
import type { Tile } from './tile.list.ts';

export const MAPSERV = '/usr/lib/cgi-bin/mapserv';
export const SPAWN_FCGI = '/usr/bin/spawn-fcgi';
export const NGINX = '/usr/sbin/nginx';

/** One raster of a layer group, painted in the order given (later ones on top). */
export interface MapServerRaster {
  readonly file: string;
  readonly epsg: number;
}

/** A WMS layer: a group of rasters drawn with nearest resampling, optionally scaled to 8 bits. */
export interface MapServerLayer {
  readonly name: string;
  /** painted in this order: the last one is on top */
  readonly rasters: readonly MapServerRaster[];
  readonly nodata?: number;
  /** linear scale of a single band to 0..255 */
  readonly scale?: readonly [number, number];
}

const HALF_WORLD_M = 20037508.342789244;

/** The EPSG:3857 bounds of an XYZ tile (minx, miny, maxx, maxy). */
export function tileBounds3857(t: Tile): [number, number, number, number] {
  const span = (2 * HALF_WORLD_M) / 2 ** t.z;
  const minx = -HALF_WORLD_M + t.x * span;
  const maxy = HALF_WORLD_M - t.y * span;
  return [minx, maxy - span, minx + span, maxy];
}

const quote = (s: string) => `"${s.replace(/"/g, '\\"')}"`;

/** The mapfile (pure): EPSG:3857 map, RGBA PNG output, one group of raster layers per benchmark layer. */
export function mapfileText(layers: readonly MapServerLayer[], errorFile: string): string {
  const lines = [
    'MAP',
    '  NAME "cogmill-bench"',
    '  SIZE 256 256',
    `  EXTENT ${-HALF_WORLD_M} ${-HALF_WORLD_M} ${HALF_WORLD_M} ${HALF_WORLD_M}`,
    '  UNITS METERS',
    '  IMAGETYPE "png"',
    `  CONFIG "MS_ERRORFILE" ${quote(errorFile)}`,
    '  DEBUG 0',
    '  PROJECTION "init=epsg:3857" END',
    '  OUTPUTFORMAT',
    '    NAME "png"',
    '    DRIVER AGG/PNG',
    '    MIMETYPE "image/png"',
    '    IMAGEMODE RGBA',
    '    EXTENSION "png"',
    '    TRANSPARENT ON',
    '  END',
    '  WEB',
    '    METADATA',
    '      "wms_title" "cogmill-bench"',
    '      "wms_srs" "EPSG:3857"',
    '      "wms_enable_request" "*"',
    '      "wms_onlineresource" "http://127.0.0.1/wms?"',
    '    END',
    '  END',
  ];
  for (const layer of layers) {
    layer.rasters.forEach((r, i) => {
      lines.push(
        '  LAYER',
        `    NAME ${quote(`${layer.name}-${i}`)}`,
        `    GROUP ${quote(layer.name)}`,
        '    TYPE RASTER',
        '    STATUS ON',
        `    DATA ${quote(r.file)}`,
        `    PROJECTION "init=epsg:${r.epsg}" END`,
        '    PROCESSING "RESAMPLE=NEAREST"',
        ...(layer.nodata !== undefined ? [`    PROCESSING "NODATA=${layer.nodata}"`] : []),
        ...(layer.scale
          ? [`    PROCESSING "SCALE=${layer.scale[0]},${layer.scale[1]}"`, '    PROCESSING "BANDS=1"']
          : []),
        `    METADATA "wms_title" ${quote(`${layer.name}-${i}`)} "wms_srs" "EPSG:3857" END`,
        '  END',
      );
    });
  }
  lines.push('END', '');
  return lines.join('\n');
}

/** A free TCP port on 127.0.0.1 (asked from the kernel, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface MapServerRunning {
  /** the WMS endpoint (append a query string) */
  readonly url: string;
  /** pids of the mapserv processes */
  readonly mapservPids: readonly number[];
  /** the WMS GetMap URL of an XYZ tile of `layer` */
  tileUrl(layer: string, t: Tile): string;
  /** peak RSS over the mapserv processes, bytes */
  peakRssBytes(): Promise<number>;
  stop(): Promise<void>;
}

async function vmHwmBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const m = /^VmHWM:\s*(\d+)\s*kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** True while `pid` runs (an exited process waiting to be reaped counts as gone). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // /proc/PID/stat: "pid (comm) S ..."; Z = exited, not yet reaped
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Kill the processes we started (SIGTERM, then SIGKILL after graceMs). */
async function killPids(pids: readonly number[], graceMs: number): Promise<void> {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGTERM');
  const until = Date.now() + graceMs;
  while (pids.some(alive) && Date.now() < until) await sleep(50);
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
}

/**
 * Start MapServer for `layers` under `dir`: `processes` FastCGI mapserv processes on one socket, nginx (one
 * worker) in front. Resolves once a GetCapabilities request answers.
 */
export async function startMapServer(
  dir: string,
  layers: readonly MapServerLayer[],
  opts: { processes?: number } = {},
): Promise<MapServerRunning> {
  for (const exe of [MAPSERV, SPAWN_FCGI, NGINX])
    if (!existsSync(exe))
      throw new Error(`${exe} is missing: install mapserver-bin cgi-mapserver spawn-fcgi nginx-light`);
  await mkdir(dir, { recursive: true });
  const mapfile = path.join(dir, 'bench.map');
  await writeFile(mapfile, mapfileText(layers, path.join(dir, 'mapserver-errors.log')));
  const msConfig = path.join(dir, 'mapserver.conf');
  await writeFile(
    msConfig,
    [
      'CONFIG',
      '  ENV',
      `    MS_MAPFILE ${quote(mapfile)}`,
      `    MS_MAP_PATTERN ${quote(`^${dir}`)}`,
      '  END',
      'END',
      '',
    ].join('\n'),
  );
  const fcgiPort = await freePort();
  const fcgiPidFile = path.join(dir, 'mapserv.pid');
  const processes = opts.processes ?? 2;
  // spawn-fcgi forks the processes and exits; their pids go to the pid file
  await run(
    SPAWN_FCGI,
    ['-a', '127.0.0.1', '-p', String(fcgiPort), '-F', String(processes), '-P', fcgiPidFile, '--', MAPSERV],
    {
      env: { ...process.env, MAPSERVER_CONFIG_FILE: msConfig },
      timeoutMs: 30_000,
    },
  );
  const mapservPids = (await readFile(fcgiPidFile, 'utf8')).split(/\s+/).filter(Boolean).map(Number);
  let nginx: Child | undefined;
  try {
    if (mapservPids.length !== processes)
      throw new Error(`spawn-fcgi started ${mapservPids.length} of ${processes} mapserv processes`);
    const port = await freePort();
    for (const d of ['client_body', 'fastcgi', 'proxy', 'uwsgi', 'scgi'])
      await mkdir(path.join(dir, d), { recursive: true });
    const conf = path.join(dir, 'nginx.conf');
    await writeFile(
      conf,
      `worker_processes 1;
daemon off;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'nginx-error.log')} warn;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path ${path.join(dir, 'client_body')};
  fastcgi_temp_path ${path.join(dir, 'fastcgi')};
  proxy_temp_path ${path.join(dir, 'proxy')};
  uwsgi_temp_path ${path.join(dir, 'uwsgi')};
  scgi_temp_path ${path.join(dir, 'scgi')};
  keepalive_requests 100000;
  server {
    listen 127.0.0.1:${port};
    location /wms {
      fastcgi_param QUERY_STRING $query_string;
      fastcgi_param REQUEST_METHOD $request_method;
      fastcgi_param CONTENT_TYPE $content_type;
      fastcgi_param CONTENT_LENGTH $content_length;
      fastcgi_param SCRIPT_NAME $fastcgi_script_name;
      fastcgi_param REQUEST_URI $request_uri;
      fastcgi_param SERVER_PROTOCOL $server_protocol;
      fastcgi_param SERVER_NAME $server_name;
      fastcgi_param SERVER_PORT $server_port;
      fastcgi_param REMOTE_ADDR $remote_addr;
      fastcgi_param HTTP_HOST $host;
      fastcgi_pass 127.0.0.1:${fcgiPort};
    }
  }
}
`,
    );
    nginx = startChild(NGINX, ['-p', dir, '-c', conf, '-e', path.join(dir, 'nginx-error.log')]);
    const url = `http://127.0.0.1:${port}/wms`;
    const until = Date.now() + 30_000;
    for (;;) {
      const r = await fetch(`${url}?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0`).catch((e: Error) => e);
      if (!(r instanceof Error)) {
        const text = await r.text();
        if (r.status === 200 && text.includes('WMS_Capabilities')) break;
        throw new Error(`MapServer answered GetCapabilities with ${r.status}: ${text.slice(0, 500)}`);
      }
      if (Date.now() > until) throw new Error(`nginx did not answer on ${url}: ${nginx.output().slice(-1000)}`);
      await sleep(100);
    }
    const started = nginx;
    return {
      url,
      mapservPids,
      tileUrl: (layer, t) =>
        `${url}?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS=${layer}&STYLES=&CRS=EPSG:3857&BBOX=${tileBounds3857(t).join(',')}&WIDTH=256&HEIGHT=256&FORMAT=image/png&TRANSPARENT=TRUE`,
      async peakRssBytes() {
        let sum = 0;
        for (const pid of mapservPids) sum += await vmHwmBytes(pid);
        return sum;
      },
      async stop() {
        await started.stop(5_000);
        await killPids(mapservPids, 5_000);
      },
    };
  } catch (e) {
    await nginx?.stop(1_000);
    await killPids(mapservPids, 1_000);
    throw e;
  }
}
