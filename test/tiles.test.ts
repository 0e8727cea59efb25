/**
 * Tiles and data endpoints over real HTTP against the real app (port 0): status codes, headers, ETag / 304,
 * every bad input, and pixels: each image decoded with sharp agrees with gdalwarp -et 0 of the sources onto the
 * same grid, drawn with the stretch or colormap computed in the test (percentiles, colours from matplotlib); tiles
 * have no seams; crops as GeoTIFF agree with gdalwarp and pass the COG validator.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { crsFromEpsg } from '../src/render/crs.ts';
import { previewGrid } from '../src/render/grid.request.ts';
import type { Mosaic } from '../src/render/mosaic.ts';
import { styleImage } from '../src/render/style.stretch.ts';
import { styleInputBands, styleValues } from '../src/render/style.ts';
import { lonLatToTile, tilesForBounds, xyzTileGrid } from '../src/render/tilematrix.ts';
import type { DType, Grid, Pixels } from '../src/render/types.ts';
import { parseStyle, type StyleQuery } from '../src/server/style.query.ts';
import { startTestServer, type TestServer } from './support/app.ts';
import {
  agreement,
  assertImageAgrees,
  compareImage,
  fixtureDir,
  gdalRead,
  gdalwarpMosaic,
  PYTHON,
  percentile,
  sh,
  stretchToByte,
  tempDir,
  validateCog,
} from './support/gdal.ts';

interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Uint8Array;
}

interface Decoded {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly channels: number;
}

/** Decode an image with sharp; gray + alpha images come back as RGBA, so compare through `rgba`. */
async function decode(bytes: Uint8Array): Promise<Decoded> {
  const { data, info } = await sharp(bytes).raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height, channels: info.channels };
}

/** Samples as RGBA: gray + alpha spread to RGB, RGB given an opaque alpha. */
function rgba(data: Uint8Array, channels: number): Uint8Array {
  if (channels === 4) return data;
  const n = data.length / channels;
  const out = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) {
    const g = data[i * channels];
    out[i * 4] = g;
    out[i * 4 + 1] = channels === 3 ? data[i * 3 + 1] : g;
    out[i * 4 + 2] = channels === 3 ? data[i * 3 + 2] : g;
    out[i * 4 + 3] = channels === 2 ? data[i * 2 + 1] : 255;
  }
  return out;
}

/** RGBA samples split into planes: R, G, B and alpha. */
function planes(data: Uint8Array): { channels: Uint8Array[]; alpha: Uint8Array } {
  const n = data.length / 4;
  const out = [0, 1, 2, 3].map(() => new Uint8Array(n));
  for (let i = 0; i < n; i++) for (let c = 0; c < 4; c++) out[c][i] = data[i * 4 + c];
  return { channels: out.slice(0, 3), alpha: out[3] };
}

/** A reply's image as sharp decodes it, in planes (gray comes back in R, G and B). */
async function imagePlanes(bytes: Uint8Array): Promise<{ channels: Uint8Array[]; alpha: Uint8Array; img: Decoded }> {
  const img = await decode(bytes);
  return { ...planes(rgba(img.data, img.channels)), img };
}

/**
 * A one-band image (gray in R) against gdalwarp of `sources` (mosaic order) onto `grid`, each value stretched from
 * `range` to 0..255 by hand: >= 99% within 2 levels, transparency where gdalwarp has no data.
 */
async function assertGrayAgrees(
  got: { channels: Uint8Array[]; alpha: Uint8Array },
  sources: string[],
  grid: Grid,
  opts: { dtype: DType; nodata: number; range: [number, number] },
  what: string,
): Promise<void> {
  const ref = await gdalwarpMosaic(sources, grid, { dtype: opts.dtype, bands: 1, dstNodata: opts.nodata });
  const stretch = stretchToByte(...opts.range);
  const c = compareImage(
    { channels: [got.channels[0]], alpha: got.alpha },
    ref.valid,
    (i) => [stretch(ref.bands[0][i])],
    2,
  );
  assertImageAgrees(c, what, { tol: 2 });
}

/** The valid values of a reference band (its `valid` mask), as numbers. */
function validValues(band: ArrayLike<number>, valid: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < valid.length; i++) if (valid[i]) out.push(band[i]);
  return out;
}

function json(r: Reply): Record<string, unknown> {
  return JSON.parse(new TextDecoder().decode(r.body));
}

function query(q: string): StyleQuery {
  const u = new URLSearchParams(q);
  return { get: (n) => u.get(n) ?? undefined, getAll: (n) => u.getAll(n) };
}

/** A grid covering `cols` x `rows` tiles at zoom z, starting at tile (x, y). */
function tilesGrid(z: number, x: number, y: number, cols: number, rows: number): Grid {
  const g = xyzTileGrid(z, x, y);
  return { ...g, width: 256 * cols, height: 256 * rows };
}

function cut(img: Decoded, x0: number, y0: number, w: number, h: number): Decoded {
  const out = new Uint8Array(w * h * img.channels);
  for (let r = 0; r < h; r++) {
    const from = ((y0 + r) * img.width + x0) * img.channels;
    out.set(img.data.subarray(from, from + w * img.channels), r * w * img.channels);
  }
  return { data: out, width: w, height: h, channels: img.channels };
}

function paste(into: Decoded, img: Decoded, x0: number, y0: number): void {
  for (let r = 0; r < img.height; r++) {
    const to = ((y0 + r) * into.width + x0) * into.channels;
    into.data.set(img.data.subarray(r * img.width * img.channels, (r + 1) * img.width * img.channels), to);
  }
}

describe('tiles and data endpoints over HTTP', () => {
  let server: TestServer;
  let dir = '';
  const file = (n: string) => path.join(dir, `${n}.tif`);

  async function get(p: string, headers: Record<string, string> = {}): Promise<Reply> {
    const r = await fetch(server.url + p, { headers, signal: AbortSignal.timeout(60_000) });
    return { status: r.status, headers: r.headers, body: new Uint8Array(await r.arrayBuffer()) };
  }

  const mosaic = (id: string): Mosaic => server.deps.catalog.get(id);

  /**
   * The engine's own render of `grid` with the request's style: used only where the claim is about the engine's
   * consistency with itself (tiles against one larger render: seams), never as the reference for pixel values.
   */
  async function expected(
    id: string,
    grid: Grid,
    q: string,
    ranges?: [number, number][],
  ): Promise<{ data: Uint8Array; channels: number; pixels: Pixels }> {
    const m = mosaic(id);
    const style = parseStyle(query(q), m.bandCount, { maxExpressionLength: 512 });
    const px = await server.deps.engine.render(m, grid, {
      resampling: style.resampling,
      bands: styleInputBands(style, m.bandCount).map((b) => b - 1),
    });
    const r = ranges ?? style.rescale ?? [[0, 255]];
    const img = styleImage(styleValues(px, style), r, style.colormap);
    return { data: rgba(img.data, img.channels), channels: img.channels, pixels: px };
  }

  function requestLines(pathPart: string): Record<string, unknown>[] {
    return server.logs.filter((l) => l.msg === 'request' && String(l.path).includes(pathPart));
  }

  before(async () => {
    dir = await fixtureDir();
    server = await startTestServer({
      sources: { roots: [dir] },
      server: { cacheControl: 'public, max-age=600' },
      limits: { maxPreviewSize: 1024, maxCropPixels: 2000 * 2000 },
      mosaics: [
        { id: 'utm', sources: [file('utm32'), file('utm31')] },
        { id: 'utmb', sources: [file('utm32'), file('utm31')], resampling: 'bilinear' },
        { id: 'rgb', sources: [file('rgb')] },
        { id: 'flt', sources: [file('float')] },
        { id: 'pm', sources: [file('planar_mask')] },
      ],
    });
  });

  after(async () => {
    await server?.stop();
  });

  test('a tile agrees with gdalwarp -et 0 of the sources, stretched 0..4000 by hand (PNG, gray + alpha)', async () => {
    const q = 'rescale=0,4000';
    // the first tile from the west along 45°N with valid pixels: it holds the mosaic's edge
    let [x, y] = lonLatToTile(5.85, 45.0, 13);
    for (; ; x++) {
      const px = await server.deps.engine.render(mosaic('utm'), xyzTileGrid(13, x, y));
      if (px.mask.some((v) => v !== 0)) break;
    }
    const r = await get(`/mosaics/utm/tiles/13/${x}/${y}.png?${q}`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'image/png');
    assert.equal(r.headers.get('cache-control'), 'public, max-age=600');
    assert.match(r.headers.get('etag') ?? '', /^"[A-Za-z0-9_-]{27}"$/);
    const img = await decode(r.body);
    assert.deepEqual([img.width, img.height], [256, 256]);
    assert.equal(r.body[25], 4, 'one band: a gray + alpha PNG (IHDR colour type 4)');
    const got = planes(rgba(img.data, img.channels));
    let transparent = 0;
    for (const a of got.alpha) if (a === 0) transparent++;
    assert.ok(transparent > 1000 && transparent < 256 * 256 - 1000, `outside and valid pixels: ${transparent}`);
    await assertGrayAgrees(
      got,
      [file('utm32'), file('utm31')],
      xyzTileGrid(13, x, y),
      { dtype: 'uint16', nodata: 0, range: [0, 4000] },
      'utm tile vs gdalwarp',
    );
  });

  test('16-bit data with no parameters: stretched from the 2nd to the 98th percentile of the mosaic', async () => {
    const [x, y] = lonLatToTile(6.0, 45.0, 12);
    // the percentiles, computed here: gdalwarp of the sources onto the mosaic's grid, numpy's definition
    const m = mosaic('utm');
    const whole = await gdalwarpMosaic([file('utm32'), file('utm31')], m.grid, {
      dtype: 'uint16',
      bands: 1,
      dstNodata: 0,
    });
    const values = validValues(whole.bands[0], whole.valid);
    const [p2, p98] = [percentile(values, 2), percentile(values, 98)];
    assert.ok(p2 > 100 && p98 < 4000 && p2 < p98);
    const stats = json(await get('/mosaics/utm/statistics'));
    const b = (stats.bands as { percentiles: Record<string, number> }[])[0];
    assert.ok(Math.abs(b.percentiles.p2 - p2) <= 2 && Math.abs(b.percentiles.p98 - p98) <= 2, JSON.stringify(b));
    const r = await get(`/mosaics/utm/tiles/12/${x}/${y}.png`);
    assert.equal(r.status, 200);
    const got = await imagePlanes(r.body);
    await assertGrayAgrees(
      got,
      [file('utm32'), file('utm31')],
      xyzTileGrid(12, x, y),
      { dtype: 'uint16', nodata: 0, range: [p2, p98] },
      'default stretch vs gdalwarp + percentiles',
    );
  });

  test('float data with nodata: default stretch from the percentiles of the valid values, the nodata disc transparent', async () => {
    // zoom 12: the tile holds the whole nodata disc (0.024° around 6°E 45°N) and valid data around it
    const [x, y] = lonLatToTile(6.0002, 44.9998, 12);
    // the mosaic's grid is float.tif's own: its percentiles come straight from the file as GDAL reads it
    const raw = await gdalRead(file('float'));
    const all = new Float32Array(raw.bytes.buffer, raw.bytes.byteOffset, raw.bytes.byteLength / 4);
    const values = Array.from(all).filter((v) => v !== -9999);
    const [p2, p98] = [percentile(values, 2), percentile(values, 98)];
    const r = await get(`/mosaics/flt/tiles/12/${x}/${y}.png`);
    const got = await imagePlanes(r.body);
    const g = xyzTileGrid(12, x, y);
    await assertGrayAgrees(
      got,
      [file('float')],
      g,
      { dtype: 'float32', nodata: -9999, range: [p2, p98] },
      'float tile vs gdalwarp + percentiles',
    );
    // the pixel at the disc centre is transparent
    const mx = (6.0002 * 20037508.342789244) / 180;
    const my = (Math.log(Math.tan(((90 + 44.9998) * Math.PI) / 360)) * 20037508.342789244) / Math.PI;
    const col = Math.floor((mx - g.transform[0]) / g.transform[1]);
    const row = Math.floor((my - g.transform[3]) / g.transform[5]);
    assert.equal(got.alpha[row * 256 + col], 0);
  });

  test('RGB uint8 is shown as it is; WebP keeps alpha, JPEG has none and is black outside', async () => {
    const [x, y] = lonLatToTile(5.91, 45.0, 13); // on the western edge of rgb.tif
    // rgb.tif holds values 1..255, so gdalwarp's 0 marks exactly the area outside it
    const ref = await gdalwarpMosaic([file('rgb')], xyzTileGrid(13, x, y), { dtype: 'uint8', bands: 3, dstNodata: 0 });
    const png = await imagePlanes((await get(`/mosaics/rgb/tiles/13/${x}/${y}.png`)).body);
    assert.equal(png.img.channels, 4);
    const c = compareImage(png, ref.valid, (i) => [ref.bands[0][i], ref.bands[1][i], ref.bands[2][i]], 0);
    assertImageAgrees(c, 'RGB tile vs gdalwarp, values as they are', { tol: 0, minWithin: 0.995 });
    const want = { data: new Uint8Array(256 * 256 * 4) };
    for (let i = 0; i < 256 * 256; i++) want.data[i * 4 + 3] = ref.valid[i] ? 255 : 0;
    const webp = await get(`/mosaics/rgb/tiles/13/${x}/${y}.webp`);
    assert.equal(webp.headers.get('content-type'), 'image/webp');
    const w = await decode(webp.body);
    assert.equal(w.channels, 4);
    const jpgReply = await get(`/mosaics/rgb/tiles/13/${x}/${y}.jpg`);
    assert.equal(jpgReply.headers.get('content-type'), 'image/jpeg');
    const j = await decode(jpgReply.body);
    assert.equal(j.channels, 3);
    let outside = 0;
    let close = 0;
    let inside = 0;
    for (let i = 0; i < 256 * 256; i++) {
      if (want.data[i * 4 + 3] === 0) {
        outside++;
        assert.equal(w.data[i * 4 + 3], 0, 'webp alpha');
        // JPEG: black outside (allow ringing at the edge)
        if (j.data[i * 3] + j.data[i * 3 + 1] + j.data[i * 3 + 2] < 24) close++;
      } else {
        inside++;
        assert.equal(w.data[i * 4 + 3], 255);
      }
    }
    assert.ok(outside > 1000 && inside > 1000, `${outside} / ${inside}`);
    assert.ok(close / outside > 0.95, `JPEG black outside: ${close} of ${outside}`);
  });

  test('band math with a colormap (int16, 4 bands, internal mask): the expression and RdYlGn computed here', async () => {
    const m = mosaic('pm');
    const [w, s, e, n] = m.boundsWgs84;
    const [x, y] = lonLatToTile((w + e) / 2, (s + n) / 2, 15);
    const q = `expression=${encodeURIComponent('(b2 - b1) / (abs(b2) + abs(b1) + 1)')}&colormap=rdylgn&rescale=-1,1`;
    const r = await get(`/mosaics/pm/tiles/15/${x}/${y}.png?${q}`);
    assert.equal(r.status, 200);
    const got = await imagePlanes(r.body);
    assert.equal(got.img.channels, 4);
    // the source's values (its mask as nodata), the expression evaluated here, RdYlGn from matplotlib
    const ref = await gdalwarpMosaic([file('planar_mask')], xyzTileGrid(15, x, y), {
      dtype: 'int16',
      bands: 4,
      dstNodata: -32768,
    });
    const lut = JSON.parse(
      await sh(PYTHON, [
        '-c',
        'import json, matplotlib, numpy as np; c = matplotlib.colormaps["RdYlGn"](np.arange(256) / 255.0); print(json.dumps(np.round(c[:, :3] * 255).astype(int).tolist()))',
      ]),
    ) as number[][];
    const index = stretchToByte(-1, 1);
    const c = compareImage(
      got,
      ref.valid,
      (i) => {
        const [b1, b2] = [ref.bands[0][i], ref.bands[1][i]];
        return lut[index((b2 - b1) / (Math.abs(b2) + Math.abs(b1) + 1))];
      },
      3,
    );
    assertImageAgrees(c, 'band math + colormap vs gdalwarp + matplotlib', { tol: 3 });
    const colours = new Set<number>();
    for (let i = 0; i < got.alpha.length; i++)
      if (got.alpha[i]) colours.add((got.channels[0][i] << 16) | (got.channels[1][i] << 8) | got.channels[2][i]);
    assert.ok(colours.size > 50, `a colormap spreads values over many colours (${colours.size})`);
  });

  test('@2x and tilesize=512 are the same 512 px tile, equal to its four children at the next zoom', async () => {
    const [x, y] = lonLatToTile(6.0, 45.0, 12);
    const a = await get(`/mosaics/utm/tiles/12/${x}/${y}@2x.png?rescale=0,4000`);
    const b = await get(`/mosaics/utm/tiles/12/${x}/${y}.png?rescale=0,4000&tilesize=512`);
    assert.equal(a.status, 200);
    assert.equal(a.headers.get('etag'), b.headers.get('etag'));
    const big = await decode(a.body);
    assert.deepEqual([big.width, big.height], [512, 512]);
    const kids: Decoded = { data: new Uint8Array(512 * 512 * 4), width: 512, height: 512, channels: 4 };
    for (const [dx, dy] of [
      [0, 0],
      [1, 0],
      [0, 1],
      [1, 1],
    ]) {
      paste(
        kids,
        await decode((await get(`/mosaics/utm/tiles/13/${2 * x + dx}/${2 * y + dy}.png?rescale=0,4000`)).body),
        dx * 256,
        dy * 256,
      );
    }
    let same = 0;
    for (let i = 0; i < big.data.length; i++) if (big.data[i] === kids.data[i]) same++;
    assert.ok(same / big.data.length > 0.999, `@2x vs children: ${same} of ${big.data.length}`);
  });

  for (const resampling of ['bilinear', 'cubic'] as const) {
    test(`no seams with ${resampling}: four tiles over the UTM zone boundary equal one 512 px render`, async (t) => {
      const [x, y] = lonLatToTile(6.0, 45.0, 13); // 6°E, where utm32 and utm31 meet, runs through this tile
      const q = `rescale=0,4000&resampling=${resampling}`;
      const mosaicId = resampling === 'bilinear' ? 'utmb' : 'utm';
      const tiles: Decoded = { data: new Uint8Array(512 * 512 * 4), width: 512, height: 512, channels: 4 };
      for (const [dx, dy] of [
        [0, 0],
        [1, 0],
        [0, 1],
        [1, 1],
      ]) {
        const r = await get(`/mosaics/${mosaicId}/tiles/13/${x + dx}/${y + dy}.png?${q}`);
        assert.equal(r.status, 200);
        paste(tiles, await decode(r.body), dx * 256, dy * 256);
      }
      const want = await expected(mosaicId, tilesGrid(13, x, y, 2, 2), q);
      let alphaDiff = 0;
      let maxDiff = 0;
      let within1 = 0;
      let valid = 0;
      for (let i = 0; i < 512 * 512; i++) {
        if (tiles.data[i * 4 + 3] !== want.data[i * 4 + 3]) alphaDiff++;
        if (!want.data[i * 4 + 3]) continue;
        valid++;
        const d = Math.abs(tiles.data[i * 4] - want.data[i * 4]);
        maxDiff = Math.max(maxDiff, d);
        if (d <= 1) within1++;
      }
      t.diagnostic(
        `${resampling}: ${within1} of ${valid} valid pixels within 1 level, max difference ${maxDiff}, alpha differences ${alphaDiff}`,
      );
      assert.ok(valid > 512 * 400, `mostly valid: ${valid}`);
      assert.equal(alphaDiff, 0, 'transparency identical: no gap along tile edges');
      assert.ok(within1 / valid > 0.999, `${within1} of ${valid} within 1 level`);
      assert.ok(maxDiff <= 3, `max difference ${maxDiff}`);
      // along the inner tile edges, the pixels on both sides agree as well as anywhere else
      for (const edge of [255, 256]) {
        const row = cut(tiles, 0, edge, 512, 1);
        const ref = cut({ data: want.data, width: 512, height: 512, channels: 4 }, 0, edge, 512, 1);
        for (let i = 0; i < 512; i++) assert.ok(Math.abs(row.data[i * 4] - ref.data[i * 4]) <= 3);
      }
    });
  }

  test('ETag: stable, normalised, changes with the style and the mosaic; If-None-Match gives 304 without rendering', async () => {
    const [x, y] = lonLatToTile(6.05, 45.02, 13);
    const u = `/mosaics/utm/tiles/13/${x}/${y}.png`;
    const a = await get(`${u}?rescale=0,4000&colormap=viridis`);
    const b = await get(`${u}?colormap=viridis&rescale=0,4000&foo=bar`);
    const c = await get(`${u}?rescale=0,3000&colormap=viridis`);
    const etag = a.headers.get('etag')!;
    assert.equal(b.headers.get('etag'), etag, 'parameter order and unknown parameters do not matter');
    assert.notEqual(c.headers.get('etag'), etag);
    const e1 = await get(`${u}?expression=${encodeURIComponent('b1*2')}&rescale=0,8000`);
    const e2 = await get(`${u}?expression=${encodeURIComponent(' b1 * 2 ')}&rescale=0,8000`);
    assert.equal(e1.headers.get('etag'), e2.headers.get('etag'), 'equivalent expressions share one ETag');

    const before = requestLines('/tiles/13/').length;
    const nm = await get(`${u}?rescale=0,4000&colormap=viridis`, { 'If-None-Match': `"other", ${etag}` });
    assert.equal(nm.status, 304);
    assert.equal(nm.body.length, 0);
    assert.equal(nm.headers.get('etag'), etag);
    assert.equal(nm.headers.get('cache-control'), 'public, max-age=600');
    const line = requestLines('/tiles/13/').slice(before).at(-1)!;
    assert.equal(line.cache, 'not-modified');
    assert.equal(line.render, undefined);

    // a fresh server (empty caches) answers 304 for the same ETag without reading a single pixel
    const fresh = await startTestServer({
      sources: { roots: [dir] },
      server: { cacheControl: 'public, max-age=600' },
      mosaics: [{ id: 'utm', sources: [file('utm32'), file('utm31')] }],
    });
    try {
      const bytesBefore = JSON.stringify(fresh.deps.engine.sourceStats());
      const r = await fetch(`${fresh.url}${u}?rescale=0,4000&colormap=viridis`, { headers: { 'If-None-Match': etag } });
      assert.equal(r.status, 304);
      assert.equal(JSON.stringify(fresh.deps.engine.sourceStats()), bytesBefore, 'no source read for a 304');
      assert.equal(fresh.deps.engine.caches.tiles.size, 0, 'no block decoded');
    } finally {
      await fresh.stop();
    }

    // the mosaic changes: the ETag changes and the old one no longer matches
    const m = mosaic('utm');
    const saved = m.etag;
    try {
      m.etag = '"changed-for-test"';
      const changed = await get(`${u}?rescale=0,4000&colormap=viridis`, { 'If-None-Match': etag });
      assert.equal(changed.status, 200);
      assert.notEqual(changed.headers.get('etag'), etag);
    } finally {
      m.etag = saved;
    }
  });

  test('concurrent identical requests render once; later ones are cache hits', async () => {
    const [x, y] = lonLatToTile(5.95, 44.97, 13);
    const u = `/mosaics/utm/tiles/13/${x}/${y}.webp?rescale=100,3900`;
    const before = requestLines(`/tiles/13/${x}/${y}.webp`).length;
    const replies = await Promise.all(Array.from({ length: 6 }, () => get(u)));
    for (const r of replies) assert.equal(r.status, 200);
    for (const r of replies) assert.deepEqual(r.body, replies[0].body);
    await get(u);
    const lines = requestLines(`/tiles/13/${x}/${y}.webp`).slice(before);
    const results = lines.map((l) => l.cache);
    assert.equal(results.filter((r) => r === 'miss').length, 1, `one render: ${results}`);
    assert.equal(results.at(-1), 'hit');
    assert.equal(lines.filter((l) => l.render !== undefined).length, 1);
  });

  test('tiles outside the mosaic: a transparent 200 in the asked format, marked empty, cached like any tile', async () => {
    const [x, y] = lonLatToTile(-60, -30, 13);
    const r = await get(`/mosaics/utm/tiles/13/${x}/${y}.png`);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('oatiles-hint'), 'empty');
    assert.equal(r.headers.get('cache-control'), 'public, max-age=600');
    assert.ok(r.headers.get('etag'));
    const img = await decode(r.body);
    assert.deepEqual([img.width, img.height], [256, 256]);
    for (let i = 1; i < img.data.length; i += img.channels) assert.equal(img.data[i + img.channels - 2], 0);
    assert.ok(r.body.length < 1000, `small: ${r.body.length} bytes`);
    const jpg = await decode((await get(`/mosaics/utm/tiles/13/${x}/${y}.jpg`)).body);
    assert.equal(jpg.channels, 3);
    assert.ok(
      jpg.data.every((v) => v === 0),
      'black JPEG',
    );
    const big = await decode((await get(`/mosaics/utm/tiles/13/${x}/${y}@2x.webp`)).body);
    assert.deepEqual([big.width, big.height], [512, 512]);
    assert.equal(requestLines(`/tiles/13/${x}/${y}.png`).at(-1)!.render, undefined, 'nothing rendered');
  });

  test('bad input: 400 or 404 with { code, message, requestId }, never a 500', async () => {
    const cases: [string, number, RegExp][] = [
      ['/mosaics/utm/tiles/25/0/0.png', 400, /zoom z must be an integer between 0 and 24/],
      ['/mosaics/utm/tiles/-1/0/0.png', 400, /zoom z/],
      ['/mosaics/utm/tiles/3/8/0.png', 400, /x at zoom 3 must be an integer between 0 and 7/],
      ['/mosaics/utm/tiles/3/0/8.png', 400, /y at zoom 3 must be an integer between 0 and 7/],
      ['/mosaics/utm/tiles/3/a/0.png', 400, /x at zoom 3/],
      ['/mosaics/utm/tiles/3/0/0.gif', 400, /format "gif" is not served; use \.png, \.webp or \.jpg/],
      ['/mosaics/utm/tiles/3/0/0', 400, /must look like \{y\}\.png/],
      ['/mosaics/nope/tiles/3/0/0.png', 404, /no mosaic with id "nope"/],
      ['/mosaics/nope/tilejson.json', 404, /no mosaic/],
      ['/mosaics/nope/WMTSCapabilities.xml', 404, /no mosaic/],
      ['/mosaics/nope/point?lon=6&lat=45', 404, /no mosaic/],
      ['/mosaics/nope/statistics', 404, /no mosaic/],
      ['/mosaics/nope/preview.png', 404, /no mosaic/],
      ['/mosaics/nope/bbox/5.9,44.9,6.1,45.1.png', 404, /no mosaic/],
      [`/mosaics/utm/tiles/3/4/2.png?expression=${encodeURIComponent('b1 +')}`, 400, /expression: .*position 5/],
      ['/mosaics/utm/tiles/3/4/2.png?expression=b2', 400, /band b2 does not exist/],
      [`/mosaics/utm/tiles/3/4/2.png?expression=${encodeURIComponent('alert(1)')}`, 400, /unknown function "alert"/],
      ['/mosaics/utm/tiles/3/4/2.png?rescale=1', 400, /rescale "1" must be min,max/],
      ['/mosaics/utm/tiles/3/4/2.png?rescale=5,1', 400, /max must be greater than min/],
      ['/mosaics/utm/tiles/3/4/2.png?rescale=0,1&rescale=0,2', 400, /2 rescale ranges for 1 output bands/],
      ['/mosaics/utm/tiles/3/4/2.png?colormap=jet', 400, /colormap "jet" is unknown/],
      [`/mosaics/utm/tiles/3/4/2.png?colormap=${encodeURIComponent('{"0": "#zz0000"}')}`, 400, /colormap: /],
      ['/mosaics/rgb/tiles/3/4/2.png?colormap=viridis', 400, /a colormap applies to one band/],
      ['/mosaics/utm/tiles/3/4/2.png?bands=2', 400, /use 1\.\.1/],
      ['/mosaics/rgb/tiles/3/4/2.png?bands=1,2', 400, /an image needs 1/],
      ['/mosaics/utm/tiles/3/4/2.png?resampling=lanczos', 400, /resampling "lanczos" is unknown/],
      ['/mosaics/utm/tiles/3/4/2.png?tilesize=300', 400, /tilesize must be 256 or 512/],
      ['/mosaics/utm/tiles/3/4/2.png?nodata=x', 400, /nodata "x" is not a number/],
      ['/mosaics/utm/tilejson.json?format=gif', 400, /format "gif"/],
      ['/mosaics/utm/tilejson.json?rescale=2,1', 400, /max must be greater/],
      ['/mosaics/utm/preview.png?max_size=5000', 400, /max_size must be an integer between 1 and 1024/],
      ['/mosaics/utm/preview.gif', 400, /format "gif"/],
      ['/mosaics/utm/point?lon=200&lat=45', 400, /lon must be a number between -180 and 180/],
      ['/mosaics/utm/point?lon=6', 400, /lat must be a number/],
      ['/mosaics/utm/point?lon=10&lat=45', 404, /outside mosaic utm/],
      ['/mosaics/utm/statistics?bbox=1,2,3', 400, /four numbers/],
      ['/mosaics/utm/statistics?bbox=10,10,11,11', 400, /does not overlap the mosaic/],
      ['/mosaics/utm/statistics?bbox=6,45,5,46', 400, /maxx must exceed minx/],
      ['/mosaics/utm/statistics?bins=0', 400, /bins must be an integer between 1 and 1000/],
      ['/mosaics/utm/statistics?expression=b1/', 400, /expression/],
      ['/mosaics/utm/bbox/5.9,44.9,6.1.png', 400, /must look like \{minx\},\{miny\},\{maxx\},\{maxy\}\.png/],
      ['/mosaics/utm/bbox/6.1,44.9,5.9,45.1.png', 400, /maxx must exceed minx/],
      ['/mosaics/utm/bbox/5.9,44.9,6.1,45.1.bmp', 400, /format "bmp"/],
      ['/mosaics/utm/bbox/5.9,44.9,6.1,45.1.png?width=2000&height=2001', 400, /over the limit of 4000000 pixels/],
      ['/mosaics/utm/bbox/5.9,44.9,6.1,45.1.png?crs=EPSG:99999', 400, /crs: EPSG:99999/],
      ['/mosaics/utm/bbox/5.9,44.9,6.1,45.1.png?crs=banana', 400, /crs: cannot read CRS/],
      ['/mosaics/utm/bbox/5.9,44.9,6.1,45.1.tif?nodata=-1', 400, /nodata -1 cannot be stored in uint16/],
    ];
    for (const [u, status, message] of cases) {
      const r = await get(u);
      assert.equal(r.status, status, `${u}: ${new TextDecoder().decode(r.body)}`);
      assert.match(r.headers.get('content-type') ?? '', /application\/json/);
      const body = json(r);
      assert.equal(body.code, status === 404 ? 'not-found' : 'bad-request', u);
      assert.match(String(body.message), message, u);
      assert.ok(body.requestId, u);
    }
    assert.equal(server.logs.filter((l) => Number(l.status) >= 500).length, 0, 'no 5xx logged');
  });

  test('TileJSON 3.0.0: template with the query carried over, bounds, center, zooms from the resolution', async () => {
    const r = await get('/mosaics/utm/tilejson.json?rescale=0,4000&colormap=viridis&SERVICE=x&tilesize=256');
    assert.equal(r.status, 200);
    assert.ok(r.headers.get('etag'));
    const tj = json(r);
    assert.equal(tj.tilejson, '3.0.0');
    assert.equal(tj.scheme, 'xyz');
    const url = (tj.tiles as string[])[0];
    assert.equal(url, `${server.url}/mosaics/utm/tiles/{z}/{x}/{y}.png?rescale=0%2C4000&colormap=viridis`);
    // 20 m UTM pixels at 45°N are ~28.3 m in Web Mercator: zoom 13 (19.1 m) is the first at least as fine
    assert.equal(tj.maxzoom, 13);
    // ~880 px * 28.3 m = 24.9 km fits one 256 px tile from zoom 10 (152.9 m/px) down
    assert.equal(tj.minzoom, 10);
    const m = mosaic('utm');
    assert.deepEqual(tj.bounds, [...m.boundsWgs84]);
    const [cx, cy, cz] = tj.center as number[];
    assert.ok(Math.abs(cx - 6.0) < 0.02 && Math.abs(cy - 45.0) < 0.02 && cz >= 10 && cz <= 13);
    const [x, y] = lonLatToTile(cx, cy, 13);
    const tile = await fetch(url.replace('{z}', '13').replace('{x}', String(x)).replace('{y}', String(y)));
    assert.equal(tile.status, 200);
    assert.equal(tile.headers.get('content-type'), 'image/png');
    await tile.arrayBuffer();
    const big = json(await get('/mosaics/rgb/tilejson.json?tilesize=512&format=webp'));
    assert.equal((big.tiles as string[])[0], `${server.url}/mosaics/rgb/tiles/{z}/{x}/{y}.webp?tilesize=512`);
    assert.equal(big.maxzoom, 12, '512 px tiles: one zoom less');
    const notTrusted = json(
      await get('/mosaics/rgb/tilejson.json', {
        'X-Forwarded-Proto': 'https',
        'X-Forwarded-Host': 'tiles.example.org',
      }),
    );
    // forwarded headers count only with server.trustProxy (see hostile.test.ts): from anyone they are ignored
    assert.ok((notTrusted.tiles as string[])[0].startsWith(`${server.url}/mosaics/rgb/tiles/`));
  });

  test('WMTS capabilities: WebMercatorQuad to maxzoom, limits, RESTful templates with the query', async () => {
    const r = await get(
      '/mosaics/utm/WMTSCapabilities.xml?SERVICE=WMTS&REQUEST=GetCapabilities&rescale=0,4000&resampling=bilinear',
    );
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /application\/xml/);
    const xml = new TextDecoder().decode(r.body);
    const sets = [
      ...xml.matchAll(/<TileMatrixSet>\s*<ows:Identifier>(\w+)<\/ows:Identifier>([\s\S]*?)<\/TileMatrixSet>/g),
    ];
    assert.deepEqual(
      sets.map((m) => m[1]),
      ['WebMercatorQuad', 'WorldCRS84Quad', 'native'],
    );
    const matrices = [
      ...sets[0][2].matchAll(
        /<TileMatrix><ows:Identifier>(\d+)<\/ows:Identifier><ScaleDenominator>([\d.e+]+)<\/ScaleDenominator>/g,
      ),
    ];
    assert.deepEqual(
      matrices.map((m) => Number(m[1])),
      Array.from({ length: 14 }, (_, i) => i),
    );
    assert.ok(Math.abs(Number(matrices[0][2]) - 559082264.0287178) < 1e-3);
    assert.ok(Math.abs(Number(matrices[13][2]) - 559082264.0287178 / 8192) < 1e-6);
    assert.match(xml, /<WellKnownScaleSet>urn:ogc:def:wkss:OGC:1\.0:GoogleMapsCompatible<\/WellKnownScaleSet>/);
    assert.ok(
      xml.includes(
        `template="${server.url}/mosaics/utm/tiles/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}.png?rescale=0%2C4000&amp;resampling=bilinear"`,
      ),
      'the style query is carried (XML-escaped), SERVICE/REQUEST are not',
    );
    assert.match(xml, /<ResourceURL format="image\/jpeg" resourceType="tile"/);
    const lim =
      /<TileMatrixLimits><TileMatrix>13<\/TileMatrix><MinTileRow>(\d+)<\/MinTileRow><MaxTileRow>(\d+)<\/MaxTileRow><MinTileCol>(\d+)<\/MinTileCol><MaxTileCol>(\d+)<\/MaxTileCol>/.exec(
        xml,
      )!;
    const want = tilesForBounds(mosaic('utm').boundsWgs84, 13);
    assert.deepEqual(lim.slice(1).map(Number), [want.minY, want.maxY, want.minX, want.maxX]);
    // well-formed XML, checked by a real parser
    const dirXml = await tempDir();
    await writeFile(path.join(dirXml, 'caps.xml'), xml);
    const parsed = await sh(PYTHON, [
      '-c',
      'import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); print(len(d.getElementsByTagName("TileMatrix")))',
      path.join(dirXml, 'caps.xml'),
    ]);
    assert.equal(Number(parsed.trim()), xml.split('<TileMatrix>').length - 1, 'matrices plus limits');
    assert.ok(Number(parsed.trim()) > 14 + 14);
  });

  test('point: the native pixel value (as GDAL reads it), nodata flagged, outside is 404', async () => {
    // inside utm32's valid area (utm32 is the first source, so it wins) and inside the flt mosaic's nodata disc
    const r = json(await get('/mosaics/utm/point?lon=6.06&lat=45.01'));
    const gdal = Number((await sh('gdallocationinfo', ['-valonly', '-wgs84', file('utm32'), '6.06', '45.01'])).trim());
    assert.equal(r.valid, true);
    assert.equal(r.crs, 32632);
    const v = (r.values as { band: number; value: number; nodata: boolean }[])[0];
    assert.deepEqual([v.band, v.value, v.nodata], [1, gdal, false]);
    const m = mosaic('utm');
    const gt = m.grid.transform;
    assert.equal(r.col, Math.floor(((r.x as number) - gt[0]) / gt[1]));
    assert.equal(r.row, Math.floor(((r.y as number) - gt[3]) / gt[5]));
    const f = json(await get('/mosaics/flt/point?lon=6.0002&lat=44.9998'));
    assert.equal(f.valid, false);
    assert.deepEqual(f.values, [{ band: 1, name: 'b1', value: null, nodata: true }]);
    // (not on a pixel edge: 0.0004° pixels from 5.9°E)
    const ok = json(await get('/mosaics/flt/point?lon=5.95013&lat=45.05013'));
    const fg = Number(
      (await sh('gdallocationinfo', ['-valonly', '-wgs84', file('float'), '5.95013', '45.05013'])).trim(),
    );
    assert.ok(Math.abs((ok.values as { value: number }[])[0].value - fg) < 1e-5);
    const rgb = json(await get('/mosaics/rgb/point?lon=6.0&lat=45.0'));
    assert.equal((rgb.values as unknown[]).length, 3);
  });

  test('statistics: equal to numpy over a small mosaic; bbox and expression variants', async () => {
    const r = await get('/mosaics/rgb/statistics?bins=7');
    assert.equal(r.status, 200);
    const s = json(r);
    const sample = s.sample as { width: number; height: number; decimation: number };
    assert.deepEqual(
      [sample.width, sample.height, sample.decimation],
      [640, 512, 1],
      'a small mosaic is sampled at full resolution',
    );
    const py = await sh(PYTHON, [
      '-c',
      `import json, sys, numpy as np
from osgeo import gdal
ds = gdal.Open(sys.argv[1])
out = []
for b in range(1, 4):
    a = ds.GetRasterBand(b).ReadAsArray().astype(np.float64).ravel()
    h, e = np.histogram(a, bins=7, range=(a.min(), a.max()))
    out.append(dict(min=a.min(), max=a.max(), mean=a.mean(), std=a.std(), p2=np.percentile(a, 2), p98=np.percentile(a, 98), p50=np.percentile(a, 50), counts=h.tolist()))
print(json.dumps(out))`,
      file('rgb'),
    ]);
    const ref = JSON.parse(py) as {
      min: number;
      max: number;
      mean: number;
      std: number;
      p2: number;
      p98: number;
      p50: number;
      counts: number[];
    }[];
    const bands = s.bands as {
      band: string;
      count: number;
      min: number;
      max: number;
      mean: number;
      std: number;
      percentiles: Record<string, number>;
      histogram: { counts: number[] };
    }[];
    assert.equal(bands.length, 3);
    for (let i = 0; i < 3; i++) {
      const b = bands[i];
      assert.equal(b.count, 640 * 512);
      assert.equal(b.min, ref[i].min);
      assert.equal(b.max, ref[i].max);
      assert.ok(Math.abs(b.mean - ref[i].mean) < 1e-9);
      assert.ok(Math.abs(b.std - ref[i].std) < 1e-9);
      assert.ok(Math.abs(b.percentiles.p2 - ref[i].p2) < 1e-9);
      assert.ok(Math.abs(b.percentiles.p50 - ref[i].p50) < 1e-9);
      assert.ok(Math.abs(b.percentiles.p98 - ref[i].p98) < 1e-9);
      assert.deepEqual(b.histogram.counts, ref[i].counts);
    }
    const whole = json(await get('/mosaics/utm/statistics')).bands as { count: number; min: number }[];
    const part = json(await get('/mosaics/utm/statistics?bbox=5.95,44.97,6.05,45.03')) as {
      bbox: number[];
      bands: { count: number }[];
    };
    assert.deepEqual(part.bbox, [5.95, 44.97, 6.05, 45.03]);
    assert.ok(part.bands[0].count > 1000 && part.bands[0].count < whole[0].count);
    const doubled = json(await get(`/mosaics/utm/statistics?expression=${encodeURIComponent('b1 * 2')}`)).bands as {
      band: string;
      min: number;
      count: number;
    }[];
    assert.equal(doubled[0].band, 'expression');
    assert.equal(doubled[0].min, whole[0].min * 2);
    assert.equal(doubled[0].count, whole[0].count);
    const masked = json(await get(`/mosaics/utm/statistics?nodata=${whole[0].min}`)).bands as {
      count: number;
      min: number;
    }[];
    assert.ok(
      masked[0].count < whole[0].count && masked[0].min > whole[0].min,
      'the nodata override masks the minimum',
    );
  });

  test('preview: bounded by max_size, the whole mosaic in its native CRS, agreeing with gdalwarp', async () => {
    const r = await get('/mosaics/utm/preview.png?max_size=300&rescale=0,4000');
    assert.equal(r.status, 200);
    const img = await decode(r.body);
    const m = mosaic('utm');
    const g = previewGrid(m.grid, 300);
    assert.equal(Math.max(img.width, img.height), 300);
    assert.deepEqual([img.width, img.height], [g.width, g.height]);
    assert.ok(Math.abs(img.width / img.height - m.grid.width / m.grid.height) < 0.01);
    const got = planes(rgba(img.data, img.channels));
    await assertGrayAgrees(
      got,
      [file('utm32'), file('utm31')],
      g,
      { dtype: 'uint16', nodata: 0, range: [0, 4000] },
      'preview vs gdalwarp',
    );
    const def = await decode((await get('/mosaics/rgb/preview.jpg')).body);
    assert.deepEqual([def.width, def.height, def.channels], [640, 512, 3], 'no upsampling past the mosaic size');
  });

  test('bbox crop: PNG of the grid; GeoTIFF of the data values that GDAL reads, validates and agrees with gdalwarp', async () => {
    const png = await get('/mosaics/utm/bbox/5.95,44.97,6.05,45.03.png?width=300&rescale=0,4000');
    assert.equal(png.status, 200);
    const img = await decode(png.body);
    assert.deepEqual([img.width, img.height], [300, 180]);
    const g: Grid = {
      crs: crsFromEpsg(4326),
      transform: [5.95, 0.1 / 300, 0, 45.03, 0, -0.06 / 180],
      width: 300,
      height: 180,
    };
    const got = planes(rgba(img.data, img.channels));
    await assertGrayAgrees(
      got,
      [file('utm32'), file('utm31')],
      g,
      { dtype: 'uint16', nodata: 0, range: [0, 4000] },
      'bbox PNG vs gdalwarp',
    );

    const work = await tempDir();
    for (const [crsQuery, epsg] of [
      ['', 4326],
      ['&crs=EPSG:32632', 32632],
    ] as const) {
      const bbox = epsg === 4326 ? '5.95,44.97,6.05,45.03' : '256000,4982000,266000,4990000';
      const r = await get(`/mosaics/utm/bbox/${bbox}.tif?resampling=nearest${crsQuery}`);
      assert.equal(r.status, 200);
      assert.equal(r.headers.get('content-type'), 'image/tiff; application=geotiff');
      const f = path.join(work, `crop${epsg}.tif`);
      await writeFile(f, r.body);
      const info = JSON.parse(await sh('gdalinfo', ['-json', f]));
      const [w, h] = info.size as [number, number];
      assert.equal(info.bands.length, 1);
      assert.equal(info.bands[0].type, 'UInt16');
      assert.equal(info.bands[0].noDataValue, 0);
      assert.match(info.coordinateSystem.wkt, new RegExp(`ID\\["EPSG",${epsg}\\]\\]$`));
      if (epsg === 32632) assert.deepEqual([w, h], [500, 400], 'native 20 m pixels by default');
      const v = await validateCog(f);
      assert.deepEqual([v.errors, v.warnings], [[], []], v.output);
      const gt = info.geoTransform as number[];
      const grid: Grid = { crs: crsFromEpsg(epsg), transform: [gt[0], gt[1], 0, gt[3], 0, gt[5]], width: w, height: h };
      const ref = await gdalwarpMosaic([file('utm32'), file('utm31')], grid, {
        dtype: 'uint16',
        bands: 1,
        dstNodata: 0,
      });
      const raw = await gdalRead(f);
      const vals = new Uint16Array(raw.bytes.buffer, raw.bytes.byteOffset, w * h);
      const ours: Pixels = {
        width: w,
        height: h,
        dtype: 'uint16',
        bands: [vals],
        mask: Uint8Array.from(vals, (v) => (v === 0 ? 0 : 255)),
      };
      const a = agreement(ours, ref);
      assert.ok(a.compared > w * h * 0.5);
      assert.ok(a.fraction >= 0.995, `GeoTIFF vs gdalwarp: ${(a.fraction * 100).toFixed(2)}%`);
    }
  });
});
