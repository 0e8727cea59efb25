/**
 * Styling: turns rendered data values into 8-bit image samples. Three steps, each pure and separately testable:
 *
 *   values  = bands selected, or band math (`expression`), with an optional nodata override  (`styleValues`)
 *   bytes   = linear stretch of each output band to 0..255 (`rescale`, or the mosaic's 2nd-98th percentile)
 *   image   = gray + alpha, RGBA, or a colormap applied to one band                            (`styleImage`)
 *
 * Band math is parsed by a small tokenizer and recursive-descent parser into a tree of closures; nothing is ever
 * evaluated as JavaScript. Colormaps are 256-entry RGBA tables, generated from a few control points each.
 */
import { RenderError } from './errors.ts';
import { type DType, type Pixels, RESAMPLINGS, type Resampling, type TypedArray } from './types.ts';

// ---------------------------------------------------------------------------------------------------------------
// band math

/** A parsed expression tree. `band` is 1-based (b1 is the mosaic's first band). */
export type ExprNode =
  | { readonly kind: 'num'; readonly value: number }
  | { readonly kind: 'band'; readonly band: number }
  | { readonly kind: 'unary'; readonly op: '-' | '+' | '!'; readonly arg: ExprNode }
  | { readonly kind: 'binary'; readonly op: BinaryOp; readonly left: ExprNode; readonly right: ExprNode }
  | { readonly kind: 'call'; readonly fn: string; readonly args: readonly ExprNode[] };

type BinaryOp = '+' | '-' | '*' | '/' | '%' | '^' | '<' | '<=' | '>' | '>=' | '==' | '!=' | '&&' | '||';

/** Evaluates one output for one pixel; `v[k]` holds the value of `Expression.bands[k]`. */
type Evaluator = (v: Float64Array) => number;

export interface Expression {
  /** canonical text (fully parenthesised), the same for equivalent spellings: used in cache keys */
  readonly canonical: string;
  /** one tree per output (outputs are separated by `;`) */
  readonly outputs: readonly ExprNode[];
  /** the 1-based mosaic bands the expression reads, ascending */
  readonly bands: readonly number[];
  /** one evaluator per output */
  readonly evaluators: readonly Evaluator[];
}

const FUNCTIONS: Readonly<
  Record<string, { readonly min: number; readonly max: number; readonly fn: (...a: number[]) => number }>
> = {
  abs: { min: 1, max: 1, fn: Math.abs },
  sqrt: { min: 1, max: 1, fn: Math.sqrt },
  exp: { min: 1, max: 1, fn: Math.exp },
  log: { min: 1, max: 1, fn: Math.log },
  log10: { min: 1, max: 1, fn: Math.log10 },
  log2: { min: 1, max: 1, fn: Math.log2 },
  sin: { min: 1, max: 1, fn: Math.sin },
  cos: { min: 1, max: 1, fn: Math.cos },
  tan: { min: 1, max: 1, fn: Math.tan },
  asin: { min: 1, max: 1, fn: Math.asin },
  acos: { min: 1, max: 1, fn: Math.acos },
  atan: { min: 1, max: 1, fn: Math.atan },
  atan2: { min: 2, max: 2, fn: Math.atan2 },
  floor: { min: 1, max: 1, fn: Math.floor },
  ceil: { min: 1, max: 1, fn: Math.ceil },
  round: { min: 1, max: 1, fn: Math.round },
  pow: { min: 2, max: 2, fn: Math.pow },
  min: { min: 1, max: 16, fn: Math.min },
  max: { min: 1, max: 16, fn: Math.max },
  clamp: { min: 3, max: 3, fn: (x, lo, hi) => Math.min(hi, Math.max(lo, x)) },
  where: { min: 3, max: 3, fn: (c, a, b) => (c !== 0 && !Number.isNaN(c) ? a : b) },
};

const CONSTANTS: Readonly<Record<string, number>> = { pi: Math.PI, e: Math.E };

const MAX_DEPTH = 64;

type Token =
  | { readonly t: 'num'; readonly value: number; readonly pos: number }
  | { readonly t: 'id'; readonly name: string; readonly pos: number }
  | { readonly t: 'op'; readonly op: string; readonly pos: number }
  | { readonly t: 'end'; readonly pos: number };

function exprError(text: string, pos: number, what: string): RenderError {
  const shown = text.length > 80 ? `${text.slice(0, 77)}...` : text;
  return new RenderError('bad-request', `expression: ${what} at position ${pos + 1} of "${shown}"`);
}

/** Longest first, so `<=` is not read as `<` then `=`. */
const OPERATORS = '** <= >= == != && || + - * / % ^ ( ) , ; < > !'.split(' ');

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (ch === ' ' || ch === '\t' || ch === '\n' || ch === '\r') {
      i++;
      continue;
    }
    if ((ch >= '0' && ch <= '9') || (ch === '.' && text[i + 1] >= '0' && text[i + 1] <= '9')) {
      const m = /^(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(text.slice(i))!;
      out.push({ t: 'num', value: Number(m[0]), pos: i });
      i += m[0].length;
      continue;
    }
    if (/[A-Za-z_]/.test(ch)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i))!;
      out.push({ t: 'id', name: m[0].toLowerCase(), pos: i });
      i += m[0].length;
      continue;
    }
    const op = OPERATORS.find((o) => text.startsWith(o, i));
    if (!op) throw exprError(text, i, `unexpected character "${ch}"`);
    out.push({ t: 'op', op: op === '**' ? '^' : op, pos: i });
    i += op.length;
  }
  out.push({ t: 'end', pos: text.length });
  return out;
}

class Parser {
  private readonly tokens: Token[];
  private readonly text: string;
  private readonly bandCount: number;
  private i = 0;
  private depth = 0;

  constructor(text: string, bandCount: number) {
    this.text = text;
    this.tokens = tokenize(text);
    this.bandCount = bandCount;
  }

  private peek(): Token {
    return this.tokens[this.i];
  }

  private isOp(op: string): boolean {
    const t = this.peek();
    return t.t === 'op' && t.op === op;
  }

  private expect(op: string): void {
    const t = this.peek();
    if (!this.isOp(op)) throw exprError(this.text, t.pos, `expected "${op}" but found ${describe(t)}`);
    this.i++;
  }

  parseAll(): ExprNode[] {
    const outputs: ExprNode[] = [];
    for (;;) {
      outputs.push(this.expr());
      if (this.isOp(';')) {
        this.i++;
        if (this.peek().t === 'end') break; // a trailing ';' is allowed
        continue;
      }
      const t = this.peek();
      if (t.t !== 'end') throw exprError(this.text, t.pos, `unexpected ${describe(t)}`);
      break;
    }
    return outputs;
  }

  private expr(): ExprNode {
    if (++this.depth > MAX_DEPTH) throw exprError(this.text, this.peek().pos, `nesting deeper than ${MAX_DEPTH}`);
    const node = this.binary(0);
    this.depth--;
    return node;
  }

  private static readonly LEVELS: readonly (readonly string[])[] = [
    ['||'],
    ['&&'],
    ['<', '<=', '>', '>=', '==', '!='],
    ['+', '-'],
    ['*', '/', '%'],
  ];

  private binary(level: number): ExprNode {
    if (level >= Parser.LEVELS.length) return this.unary();
    let left = this.binary(level + 1);
    for (;;) {
      const t = this.peek();
      if (t.t !== 'op' || !Parser.LEVELS[level].includes(t.op)) return left;
      this.i++;
      const right = this.binary(level + 1);
      left = { kind: 'binary', op: t.op as BinaryOp, left, right };
    }
  }

  private unary(): ExprNode {
    const t = this.peek();
    if (t.t === 'op' && (t.op === '-' || t.op === '+' || t.op === '!')) {
      this.i++;
      if (++this.depth > MAX_DEPTH) throw exprError(this.text, t.pos, `nesting deeper than ${MAX_DEPTH}`);
      const arg = this.unary();
      this.depth--;
      return { kind: 'unary', op: t.op, arg };
    }
    return this.power();
  }

  /** `a ^ b` binds tighter than unary minus on its left and is right-associative: -2^2 = -4, 2^3^2 = 512. */
  private power(): ExprNode {
    const base = this.primary();
    if (this.isOp('^')) {
      this.i++;
      const exponent = this.unary();
      return { kind: 'binary', op: '^', left: base, right: exponent };
    }
    return base;
  }

  private primary(): ExprNode {
    const t = this.peek();
    if (t.t === 'num') {
      this.i++;
      return { kind: 'num', value: t.value };
    }
    if (t.t === 'op' && t.op === '(') {
      this.i++;
      const inner = this.expr();
      this.expect(')');
      return inner;
    }
    if (t.t === 'id') {
      this.i++;
      const band = /^b(\d+)$/.exec(t.name);
      if (band) {
        const b = Number(band[1]);
        if (b < 1 || b > this.bandCount) {
          throw exprError(this.text, t.pos, `band ${t.name} does not exist (the mosaic has b1..b${this.bandCount})`);
        }
        return { kind: 'band', band: b };
      }
      if (this.isOp('(')) {
        const spec = Object.hasOwn(FUNCTIONS, t.name) ? FUNCTIONS[t.name] : undefined;
        if (!spec) {
          throw exprError(
            this.text,
            t.pos,
            `unknown function "${t.name}" (known: ${Object.keys(FUNCTIONS).join(', ')})`,
          );
        }
        this.i++;
        const args: ExprNode[] = [];
        if (!this.isOp(')')) {
          for (;;) {
            args.push(this.expr());
            if (!this.isOp(',')) break;
            this.i++;
          }
        }
        this.expect(')');
        if (args.length < spec.min || args.length > spec.max) {
          const want = spec.min === spec.max ? `${spec.min}` : `${spec.min} to ${spec.max}`;
          throw exprError(this.text, t.pos, `${t.name}() takes ${want} arguments, got ${args.length}`);
        }
        return { kind: 'call', fn: t.name, args };
      }
      if (Object.hasOwn(CONSTANTS, t.name)) return { kind: 'num', value: CONSTANTS[t.name] };
      throw exprError(this.text, t.pos, `unknown name "${t.name}" (bands are b1..b${this.bandCount})`);
    }
    throw exprError(
      this.text,
      t.pos,
      `expected a number, a band (b1..b${this.bandCount}), a function or "(" but found ${describe(t)}`,
    );
  }
}

function describe(t: Token): string {
  switch (t.t) {
    case 'num':
      return `number ${t.value}`;
    case 'id':
      return `"${t.name}"`;
    case 'op':
      return `"${t.op}"`;
    case 'end':
      return 'the end of the expression';
  }
}

function printNode(n: ExprNode): string {
  switch (n.kind) {
    case 'num':
      return String(n.value);
    case 'band':
      return `b${n.band}`;
    case 'unary':
      return `(${n.op}${printNode(n.arg)})`;
    case 'binary':
      return `(${printNode(n.left)}${n.op}${printNode(n.right)})`;
    case 'call':
      return `${n.fn}(${n.args.map(printNode).join(',')})`;
  }
}

function collectBands(n: ExprNode, out: Set<number>): void {
  switch (n.kind) {
    case 'band':
      out.add(n.band);
      break;
    case 'unary':
      collectBands(n.arg, out);
      break;
    case 'binary':
      collectBands(n.left, out);
      collectBands(n.right, out);
      break;
    case 'call':
      for (const a of n.args) collectBands(a, out);
      break;
    case 'num':
      break;
  }
}

function compileNode(n: ExprNode, slot: ReadonlyMap<number, number>): Evaluator {
  switch (n.kind) {
    case 'num': {
      const value = n.value;
      return () => value;
    }
    case 'band': {
      const k = slot.get(n.band)!;
      return (v) => v[k];
    }
    case 'unary': {
      const a = compileNode(n.arg, slot);
      if (n.op === '-') return (v) => -a(v);
      if (n.op === '!') return (v) => (a(v) === 0 ? 1 : 0);
      return a;
    }
    case 'binary': {
      const l = compileNode(n.left, slot);
      const r = compileNode(n.right, slot);
      switch (n.op) {
        case '+':
          return (v) => l(v) + r(v);
        case '-':
          return (v) => l(v) - r(v);
        case '*':
          return (v) => l(v) * r(v);
        case '/':
          return (v) => l(v) / r(v);
        case '%':
          return (v) => l(v) % r(v);
        case '^':
          return (v) => l(v) ** r(v);
        case '<':
          return (v) => (l(v) < r(v) ? 1 : 0);
        case '<=':
          return (v) => (l(v) <= r(v) ? 1 : 0);
        case '>':
          return (v) => (l(v) > r(v) ? 1 : 0);
        case '>=':
          return (v) => (l(v) >= r(v) ? 1 : 0);
        case '==':
          return (v) => (l(v) === r(v) ? 1 : 0);
        case '!=':
          return (v) => (l(v) !== r(v) ? 1 : 0);
        case '&&':
          return (v) => (l(v) !== 0 && r(v) !== 0 ? 1 : 0);
        case '||':
          return (v) => (l(v) !== 0 || r(v) !== 0 ? 1 : 0);
      }
      break;
    }
    case 'call': {
      const fn = FUNCTIONS[n.fn].fn;
      const args = n.args.map((a) => compileNode(a, slot));
      if (args.length === 1) {
        const [a] = args;
        return (v) => fn(a(v));
      }
      if (args.length === 2) {
        const [a, b] = args;
        return (v) => fn(a(v), b(v));
      }
      if (args.length === 3) {
        const [a, b, c] = args;
        return (v) => fn(a(v), b(v), c(v));
      }
      const vals = new Array<number>(args.length);
      return (v) => {
        for (let i = 0; i < args.length; i++) vals[i] = args[i](v);
        return fn(...vals);
      };
    }
  }
  throw new RenderError('internal', 'expression: unknown node');
}

/**
 * Parse band math over the mosaic's bands `b1..b<bandCount>`: numbers, `+ - * / % ^ (**)`, comparisons and
 * `&& || !` (giving 1 or 0), parentheses, the functions of FUNCTIONS and the constants pi and e. Outputs are
 * separated by `;` (one output for a gray or colormapped image, three for RGB). Throws RenderError 'bad-request'
 * with the position of the problem.
 */
export function parseExpression(text: string, bandCount: number, maxLength = 512): Expression {
  if (text.length > maxLength) {
    throw new RenderError(
      'bad-request',
      `expression: ${text.length} characters is longer than the limit of ${maxLength}`,
    );
  }
  if (text.trim() === '')
    throw new RenderError('bad-request', 'expression: empty; write e.g. expression=(b4-b3)/(b4+b3)');
  const outputs = new Parser(text, bandCount).parseAll();
  const used = new Set<number>();
  for (const o of outputs) collectBands(o, used);
  const bands = [...used].sort((a, b) => a - b);
  if (bands.length === 0) {
    throw new RenderError('bad-request', `expression: "${text.slice(0, 80)}" reads no band; use b1..b${bandCount}`);
  }
  const slot = new Map(bands.map((b, k) => [b, k] as const));
  return {
    canonical: outputs.map(printNode).join(';'),
    outputs,
    bands,
    evaluators: outputs.map((o) => compileNode(o, slot)),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// colormaps

export type Rgba = readonly [number, number, number, number];

export interface Colormap {
  /** the name, or a canonical JSON text for custom colormaps: used in cache keys */
  readonly key: string;
  /** 256 RGBA entries, indexed by the stretched 0..255 value */
  readonly lut: Uint8Array;
}

/**
 * Control points of the named colormaps: colours evenly spaced from 0 to 1, or `position:colour` pairs. The
 * sequential and diverging maps follow matplotlib's and ColorBrewer's published colours.
 */
const COLORMAP_POINTS: Readonly<Record<string, string>> = {
  gray: '#000000 #ffffff',
  viridis: '#440154 #472c7a #3b518b #2c718e #21908d #27ad81 #5cc863 #aadc32 #fde725',
  magma: '#000004 #1c1044 #4f127b #812581 #b5367a #e55064 #fb8761 #fec287 #fcfdbf',
  inferno: '#000004 #1f0c48 #550f6d #88226a #ba3655 #e35933 #f98e09 #f8c931 #fcffa4',
  plasma: '#0d0887 #4c02a1 #7e03a8 #a92395 #cc4778 #e56b5d #f89441 #fdc328 #f0f921',
  cividis: '#00224e #123570 #3b496c #575d6d #707173 #8a8678 #a59c74 #c3b369 #e1cc55 #fee838',
  terrain: '0:#333399 0.15:#0099ff 0.25:#00cc66 0.5:#ffff99 0.75:#805c54 1:#ffffff',
  rdylgn: '#a50026 #d73027 #f46d43 #fdae61 #fee08b #ffffbf #d9ef8b #a6d96a #66bd63 #1a9850 #006837',
  rdylbu: '#a50026 #d73027 #f46d43 #fdae61 #fee090 #ffffbf #e0f3f8 #abd9e9 #74add1 #4575b4 #313695',
  rdbu: '#67001f #b2182b #d6604d #f4a582 #fddbc7 #f7f7f7 #d1e5f0 #92c5de #4393c3 #2166ac #053061',
  brbg: '#543005 #8c510a #bf812d #dfc27d #f6e8c3 #f5f5f5 #c7eae5 #80cdc1 #35978f #01665e #003c30',
  spectral: '#9e0142 #d53e4f #f46d43 #fdae61 #fee08b #ffffbf #e6f598 #abdda4 #66c2a5 #3288bd #5e4fa2',
  coolwarm: '#3b4cc0 #7b9ff9 #c0d4f5 #f2cbb7 #ee8468 #b40426',
  blues: '#f7fbff #deebf7 #c6dbef #9ecae1 #6baed6 #4292c6 #2171b5 #08519c #08306b',
  greens: '#f7fcf5 #e5f5e0 #c7e9c0 #a1d99b #74c476 #41ab5d #238b45 #006d2c #00441b',
  reds: '#fff5f0 #fee0d2 #fcbba1 #fc9272 #fb6a4a #ef3b2c #cb181d #a50f15 #67000d',
  oranges: '#fff5eb #fee6ce #fdd0a2 #fdae6b #fd8d3c #f16913 #d94801 #a63603 #7f2704',
  purples: '#fcfbfd #efedf5 #dadaeb #bcbddc #9e9ac8 #807dba #6a51a3 #54278f #3f007d',
  ylgn: '#ffffe5 #f7fcb9 #d9f0a3 #addd8e #78c679 #41ab5d #238443 #006837 #004529',
  ylorrd: '#ffffcc #ffeda0 #fed976 #feb24c #fd8d3c #fc4e2a #e31a1c #bd0026 #800026',
};

const COLORMAP_ALIASES: Readonly<Record<string, string>> = { grey: 'gray', greys: 'gray', grays: 'gray' };

/** Names accepted by `colormap=` (each also with `_r` for the reversed map). */
export const COLORMAP_NAMES: readonly string[] = Object.keys(COLORMAP_POINTS);

/** Parse a colour: `#rgb`, `#rrggbb`, `#rrggbbaa`, `[r, g, b]` or `[r, g, b, a]` (0..255). */
export function parseColor(c: unknown, where = 'colour'): Rgba {
  if (typeof c === 'string') {
    const m = /^#?([0-9a-f]{3}|[0-9a-f]{6}|[0-9a-f]{8})$/i.exec(c.trim());
    if (m) {
      let h = m[1];
      if (h.length === 3) h = [...h].map((x) => x + x).join('');
      const n = (k: number) => Number.parseInt(h.slice(k, k + 2), 16);
      return [n(0), n(2), n(4), h.length === 8 ? n(6) : 255];
    }
  } else if (
    Array.isArray(c) &&
    (c.length === 3 || c.length === 4) &&
    c.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)
  ) {
    return [c[0], c[1], c[2], c.length === 4 ? c[3] : 255];
  }
  throw new RenderError(
    'bad-request',
    `colormap: ${where} ${JSON.stringify(c)?.slice(0, 40)} is not "#rrggbb", "#rrggbbaa" or [r, g, b(, a)] with 0..255`,
  );
}

/** A 256-entry table interpolating linearly between stops at positions 0..255 (clamped outside them). */
function lutFromStops(stops: readonly (readonly [number, Rgba])[]): Uint8Array {
  const lut = new Uint8Array(256 * 4);
  let k = 0;
  for (let i = 0; i < 256; i++) {
    while (k < stops.length - 1 && stops[k + 1][0] < i) k++;
    const [p0, c0] = stops[k];
    const [p1, c1] = stops[Math.min(k + 1, stops.length - 1)];
    const t = i <= p0 ? 0 : i >= p1 ? 1 : (i - p0) / (p1 - p0);
    for (let ch = 0; ch < 4; ch++) lut[i * 4 + ch] = Math.round(c0[ch] + (c1[ch] - c0[ch]) * t);
  }
  return lut;
}

function reverseLut(lut: Uint8Array): Uint8Array {
  const out = new Uint8Array(lut.length);
  for (let i = 0; i < 256; i++) out.set(lut.subarray((255 - i) * 4, (255 - i) * 4 + 4), i * 4);
  return out;
}

const namedLuts = new Map<string, Uint8Array>();

/** A named colormap (`viridis`, `terrain_r`, ...). Throws RenderError 'bad-request' listing the names. */
export function namedColormap(name: string): Colormap {
  const lower = name.trim().toLowerCase();
  const reversed = lower.endsWith('_r');
  const base0 = reversed ? lower.slice(0, -2) : lower;
  const base = COLORMAP_ALIASES[base0] ?? base0;
  const points = Object.hasOwn(COLORMAP_POINTS, base) ? COLORMAP_POINTS[base] : undefined;
  if (!points) {
    throw new RenderError(
      'bad-request',
      `colormap "${name.slice(0, 40)}" is unknown; use one of ${COLORMAP_NAMES.join(', ')} (add _r to reverse), or a JSON colormap`,
    );
  }
  const key = reversed ? `${base}_r` : base;
  let lut = namedLuts.get(key);
  if (!lut) {
    const items = points.split(' ');
    const stops = items.map((p, i): readonly [number, Rgba] => {
      const [pos, colour] = p.includes(':') ? p.split(':') : [String(i / (items.length - 1)), p];
      return [Number(pos) * 255, parseColor(colour)];
    });
    lut = lutFromStops(stops);
    if (reversed) lut = reverseLut(lut);
    namedLuts.set(key, lut);
  }
  return { key, lut };
}

const MAX_COLORMAP_JSON_CHARS = 16 * 1024;

/**
 * A custom colormap as JSON, over the stretched 0..255 value:
 * - an object `{"0": "#000000", "17": [255, 0, 0], ...}`: a discrete table; values not listed are transparent;
 * - an array `[[0, "#000000"], [128, "#ff0000"], [255, "#ffffff"]]`: a gradient through ascending stops.
 */
export function customColormap(json: string): Colormap {
  if (json.length > MAX_COLORMAP_JSON_CHARS) {
    throw new RenderError(
      'bad-request',
      `colormap: JSON of ${json.length} characters is longer than ${MAX_COLORMAP_JSON_CHARS}`,
    );
  }
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (e) {
    throw new RenderError('bad-request', `colormap: not a name and not valid JSON (${(e as Error).message})`);
  }
  const position = (p: unknown, where: string): number => {
    const n = typeof p === 'string' && p.trim() !== '' ? Number(p) : p;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 255) {
      throw new RenderError(
        'bad-request',
        `colormap: ${where} ${JSON.stringify(p)} must be an integer 0..255 (a stretched value)`,
      );
    }
    return n;
  };
  if (Array.isArray(v)) {
    if (v.length < 2)
      throw new RenderError('bad-request', 'colormap: a gradient needs at least two [position, colour] stops');
    const stops = v.map((s, i): readonly [number, Rgba] => {
      if (!Array.isArray(s) || s.length !== 2) {
        throw new RenderError('bad-request', `colormap: stop ${i} must be [position 0..255, colour]`);
      }
      return [position(s[0], `stop ${i} position`), parseColor(s[1], `stop ${i} colour`)];
    });
    for (let i = 1; i < stops.length; i++) {
      if (stops[i][0] <= stops[i - 1][0])
        throw new RenderError('bad-request', 'colormap: gradient stop positions must increase');
    }
    return { key: JSON.stringify(stops), lut: lutFromStops(stops) };
  }
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>);
    if (entries.length === 0) throw new RenderError('bad-request', 'colormap: the JSON object lists no value');
    const lut = new Uint8Array(256 * 4);
    const canon: [number, Rgba][] = [];
    for (const [k, c] of entries) {
      const i = position(k, 'key');
      const rgba = parseColor(c, `value of ${i}`);
      lut.set(rgba, i * 4);
      canon.push([i, rgba]);
    }
    canon.sort((a, b) => a[0] - b[0]);
    return { key: JSON.stringify({ discrete: canon }), lut };
  }
  throw new RenderError(
    'bad-request',
    'colormap: JSON must be an object {value: colour} or an array of [position, colour]',
  );
}

/** `colormap=` as a name or a JSON colormap. */
export function parseColormap(text: string): Colormap {
  const t = text.trim();
  return t.startsWith('{') || t.startsWith('[') ? customColormap(t) : namedColormap(t);
}

// ---------------------------------------------------------------------------------------------------------------
// style request

/** What a request asks for, validated. Bands are 1-based, as in the query. */
export interface Style {
  readonly bands?: readonly number[];
  readonly expression?: Expression;
  /** one [min, max] for every output band, or one per output band */
  readonly rescale?: readonly (readonly [number, number])[];
  readonly colormap?: Colormap;
  readonly nodata?: number;
  readonly resampling?: Resampling;
}

export interface StyleQuery {
  /** the first value of a query parameter */
  get(name: string): string | undefined;
  /** every value of a (repeatable) query parameter */
  getAll(name: string): readonly string[];
}

export interface StyleLimits {
  readonly maxExpressionLength: number;
}

/** The query parameters a style reads, in the order they appear in normalised URLs. */
export const STYLE_PARAMS = ['bands', 'expression', 'rescale', 'colormap', 'nodata', 'resampling'] as const;

function parseNumber(text: string, what: string): number {
  const t = text.trim();
  if (/^nan$/i.test(t)) return Number.NaN;
  const n = t === '' ? Number.NaN : Number(t);
  if (!Number.isFinite(n)) throw new RenderError('bad-request', `${what} "${text.slice(0, 40)}" is not a number`);
  return n;
}

/** `nodata=` value: a number or `nan`. */
export function parseNodata(text: string): number {
  return parseNumber(text, 'nodata');
}

/** `bands=1,2,3` (or repeated `bands=`): 1-based bands of a mosaic with `bandCount` bands; undefined when absent. */
export function parseBands(texts: readonly string[], bandCount: number): number[] | undefined {
  const parts = texts.flatMap((s) => s.split(','));
  if (parts.length === 0) return undefined;
  return parts.map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 1 || n > bandCount || s.trim() === '') {
      throw new RenderError(
        'bad-request',
        `bands: "${s.slice(0, 20)}" is not a band of this mosaic; use 1..${bandCount}, e.g. bands=1,2,3`,
      );
    }
    return n;
  });
}

/**
 * Validate the style parameters of a query for a mosaic with `bandCount` bands: `bands=1,2,3` (or repeated),
 * `expression=`, `rescale=min,max` (repeatable, one per output band or one for all), `colormap=`, `nodata=`,
 * `resampling=`. Every problem is a RenderError 'bad-request' that says what to write instead. For images
 * (`image`, the default) the request must give 1 or 3 output bands; data requests may give any number.
 */
export function parseStyle(
  q: StyleQuery,
  bandCount: number,
  limits: StyleLimits,
  opts: { image?: boolean } = {},
): Style {
  const image = opts.image ?? true;
  const bands = parseBands(q.getAll('bands'), bandCount);
  const exprText = q.get('expression');
  const expression =
    exprText === undefined ? undefined : parseExpression(exprText, bandCount, limits.maxExpressionLength);
  if (expression && bands) throw new RenderError('bad-request', 'give either bands= or expression=, not both');
  const outputs = expression ? expression.outputs.length : bands ? bands.length : defaultBands(bandCount).length;
  if (image && outputs !== 1 && outputs !== 3) {
    throw new RenderError(
      'bad-request',
      `${expression ? 'expression' : 'bands'} gives ${outputs} output bands; an image needs 1 (gray or colormap) or 3 (RGB)`,
    );
  }
  let rescale: [number, number][] | undefined;
  const rescaleTexts = q.getAll('rescale');
  if (rescaleTexts.length > 0) {
    rescale = rescaleTexts.map((s) => {
      const parts = s.split(',');
      if (parts.length !== 2)
        throw new RenderError('bad-request', `rescale "${s.slice(0, 40)}" must be min,max (e.g. rescale=0,4000)`);
      const lo = parseNumber(parts[0], 'rescale min');
      const hi = parseNumber(parts[1], 'rescale max');
      if (Number.isNaN(lo) || Number.isNaN(hi) || !(hi > lo)) {
        throw new RenderError('bad-request', `rescale "${s.slice(0, 40)}": max must be greater than min`);
      }
      return [lo, hi];
    });
    if (rescale.length !== 1 && rescale.length !== outputs) {
      throw new RenderError(
        'bad-request',
        `${rescale.length} rescale ranges for ${outputs} output bands; give one for all bands or one per band`,
      );
    }
  }
  const cmText = q.get('colormap');
  const colormap = cmText === undefined || cmText.trim() === '' ? undefined : parseColormap(cmText);
  if (colormap && image && outputs !== 1) {
    throw new RenderError(
      'bad-request',
      `a colormap applies to one band, but this request gives ${outputs}; select one band or expression`,
    );
  }
  const ndText = q.get('nodata');
  const nodata = ndText === undefined || ndText.trim() === '' ? undefined : parseNodata(ndText);
  const rsText = q.get('resampling');
  let resampling: Resampling | undefined;
  if (rsText !== undefined && rsText !== '') {
    if (!(RESAMPLINGS as readonly string[]).includes(rsText)) {
      throw new RenderError(
        'bad-request',
        `resampling "${rsText.slice(0, 20)}" is unknown; use one of ${RESAMPLINGS.join(', ')}`,
      );
    }
    resampling = rsText as Resampling;
  }
  return { bands, expression, rescale, colormap, nodata, resampling };
}

/** Bands shown when none are asked for: RGB for three or more bands, else the first band. */
export function defaultBands(bandCount: number): number[] {
  return bandCount >= 3 ? [1, 2, 3] : [1];
}

/**
 * The 1-based mosaic bands a style reads (render these, in this order). Images default to `defaultBands`; data
 * (`image: false`, e.g. a GeoTIFF crop) defaults to every band.
 */
export function styleInputBands(style: Style, bandCount: number, opts: { image?: boolean } = {}): readonly number[] {
  if (style.expression) return style.expression.bands;
  if (style.bands) return style.bands;
  return (opts.image ?? true) ? defaultBands(bandCount) : Array.from({ length: bandCount }, (_, i) => i + 1);
}

/** A canonical text of the style (same for equivalent queries), for ETags and cache keys. */
export function styleKey(style: Style): string {
  const parts: string[] = [];
  if (style.bands) parts.push(`bands=${style.bands.join(',')}`);
  if (style.expression) parts.push(`expression=${style.expression.canonical}`);
  if (style.rescale) parts.push(`rescale=${style.rescale.map((r) => r.join(',')).join(';')}`);
  if (style.colormap) parts.push(`colormap=${style.colormap.key}`);
  if (style.nodata !== undefined) parts.push(`nodata=${style.nodata}`);
  if (style.resampling) parts.push(`resampling=${style.resampling}`);
  return parts.join('&');
}

/** The style parameters of a query, re-encoded (for URLs in TileJSON and WMTS documents). */
export function styleQueryString(q: StyleQuery): string {
  const out = new URLSearchParams();
  for (const name of STYLE_PARAMS) for (const v of q.getAll(name)) out.append(name, v);
  return out.toString();
}

// ---------------------------------------------------------------------------------------------------------------
// values -> image

/**
 * Output values of a style: one array per output band, and a validity mask (255 valid, 0 not). They may share
 * arrays with the pixels they come from: read them, do not change them.
 */
export interface StyleValues {
  readonly width: number;
  readonly height: number;
  readonly bands: readonly (TypedArray | Float64Array)[];
  readonly mask: Uint8Array;
  /** the dtype of the values: the mosaic's for band selections, float64 for expressions */
  readonly dtype: DType;
}

/**
 * The values a style shows, from pixels rendered with `styleInputBands` (in that order): the nodata override
 * masks pixels where every input band equals it; an expression is evaluated on valid pixels, and a result that is
 * not finite (division by zero, log of a negative) masks the pixel.
 */
export function styleValues(pixels: Pixels, style: Pick<Style, 'expression' | 'nodata'>): StyleValues {
  const { width, height } = pixels;
  const n = width * height;
  const inputs = pixels.bands;
  // the values share the pixels' arrays unless something masks more
  if (style.nodata === undefined && !style.expression)
    return { width, height, bands: inputs, mask: pixels.mask, dtype: pixels.dtype };
  const mask = new Uint8Array(pixels.mask);
  if (style.nodata !== undefined) {
    const nd = style.nodata;
    const nan = Number.isNaN(nd);
    for (let i = 0; i < n; i++) {
      if (!mask[i]) continue;
      let all = true;
      for (let b = 0; b < inputs.length && all; b++) all = nan ? Number.isNaN(inputs[b][i]) : inputs[b][i] === nd;
      if (all) mask[i] = 0;
    }
  }
  if (!style.expression) return { width, height, bands: inputs, mask, dtype: pixels.dtype };
  const evals = style.expression.evaluators;
  const outs = evals.map(() => new Float64Array(n));
  const v = new Float64Array(inputs.length);
  for (let i = 0; i < n; i++) {
    if (!mask[i]) continue;
    for (let b = 0; b < inputs.length; b++) v[b] = inputs[b][i];
    for (let k = 0; k < evals.length; k++) {
      const x = evals[k](v);
      if (!Number.isFinite(x)) {
        mask[i] = 0;
        break;
      }
      outs[k][i] = x;
    }
  }
  return { width, height, bands: outs, mask, dtype: 'float64' };
}

/** Interleaved 8-bit samples ready for the encoder. */
export interface StyledImage {
  readonly width: number;
  readonly height: number;
  /** 2 = gray + alpha, 4 = RGBA */
  readonly channels: 2 | 4;
  readonly data: Uint8Array;
}

/** The stretched byte of a value: round((v - min) * 255 / (max - min)), clamped to 0..255 (as styleImage). */
export function stretchByte(v: number, min: number, max: number): number {
  const t = Math.round((v - min) * (255 / (max - min)));
  return t < 0 ? 0 : Math.min(t, 255);
}

/** Typed arrays whose values are integers: their stretch can go through a table. */
function isIntegerArray(a: ArrayLike<number>): boolean {
  return (
    a instanceof Uint8Array ||
    a instanceof Uint16Array ||
    a instanceof Int16Array ||
    a instanceof Int8Array ||
    a instanceof Uint32Array ||
    a instanceof Int32Array
  );
}

const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/** The stretched bytes of the integers in [lo, hi]: `table[k]` is the byte of `base + k`. */
interface StretchTable {
  readonly base: number;
  readonly table: Uint8Array;
}

/**
 * A table for stretching `src` when its values are integers and [lo, hi] holds at most `n` of them (building it
 * costs less than the image); integers below lo stretch to 0, above hi to 255. Undefined otherwise.
 */
function stretchTable(src: ArrayLike<number>, n: number, lo: number, hi: number): StretchTable | undefined {
  if (!(hi > lo && Number.isFinite(lo) && Number.isFinite(hi)) || !isIntegerArray(src)) return undefined;
  const base = Math.ceil(lo);
  const size = Math.floor(hi) - base + 1;
  if (size > n) return undefined;
  const table = new Uint8Array(size);
  for (let k = 0; k < size; k++) table[k] = stretchByte(base + k, lo, hi);
  return { base, table };
}

/** The stretched byte of every valid pixel of `src` (see stretchByte); invalid pixels are left at 0. */
function stretchBytes(src: ArrayLike<number>, mask: Uint8Array, n: number, lo: number, hi: number): Uint8Array {
  const out = new Uint8Array(n);
  const st = stretchTable(src, n, lo, hi);
  if (st) {
    const { base, table } = st;
    const size = table.length;
    for (let i = 0; i < n; i++) {
      if (mask[i] === 0) continue;
      const k = src[i] - base;
      out[i] = k < 0 ? 0 : k >= size ? 255 : table[k];
    }
    return out;
  }
  const scale = 255 / (hi - lo);
  for (let i = 0; i < n; i++) {
    if (mask[i] === 0) continue;
    const t = Math.round((src[i] - lo) * scale);
    out[i] = t < 0 ? 0 : Math.min(t, 255);
  }
  return out;
}

/** Gray + alpha of one band, one 16-bit word per pixel (little-endian: gray, then alpha 255). */
function grayWords(src: ArrayLike<number>, mask: Uint8Array, n: number, lo: number, hi: number, out: Uint16Array) {
  const st = stretchTable(src, n, lo, hi);
  if (st) {
    const { base, table } = st;
    const size = table.length;
    for (let i = 0; i < n; i++) {
      if (mask[i] === 0) continue;
      const k = src[i] - base;
      out[i] = (k < 0 ? 0 : k >= size ? 255 : table[k]) | 0xff00;
    }
    return;
  }
  const scale = 255 / (hi - lo);
  for (let i = 0; i < n; i++) {
    if (mask[i] === 0) continue;
    const t = Math.round((src[i] - lo) * scale);
    // NaN stays NaN and ORs to gray 0, as a NaN stored in a byte is 0
    out[i] = (t < 0 ? 0 : Math.min(t, 255)) | 0xff00;
  }
}

/**
 * Stretch and colour values: `ranges` holds [min, max] per output band (one range is used for every band).
 * One band gives gray + alpha, or RGBA through `colormap` (its alpha times the mask); three bands give RGBA.
 * Invalid pixels are fully transparent with zero colour (black where a format drops alpha).
 */
export function styleImage(
  values: StyleValues,
  ranges: readonly (readonly [number, number])[],
  colormap?: Colormap,
): StyledImage {
  const { width, height, mask } = values;
  const n = width * height;
  const nb = values.bands.length;
  if (nb !== 1 && nb !== 3) throw new RenderError('bad-request', `an image needs 1 or 3 bands, got ${nb}`);
  const range = (b: number) => ranges[Math.min(b, ranges.length - 1)];
  if (nb === 1) {
    const [lo, hi] = range(0);
    if (!colormap && LITTLE_ENDIAN) {
      const data = new Uint8Array(n * 2);
      grayWords(values.bands[0], mask, n, lo, hi, new Uint16Array(data.buffer));
      return { width, height, channels: 2, data };
    }
    const t = stretchBytes(values.bands[0], mask, n, lo, hi);
    if (colormap) {
      const lut = colormap.lut;
      const data = new Uint8Array(n * 4);
      if (LITTLE_ENDIAN) {
        // one 32-bit word per pixel: the colormap entry, or 0 where its alpha is 0
        const words = new Uint32Array(256);
        for (let k = 0; k < 256; k++) {
          const l = k * 4;
          if (lut[l + 3] !== 0) words[k] = lut[l] | (lut[l + 1] << 8) | (lut[l + 2] << 16) | (lut[l + 3] << 24);
        }
        const out = new Uint32Array(data.buffer);
        for (let i = 0; i < n; i++) if (mask[i] !== 0) out[i] = words[t[i]];
        return { width, height, channels: 4, data };
      }
      for (let i = 0; i < n; i++) {
        if (mask[i] === 0) continue;
        const l = t[i] * 4;
        const a = lut[l + 3];
        if (a === 0) continue;
        const o = i * 4;
        data[o] = lut[l];
        data[o + 1] = lut[l + 1];
        data[o + 2] = lut[l + 2];
        data[o + 3] = a;
      }
      return { width, height, channels: 4, data };
    }
    const data = new Uint8Array(n * 2);
    for (let i = 0; i < n; i++) {
      if (mask[i] === 0) continue;
      data[i * 2] = t[i];
      data[i * 2 + 1] = 255;
    }
    return { width, height, channels: 2, data };
  }
  const [r, g, b] = [0, 1, 2].map((k) => {
    const [lo, hi] = range(k);
    return stretchBytes(values.bands[k], mask, n, lo, hi);
  });
  const data = new Uint8Array(n * 4);
  if (LITTLE_ENDIAN) {
    const out = new Uint32Array(data.buffer);
    for (let i = 0; i < n; i++) if (mask[i] !== 0) out[i] = r[i] | (g[i] << 8) | (b[i] << 16) | 0xff000000;
    return { width, height, channels: 4, data };
  }
  for (let i = 0; i < n; i++) {
    if (mask[i] === 0) continue;
    const o = i * 4;
    data[o] = r[i];
    data[o + 1] = g[i];
    data[o + 2] = b[i];
    data[o + 3] = 255;
  }
  return { width, height, channels: 4, data };
}

/** True when a style needs no statistics: explicit rescale, or 8-bit band values shown as they are. */
export function styleHasFixedRange(style: Style, dtype: DType): boolean {
  return style.rescale !== undefined || (!style.expression && dtype === 'uint8');
}

/** The [min, max] ranges of a style when it has fixed ones (see styleHasFixedRange), else undefined. */
export function fixedRanges(style: Style, dtype: DType): readonly (readonly [number, number])[] | undefined {
  if (style.rescale) return style.rescale;
  if (!style.expression && dtype === 'uint8') return [[0, 255]];
  return undefined;
}

/** A usable stretch from percentiles: [low, high], widened when they coincide so the division stays finite. */
export function stretchFromPercentiles(low: number, high: number): [number, number] {
  if (!Number.isFinite(low) || !Number.isFinite(high)) return [0, 1];
  if (high > low) return [low, high];
  return [low - 0.5, low + 0.5];
}
