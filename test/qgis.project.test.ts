/**
 * The QGIS project of a mosaic, opened by real QGIS (Debian's qgis + python3-qgis, headless with
 * QT_QPA_PLATFORM=offscreen, test/support/qgis_check.py): every layer is valid and renders the mosaic's extent,
 * the value layers carry the tiles' bands, stretch and colormap, and QGIS's drawing of the virtual COG equals
 * cogmill's own drawing of the same grid within a small colour tolerance.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeImage } from '../src/render/encode.ts';
import { stretchFromPercentiles } from '../src/render/style.stretch.ts';
import { gridBounds } from '../src/render/types.ts';
import { startFixtureServer, type TestServer } from './support/app.ts';
import { PYTHON, sh, tempDir } from './support/gdal.ts';

interface QgisLayer {
  id: string;
  name: string;
  group: string;
  visible: boolean;
  valid: boolean;
  provider: string;
  source: string;
  crs: string;
  renderer: { type: string; bands?: number[]; ranges?: number[][]; stops?: number } | null;
  png?: string;
  opaque?: number;
  errors?: string[];
}

interface QgisReport {
  read: boolean;
  crs: string;
  extent: number[];
  layers: QgisLayer[];
}

function runQgis(project: string, outDir: string, width: number, height: number): Promise<QgisReport> {
  return qgisCheck([project, outDir, String(width), String(height)], outDir) as Promise<QgisReport>;
}

/** The renderer QGIS picks by itself for a GDAL source (no project). */
function qgisDefault(source: string, work: string): Promise<{ valid: boolean; renderer: QgisLayer['renderer'] }> {
  return qgisCheck(['--layer', source], work) as Promise<{ valid: boolean; renderer: QgisLayer['renderer'] }>;
}

function qgisCheck(args: string[], work: string): Promise<unknown> {
  const script = path.join(import.meta.dirname, 'support', 'qgis_check.py');
  const env = { ...process.env, QT_QPA_PLATFORM: 'offscreen', XDG_RUNTIME_DIR: work, GDAL_HTTP_TIMEOUT: '60' };
  return new Promise((resolve, reject) =>
    execFile(
      PYTHON,
      [script, ...args],
      { env, timeout: 240_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`qgis_check.py failed: ${err.message}\n${stderr}`));
        resolve(JSON.parse(stdout));
      },
    ),
  );
}

/** The .qgs text inside a .qgz (read by Python's zipfile). */
async function listProject(qgz: Uint8Array): Promise<string> {
  const dir = await tempDir('cogmill-qgz-');
  try {
    await writeFile(path.join(dir, 'p.qgz'), qgz);
    return await sh(PYTHON, [
      '-c',
      'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); print(z.read(z.namelist()[0]).decode())',
      path.join(dir, 'p.qgz'),
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** RGBA samples of a PNG (gray + alpha expanded). */
async function rgba(bytes: Uint8Array): Promise<{ data: Uint8Array; width: number; height: number }> {
  const img = await decodeImage(bytes);
  const n = img.width * img.height;
  const out = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) {
    const s = i * img.channels;
    if (img.channels <= 2) {
      out.set([img.data[s], img.data[s], img.data[s], img.channels === 2 ? img.data[s + 1] : 255], i * 4);
    } else {
      out.set([img.data[s], img.data[s + 1], img.data[s + 2], img.channels === 4 ? img.data[s + 3] : 255], i * 4);
    }
  }
  return { data: out, width: img.width, height: img.height };
}

/** Share of pixels opaque in both images whose colours differ by at most `tol`, and transparency mismatches. */
function compareImages(a: Uint8Array, b: Uint8Array, tol: number): { both: number; within: number; alpha: number } {
  let both = 0;
  let within = 0;
  let alpha = 0;
  for (let i = 0; i < a.length; i += 4) {
    const va = a[i + 3] !== 0;
    const vb = b[i + 3] !== 0;
    if (va !== vb) alpha++;
    if (!(va && vb)) continue;
    both++;
    const d = Math.max(Math.abs(a[i] - b[i]), Math.abs(a[i + 1] - b[i + 1]), Math.abs(a[i + 2] - b[i + 2]));
    if (d <= tol) within++;
  }
  return { both, within, alpha };
}

describe('QGIS opens the project of a mosaic', () => {
  let server: TestServer;
  let work = '';

  before(async () => {
    ({ server, work } = await startFixtureServer('cogmill-qgis-', (file) => [
      { id: 'utm', title: 'Two UTM scenes', sources: [file('utm32'), file('utm31')], resampling: 'nearest' },
      { id: 'pm', sources: [file('planar_mask')], resampling: 'nearest' },
    ]));
  });

  after(async () => {
    await server?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** Download the project, open it in QGIS at the mosaic's own pixel size, and fetch cogmill's crop of the same grid. */
  async function openInQgis(id: string, query: string) {
    const m = server.deps.catalog.get(id);
    const res = await fetch(`${server.url}/mosaics/${id}/qgis.qgz${query ? `?${query}` : ''}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/zip');
    assert.match(res.headers.get('content-disposition') ?? '', new RegExp(`filename="${id}\\.qgz"`));
    const qgz = path.join(work, `${id}-${Math.random().toString(36).slice(2)}.qgz`);
    await writeFile(qgz, new Uint8Array(await res.arrayBuffer()));
    const { width, height } = m.grid;
    const before = server.logs.length;
    const report = await runQgis(qgz, work, width, height);
    const requests = server.logs.slice(before).filter((l) => l.msg === 'request');
    const b = gridBounds(m.grid);
    const crop = await fetch(
      `${server.url}/mosaics/${id}/bbox/${b.join(',')}.png?crs=EPSG:${m.grid.crs.epsg}&width=${width}&height=${height}${query ? `&${query}` : ''}`,
    );
    assert.equal(crop.status, 200);
    const tiles = await rgba(new Uint8Array(await crop.arrayBuffer()));
    return { m, report, requests, tiles };
  }

  async function layerImage(l: QgisLayer) {
    return rgba(new Uint8Array(await readFile(l.png!)));
  }

  test('default style: four valid layers in one group, each drawn over the extent; the COG as the tiles draw it', async (t) => {
    const { m, report, requests, tiles } = await openInQgis('utm', '');
    assert.equal(report.read, true);
    assert.equal(report.crs, 'EPSG:32632', 'project CRS = mosaic CRS');
    assert.deepEqual(report.extent, [...gridBounds(m.grid)], 'the view is the mosaic extent');
    assert.deepEqual(
      report.layers.map((l) => [l.group, l.provider, l.valid]),
      [
        ['Two UTM scenes', 'gdal', true],
        ['Two UTM scenes', 'gdal', true],
        ['Two UTM scenes', 'wms', true],
        ['Two UTM scenes', 'wms', true],
      ],
    );
    assert.deepEqual(
      report.layers.map((l) => l.name),
      [
        'Two UTM scenes · virtual COG (values)',
        'Two UTM scenes · VRT (values)',
        'Two UTM scenes · WMTS (native grid)',
        'Two UTM scenes · XYZ tiles (Web Mercator)',
      ],
    );
    const [cog, vrt, wmts, xyz] = report.layers;
    assert.match(cog.source, /^\/vsicurl\?list_dir=no&url=http/, 'directory listing off on the layer');
    assert.match(wmts.source, /tileMatrixSet=native/);
    assert.equal(wmts.crs, 'EPSG:32632');
    assert.equal(xyz.crs, 'EPSG:3857');
    const n = m.grid.width * m.grid.height;
    for (const l of report.layers) {
      t.diagnostic(`${l.name}: ${l.opaque} of ${n} pixels drawn, errors ${JSON.stringify(l.errors)}`);
      assert.ok((l.opaque ?? 0) > n * 0.5, `${l.name} draws the mosaic (${l.opaque} of ${n})`);
      assert.deepEqual(l.errors, []);
    }
    // the value layers carry the tiles' stretch: the 2nd-98th percentile of the mosaic's statistics
    const stats = (await (await fetch(`${server.url}/mosaics/utm/statistics`)).json()) as {
      bands: { percentiles: Record<string, number> }[];
    };
    const want = stretchFromPercentiles(stats.bands[0].percentiles.p2, stats.bands[0].percentiles.p98);
    for (const l of [cog, vrt]) {
      assert.deepEqual(l.renderer, { type: 'singlebandgray', bands: [1], ranges: [want] });
    }
    // opening the COG made GDAL probe no directory
    assert.ok(
      !requests.some((r) => r.path === '/mosaics/' || r.path === '/mosaics'),
      'no directory listing request for the virtual COG',
    );
    for (const l of [cog, vrt, wmts]) {
      const img = await layerImage(l);
      assert.deepEqual([img.width, img.height], [m.grid.width, m.grid.height]);
      const c = compareImages(img.data, tiles.data, 2);
      t.diagnostic(`${l.name} vs tiles: ${c.within} of ${c.both} within 2 levels, ${c.alpha} transparency mismatches`);
      assert.ok(c.both > n * 0.5);
      assert.ok(c.within / c.both >= 0.995, `${l.name}: ${((100 * c.within) / c.both).toFixed(2)}% within 2 levels`);
      assert.ok(c.alpha <= n * 0.001, `${l.name}: ${c.alpha} transparency mismatches`);
    }
  });

  test('styling carries over: rescale and colormap become a pseudocolour ramp drawn like the tiles', async (t) => {
    const query = 'rescale=0,4000&colormap=viridis';
    const { m, report, tiles } = await openInQgis('utm', query);
    const [cog, vrt, wmts, xyz] = report.layers;
    for (const l of [cog, vrt]) {
      assert.deepEqual(l.renderer, { type: 'singlebandpseudocolor', bands: [1], ranges: [[0, 4000]], stops: 256 });
    }
    // QGIS shows the XYZ URL decoded, the WMTS URL as written (encoded once more inside url=)
    for (const l of [wmts, xyz])
      assert.match(decodeURIComponent(decodeURIComponent(l.source)), /rescale=0,4000&colormap=viridis/);
    const n = m.grid.width * m.grid.height;
    for (const l of [cog, wmts]) {
      const c = compareImages((await layerImage(l)).data, tiles.data, 3);
      t.diagnostic(`${l.name} vs tiles: ${c.within} of ${c.both} within 3 levels, ${c.alpha} transparency mismatches`);
      assert.ok(c.both > n * 0.5);
      assert.ok(c.within / c.both >= 0.995, `${l.name}: ${((100 * c.within) / c.both).toFixed(2)}%`);
      assert.ok(c.alpha <= n * 0.001);
    }
  });

  test('band math QGIS can compute becomes a virtual raster layer on top, drawn like the tiles', async (t) => {
    const query = 'expression=sqrt(b1)*2&colormap=viridis';
    const { m, report, tiles } = await openInQgis('utm', query);
    const [math, cog] = report.layers;
    assert.equal(report.layers.length, 5);
    assert.equal(math.name, 'Two UTM scenes · sqrt(b1)*2');
    assert.deepEqual([math.provider, math.valid, math.visible, cog.visible], ['virtualraster', true, true, false]);
    const stats = (await (
      await fetch(`${server.url}/mosaics/utm/statistics?expression=${encodeURIComponent('sqrt(b1)*2')}`)
    ).json()) as { bands: { percentiles: Record<string, number> }[] };
    assert.deepEqual(math.renderer, {
      type: 'singlebandpseudocolor',
      bands: [1],
      ranges: [stretchFromPercentiles(stats.bands[0].percentiles.p2, stats.bands[0].percentiles.p98)],
      stops: 256,
    });
    const n = m.grid.width * m.grid.height;
    const c = compareImages((await layerImage(math)).data, tiles.data, 3);
    t.diagnostic(`band math vs tiles: ${c.within} of ${c.both} within 3 levels, ${c.alpha} transparency mismatches`);
    assert.ok(c.both > n * 0.5);
    assert.ok(c.within / c.both >= 0.995, `${((100 * c.within) / c.both).toFixed(2)}%`);
    assert.ok(c.alpha <= n * 0.001, `${c.alpha} transparency mismatches`);
    // band math QGIS's calculator lacks (%) leaves the four views, the COG on top
    const plain = await fetch(`${server.url}/mosaics/utm/qgis.qgz?expression=${encodeURIComponent('b1%7')}`);
    assert.equal(plain.status, 200);
    const listing = await listProject(new Uint8Array(await plain.arrayBuffer()));
    assert.doesNotMatch(listing, /virtualraster/);
    assert.match(listing, /<layer-tree-layer id="cogmill_utm_cog"[^>]*checked="Qt::Checked"/);
  });

  let pmRun: Awaited<ReturnType<typeof openInQgis>> | undefined;

  test('four int16 bands with a mask: RGB of the chosen bands with per-band stretches, colours as the tiles', async (t) => {
    pmRun = await openInQgis('pm', 'bands=3,2,1');
    const { m, report, tiles } = pmRun;
    const cog = report.layers[0];
    assert.equal(cog.valid, true);
    assert.equal(cog.renderer?.type, 'multibandcolor');
    assert.deepEqual(cog.renderer?.bands, [3, 2, 1]);
    const stats = (await (await fetch(`${server.url}/mosaics/pm/statistics?bands=3,2,1`)).json()) as {
      bands: { percentiles: Record<string, number> }[];
    };
    assert.deepEqual(
      cog.renderer?.ranges,
      stats.bands.map((b) => stretchFromPercentiles(b.percentiles.p2, b.percentiles.p98)),
    );
    const n = m.grid.width * m.grid.height;
    for (const l of report.layers.slice(0, 3)) {
      const c = compareImages((await layerImage(l)).data, tiles.data, 2);
      t.diagnostic(`${l.name} vs tiles: ${c.within} of ${c.both} within 2 levels, ${c.alpha} transparency mismatches`);
      assert.ok(c.both > n * 0.5);
      assert.ok(c.within / c.both >= 0.995, `${l.name}: ${((100 * c.within) / c.both).toFixed(2)}%`);
    }
    for (const l of report.layers) assert.ok(l.valid && (l.opaque ?? 0) > n * 0.5, `${l.name} draws the mosaic`);
  });

  test('masked pixels of a source without nodata are transparent in the VRT layer, as in the tiles', async () => {
    assert.ok(pmRun, 'runs after the previous test');
    const n = pmRun.m.grid.width * pmRun.m.grid.height;
    const vrt = pmRun.report.layers[1];
    const c = compareImages((await layerImage(vrt)).data, pmRun.tiles.data, 255);
    assert.ok(c.both > n * 0.5);
    assert.equal(c.alpha, 0, `${vrt.name}: ${c.alpha} transparency mismatches`);
  });

  test('masked pixels of a source without nodata are transparent in the virtual COG layer, as in the tiles', {
    todo: 'the virtual COG has no internal mask yet: QGIS draws masked pixels as value 0',
  }, async () => {
    assert.ok(pmRun, 'runs after the previous test');
    const n = pmRun.m.grid.width * pmRun.m.grid.height;
    const cog = pmRun.report.layers[0];
    const c = compareImages((await layerImage(cog)).data, pmRun.tiles.data, 255);
    assert.ok(c.alpha <= n * 0.001, `${cog.name}: ${c.alpha} transparency mismatches`);
  });

  test("QGIS's own defaults on the virtual COG and the VRT start from the tiles' statistics", async (t) => {
    const open = (file: string) => qgisDefault(`/vsicurl?list_dir=no&url=${server.url}/mosaics/${file}`, work);
    // one band: QGIS stretches min..max of STATISTICS_* (what the views carry: the tiles' statistics sample)
    const stats = (await (await fetch(`${server.url}/mosaics/utm/statistics`)).json()) as {
      bands: { min: number; max: number; percentiles: Record<string, number> }[];
    };
    const rendered = async () =>
      (await server.deps.metrics.getSingleMetric('cogmill_virtual_cog_tiles_rendered_total')!.get()).values[0]?.value ??
      0;
    for (const file of ['utm.tif', 'utm.vrt']) {
      const info = JSON.parse(
        await sh('gdalinfo', ['-json', `/vsicurl?list_dir=no&url=${server.url}/mosaics/${file}`]),
      ) as { bands: { description: string; metadata: Record<string, Record<string, string>> }[] };
      const md = info.bands[0].metadata[''];
      assert.equal(info.bands[0].description, 'b1');
      assert.equal(md.STATISTICS_APPROXIMATE, 'YES');
      assert.deepEqual(
        [md.STATISTICS_MINIMUM, md.STATISTICS_MAXIMUM].map(Number),
        [stats.bands[0].min, stats.bands[0].max],
        `${file}: the statistics of the tiles' sample`,
      );
      const before = await rendered();
      const d = await open(file);
      assert.deepEqual(d.renderer, {
        type: 'singlebandgray',
        bands: [1],
        ranges: [[stats.bands[0].min, stats.bands[0].max]],
      });
      if (file.endsWith('.tif')) assert.equal(await rendered(), before, 'QGIS took them as they are: no pixel read');
    }
    // three or more bands: QGIS cuts 2 % and 98 % of a histogram over [min, max], close to the tiles' p2..p98
    const pm = (await (await fetch(`${server.url}/mosaics/pm/statistics?bands=1,2,3`)).json()) as typeof stats;
    for (const file of ['pm.tif', 'pm.vrt']) {
      const d = await open(file);
      assert.equal(d.renderer?.type, 'multibandcolor');
      assert.deepEqual(d.renderer?.bands, [1, 2, 3], 'the bands the tiles show by default');
      d.renderer?.ranges?.forEach(([lo, hi], k) => {
        const b = pm.bands[k];
        const span = b.percentiles.p98 - b.percentiles.p2;
        t.diagnostic(`${file} band ${k + 1}: QGIS ${lo}..${hi}, tiles ${b.percentiles.p2}..${b.percentiles.p98}`);
        assert.ok(Math.abs(lo - b.percentiles.p2) < 0.015 * span, `${file} band ${k + 1} low ${lo}`);
        assert.ok(Math.abs(hi - b.percentiles.p98) < 0.015 * span, `${file} band ${k + 1} high ${hi}`);
      });
    }
  });

  test('a bad style is a 400 before anything is rendered; If-None-Match gives 304', async () => {
    const bad = await fetch(`${server.url}/mosaics/utm/qgis.qgz?colormap=nope`);
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { message: string }).message, /colormap "nope" is unknown/);
    const first = await fetch(`${server.url}/mosaics/utm/qgis.qgz`);
    const etag = first.headers.get('etag')!;
    await first.arrayBuffer();
    const again = await fetch(`${server.url}/mosaics/utm/qgis.qgz`, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304);
    assert.equal((await fetch(`${server.url}/mosaics/nope/qgis.qgz`)).status, 404);
    // auth=header: the request's token goes into the tile layers as a header, never into a URL, never cached
    const token = 'Bearer qc-token-0123456789';
    const withAuth = await fetch(`${server.url}/mosaics/utm/qgis.qgz?auth=header`, {
      headers: { Authorization: token },
    });
    assert.equal(withAuth.status, 200);
    assert.equal(withAuth.headers.get('cache-control'), 'private, no-store');
    const qgs = await listProject(new Uint8Array(await withAuth.arrayBuffer()));
    const sources = [...qgs.matchAll(/<datasource>([^<]*)<\/datasource>/g)].map((x) => x[1].replaceAll('&amp;', '&'));
    const carrying = sources.filter((src) => src.includes('http-header:Authorization=Bearer%20qc-token-0123456789'));
    assert.equal(carrying.length, 2, 'the WMTS and XYZ layers carry the header');
    for (const src of sources) {
      const url = /(?:^|&)url=([^&]*)/.exec(src)?.[1] ?? src;
      assert.doesNotMatch(decodeURIComponent(url), /qc-token/, 'no token in a URL');
    }
    assert.ok(!server.logs.some((l) => JSON.stringify(l).includes('qc-token')), 'no token in the logs');
    assert.doesNotMatch(
      await listProject(
        new Uint8Array(
          await (
            await fetch(`${server.url}/mosaics/utm/qgis.qgz`, { headers: { Authorization: token } })
          ).arrayBuffer(),
        ),
      ),
      /qc-token/,
      'only when asked',
    );
    assert.equal((await fetch(`${server.url}/mosaics/utm/qgis.qgz?auth=header`)).status, 400);
    assert.equal((await fetch(`${server.url}/mosaics/utm/qgis.qgz?auth=cookie`)).status, 400);
    // the catalogue links it
    const json = (await (await fetch(`${server.url}/mosaics/utm`)).json()) as { links: Record<string, string> };
    assert.equal(json.links.qgis, `${server.url}/mosaics/utm/qgis.qgz`);
    const list = (await (await fetch(`${server.url}/mosaics`)).json()) as {
      mosaics: { links: Record<string, string> }[];
    };
    assert.ok(list.mosaics.every((e) => e.links.qgis.endsWith('/qgis.qgz')));
    assert.match(await (await fetch(`${server.url}/`)).text(), /href="\/mosaics\/utm\/qgis\.qgz"/);
  });
});
