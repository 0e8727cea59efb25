/**
 * Over 500 lines because the three views share one range, HEAD and ETag handling that GDAL's `/vsicurl/` relies
 * on; splitting them would split that contract.
 *
 * The virtual views QGIS and GDAL open directly with `/vsicurl/`, `GET` and `HEAD` each:
 *
 *   /mosaics/{id}.tif              the virtual COG (tiles rendered when a byte range asks for them)
 *   /mosaics/{id}.vrt              a GDAL VRT of the mosaic (`?sources=direct` for the sources' own URLs)
 *   /mosaics/{id}/sources/{n}.tif  the bytes of source n (0-based), the range proxy the VRT points at
 *   /mosaics/{id}/items/{n}/{asset}.tif  the bytes of an asset of item n of a catalogue mosaic (its VRT's proxy)
 *
 * HTTP semantics come from `http.range.ts`: exact Content-Length on HEAD, Accept-Ranges, ETag, Last-Modified,
 * 206 + Content-Range, suffix ranges, multipart/byteranges, 416 with `bytes *\/SIZE`, 304, 412, If-Range.
 * An invalid Range header is ignored (RFC 9110), so the answer is the one a plain GET gets.
 *
 * A plain GET (or an ignored Range, or a failed If-Range) of the virtual COG streams the whole file, rendering tile
 * after tile as the client reads (backpressure, bounded memory), up to MAX_VIRTUAL_COG_BODY_BYTES (512 MiB) in one
 * response, 200 or 206; above that the answer is 413 with a message to use byte ranges. HEAD is always answered.
 * Bodies up to 32 MiB are assembled before the status is sent, so a failing render is a clean error status.
 * Both views carry each band's name and the statistics of the tiles' default stretch (STATISTICS_MINIMUM/MAXIMUM/
 * MEAN/STDDEV/VALID_PERCENT, STATISTICS_APPROXIMATE=YES): GDAL_METADATA in the COG, `<Metadata>` in the VRT. They
 * cost one sample render per mosaic version, shared with the tiles, the first time a view is opened (catalogue
 * mosaics and mosaics of many sources carry the names only: see mosaicBandSummaries).
 * Sidecar probes (`.ovr`, `.aux.xml`, `.msk`, world files, RPCs) and directory listings (`/mosaics/`, ...) get a
 * fast 404 without touching a mosaic. Opening a view (HEAD, or a read from byte 0) re-checks the mosaic's sources
 * at most every 30 s, so the ETag follows a changed source.
 */
import { createHash } from 'node:crypto';
import { ServerResponse } from 'node:http';
import { type Context, Hono } from 'hono';
import { Counter, Gauge, type Registry } from 'prom-client';
import { gdalMetadataDocument, mosaicBandSummaries, statisticsItems } from '../materialize/statistics.xml.ts';
import { VIRTUAL_COG_TASK, type VirtualCogTileArgs } from '../materialize/virtual.cog.task.ts';
import { type VirtualCogReadCounter, VirtualCogStore } from '../materialize/virtual.cog.ts';
import { catalogueVrt, directSourcePath, mosaicVrt } from '../materialize/virtual.vrt.ts';
import { isCogmillError, SourceError } from '../render/errors.ts';
import { selectItems } from '../render/mosaic.items.ts';
import type { Mosaic } from '../render/mosaic.ts';
import { parseInterval } from '../render/stac.ts';
import { MiB } from '../render/types.ts';
import type { AppDeps } from './deps.ts';
import { RequestError } from './errors.ts';
import { type RangedAnswer, type RangedRepresentation, rangedHeaders, rangedResponse } from './http.range.ts';
import { appMetrics } from './metrics.ts';
import { type AppEnv, type RequestInfo, timed } from './request.ts';
import { baseUrl, MOSAIC_ID } from './urls.ts';

/**
 * Largest body of one virtual COG response (200 or 206): rendering more in one request (about a minute of one
 * core) is refused with 413. GDAL reads a tile or a few per request, far below this.
 */
export const MAX_VIRTUAL_COG_BODY_BYTES = 512 * MiB;
/** Bodies up to this size are assembled before the status is sent (a failure is a clean error status). */
const BUFFERED_BODY_BYTES = 32 * MiB;
/** Read size when streaming a source through the range proxy. */
const SOURCE_STREAM_CHUNK_BYTES = 8 * MiB;
/** How often opening a view (HEAD, or a read of the first bytes) re-checks the sources for changes. */
const REVALIDATE_INTERVAL_MS = 30_000;

const TIFF_TYPE = 'image/tiff';
const VRT_TYPE = 'application/xml; charset=utf-8';

/** A regex source matching `text` in any letter case (Hono route patterns take no flags). */
function anyCase(text: string): string {
  return text.replace(/[a-z]/gi, (ch) => `[${ch.toLowerCase()}${ch.toUpperCase()}]`).replace(/\./g, '\\.');
}

/** Files GDAL looks for next to a dataset: overviews, PAM, masks, world files, RPCs, .prj. */
const SIDECAR_SUFFIX = `(?:${['.ovr', '.aux.xml', '.msk', '.tfw', '.tifw', '.wld', '.prj', '.imd', '.rpb', '_rpc.txt', '.xml'].map(anyCase).join('|')})`;

/** Where the bytes of a representation come from. */
interface RangedBody {
  /** exactly `length` bytes at `offset` */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** the same as a stream with backpressure, for large bodies */
  stream(offset: number, length: number): ReadableStream<Uint8Array>;
}

interface ServeOptions {
  readonly cacheControl: string;
  /** a larger body (after HEAD, which is always answered) is refused with this error */
  readonly tooLarge?: { readonly maxBytes: number; readonly message: (bytes: number) => string };
  readonly extraHeaders?: Record<string, string>;
}

const encoder = new TextEncoder();

function memoryBody(bytes: Uint8Array): RangedBody {
  return {
    read: async (offset, length) => bytes.subarray(offset, offset + length),
    stream: (offset, length) =>
      new ReadableStream({
        start(controller) {
          controller.enqueue(bytes.subarray(offset, offset + length));
          controller.close();
        },
      }),
  };
}

/** The whole body of a answer as a stream: parts one after the other, multipart heads between them. */
function streamAnswer(answer: Extract<RangedAnswer, { parts: unknown }>, body: RangedBody): ReadableStream<Uint8Array> {
  let i = 0;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let ended = false;
  const mp = answer.multipart;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          if (reader) {
            const { done, value } = await reader.read();
            if (!done) {
              controller.enqueue(value);
              return;
            }
            reader = undefined;
            i++;
            continue;
          }
          if (i >= answer.parts.length) {
            if (mp && !ended) controller.enqueue(encoder.encode(mp.tail));
            ended = true;
            controller.close();
            return;
          }
          const p = answer.parts[i];
          reader = body.stream(p.start, p.end - p.start + 1).getReader();
          if (mp) {
            controller.enqueue(encoder.encode(mp.heads[i]));
            return;
          }
        }
      },
      async cancel(reason) {
        await reader?.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

async function bufferAnswer(
  answer: Extract<RangedAnswer, { parts: unknown }>,
  body: RangedBody,
): Promise<Uint8Array<ArrayBuffer>> {
  const pieces = await Promise.all(answer.parts.map((p) => body.read(p.start, p.end - p.start + 1)));
  // one range: the bytes read are the body (no second copy of a range GDAL asks for in megabytes)
  const only = pieces[0];
  if (
    !answer.multipart &&
    pieces.length === 1 &&
    only.byteLength === answer.bodyBytes &&
    only.buffer instanceof ArrayBuffer
  )
    return only as Uint8Array<ArrayBuffer>;
  const out = new Uint8Array(answer.bodyBytes);
  let pos = 0;
  const put = (b: Uint8Array) => {
    out.set(b, pos);
    pos += b.byteLength;
  };
  pieces.forEach((bytes, i) => {
    if (bytes.byteLength !== answer.parts[i].end - answer.parts[i].start + 1) {
      throw new SourceError('changed', 'the bytes changed size while they were being read; retry the request');
    }
    if (answer.multipart) put(encoder.encode(answer.multipart.heads[i]));
    put(bytes);
  });
  if (answer.multipart) put(encoder.encode(answer.multipart.tail));
  return out;
}

/**
 * GDAL (3.6 and later) finds the boundary of a multipart/byteranges answer by a case-sensitive search for
 * `Content-Type: multipart/byteranges; boundary=` in the raw response head, while the server layer writes header
 * names in lower case. Header names are case-insensitive, so writing this one capitalised is harmless: on Node's
 * HTTP server the field is renamed as the head of this one response is written.
 */
function capitaliseContentTypeOnWrite(c: Context<AppEnv>): void {
  const out = (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
  if (!(out instanceof ServerResponse)) return;
  const writeHead = out.writeHead;
  const patched = function (this: ServerResponse, ...args: unknown[]) {
    out.writeHead = writeHead;
    const i = args.findIndex((a, k) => k > 0 && a !== null && typeof a === 'object' && !Array.isArray(a));
    if (i > 0) {
      const renamed: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(args[i] as Record<string, unknown>))
        renamed[k === 'content-type' ? 'Content-Type' : k] = v;
      args[i] = renamed;
    }
    return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args);
  };
  out.writeHead = patched as typeof out.writeHead;
}

/** Answer a GET/HEAD of a byte-addressable representation with full range and conditional semantics. */
async function serveRanged(
  c: Context<AppEnv>,
  rep: RangedRepresentation,
  body: RangedBody,
  options: ServeOptions,
): Promise<Response> {
  const info = c.get('req');
  const method = c.req.method;
  const range = c.req.header('range');
  const answer = rangedResponse(
    {
      method,
      range,
      ifRange: c.req.header('if-range'),
      ifNoneMatch: c.req.header('if-none-match'),
      ifMatch: c.req.header('if-match'),
      ifModifiedSince: c.req.header('if-modified-since'),
      ifUnmodifiedSince: c.req.header('if-unmodified-since'),
    },
    rep,
  );
  if (range !== undefined) info.fields.range = range.slice(0, 200);
  const headers: Record<string, string> = {
    ...rangedHeaders(answer, rep),
    'cache-control': options.cacheControl,
    ...options.extraHeaders,
  };
  if (answer.status === 304 || answer.status === 412) return new Response(null, { status: answer.status, headers });
  if (answer.status === 416) {
    info.fields.rangeRefused = answer.reason;
    if (method === 'HEAD') return new Response(null, { status: 416, headers });
    const json = encoder.encode(
      JSON.stringify({
        code: 'range-not-satisfiable',
        message: `${answer.reason}; the size is ${rep.size} bytes`,
        requestId: info.id,
      }),
    );
    return new Response(json, {
      status: 416,
      headers: { ...headers, 'content-type': 'application/json', 'content-length': String(json.byteLength) },
    });
  }
  if (answer.rangeIgnored) info.fields.rangeIgnored = answer.rangeIgnored;
  info.fields.bodyBytes = answer.bodyBytes;
  if (answer.multipart) capitaliseContentTypeOnWrite(c);
  if (method === 'HEAD') return new Response(null, { status: answer.status, headers });
  if (options.tooLarge && answer.bodyBytes > options.tooLarge.maxBytes) {
    throw new RequestError('too-large', options.tooLarge.message(answer.bodyBytes));
  }
  if (answer.bodyBytes <= BUFFERED_BODY_BYTES) {
    const bytes = await timed(info, 'read', () => bufferAnswer(answer, body));
    return new Response(bytes, { status: answer.status, headers });
  }
  return new Response(streamAnswer(answer, body), { status: answer.status, headers });
}

/** A strong entity tag for a source's version tag (kept as is when it already is one). */
/**
 * The items a catalogue mosaic's VRT lists, in compositing order: all, or those under `bbox` (minx,miny,maxx,maxy
 * in the mosaic's CRS) and overlapping `datetime`.
 */
function vrtItems(c: Context<AppEnv>, mosaic: Mosaic): number[] {
  const mi = mosaic.items!;
  const g = mosaic.grid;
  let grid = g;
  const bboxText = c.req.query('bbox');
  if (bboxText !== undefined) {
    const b = bboxText.split(',').map(Number);
    if (b.length !== 4 || !b.every(Number.isFinite) || !(b[0] < b[2] && b[1] < b[3]))
      throw new RequestError(
        'bad-request',
        `bbox must be minx,miny,maxx,maxy in the mosaic's CRS (EPSG:${g.crs.epsg}) with minx < maxx and miny < maxy`,
      );
    const res = Math.abs(g.transform[1]);
    grid = {
      crs: g.crs,
      transform: [b[0], res, 0, b[3], 0, -res],
      width: Math.max(1, Math.ceil((b[2] - b[0]) / res)),
      height: Math.max(1, Math.ceil((b[3] - b[1]) / res)),
    };
  }
  const dt = c.req.query('datetime');
  return selectItems(mi, grid, dt ? parseInterval(dt) : undefined);
}

export function sourceEntityTag(etag: string): string {
  if (/^"[\x21\x23-\x7e]*"$/.test(etag)) return etag;
  return `"src-${createHash('sha256').update(etag).digest('base64url').slice(0, 27)}"`;
}

interface VirtualMetrics {
  readonly tilesRendered: Counter;
  readonly tileReads: Counter<'result'>;
}

function virtualMetrics(registry: Registry, store: () => VirtualCogStore | undefined): VirtualMetrics {
  const existing = registry.getSingleMetric('cogmill_virtual_cog_tiles_rendered_total') as Counter | undefined;
  if (existing) {
    return {
      tilesRendered: existing,
      tileReads: registry.getSingleMetric('cogmill_virtual_cog_tile_reads_total') as Counter<'result'>,
    };
  }
  const registers = [registry];
  new Gauge({
    name: 'cogmill_virtual_cog_cache_bytes',
    help: 'bytes of rendered virtual COG tiles held in memory',
    registers,
    collect() {
      this.set(store()?.cachedBytes ?? 0);
    },
  });
  return {
    tilesRendered: new Counter({
      name: 'cogmill_virtual_cog_tiles_rendered_total',
      help: 'virtual COG tiles rendered (each render once, however many requests waited for it)',
      registers,
    }),
    tileReads: new Counter({
      name: 'cogmill_virtual_cog_tile_reads_total',
      help: 'virtual COG tile reads by result: hit (cache), shared (joined a render under way), miss (rendered)',
      labelNames: ['result'],
      registers,
    }),
  };
}

function notFoundBody(c: Context<AppEnv>, message: string): Response {
  return c.json({ code: 'not-found', message, requestId: c.get('req')?.id }, 404, {
    'cache-control': 'public, max-age=300',
  });
}

export function virtualRoutes(deps: AppDeps): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  const { config, engine, catalog } = deps;
  const cacheControl = config.server.cacheControl;
  const holder: { store?: VirtualCogStore } = {};
  const metrics = virtualMetrics(deps.metrics, () => holder.store);
  const renderSeconds = appMetrics(deps.metrics, engine).renderSeconds;
  const pool = deps.tilePool;
  const cogs = new VirtualCogStore(
    engine,
    {
      cacheBytes: config.cache.virtualCogBytes,
      // on the tile worker threads when there are some: a whole-file read then uses every core
      ...(pool
        ? {
            renderTile: (mosaic: Mosaic, args: VirtualCogTileArgs) => pool.runTask(mosaic.id, VIRTUAL_COG_TASK, args),
            idle: () => pool.idle(),
            readConcurrency: 2 * pool.size,
          }
        : {}),
    },
    {
      onTileRendered(ms) {
        metrics.tilesRendered.inc();
        renderSeconds.observe({ kind: 'virtual-cog' }, ms / 1000);
      },
      onTileRead(result) {
        metrics.tileReads.inc({ result });
      },
    },
  );
  holder.store = cogs;

  const bandSummaries = (mosaic: Mosaic) => mosaicBandSummaries(deps.statistics, mosaic);

  const lastChecked = new Map<string, number>();
  /** Re-check the sources of a mosaic (at most every REVALIDATE_INTERVAL_MS): a changed source changes the ETag. */
  async function revalidate(mosaic: Mosaic, info: RequestInfo): Promise<void> {
    const now = Date.now();
    if (now - (lastChecked.get(mosaic.id) ?? 0) < REVALIDATE_INTERVAL_MS) return;
    lastChecked.set(mosaic.id, now);
    try {
      if (await timed(info, 'revalidate', () => engine.refresh(mosaic))) info.fields.mosaicChanged = true;
    } catch (e) {
      info.log.warn({ mosaic: mosaic.id, err: { message: (e as Error).message } }, 'could not re-check the sources');
    }
  }

  /** A request that opens a file: HEAD, a plain GET, or a range starting at byte 0. */
  function opensFile(c: Context<AppEnv>): boolean {
    const range = c.req.header('range');
    return c.req.method === 'HEAD' || range === undefined || /^\s*bytes\s*=\s*0-/i.test(range);
  }

  // ---- fast 404s for what GDAL probes next to a file, and for directory listings
  const sidecar = (c: Context<AppEnv>) =>
    notFoundBody(
      c,
      `${c.req.path} does not exist: cogmill serves no sidecar files (overviews and nodata are inside the file)`,
    );
  const listing = (c: Context<AppEnv>) =>
    notFoundBody(c, `${c.req.path} is not listable; GET /mosaics lists the mosaics`);
  r.get(`/mosaics/:sidecar{[^/]+${SIDECAR_SUFFIX}}`, sidecar);
  r.get(`/mosaics/:id{${MOSAIC_ID}}/sources/:sidecar{[^/]+${SIDECAR_SUFFIX}}`, sidecar);
  r.get('/mosaics/', listing);
  r.get(`/mosaics/:id{${MOSAIC_ID}}/`, listing);
  r.get(`/mosaics/:id{${MOSAIC_ID}}/sources/`, listing);

  // ---- the virtual COG
  // (Hono takes no literal text after a parameter, so the suffix is part of it: `cog` is `{id}.tif`)
  r.get(`/mosaics/:cog{${MOSAIC_ID}\\.tif}`, async (c) => {
    const info = c.get('req');
    const mosaic = catalog.get(c.req.param('cog').slice(0, -'.tif'.length));
    if (opensFile(c)) await revalidate(mosaic, info);
    const summaries = await timed(info, 'statistics', () => bandSummaries(mosaic));
    const cog = await timed(info, 'answer', async () =>
      cogs.open(mosaic, { gdalMetadata: gdalMetadataDocument(summaries) }),
    );
    info.fields.mosaic = mosaic.id;
    const rep: RangedRepresentation = {
      size: cog.size,
      etag: cog.etag,
      lastModified: mosaic.lastModified,
      contentType: TIFF_TYPE,
    };
    const counter: VirtualCogReadCounter = { rendered: 0, cached: 0, shared: 0 };
    try {
      return await serveRanged(
        c,
        rep,
        {
          read: (offset, length) => cog.read(offset, length, counter),
          stream: (offset, length) => cog.stream(offset, length, counter),
        },
        {
          cacheControl,
          tooLarge: {
            maxBytes: MAX_VIRTUAL_COG_BODY_BYTES,
            message: (bytes) =>
              `this answer would render ${bytes} bytes of the virtual COG of mosaic ${mosaic.id} (${cog.size} bytes in all); one response carries at most ${MAX_VIRTUAL_COG_BODY_BYTES} bytes. Ask for byte ranges (GDAL's /vsicurl/ does), or materialise the mosaic as a real COG`,
          },
        },
      );
    } finally {
      // tiles behind the bytes read before the answer started (a streamed body renders more as it goes)
      info.fields.tiles = { ...counter };
    }
  });

  // ---- the VRT
  r.get(`/mosaics/:vrt{${MOSAIC_ID}\\.vrt}`, async (c) => {
    const info = c.get('req');
    const mosaic = catalog.get(c.req.param('vrt').slice(0, -'.vrt'.length));
    const mode = c.req.query('sources') ?? 'proxy';
    if (mode !== 'proxy' && mode !== 'direct') {
      throw new RequestError(
        'bad-request',
        `sources must be "proxy" (read through this server, the default) or "direct" (the sources' own URLs), got "${mode.slice(0, 40)}"`,
      );
    }
    if (opensFile(c)) await revalidate(mosaic, info);
    const base = baseUrl(c, config);
    const mosaicUrl = `${base}/mosaics/${encodeURIComponent(mosaic.id)}`;
    const summaries = await timed(info, 'statistics', () => bandSummaries(mosaic));
    const xml = mosaic.items
      ? catalogueVrt(mosaic, {
          items: vrtItems(c, mosaic),
          bandMetadata: summaries.map(statisticsItems),
          assetPath:
            mode === 'direct'
              ? (_i, _a, href) => directSourcePath(href)
              : (i, a) => `/vsicurl/${mosaicUrl}/items/${i}/${encodeURIComponent(a)}.tif`,
          note:
            mode === 'direct'
              ? 'Assets are read directly (http(s) via /vsicurl/, S3 via /vsis3/ with your own credentials, local paths on this host).'
              : `Assets are read through cogmill's range proxy (${mosaicUrl}/items/{n}/{asset}.tif): no credentials needed.`,
        })
      : mosaicVrt(mosaic, {
          bandMetadata: summaries.map(statisticsItems),
          sourcePath:
            mode === 'direct'
              ? (s) => directSourcePath(s.location)
              : (s) => `/vsicurl/${mosaicUrl}/sources/${s.index}.tif`,
          note:
            mode === 'direct'
              ? 'Sources are read directly (http(s) via /vsicurl/, S3 via /vsis3/ with your own credentials, local paths on this host).'
              : `Sources are read through cogmill's range proxy (${mosaicUrl}/sources/{n}.tif): no credentials needed.`,
        });
    const bytes = encoder.encode(xml);
    const etag = `"vrt-${createHash('sha256').update(`${mosaic.etag}\n`).update(bytes).digest('base64url').slice(0, 27)}"`;
    return serveRanged(
      c,
      { size: bytes.byteLength, etag, lastModified: mosaic.lastModified, contentType: VRT_TYPE },
      memoryBody(bytes),
      {
        cacheControl,
        extraHeaders: config.server.publicUrl ? {} : { vary: 'Host, X-Forwarded-Host, X-Forwarded-Proto' },
      },
    );
  });

  /**
   * The bytes of one raster, ranged: `opened` gives its header (size, ETag); a read that finds the object changed
   * re-checks the mosaic once and answers with the new version.
   */
  const rangeProxy = async (
    c: Context<AppEnv>,
    mosaic: Mosaic,
    location: string,
    what: string,
    opened: () => Promise<{ size: number; etag: string }>,
  ) => {
    const info = c.get('req');
    const signal = info.signal;
    const answer = async () => {
      const rinfo = await opened();
      const src = await engine.source(location);
      const read = async (offset: number, length: number) => {
        const r = await src.read(offset, length, { ifMatch: rinfo.etag, signal });
        return r.bytes;
      };
      return serveRanged(
        c,
        {
          size: rinfo.size,
          etag: sourceEntityTag(rinfo.etag),
          lastModified: mosaic.lastModified,
          contentType: TIFF_TYPE,
        },
        {
          read,
          stream: (offset, length) => {
            let pos = offset;
            const end = offset + length;
            return new ReadableStream<Uint8Array>(
              {
                async pull(controller) {
                  if (pos >= end) {
                    controller.close();
                    return;
                  }
                  const bytes = await read(pos, Math.min(SOURCE_STREAM_CHUNK_BYTES, end - pos));
                  if (bytes.byteLength === 0) {
                    controller.error(new SourceError('changed', `${what} of ${mosaic.id} ended early`));
                    return;
                  }
                  pos += bytes.byteLength;
                  controller.enqueue(bytes);
                },
              },
              { highWaterMark: 0 },
            );
          },
        },
        { cacheControl },
      );
    };
    try {
      return await answer();
    } catch (e) {
      if (!(isCogmillError(e) && e.kind === 'changed')) throw e;
      // the source changed since it was opened: re-open it and answer with the new version (and ETag)
      await timed(info, 'revalidate', () => engine.refresh(mosaic));
      return answer();
    }
  };

  // ---- the range proxy of one source
  r.get(`/mosaics/:id{${MOSAIC_ID}}/sources/:source{(?:0|[1-9][0-9]{0,8})\\.tif}`, async (c) => {
    const info = c.get('req');
    const mosaic = catalog.get(c.req.param('id'));
    const n = Number(c.req.param('source').slice(0, -'.tif'.length));
    if (n >= mosaic.sources.length) {
      throw new RequestError(
        'not-found',
        `mosaic ${mosaic.id} has ${mosaic.sources.length} source(s), numbered 0 to ${mosaic.sources.length - 1}; there is no source ${n}`,
      );
    }
    info.fields.mosaic = mosaic.id;
    info.fields.source = n;
    return rangeProxy(c, mosaic, mosaic.sources[n].location, `source ${n}`, async () => mosaic.sources[n].raster.info);
  });

  // ---- the range proxy of one asset of one item of a catalogue mosaic (what its VRT points at)
  r.get(`/mosaics/:id{${MOSAIC_ID}}/items/:item{(?:0|[1-9][0-9]{0,8})}/:asset{[^/]+\\.tif}`, async (c) => {
    const info = c.get('req');
    const mosaic = catalog.get(c.req.param('id'));
    const n = Number(c.req.param('item'));
    const name = decodeURIComponent(c.req.param('asset').slice(0, -'.tif'.length));
    const item = mosaic.items?.items[n];
    if (!item)
      throw new RequestError(
        'not-found',
        mosaic.items
          ? `mosaic ${mosaic.id} has ${mosaic.items.items.length} items, numbered 0 to ${mosaic.items.items.length - 1}; there is no item ${n}`
          : `mosaic ${mosaic.id} is not a catalogue mosaic: its sources are /mosaics/${mosaic.id}/sources/{n}.tif`,
      );
    const asset = mosaic.items!.assets.includes(name) ? item.assets[name] : undefined;
    if (!asset)
      throw new RequestError(
        'not-found',
        `item ${n} (${item.id}) of mosaic ${mosaic.id} has no asset ${name.slice(0, 60)} among the mosaic's (${mosaic.items!.assets.join(', ')})`,
      );
    info.fields.mosaic = mosaic.id;
    info.fields.source = `${n}/${name}`;
    return rangeProxy(c, mosaic, asset.href, `asset ${name} of item ${n}`, async () => {
      const raster = await engine.openRaster(asset.href, info.signal);
      return raster.info;
    });
  });

  return r;
}
