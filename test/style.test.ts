/** Styling and statistics, pure parts: band math parser, colormaps, style parameters, stretch, statistics. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { crsFromEpsg } from '../src/render/crs.ts';
import { RenderError } from '../src/render/errors.ts';
import { bandStatistics, sortYielding, statisticsGrid, YIELD_EVERY } from '../src/render/statistics.ts';
import { COLORMAP_NAMES, customColormap, namedColormap, parseColor } from '../src/render/style.colormap.ts';
import { parseExpression } from '../src/render/style.expression.ts';
import { stretchByte, styleImage } from '../src/render/style.stretch.ts';
import { styleInputBands, styleKey, styleValues } from '../src/render/style.ts';
import type { Pixels } from '../src/render/types.ts';
import { parseStyle, type StyleQuery, styleQueryString } from '../src/server/style.query.ts';

function evalExpr(text: string, bands: Record<number, number>, bandCount = 8): number[] {
  const e = parseExpression(text, bandCount);
  const v = new Float64Array(e.bands.map((b) => bands[b]));
  return e.evaluators.map((f) => f(v));
}

function query(params: string): StyleQuery {
  const u = new URLSearchParams(params);
  return { get: (n) => u.get(n) ?? undefined, getAll: (n) => u.getAll(n) };
}

function badRequest(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof RenderError, `expected a RenderError, got ${e}`);
    assert.equal(e.code, 400);
    assert.match(e.message, pattern);
    return true;
  });
}

describe('band math', () => {
  test('precedence and associativity', () => {
    assert.deepEqual(evalExpr('1 + 2 * 3 + b1', { 1: 0 }), [7]);
    assert.deepEqual(evalExpr('(1 + 2) * 3 + b1', { 1: 0 }), [9]);
    assert.deepEqual(evalExpr('-2 ^ 2 + b1', { 1: 0 }), [-4]);
    assert.deepEqual(evalExpr('2 ^ 3 ^ 2 + b1', { 1: 0 }), [512]);
    assert.deepEqual(evalExpr('2 ** 3 + b1', { 1: 0 }), [8]);
    assert.deepEqual(evalExpr('10 - 4 - 3 + b1', { 1: 0 }), [3]);
    assert.deepEqual(evalExpr('12 / 3 / 2 + b1 % 5', { 1: 7 }), [4]);
    assert.deepEqual(evalExpr('b1 > 3 && b1 <= 5 || b1 == 9', { 1: 4 }), [1]);
    assert.deepEqual(evalExpr('b1 > 3 && b1 <= 5 || b1 == 9', { 1: 6 }), [0]);
    assert.deepEqual(evalExpr('!(b1 != 2)', { 1: 2 }), [1]);
    assert.deepEqual(evalExpr('1.5e1 + .5 + b1', { 1: 0 }), [15.5]);
  });

  test('NDVI, functions, constants, several outputs', () => {
    const [ndvi] = evalExpr('(b4 - b3) / (b4 + b3)', { 3: 1000, 4: 3000 });
    assert.equal(ndvi, 0.5);
    assert.deepEqual(evalExpr('sqrt(b1); abs(-b1); max(b1, 7, 3)', { 1: 16 }), [4, 16, 16]);
    assert.deepEqual(evalExpr('where(b1 > 10, 1, 2) + clamp(b1, 0, 5)', { 1: 12 }), [6]);
    assert.deepEqual(evalExpr('round(pi * 100) + floor(e) + log10(b1)', { 1: 1000 }), [319]);
    assert.deepEqual(evalExpr('B2 + b2', { 2: 1 }), [2], 'band names are case-insensitive');
    const e = parseExpression('b3 + b1; b2; b1', 4);
    assert.deepEqual(e.bands, [1, 2, 3]);
    assert.equal(e.outputs.length, 3);
    assert.equal(parseExpression('b1;', 4).outputs.length, 1, 'a trailing ; is allowed');
  });

  test('equivalent spellings share one canonical form', () => {
    assert.equal(
      parseExpression('(b4-b3)/(b4+b3)', 4).canonical,
      parseExpression(' ( b4 - b3 ) / ( B4 + b3 ) ', 4).canonical,
    );
    assert.notEqual(parseExpression('b1-b2-b3', 4).canonical, parseExpression('b1-(b2-b3)', 4).canonical);
  });

  test('errors name the problem and its position; nothing is evaluated as JavaScript', () => {
    badRequest(() => parseExpression('b1 +', 4), /end of the expression at position 5/);
    badRequest(() => parseExpression('b1 + * 2', 4), /position 6/);
    badRequest(() => parseExpression('(b1 + 2', 4), /expected "\)"/);
    badRequest(() => parseExpression('b1 2', 4), /unexpected number 2/);
    badRequest(() => parseExpression('b5 + 1', 4), /band b5 does not exist.*b1\.\.b4/);
    badRequest(() => parseExpression('b0', 4), /band b0 does not exist/);
    badRequest(() => parseExpression('b1 = 2', 4), /unexpected character "="/);
    badRequest(() => parseExpression('constructor', 4), /unknown name "constructor"/);
    badRequest(() => parseExpression('constructor(1)', 4), /unknown function "constructor"/);
    badRequest(() => parseExpression('tostring(b1)', 4), /unknown function/);
    badRequest(() => parseExpression('process.exit(1)', 4), /unexpected character "\."/);
    badRequest(() => parseExpression('b1["length"]', 4), /unexpected character "\["/);
    badRequest(() => parseExpression('sqrt(b1, 2)', 4), /sqrt\(\) takes 1 arguments, got 2/);
    badRequest(() => parseExpression('1 + 2', 4), /reads no band/);
    badRequest(() => parseExpression('   ', 4), /empty/);
    badRequest(() => parseExpression(`b1${'+b1'.repeat(300)}`, 4, 512), /longer than the limit of 512/);
    badRequest(() => parseExpression(`${'('.repeat(200)}b1${')'.repeat(200)}`, 4, 1000), /nesting deeper than 64/);
    badRequest(() => parseExpression(`${'-'.repeat(200)}b1`, 4, 1000), /nesting deeper than 64/);
  });
});

describe('colormaps', () => {
  test('named maps are 256 RGBA entries through their control points', () => {
    const v = namedColormap('viridis').lut;
    assert.equal(v.length, 1024);
    assert.deepEqual([...v.subarray(0, 4)], [0x44, 0x01, 0x54, 255]);
    assert.deepEqual([...v.subarray(1020, 1024)], [0xfd, 0xe7, 0x25, 255]);
    const r = namedColormap('VIRIDIS_r').lut;
    assert.deepEqual([...r.subarray(0, 4)], [0xfd, 0xe7, 0x25, 255]);
    assert.deepEqual([...r.subarray(1020, 1024)], [0x44, 0x01, 0x54, 255]);
    const gray = namedColormap('greys').lut;
    for (let i = 0; i < 256; i++) assert.deepEqual([...gray.subarray(i * 4, i * 4 + 4)], [i, i, i, 255]);
    const terrain = namedColormap('terrain').lut;
    assert.deepEqual([...terrain.subarray(0, 4)], [0x33, 0x33, 0x99, 255]);
    // the 0.5 stop (#ffff99) sits between entries 127 and 128
    const mid = [...terrain.subarray(128 * 4, 128 * 4 + 3)];
    for (const [ch, want] of [255, 255, 153].entries())
      assert.ok(Math.abs(mid[ch] - want) <= 1, `terrain[128] = ${mid}`);
    for (const name of COLORMAP_NAMES) assert.equal(namedColormap(name).lut.length, 1024, name);
    assert.ok(COLORMAP_NAMES.length >= 12);
    badRequest(() => namedColormap('jet'), /colormap "jet" is unknown; use one of gray, viridis/);
  });

  test('custom JSON colormaps: discrete tables and gradients', () => {
    const d = customColormap('{"1": "#ff0000", "2": [0, 255, 0, 128], "255": "#00f"}').lut;
    assert.deepEqual([...d.subarray(4, 8)], [255, 0, 0, 255]);
    assert.deepEqual([...d.subarray(8, 12)], [0, 255, 0, 128]);
    assert.deepEqual([...d.subarray(1020, 1024)], [0, 0, 255, 255]);
    assert.deepEqual([...d.subarray(0, 4)], [0, 0, 0, 0], 'values not listed are transparent');
    const g = customColormap('[[0, "#000000"], [255, "#ffffff"]]').lut;
    for (const i of [0, 1, 100, 255]) assert.deepEqual([...g.subarray(i * 4, i * 4 + 4)], [i, i, i, 255]);
    const stepped = customColormap('[[100, "#000000"], [200, "#c8c8c8"]]').lut;
    assert.equal(stepped[50 * 4], 0, 'clamped below the first stop');
    assert.equal(stepped[150 * 4], 100);
    assert.equal(stepped[250 * 4], 200, 'clamped above the last stop');
    badRequest(() => customColormap('{"1": "red"}'), /"red" is not "#rrggbb"/);
    badRequest(() => customColormap('{"300": "#ff0000"}'), /key "300" must be an integer 0\.\.255/);
    badRequest(() => customColormap('{bad json'), /not valid JSON/);
    badRequest(() => customColormap('[[10, "#000"], [5, "#fff"]]'), /must increase/);
    badRequest(() => customColormap('"viridis"'), /must be an object/);
    assert.deepEqual(parseColor('#11223344'), [0x11, 0x22, 0x33, 0x44]);
  });
});

describe('style parameters', () => {
  test('valid queries parse; equivalent queries have one key', () => {
    const s = parseStyle(
      query('bands=3,2&bands=1&rescale=0,100&rescale=0,200&rescale=1,2&resampling=bilinear&nodata=nan'),
      4,
      { maxExpressionLength: 512 },
    );
    assert.deepEqual(s.bands, [3, 2, 1]);
    assert.deepEqual(s.rescale, [
      [0, 100],
      [0, 200],
      [1, 2],
    ]);
    assert.equal(s.resampling, 'bilinear');
    assert.ok(Number.isNaN(s.nodata));
    const a = parseStyle(query('expression=(b4-b3)/(b4%2Bb3)&colormap=viridis&rescale=-1,1'), 4, {
      maxExpressionLength: 512,
    });
    const b = parseStyle(query('rescale=-1,1&colormap=viridis&expression=( b4 - b3 ) / ( b4 %2B b3 )&unknown=1'), 4, {
      maxExpressionLength: 512,
    });
    assert.equal(styleKey(a), styleKey(b));
    assert.notEqual(
      styleKey(a),
      styleKey(
        parseStyle(query('expression=(b4-b3)/(b4%2Bb3)&colormap=magma&rescale=-1,1'), 4, { maxExpressionLength: 512 }),
      ),
    );
    assert.deepEqual(styleInputBands(a, 4), [3, 4]);
    assert.deepEqual(styleInputBands(parseStyle(query(''), 4, { maxExpressionLength: 512 }), 4), [1, 2, 3]);
    assert.deepEqual(styleInputBands(parseStyle(query(''), 2, { maxExpressionLength: 512 }), 2), [1]);
    assert.deepEqual(
      styleInputBands(parseStyle(query(''), 4, { maxExpressionLength: 512 }, { image: false }), 4, { image: false }),
      [1, 2, 3, 4],
    );
    assert.equal(
      styleQueryString(query('zoom=3&rescale=0,1&colormap=viridis&SERVICE=WMTS')),
      'rescale=0%2C1&colormap=viridis',
    );
  });

  test('bad values are 400s that say what to write', () => {
    const L = { maxExpressionLength: 512 };
    badRequest(() => parseStyle(query('bands=0'), 4, L), /use 1\.\.4, e\.g\. bands=1,2,3/);
    badRequest(() => parseStyle(query('bands=1,x'), 4, L), /"x" is not a band/);
    badRequest(() => parseStyle(query('bands=1,2'), 4, L), /gives 2 output bands; an image needs 1 .* or 3/);
    badRequest(() => parseStyle(query('bands=1&expression=b1'), 4, L), /either bands= or expression=/);
    badRequest(() => parseStyle(query('rescale=5'), 4, L), /must be min,max/);
    badRequest(() => parseStyle(query('rescale=a,5'), 4, L), /rescale min "a" is not a number/);
    badRequest(() => parseStyle(query('rescale=5,1'), 4, L), /max must be greater than min/);
    badRequest(() => parseStyle(query('rescale=0,1&rescale=0,2'), 4, L), /2 rescale ranges for 3 output bands/);
    badRequest(() => parseStyle(query('colormap=viridis'), 4, L), /a colormap applies to one band/);
    badRequest(() => parseStyle(query('colormap=nope&bands=1'), 4, L), /unknown/);
    badRequest(() => parseStyle(query('resampling=lanczos'), 4, L), /use one of nearest, bilinear, cubic/);
    badRequest(() => parseStyle(query('nodata=abc'), 4, L), /nodata "abc" is not a number/);
    // a data request (GeoTIFF crop) may select any number of bands
    assert.deepEqual(parseStyle(query('bands=1,2'), 4, L, { image: false }).bands, [1, 2]);
  });
});

function pixels(width: number, height: number, bands: number[][], mask: number[]): Pixels {
  return { width, height, dtype: 'uint16', bands: bands.map((b) => Uint16Array.from(b)), mask: Uint8Array.from(mask) };
}

describe('values and images', () => {
  test('gray + alpha with a linear stretch; invalid pixels transparent and black', () => {
    const px = pixels(4, 1, [[0, 1000, 2000, 5000]], [255, 255, 0, 255]);
    const img = styleImage(styleValues(px, {}), [[0, 4000]]);
    assert.equal(img.channels, 2);
    assert.deepEqual([...img.data], [0, 255, 64, 255, 0, 0, 255, 255]);
    assert.equal(stretchByte(1000, 0, 4000), 64);
  });

  test('nodata override masks pixels where every band equals it', () => {
    const px = pixels(
      3,
      1,
      [
        [7, 7, 3],
        [7, 1, 7],
      ],
      [255, 255, 255],
    );
    const v = styleValues(px, { nodata: 7 });
    assert.deepEqual([...v.mask], [0, 255, 255]);
  });

  test('expressions: values per pixel; a non-finite result masks the pixel', () => {
    const px = pixels(
      3,
      1,
      [
        [100, 0, 50],
        [300, 0, 50],
      ],
      [255, 255, 255],
    );
    const e = parseExpression('(b2 - b1) / (b2 + b1)', 2);
    const v = styleValues(px, { expression: e });
    assert.equal(v.dtype, 'float64');
    assert.deepEqual([...v.bands[0]], [0.5, 0, 0]);
    assert.deepEqual([...v.mask], [255, 0, 255], '0/0 is masked');
    const img = styleImage(v, [[-1, 1]], namedColormap('gray'));
    assert.equal(img.channels, 4);
    // 0.5 -> round(1.5 * 127.5) = 191
    assert.deepEqual([...img.data], [191, 191, 191, 255, 0, 0, 0, 0, 128, 128, 128, 255]);
  });

  test('three bands with one range each; a colormap with transparent entries', () => {
    const px = pixels(
      2,
      1,
      [
        [0, 10],
        [10, 20],
        [20, 30],
      ],
      [255, 255],
    );
    const img = styleImage(styleValues(px, {}), [
      [0, 10],
      [10, 20],
      [20, 30],
    ]);
    assert.deepEqual([...img.data], [0, 0, 0, 255, 255, 255, 255, 255]);
    const cm = customColormap('{"0": "#ff0000"}');
    const one = styleImage(styleValues(pixels(2, 1, [[0, 255]], [255, 255]), {}), [[0, 255]], cm);
    assert.deepEqual([...one.data], [255, 0, 0, 255, 0, 0, 0, 0]);
  });
});

describe('bytes shown as they are', () => {
  test('8-bit bands over 0..255 give the image the stretch gives for the same values as floats', () => {
    const n = 64 * 48;
    let seed = 5;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed >>> 24;
    };
    const mask = Uint8Array.from({ length: n }, (_, i) => (i % 7 === 0 ? 0 : 255));
    for (const nb of [1, 3]) {
      const bytes = Array.from({ length: nb }, () => Uint8Array.from({ length: n }, rnd));
      const values = (bands: (Uint8Array | Float64Array)[]) => ({
        width: 64,
        height: 48,
        bands,
        mask,
        dtype: 'uint8' as const,
      });
      const direct = styleImage(values(bytes), [[0, 255]]);
      const stretched = styleImage(values(bytes.map((b) => Float64Array.from(b))), [[0, 255]]);
      assert.equal(direct.channels, stretched.channels);
      assert.deepEqual(direct.data, stretched.data, `${nb} band(s)`);
      // and the values did come through: pixel 1 (valid) of the first band
      assert.equal(direct.data[direct.channels], bytes[0][1]);
    }
  });
});

describe('statistics', () => {
  test('min, max, mean, std, numpy-style percentiles and histogram of valid values', () => {
    const values = Float64Array.from({ length: 101 }, (_, i) => i); // 0..100, 100 masked below
    const mask = new Uint8Array(101).fill(255);
    mask[100] = 0;
    const s = bandStatistics('b1', values, mask, 4);
    assert.equal(s.count, 100);
    assert.equal(s.validPercent, 99.01);
    assert.equal(s.min, 0);
    assert.equal(s.max, 99);
    assert.equal(s.mean, 49.5);
    assert.ok(Math.abs(s.std! - 28.86607004772212) < 1e-9);
    // numpy.percentile(range(100), 2) == 1.98, (…, 98) == 97.02
    assert.ok(Math.abs(s.percentiles.p2! - 1.98) < 1e-9);
    assert.ok(Math.abs(s.percentiles.p98! - 97.02) < 1e-9);
    assert.equal(s.percentiles.p50, 49.5);
    assert.deepEqual(s.histogram.edges, [0, 24.75, 49.5, 74.25, 99]);
    assert.deepEqual(s.histogram.counts, [25, 25, 25, 25]);
    const none = bandStatistics('b1', values, new Uint8Array(101), 4);
    assert.equal(none.count, 0);
    assert.equal(none.min, null);
  });

  test('the sampling grid covers the bbox on the native lattice and decimates to the sample size', () => {
    const grid = {
      crs: crsFromEpsg(32632),
      transform: [1000, 10, 0, 9000, 0, -10] as const,
      width: 4000,
      height: 2000,
    };
    const whole = statisticsGrid(grid, undefined, 1000, 4e6);
    assert.equal(whole.grid.width, 1000);
    assert.equal(whole.grid.height, 500);
    assert.equal(whole.decimation, 4);
    assert.deepEqual(whole.grid.transform, [1000, 40, 0, 9000, 0, -40]);
    const part = statisticsGrid(grid, [1105, 8005, 1995, 8895], 1000, 4e6);
    assert.deepEqual([part.grid.width, part.grid.height, part.decimation], [90, 90, 1]);
    assert.deepEqual(part.grid.transform, [1100, 10, 0, 8900, 0, -10]);
    assert.throws(() => statisticsGrid(grid, [0, 0, 10, 10], 1000, 4e6), /does not overlap/);
  });

  test('the yielding sort sorts like Float64Array.sort and never handles more than one slice between yields', async () => {
    // lengths around the run and slice sizes, and one long enough that the last merge is 16 slices on its own
    for (const n of [5, YIELD_EVERY >> 3, (YIELD_EVERY >> 3) + 1, 3 * YIELD_EVERY + 12_345, 16 * YIELD_EVERY]) {
      let seed = n;
      const a = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        a[i] = (seed % 100_000) - 50_000 + (i % 3) * 0.5;
      }
      const expected = Float64Array.from(a).sort();
      const slices: number[] = [];
      let turns = 0;
      const ticker = setInterval(() => turns++, 0);
      await sortYielding(a, (v) => slices.push(v));
      clearInterval(ticker);
      assert.deepEqual(a, expected, `n=${n}`);
      assert.ok(Math.max(...slices) <= YIELD_EVERY, `n=${n}: a slice handled ${Math.max(...slices)} values`);
      // every value sorted once, then moved once per merge pass
      const passes = n > YIELD_EVERY >> 3 ? Math.ceil(Math.log2(n / (YIELD_EVERY >> 3))) : 0;
      assert.equal(
        slices.reduce((s, v) => s + v, 0),
        n * (1 + passes),
        `n=${n}`,
      );
      if (n === 16 * YIELD_EVERY) assert.ok(turns >= 1, 'other callbacks ran while it sorted');
    }
  });
});
