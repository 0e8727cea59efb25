/**
 * A readable, self-contained HTML page for the OpenAPI document (served at /docs): every operation with its
 * parameters, request body, responses, schemas and examples. No scripts, no external assets.
 */

type Json = unknown;
type Obj = Record<string, Json>;

const METHODS = ['get', 'head', 'post', 'put', 'patch', 'delete', 'options'] as const;

function isObj(v: Json): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(v: Json): string {
  return typeof v === 'string' ? v : '';
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[ch]!);
}

/** A little Markdown: paragraphs, `code`, **bold**, [links](url) and "- " lists. Input is escaped first. */
function prose(text: string): string {
  if (!text) return '';
  const inline = (s: string) =>
    escapeHtml(s)
      .replace(/`([^`]+)`/g, '<code>$1</code>')
      .replace(/\*\*([^*]+)\*\*/g, '<b>$1</b>')
      .replace(/\[([^\]]+)\]\((https?:\/\/[^)\s]+|\/[^)\s]*|#[^)\s]*)\)/g, '<a href="$2">$1</a>');
  return text
    .trim()
    .split(/\n\s*\n/)
    .map((block) => {
      const lines = block.split('\n');
      if (lines.every((l) => /^\s*[-*] /.test(l) || /^\s{2,}\S/.test(l))) {
        const items: string[] = [];
        for (const l of lines) {
          if (/^\s*[-*] /.test(l)) items.push(l.replace(/^\s*[-*] /, ''));
          else items[items.length - 1] += ` ${l.trim()}`;
        }
        return `<ul>${items.map((i) => `<li>${inline(i)}</li>`).join('')}</ul>`;
      }
      return `<p>${inline(block)}</p>`;
    })
    .join('');
}

function anchor(...parts: string[]): string {
  return parts
    .join('-')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

class DocsRenderer {
  private readonly spec: Obj;

  constructor(spec: Obj) {
    this.spec = spec;
  }

  private resolve(v: Json): Json {
    let cur = v;
    for (let i = 0; i < 16 && isObj(cur) && typeof cur.$ref === 'string'; i++) {
      const parts = cur.$ref.replace(/^#\//, '').split('/');
      let next: Json = this.spec;
      for (const p of parts) next = isObj(next) ? next[p.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined;
      cur = next;
    }
    return cur;
  }

  private refName(v: Json): string | undefined {
    return isObj(v) && typeof v.$ref === 'string' ? v.$ref.split('/').pop() : undefined;
  }

  /** A short type description: `string`, `integer (0..24)`, `array of Foo`, `"a" | "b"`. */
  private typeText(schema: Json): string {
    const name = this.refName(schema);
    if (name) return `<a href="#schema-${anchor(name)}">${escapeHtml(name)}</a>`;
    if (!isObj(schema)) return 'any';
    if (Array.isArray(schema.enum))
      return schema.enum.map((e) => `<code>${escapeHtml(JSON.stringify(e))}</code>`).join(' | ');
    if ('const' in schema) return `<code>${escapeHtml(JSON.stringify(schema.const))}</code>`;
    for (const k of ['oneOf', 'anyOf'] as const) {
      if (Array.isArray(schema[k])) return (schema[k] as Json[]).map((s) => this.typeText(s)).join(' | ');
    }
    const t = Array.isArray(schema.type) ? schema.type.join(' | ') : str(schema.type);
    if (t === 'array') return `array of ${this.typeText(schema.items)}`;
    const bounds: string[] = [];
    if (schema.minimum !== undefined || schema.maximum !== undefined) {
      bounds.push(`${schema.minimum ?? ''}..${schema.maximum ?? ''}`);
    }
    if (typeof schema.format === 'string') bounds.push(schema.format);
    if (typeof schema.pattern === 'string') bounds.push(`pattern <code>${escapeHtml(schema.pattern)}</code>`);
    return `${escapeHtml(t || 'object')}${bounds.length ? ` <small>(${bounds.join(', ')})</small>` : ''}`;
  }

  /** Properties of an object schema as a table (one level; nested objects link to their schema or nest). */
  private schemaBlock(schema: Json, depth = 0): string {
    const s = this.resolve(schema);
    if (!isObj(s)) return '';
    const parts: string[] = [];
    if (this.refName(schema)) parts.push(`<p>Schema: ${this.typeText(schema)}</p>`);
    else if (depth === 0 && !isObj(s.properties)) parts.push(`<p>Type: ${this.typeText(s)}</p>`);
    for (const k of ['allOf', 'oneOf', 'anyOf'] as const) {
      if (Array.isArray(s[k])) {
        parts.push(
          `<p>${k === 'allOf' ? 'All of' : 'One of'}: ${(s[k] as Json[]).map((x) => this.typeText(x)).join(', ')}</p>`,
        );
      }
    }
    if (isObj(s.properties) && depth < 3 && !this.refName(schema)) {
      const required = new Set(Array.isArray(s.required) ? (s.required as string[]) : []);
      const rows = Object.entries(s.properties).map(([name, p]) => {
        const rp = this.resolve(p);
        const desc = isObj(rp) ? prose(str(rp.description)) : '';
        const nested = isObj(p) && !this.refName(p) && isObj(p.properties) ? this.schemaBlock(p, depth + 1) : '';
        return `<tr><td><code>${escapeHtml(name)}</code>${required.has(name) ? ' <span class="req">required</span>' : ''}</td><td>${this.typeText(p)}</td><td>${desc}${nested}</td></tr>`;
      });
      parts.push(
        `<table><thead><tr><th>field</th><th>type</th><th>meaning</th></tr></thead><tbody>${rows.join('')}</tbody></table>`,
      );
    }
    return parts.join('');
  }

  private examples(media: Obj): string {
    const out: string[] = [];
    const show = (title: string, value: Json) => {
      const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
      out.push(
        `<details><summary>example${title ? `: ${escapeHtml(title)}` : ''}</summary><pre>${escapeHtml(text)}</pre></details>`,
      );
    };
    if (media.example !== undefined) show('', media.example);
    if (isObj(media.examples)) {
      for (const [name, ex] of Object.entries(media.examples)) {
        const e = this.resolve(ex);
        if (isObj(e)) show(str(e.summary) || name, e.value);
      }
    }
    return out.join('');
  }

  private content(content: Json): string {
    if (!isObj(content)) return '';
    return Object.entries(content)
      .map(([type, m]) => {
        const media = isObj(m) ? m : {};
        return `<div class="media"><code class="ctype">${escapeHtml(type)}</code>${this.schemaBlock(media.schema)}${this.examples(media)}</div>`;
      })
      .join('');
  }

  private parameters(params: Json[]): string {
    if (params.length === 0) return '';
    const rows = params.map((raw) => {
      const p = this.resolve(raw);
      if (!isObj(p)) return '';
      const schema = this.resolve(p.schema);
      const example = p.example ?? (isObj(schema) ? (schema.example ?? schema.default) : undefined);
      return `<tr><td><code>${escapeHtml(str(p.name))}</code>${p.required ? ' <span class="req">required</span>' : ''}</td><td>${escapeHtml(str(p.in))}</td><td>${this.typeText(p.schema)}${isObj(schema) && schema.default !== undefined ? `<br><small>default <code>${escapeHtml(JSON.stringify(schema.default))}</code></small>` : ''}</td><td>${prose(str(p.description))}${example !== undefined && example !== (isObj(schema) ? schema.default : undefined) ? `<small>e.g. <code>${escapeHtml(String(example))}</code></small>` : ''}</td></tr>`;
    });
    return `<h4>Parameters</h4><table><thead><tr><th>name</th><th>in</th><th>type</th><th>meaning</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
  }

  private operation(pathName: string, method: string, op: Obj, shared: Json[]): string {
    const id = anchor(method, pathName);
    const params = [...shared, ...(Array.isArray(op.parameters) ? op.parameters : [])];
    const body = this.resolve(op.requestBody);
    const responses = isObj(op.responses) ? op.responses : {};
    const security = Array.isArray(op.security)
      ? op.security
      : Array.isArray(this.spec.security)
        ? this.spec.security
        : [];
    const needsAuth = security.some((s) => isObj(s) && Object.keys(s).length > 0);
    return `<section class="op" id="${id}">
<h3><span class="m m-${method}">${method.toUpperCase()}</span> <code>${escapeHtml(pathName)}</code>${needsAuth ? ' <span class="auth">bearer token</span>' : ''}</h3>
${op.summary ? `<p class="summary">${escapeHtml(str(op.summary))}</p>` : ''}${prose(str(op.description))}
${this.parameters(params)}
${isObj(body) ? `<h4>Request body${body.required ? ' <span class="req">required</span>' : ''}</h4>${prose(str(body.description))}${this.content(body.content)}` : ''}
<h4>Responses</h4>
${Object.entries(responses)
  .map(([status, raw]) => {
    const r = this.resolve(raw);
    const resp = isObj(r) ? r : {};
    const headers = isObj(resp.headers) ? Object.keys(resp.headers) : [];
    return `<div class="resp"><span class="status s${status[0]}">${escapeHtml(status)}</span> ${prose(str(resp.description))}${headers.length ? `<p><small>headers: ${headers.map((h) => `<code>${escapeHtml(h)}</code>`).join(', ')}</small></p>` : ''}${this.content(resp.content)}</div>`;
  })
  .join('\n')}
</section>`;
  }

  render(): string {
    const info = isObj(this.spec.info) ? this.spec.info : {};
    const paths = isObj(this.spec.paths) ? this.spec.paths : {};
    const ops: { tag: string; html: string; nav: string }[] = [];
    for (const [p, itemRaw] of Object.entries(paths)) {
      const item = this.resolve(itemRaw);
      if (!isObj(item)) continue;
      const shared = Array.isArray(item.parameters) ? item.parameters : [];
      for (const m of METHODS) {
        const op = item[m];
        if (!isObj(op)) continue;
        const tag = Array.isArray(op.tags) && typeof op.tags[0] === 'string' ? op.tags[0] : 'other';
        ops.push({
          tag,
          html: this.operation(p, m, op, shared),
          nav: `<li><a href="#${anchor(m, p)}"><span class="m m-${m}">${m.toUpperCase()}</span> ${escapeHtml(p)}</a></li>`,
        });
      }
    }
    const tagDocs = new Map<string, string>();
    if (Array.isArray(this.spec.tags)) {
      for (const t of this.spec.tags) if (isObj(t)) tagDocs.set(str(t.name), str(t.description));
    }
    const tags = [...new Set([...tagDocs.keys(), ...ops.map((o) => o.tag)])].filter((t) =>
      ops.some((o) => o.tag === t),
    );
    const nav = tags
      .map(
        (t) =>
          `<h2><a href="#tag-${anchor(t)}">${escapeHtml(t)}</a></h2><ul>${ops
            .filter((o) => o.tag === t)
            .map((o) => o.nav)
            .join('')}</ul>`,
      )
      .join('');
    const body = tags
      .map(
        (t) =>
          `<h2 id="tag-${anchor(t)}">${escapeHtml(t)}</h2>${prose(tagDocs.get(t) ?? '')}${ops
            .filter((o) => o.tag === t)
            .map((o) => o.html)
            .join('\n')}`,
      )
      .join('\n');
    const components = isObj(this.spec.components) ? this.spec.components : {};
    const schemas = isObj(components.schemas) ? components.schemas : {};
    const schemaHtml = Object.entries(schemas)
      .map(([name, s]) => {
        const so = isObj(s) ? s : {};
        return `<section class="op" id="schema-${anchor(name)}"><h3><code>${escapeHtml(name)}</code></h3>${prose(str(so.description))}${this.schemaBlock(s)}${this.examples(so)}</section>`;
      })
      .join('\n');
    const title = `${str(info.title) || 'API'} ${str(info.version)}`.trim();
    return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
body{margin:0;font:15px/1.5 system-ui,-apple-system,Segoe UI,sans-serif;color:#1d2430;display:flex}
nav{width:22em;flex:none;height:100vh;position:sticky;top:0;overflow:auto;background:#f4f6f9;border-right:1px solid #dde2ea;padding:1em;box-sizing:border-box;font-size:13px}
nav h2{font-size:13px;text-transform:uppercase;letter-spacing:.05em;margin:1.2em 0 .3em}nav ul{list-style:none;margin:0;padding:0}nav li{margin:.15em 0;word-break:break-all}
nav a{color:inherit;text-decoration:none}main{padding:1.5em 2.5em;max-width:70em;min-width:0}
.op{border:1px solid #dde2ea;border-radius:6px;padding:.2em 1.2em 1em;margin:1.2em 0;background:#fff}
.m{display:inline-block;min-width:4.2em;text-align:center;border-radius:3px;color:#fff;font-size:11px;font-weight:700;padding:1px 4px}
.m-get{background:#2f7ed8}.m-head{background:#6c8ebf}.m-post{background:#2e9e5b}.m-delete{background:#c9412e}.m-put,.m-patch{background:#b7791f}.m-options{background:#777}
table{border-collapse:collapse;width:100%;margin:.5em 0;font-size:14px}th,td{text-align:left;vertical-align:top;border-bottom:1px solid #eceff3;padding:.35em .5em}th{font-weight:600;background:#fafbfc}
td p{margin:0 0 .3em}code{font:13px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f1f3f6;padding:0 3px;border-radius:3px}
pre{background:#1f2530;color:#e6e9ef;padding:.8em;border-radius:5px;overflow:auto;font-size:12.5px}
.req{color:#c9412e;font-size:11px}.auth{font-size:11px;background:#fff3cd;border:1px solid #e7c86b;border-radius:3px;padding:1px 5px}
.status{display:inline-block;font-weight:700;min-width:3em}.s2{color:#2e9e5b}.s3{color:#6c8ebf}.s4{color:#b7791f}.s5{color:#c9412e}
.resp{margin:.6em 0;padding-left:.2em}.resp p{display:inline}.media{margin:.4em 0 .4em 3.2em}.ctype{background:none;color:#555}
.summary{font-weight:600}h1{margin-top:0}
</style></head><body>
<nav><h1 style="font-size:18px">${escapeHtml(title)}</h1><p><a href="/openapi.yaml">openapi.yaml</a></p>${nav}<h2><a href="#schemas">schemas</a></h2></nav>
<main><h1>${escapeHtml(title)}</h1>${prose(str(info.description))}
${body}
<h2 id="schemas">Schemas</h2>
${schemaHtml}
</main></body></html>
`;
  }
}

/** The docs page of an OpenAPI 3.x document (already parsed from YAML or JSON). */
export function renderDocsHtml(spec: unknown): string {
  if (!isObj(spec)) throw new TypeError('the OpenAPI document must be an object');
  return new DocsRenderer(spec).render();
}
