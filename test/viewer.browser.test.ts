/**
 * The QC viewer in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core), over the real
 * app on port 0 and GDAL-written fixtures. Pixel values shown by the inspector are checked against the point
 * endpoint and against `gdallocationinfo` on the source file.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { startTestServer, type TestServer } from './support/app.ts';
import { fixtureDir, PYTHON, sh } from './support/gdal.ts';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/**
 * Page events are waited for without a deadline of their own (0 = none in playwright): how long a page takes on a
 * loaded machine says nothing about the viewer, and a page that really hangs is caught by the test's timeout.
 */
const WAIT_MS = 0;
const VIEWPORT = { width: 1280, height: 800 };

/** The globals the viewer page exposes, as far as the tests use them. */
interface ViewerGlobals {
  cogmill: {
    map: { getPixelFromCoordinate(c: number[]): [number, number]; getCoordinateFromPixel(p: number[]): number[] };
  };
  ol: { proj: { fromLonLat(c: number[]): number[]; toLonLat(c: number[]): [number, number] } };
}

interface TileHit {
  readonly url: string;
  readonly status: number;
  readonly contentType: string;
  readonly bytes: number;
  readonly png: boolean;
  readonly width: number;
  readonly height: number;
}

/** Everything a page does that a test may want to assert about. */
interface PageWatch {
  readonly consoleErrors: string[];
  readonly failedRequests: string[];
  readonly badResponses: string[];
  readonly tiles: TileHit[];
  readonly pending: Promise<void>[];
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

const TILE_URL = /\/tiles\/\d+\/\d+\/\d+(@2x)?\.png/;

/** PNG width and height from the IHDR chunk, or undefined if `body` is not a PNG. */
function pngSize(body: Uint8Array): [number, number] | undefined {
  if (body.byteLength < 24 || !PNG_SIGNATURE.every((b, i) => body[i] === b)) return undefined;
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  return [view.getUint32(16), view.getUint32(20)];
}

/**
 * Record console errors, failed requests and error responses of a page, and pass its tile requests through to the
 * server while keeping a copy of each answer (Chromium does not keep bodies the page reads with fetch()).
 */
async function watch(page: Page): Promise<PageWatch> {
  const w: PageWatch = { consoleErrors: [], failedRequests: [], badResponses: [], tiles: [], pending: [] };
  page.on('console', (m) => {
    if (m.type() === 'error') w.consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => w.consoleErrors.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => w.failedRequests.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) w.badResponses.push(`${r.status()} ${r.url()}`);
  });
  await page.route(TILE_URL, async (route) => {
    const done = (async () => {
      // a connection of its own per tile: playwright's client keeps idle connections and does not resend a request
      // that meets the server closing one (as a browser does), a race a loaded machine makes likely
      const res = await route.fetch({ headers: { ...route.request().headers(), connection: 'close' } });
      const body = await res.body();
      const size = pngSize(body);
      w.tiles.push({
        url: route.request().url(),
        status: res.status(),
        contentType: res.headers()['content-type'] ?? '',
        bytes: body.byteLength,
        png: size !== undefined,
        width: size?.[0] ?? 0,
        height: size?.[1] ?? 0,
      });
      await route.fulfill({ response: res, body });
    })();
    // a failed pass-through fails the tile request in the page (recorded as a failed request) instead of leaving
    // the map waiting for it
    const failed = done.then(
      () => undefined,
      async (e: unknown) => {
        w.failedRequests.push(`${route.request().url()}: passing the tile through failed: ${(e as Error).message}`);
        await route.abort('failed').catch(() => undefined);
      },
    );
    w.pending.push(failed);
    await failed;
  });
  return w;
}

async function settled(w: PageWatch): Promise<void> {
  await Promise.all(w.pending);
}

function assertClean(w: PageWatch): void {
  assert.deepEqual(w.consoleErrors, [], 'console errors');
  assert.deepEqual(w.failedRequests, [], 'failed requests');
  assert.deepEqual(w.badResponses, [], 'responses >= 400');
}

/** Wait until the map has finished rendering every tile of the current view. */
async function waitRendered(page: Page, afterRenders = 0): Promise<void> {
  await page.waitForFunction(
    (n) => document.documentElement.dataset.map === 'rendered' && Number(document.documentElement.dataset.renders) > n,
    afterRenders,
    { timeout: WAIT_MS },
  );
}

async function renderCount(page: Page): Promise<number> {
  return page.evaluate(() => Number(document.documentElement.dataset.renders ?? 0));
}

/** Non-transparent pixels and distinct colours on the map's canvases. */
async function canvasSummary(page: Page) {
  return page.evaluate(() => {
    let opaque = 0;
    let total = 0;
    let coloured = 0;
    const colours = new Set<number>();
    for (const canvas of document.querySelectorAll<HTMLCanvasElement>('#map canvas')) {
      const ctx = canvas.getContext('2d');
      if (!ctx || canvas.width === 0 || canvas.height === 0) continue;
      const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      total += data.length / 4;
      for (let i = 0; i < data.length; i += 4) {
        if (data[i + 3] === 0) continue;
        opaque++;
        if (data[i] !== data[i + 1] || data[i + 1] !== data[i + 2]) coloured++;
        if (colours.size < 5000) colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
      }
    }
    return { total, opaque, coloured, distinct: colours.size };
  });
}

interface InspectorRow {
  readonly band: number;
  readonly value: string;
  readonly nodata: boolean;
  readonly text: string;
}

/** Click the map at a pixel of the map element and read what the inspector shows. */
async function clickAndInspect(page: Page, x: number, y: number) {
  const box = (await page.locator('#map').boundingBox())!;
  await page.evaluate(() => {
    document.getElementById('inspector')!.dataset.state = 'waiting';
  });
  await page.mouse.click(box.x + x, box.y + y);
  await page.waitForSelector('#inspector[data-state="ready"], #inspector[data-state="error"]', { timeout: WAIT_MS });
  return page.evaluate(() => {
    const el = document.getElementById('inspector')!;
    const rows = [...el.querySelectorAll<HTMLTableRowElement>('tbody tr')].map((tr) => ({
      band: Number(tr.dataset.band),
      value: tr.dataset.value!,
      nodata: tr.dataset.nodata === 'true',
      text: tr.querySelector('td.value')?.textContent ?? '',
    }));
    return {
      state: el.dataset.state!,
      lon: Number(el.dataset.lon),
      lat: Number(el.dataset.lat),
      rows,
      text: el.textContent ?? '',
    };
  }) as Promise<{ state: string; lon: number; lat: number; rows: InspectorRow[]; text: string }>;
}

/** Map-element pixel of a lon/lat, through the page's own map. */
async function pixelOf(page: Page, lon: number, lat: number): Promise<[number, number]> {
  return page.evaluate(
    ([lo, la]) => {
      const w = window as unknown as ViewerGlobals;
      return w.cogmill.map.getPixelFromCoordinate(w.ol.proj.fromLonLat([lo, la]));
    },
    [lon, lat],
  );
}

/** Source values at a lon/lat, read by GDAL from the file itself. */
async function gdalValues(file: string, lon: number, lat: number): Promise<number[]> {
  const out = await sh('gdallocationinfo', ['-valonly', '-wgs84', file, String(lon), String(lat)]);
  return out.trim().split(/\s+/).filter(Boolean).map(Number);
}

/** lon/lat of the centre of a source pixel (column, row), by GDAL (pixel/line in, EPSG:4326 lon/lat out). */
async function gdalPixelLonLat(file: string, col: number, row: number): Promise<[number, number]> {
  const out = await new Promise<string>((resolve, reject) => {
    const p = execFile('gdaltransform', ['-t_srs', 'EPSG:4326', '-output_xy', file], (err, stdout) =>
      err ? reject(err) : resolve(stdout),
    );
    p.stdin!.end(`${col + 0.5} ${row + 0.5}\n`);
  });
  const [lon, lat] = out.trim().split(/\s+/).map(Number);
  return [lon, lat];
}

/** What /point answers, reduced to per-band value and nodata flag. */
function pointRows(json: Record<string, unknown>): { value: number | null; nodata: boolean }[] {
  const values = json.values as { band: number; value: number | null; nodata: boolean }[];
  return values.map((v) => ({ value: v.value, nodata: v.nodata }));
}

describe('QC viewer in headless Chromium', { timeout: 600_000 }, () => {
  let server: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  let dir: string;
  /** a folder of this run's own (screenshots for a person to look at: kept, named in the log) */
  let shots: string;

  before(async () => {
    await access(CHROMIUM);
    dir = await fixtureDir();
    shots = await mkdtemp(path.join(tmpdir(), 'cogmill-viewer-shots-'));
    process.stderr.write(`viewer screenshots: ${shots}\n`);
    server = await startTestServer({
      sources: { roots: [dir] },
      mosaics: [
        { id: 'rgb', title: 'RGB test scene', sources: [path.join(dir, 'rgb.tif')] },
        { id: 'utm', title: 'UTM 32 uint16', sources: [path.join(dir, 'utm32.tif')] },
      ],
    });
    // the page waits a few seconds for /statistics before it draws without a stretch (STATISTICS_WAIT_MS in
    // viewer.js); computed here first, the page's own request is answered from the cache, as for any viewer opened
    // after the first, so a loaded machine cannot take the stretch away from the tests below
    for (const id of ['rgb', 'utm']) {
      const stats = await fetch(`${server.url}/mosaics/${id}/statistics`);
      assert.equal(stats.status, 200, await stats.text());
    }
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: WAIT_MS });
    context = await browser.newContext({ viewport: VIEWPORT, deviceScaleFactor: 1 });
    context.setDefaultTimeout(WAIT_MS);
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.url });
  });

  after(async () => {
    await context?.close();
    await browser?.close();
    await server?.stop();
  });

  it('serves OpenLayers and its own files from /static with content types and long cache headers', async () => {
    const page = await (await fetch(`${server.url}/mosaics/rgb/viewer`)).text();
    const js = /src="(\/static\/ol\.js\?v=[0-9a-f]{16})"/.exec(page);
    assert.ok(js, 'the page links OpenLayers from /static with a version');
    assert.doesNotMatch(page, /https?:\/\/(?!127\.0\.0\.1)/, 'no external URL in the page');
    const res = await fetch(`${server.url}${js[1]}`, { headers: { 'accept-encoding': 'gzip' } });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/javascript; charset=utf-8');
    assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(res.headers.get('content-encoding'), 'gzip');
    const body = await res.text(); // fetch decodes gzip
    assert.match(body, /^var ol=function/);
    const etag = res.headers.get('etag')!;
    const again = await fetch(`${server.url}${js[1]}`, { headers: { 'if-none-match': etag } });
    assert.equal(again.status, 304);
    const css = await fetch(`${server.url}/static/ol.css`);
    assert.equal(css.headers.get('content-type'), 'text/css; charset=utf-8');
    assert.equal(css.headers.get('cache-control'), 'public, max-age=300', 'unversioned URLs get a short lifetime');
    const missing = await fetch(`${server.url}/static/nope.js`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { code: string }).code, 'not-found');
    const unknown = await fetch(`${server.url}/mosaics/nope/viewer`);
    assert.equal(unknown.status, 404);
  });

  it('shows the RGB mosaic with non-empty tiles, inspects pixels and holds the QGIS URLs', async () => {
    const page = await context.newPage();
    const w = await watch(page);
    await page.goto(`${server.url}/mosaics/rgb/viewer`, { timeout: WAIT_MS });
    await waitRendered(page);
    await settled(w);

    // tiles: requested, 200 PNGs with content
    const ok = w.tiles.filter((t) => t.status === 200);
    assert.ok(ok.length >= 1, `tile responses: ${JSON.stringify(w.tiles)}`);
    for (const t of ok) {
      assert.equal(t.contentType, 'image/png');
      assert.ok(t.png && t.bytes > 1000, `${t.url}: ${t.bytes} bytes`);
      assert.deepEqual([t.width, t.height], [256, 256]);
      assert.match(t.url, /bands=1,2,3/);
    }
    // the canvas holds an image: many opaque pixels, many colours
    const canvas = await canvasSummary(page);
    assert.ok(canvas.opaque > 0.2 * canvas.total, JSON.stringify(canvas));
    assert.ok(canvas.distinct > 500, JSON.stringify(canvas));

    // the style panel: RGB mode with the rescale from /statistics
    const mode = await page.locator('input[name="mode"]:checked').getAttribute('value');
    assert.equal(mode, 'rgb');

    // the pixel inspector: click the centre of the map
    const box = (await page.locator('#map').boundingBox())!;
    const shown = await clickAndInspect(page, box.width / 2, box.height / 2);
    assert.equal(shown.state, 'ready', shown.text);
    const centre = await page.evaluate(
      ([x, y]) => {
        const w = window as unknown as ViewerGlobals;
        return w.ol.proj.toLonLat(w.cogmill.map.getCoordinateFromPixel([x, y]));
      },
      [box.width / 2, box.height / 2] as const,
    );
    assert.ok(
      Math.abs(shown.lon - centre[0]) < 1e-6 && Math.abs(shown.lat - centre[1]) < 1e-6,
      'clicked where the map says',
    );
    const point = (await (
      await fetch(`${server.url}/mosaics/rgb/point?lon=${shown.lon}&lat=${shown.lat}`)
    ).json()) as Record<string, unknown>;
    const expected = pointRows(point);
    assert.equal(shown.rows.length, 3);
    assert.deepEqual(
      shown.rows.map((r) => ({ value: r.value === 'null' ? null : Number(r.value), nodata: r.nodata })),
      expected,
    );
    for (const r of shown.rows) assert.equal(r.text, r.value, 'the shown text is the value');
    // and the values are the source file's, read by GDAL
    const truth = await gdalValues(path.join(dir, 'rgb.tif'), shown.lon, shown.lat);
    assert.deepEqual(
      shown.rows.map((r) => Number(r.value)),
      truth,
    );

    // copy buttons: the exact URLs, and the clipboard gets them
    const links = await page.evaluate(() =>
      Object.fromEntries(
        [...document.querySelectorAll<HTMLButtonElement>('button[data-copy]')].map((b) => [
          b.dataset.link!,
          b.dataset.copy!,
        ]),
      ),
    );
    const m = `${server.url}/mosaics/rgb`;
    const query = new URL(page.url()).search; // the page mirrors its style in its own query string
    assert.equal(links.xyz, `${m}/tiles/{z}/{x}/{y}.png${query}`);
    assert.match(links.xyz, /\?bands=1,2,3&rescale=\d+,\d+&rescale=\d+,\d+&rescale=\d+,\d+$/);
    assert.equal(links.wmts, `${m}/WMTSCapabilities.xml?SERVICE=WMTS&REQUEST=GetCapabilities&${query.slice(1)}`);
    assert.equal(links.vrt, `/vsicurl/${m}.vrt`);
    assert.equal(links.cog, `/vsicurl/${m}.tif`);
    // the XYZ template with the current style is a working tile URL
    const tileUrl = ok[0].url.replace(/^.*\/tiles\//, `${m}/tiles/`).replace(/\?.*$/, query);
    const tile = await fetch(tileUrl);
    assert.equal(tile.status, 200);
    assert.equal(tile.headers.get('content-type'), 'image/png');
    // the WMTS capabilities carry the style into their tile templates
    const wmts = await fetch(links.wmts);
    assert.equal(wmts.status, 200);
    const xml = await wmts.text();
    const template = /<ResourceURL[^>]*template="([^"]+)"/.exec(xml)?.[1].replaceAll('&amp;', '&');
    assert.ok(template, 'a ResourceURL template');
    const rescale = new URL(links.xyz.replace(/[{}]/g, '')).searchParams.getAll('rescale');
    assert.deepEqual(new URL(template.replace(/[{}]/g, '')).searchParams.getAll('rescale'), rescale);
    await page.click('button[data-link="wmts"]');
    await page.waitForSelector('button[data-link="wmts"].copied', { timeout: WAIT_MS });
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), links.wmts);

    await settled(w);
    assertClean(w);
    await page.screenshot({ path: path.join(shots, 'cogmill-viewer-rgb.png') });

    // switch to one band with a colormap: the tiles follow, and the map is in colour
    const before = await renderCount(page);
    const seen = w.tiles.length;
    await page.getByText('Single band', { exact: true }).click();
    await page.selectOption('#band-rows select', '2');
    await page.selectOption('#colormap', 'viridis');
    await waitRendered(page, before);
    await page.waitForFunction(() => document.documentElement.dataset.map === 'rendered', null, { timeout: WAIT_MS });
    await settled(w);
    const restyled = w.tiles.slice(seen).filter((t) => t.status === 200);
    assert.ok(
      restyled.some((t) => /bands=2&rescale=\d+,\d+&colormap=viridis/.test(t.url)),
      restyled.map((t) => t.url).join('\n'),
    );
    const coloured = await canvasSummary(page);
    assert.ok(coloured.coloured > 0.2 * coloured.total, `viridis shows colour: ${JSON.stringify(coloured)}`);
    const xyz = await page.getAttribute('button[data-link="xyz"]', 'data-copy');
    assert.match(xyz!, /\/tiles\/\{z\}\/\{x\}\/\{y\}\.png\?bands=2&rescale=\d+,\d+&colormap=viridis$/);
    await settled(w);
    assertClean(w);
    await page.screenshot({ path: path.join(shots, 'cogmill-viewer-rgb-viridis.png') });

    // the QGIS project download next to the copy buttons: a zip holding a .qgs styled like the map now
    const href = await page.getAttribute('a[data-link="qgis"]', 'href');
    assert.equal(href, `${m}/qgis.qgz${new URL(page.url()).search}`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('a[data-link="qgis"]')]);
    assert.equal(download.suggestedFilename(), 'rgb.qgz');
    const saved = path.join(shots, 'cogmill-viewer-rgb.qgz');
    await download.saveAs(saved);
    const listing = JSON.parse(
      await sh(PYTHON, [
        '-c',
        `import sys, zipfile, json
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
print(json.dumps({n: z.read(n).decode() for n in z.namelist()}))`,
        saved,
      ]),
    ) as Record<string, string>;
    assert.deepEqual(Object.keys(listing), ['rgb.qgs']);
    const qgs = listing['rgb.qgs'];
    assert.match(qgs, /^<!DOCTYPE qgis/);
    assert.match(qgs, /type="singlebandpseudocolor"/, 'one band with a colormap, as on the map');
    assert.match(qgs, /<item alpha="255" value="[^"]+" label="[^"]+" color="#440154"\/>/, "viridis' first colour");
    assert.match(qgs, /colormap%3Dviridis/, 'the tile layers carry the style');
    assert.ok(!w.badResponses.length, w.badResponses.join('\n'));
    await page.close();
  });

  it('flags nodata in the inspector for a uint16 mosaic', async () => {
    const file = path.join(dir, 'utm32.tif');
    const page = await context.newPage();
    const w = await watch(page);
    await page.goto(`${server.url}/mosaics/utm/viewer`, { timeout: WAIT_MS });
    await waitRendered(page);
    await settled(w);
    assert.ok(w.tiles.some((t) => t.status === 200 && t.png && t.bytes > 1000));
    const canvas = await canvasSummary(page);
    assert.ok(canvas.opaque > 0.1 * canvas.total && canvas.distinct > 50, JSON.stringify(canvas));
    assert.equal(await page.locator('input[name="mode"]:checked').getAttribute('value'), 'single');
    assert.ok(await page.locator('input[name="mode"][value="rgb"]').isDisabled(), 'RGB needs 3 bands');

    // a pixel deep inside the nodata wedge of the source (top-left corner, value 0)
    const [lonNd, latNd] = await gdalPixelLonLat(file, 25, 25);
    const [xNd, yNd] = await pixelOf(page, lonNd, latNd);
    const nd = await clickAndInspect(page, xNd, yNd);
    assert.equal(nd.state, 'ready', nd.text);
    assert.deepEqual(await gdalValues(file, nd.lon, nd.lat), [0], 'GDAL reads nodata (0) where we clicked');
    assert.equal(nd.rows.length, 1);
    assert.equal(nd.rows[0].nodata, true);
    assert.match(nd.text, /nodata/);
    const ndPoint = pointRows(
      (await (await fetch(`${server.url}/mosaics/utm/point?lon=${nd.lon}&lat=${nd.lat}`)).json()) as Record<
        string,
        unknown
      >,
    );
    assert.equal(ndPoint[0].nodata, true);

    // a valid pixel in the middle of the scene
    const [lonOk, latOk] = await gdalPixelLonLat(file, 400, 300);
    const [xOk, yOk] = await pixelOf(page, lonOk, latOk);
    const good = await clickAndInspect(page, xOk, yOk);
    assert.equal(good.state, 'ready', good.text);
    const truth = await gdalValues(file, good.lon, good.lat);
    assert.ok(truth[0] > 0);
    assert.deepEqual(
      good.rows.map((r) => ({ value: Number(r.value), nodata: r.nodata })),
      [{ value: truth[0], nodata: false }],
    );
    const goodPoint = pointRows(
      (await (await fetch(`${server.url}/mosaics/utm/point?lon=${good.lon}&lat=${good.lat}`)).json()) as Record<
        string,
        unknown
      >,
    );
    assert.deepEqual(goodPoint, [{ value: truth[0], nodata: false }]);

    await settled(w);
    assertClean(w);
    await page.screenshot({ path: path.join(shots, 'cogmill-viewer-utm.png') });
    await page.close();
  });

  it('asks for @2x tiles of 512 px on a high-density screen', async () => {
    const hidpi = await browser.newContext({ viewport: { width: 900, height: 600 }, deviceScaleFactor: 2 });
    try {
      const page = await hidpi.newPage();
      page.setDefaultTimeout(WAIT_MS);
      const w = await watch(page);
      await page.goto(`${server.url}/mosaics/utm/viewer`, { timeout: WAIT_MS });
      await waitRendered(page);
      await settled(w);
      const ok = w.tiles.filter((t) => t.status === 200);
      assert.ok(ok.length >= 1);
      for (const t of ok) {
        assert.match(t.url, /\/tiles\/\d+\/\d+\/\d+@2x\.png\?/);
        assert.deepEqual([t.width, t.height], [512, 512]);
      }
      const canvas = await canvasSummary(page);
      assert.ok(canvas.opaque > 0.1 * canvas.total && canvas.distinct > 50, JSON.stringify(canvas));
      assertClean(w);
    } finally {
      await hidpi.close();
    }
  });
});
