/**
 * The QC viewer: `GET /mosaics/{id}/viewer`, a full-page OpenLayers map of one mosaic with style controls, a
 * pixel inspector and the URLs to paste into QGIS; and `GET /static/{file}`, the files that page loads
 * (OpenLayers read from node_modules, the page's own script and stylesheet from ./viewer/). Nothing comes from a
 * CDN, so the page works on a closed network.
 *
 * Static files are read once, on first use, and kept in memory with their gzip form. The page links them as
 * `/static/{file}?v={version}`; a request carrying the current version is cached for a year (`immutable`),
 * any other for a short while, and every answer has an ETag.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { Hono } from 'hono';
import { COLORMAP_NAMES } from '../render/style.colormap.ts';
import { RESAMPLINGS } from '../render/types.ts';
import type { AppDeps } from './deps.ts';
import { RequestError } from './errors.ts';
import { ifNoneMatch } from './http.range.ts';
import type { AppEnv } from './request.ts';
import { MOSAIC_ID } from './urls.ts';

/** Colormap names offered for single-band display; the tile routes accept these names. */
export const VIEWER_COLORMAPS = [
  'gray',
  'viridis',
  'magma',
  'inferno',
  'plasma',
  'cividis',
  'terrain',
  'rdylgn',
  'spectral',
] as const;

const CACHE_VERSIONED = 'public, max-age=31536000, immutable';
const CACHE_UNVERSIONED = 'public, max-age=300';
const CACHE_PAGE = 'no-cache';

/** Content security policy of the page: only this origin; OpenLayers sets inline styles and may start blob workers. */
const PAGE_CSP = [
  "default-src 'self'",
  "img-src 'self' data: blob:",
  "style-src 'self' 'unsafe-inline'",
  "worker-src 'self' blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "frame-ancestors 'self'",
].join('; ');

interface StaticFileSpec {
  /** absolute path resolved when the routes are built */
  readonly file: string;
  readonly contentType: string;
}

interface StaticAsset {
  readonly body: Uint8Array;
  readonly gzip: Uint8Array | undefined;
  readonly contentType: string;
  readonly version: string;
  readonly etag: string;
}

/** Files under `/static/`: OpenLayers' browser build and stylesheet, and the viewer's own files. */
export function viewerStaticFiles(): Record<string, StaticFileSpec> {
  const require = createRequire(import.meta.url);
  const olDir = path.dirname(require.resolve('ol/package.json'));
  const own = path.join(import.meta.dirname, 'viewer');
  const js = 'text/javascript; charset=utf-8';
  return {
    'ol.js': { file: path.join(olDir, 'dist', 'ol.js'), contentType: js },
    'ol.js.map': { file: path.join(olDir, 'dist', 'ol.js.map'), contentType: 'application/json; charset=utf-8' },
    'ol.css': { file: path.join(olDir, 'ol.css'), contentType: 'text/css; charset=utf-8' },
    'viewer.js': { file: path.join(own, 'viewer.js'), contentType: js },
    'viewer.css': { file: path.join(own, 'viewer.css'), contentType: 'text/css; charset=utf-8' },
  };
}

async function loadAsset(spec: StaticFileSpec): Promise<StaticAsset> {
  const body = new Uint8Array(await readFile(spec.file));
  const version = createHash('sha256').update(body).digest('hex').slice(0, 16);
  // text compresses well; gzip once here rather than per request
  const gzip = body.byteLength > 1024 ? new Uint8Array(gzipSync(body, { level: 9 })) : undefined;
  return { body, gzip, contentType: spec.contentType, version, etag: `"${version}"` };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

export function viewerRoutes(deps: AppDeps): Hono<AppEnv> {
  const r = new Hono<AppEnv>();
  const files = viewerStaticFiles();
  const assets = new Map<string, Promise<StaticAsset>>();
  const asset = (name: string): Promise<StaticAsset> => {
    const spec = files[name];
    if (!spec)
      return Promise.reject(
        new RequestError('not-found', `no static file "${name}"; known: ${Object.keys(files).join(', ')}`),
      );
    let p = assets.get(name);
    if (!p) {
      p = loadAsset(spec);
      // a failed read (a broken installation) is not cached, so fixing the files needs no restart
      p.catch(() => assets.delete(name));
      assets.set(name, p);
    }
    return p;
  };
  let template: Promise<string> | undefined;
  const pageTemplate = (): Promise<string> => {
    if (!template) {
      template = readFile(path.join(import.meta.dirname, 'viewer', 'viewer.html'), 'utf8');
      template.catch(() => {
        template = undefined;
      });
    }
    return template;
  };

  r.get('/static/:file{[A-Za-z0-9._-]+}', async (c) => {
    const a = await asset(c.req.param('file'));
    const versioned = c.req.query('v') === a.version;
    c.header('Cache-Control', versioned ? CACHE_VERSIONED : CACHE_UNVERSIONED);
    c.header('ETag', a.etag);
    c.header('Vary', 'Accept-Encoding');
    c.header('X-Content-Type-Options', 'nosniff');
    if (ifNoneMatch(c.req.header('if-none-match'), a.etag)) return c.body(null, 304);
    c.header('Content-Type', a.contentType);
    const gzipOk = a.gzip !== undefined && /\bgzip\b/i.test(c.req.header('accept-encoding') ?? '');
    if (gzipOk) c.header('Content-Encoding', 'gzip');
    const body = gzipOk ? a.gzip! : a.body;
    c.header('Content-Length', String(body.byteLength));
    return c.body(body as Uint8Array<ArrayBuffer>, 200);
  });

  r.get(`/mosaics/:id{${MOSAIC_ID}}/viewer`, async (c) => {
    const m = deps.catalog.get(c.req.param('id'));
    const [html, olJs, olCss, viewerJs, viewerCss] = await Promise.all([
      pageTemplate(),
      asset('ol.js'),
      asset('ol.css'),
      asset('viewer.js'),
      asset('viewer.css'),
    ]);
    const mosaicPath = `/mosaics/${encodeURIComponent(m.id)}`;
    const config = {
      id: m.id,
      title: m.title,
      mosaicUrl: mosaicPath,
      colormaps: COLORMAP_NAMES.filter((n) => n !== 'gray'),
      resamplings: RESAMPLINGS,
      defaultResampling: m.resampling,
    };
    const page = html
      .replaceAll('{{title}}', escapeHtml(m.title || m.id))
      .replaceAll('{{id}}', escapeHtml(m.id))
      .replaceAll('{{config}}', escapeHtml(JSON.stringify(config)))
      .replaceAll('{{olJs}}', `/static/ol.js?v=${olJs.version}`)
      .replaceAll('{{olCss}}', `/static/ol.css?v=${olCss.version}`)
      .replaceAll('{{viewerJs}}', `/static/viewer.js?v=${viewerJs.version}`)
      .replaceAll('{{viewerCss}}', `/static/viewer.css?v=${viewerCss.version}`);
    c.header('Cache-Control', CACHE_PAGE);
    c.header('Content-Security-Policy', PAGE_CSP);
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Referrer-Policy', 'same-origin');
    return c.html(page);
  });

  return r;
}
