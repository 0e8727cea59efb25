/**
 * Band math: an expression such as `(b4 - b3) / (b4 + b3); b2` parsed by a small tokenizer and recursive-descent
 * parser into a tree of closures; nothing is ever evaluated as JavaScript.
 */
import { RenderError } from './errors.ts';

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
  /**
   * one evaluator per output. Not data: a structured clone (a worker thread's copy) drops it; read the evaluators
   * of any expression with `expressionEvaluators`
   */
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
  const e = { canonical: outputs.map(printNode).join(';'), outputs, bands } as Omit<Expression, 'evaluators'>;
  // not enumerable: the expression stays plain data that a structured clone copies
  return Object.defineProperty(e, 'evaluators', { value: compile(e), enumerable: false }) as Expression;
}

function compile(e: Pick<Expression, 'outputs' | 'bands'>): readonly Evaluator[] {
  const slot = new Map(e.bands.map((b, k) => [b, k] as const));
  return e.outputs.map((o) => compileNode(o, slot));
}

/** Evaluators compiled for expressions that arrived without theirs (structured clones), once per object. */
const compiled = new WeakMap<Expression, readonly Evaluator[]>();

/** The evaluators of an expression: its own, or compiled from its trees (a copy made by a structured clone). */
export function expressionEvaluators(e: Expression): readonly Evaluator[] {
  const own = (e as Partial<Expression>).evaluators;
  if (own) return own;
  let c = compiled.get(e);
  if (!c) compiled.set(e, (c = compile(e)));
  return c;
}
