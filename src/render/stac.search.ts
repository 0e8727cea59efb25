/**
 * STAC API item searches (POST or GET), paged through their `next` links, and the fetchers the engine supplies
 * (URL policy and timeouts are the engine's). The item model they fill is stac.ts.
 */
import { RenderError } from './errors.ts';
import { featuresOf, isObject, type StacQuery } from './stac.ts';

/** Fetch a JSON document: `init` carries method, headers and body. Supplied by the engine (URL policy, timeouts). */
export type JsonFetch = (
  url: string,
  init: { method: 'GET' | 'POST'; body?: string; signal?: AbortSignal },
) => Promise<unknown>;
/** The same, as text (for documents read one feature at a time). */
export type TextFetch = (
  url: string,
  init: { method: 'GET' | 'POST'; body?: string; signal?: AbortSignal },
) => Promise<string>;

export interface StacSearchRequest extends StacQuery {
  /** the `/search` endpoint */
  readonly url: string;
  readonly method?: 'GET' | 'POST';
  /** page size asked for (the API may answer with fewer) */
  readonly limit?: number;
  /** more matching items than this is an error (the search must be narrowed) */
  readonly maxItems?: number;
}

export const STAC_SEARCH_DEFAULTS = { limit: 500, maxItems: 100_000, maxPages: 10_000 } as const;

/** The POST body of a search. */
export function searchBody(s: StacSearchRequest): Record<string, unknown> {
  const body: Record<string, unknown> = { limit: s.limit ?? STAC_SEARCH_DEFAULTS.limit };
  if (s.collections?.length) body.collections = s.collections;
  if (s.ids?.length) body.ids = s.ids;
  if (s.bbox) body.bbox = s.bbox;
  if (s.datetime) body.datetime = s.datetime;
  if (s.query) body.query = s.query;
  if (s.filter !== undefined) {
    body.filter = s.filter;
    body['filter-lang'] = typeof s.filter === 'string' ? 'cql2-text' : 'cql2-json';
  }
  if (s.sortby?.length) body.sortby = s.sortby;
  return body;
}

/** The GET URL of a search. */
export function searchUrl(s: StacSearchRequest): string {
  const u = new URL(s.url);
  u.searchParams.set('limit', String(s.limit ?? STAC_SEARCH_DEFAULTS.limit));
  if (s.collections?.length) u.searchParams.set('collections', s.collections.join(','));
  if (s.ids?.length) u.searchParams.set('ids', s.ids.join(','));
  if (s.bbox) u.searchParams.set('bbox', s.bbox.join(','));
  if (s.datetime) u.searchParams.set('datetime', s.datetime);
  if (s.query) u.searchParams.set('query', JSON.stringify(s.query));
  if (s.filter !== undefined) {
    u.searchParams.set('filter', typeof s.filter === 'string' ? s.filter : JSON.stringify(s.filter));
    u.searchParams.set('filter-lang', typeof s.filter === 'string' ? 'cql2-text' : 'cql2-json');
  }
  if (s.sortby?.length)
    u.searchParams.set('sortby', s.sortby.map((x) => `${x.direction === 'desc' ? '-' : '+'}${x.field}`).join(','));
  return u.href;
}

interface PageRequest {
  readonly url: string;
  readonly method: 'GET' | 'POST';
  readonly body?: Record<string, unknown>;
}

/** The request for the page after `doc` (its `next` link), or undefined on the last page. */
export function nextPage(doc: unknown, current: PageRequest): PageRequest | undefined {
  if (!isObject(doc) || !Array.isArray(doc.links)) return undefined;
  const link = (doc.links as unknown[]).find((l) => isObject(l) && l.rel === 'next' && typeof l.href === 'string') as
    | Record<string, unknown>
    | undefined;
  if (!link) return undefined;
  const href = new URL(link.href as string, current.url).href;
  const method = String(link.method ?? 'GET').toUpperCase() === 'POST' ? 'POST' : 'GET';
  if (method === 'GET') return { url: href, method };
  const linkBody = isObject(link.body) ? link.body : undefined;
  const body = link.merge === true ? { ...(current.body ?? {}), ...(linkBody ?? {}) } : (linkBody ?? current.body);
  return { url: href, method, body };
}

/**
 * Run a STAC API item search to the end, following `next` links (GET links, and POST links with their body and
 * `merge`), and return every feature. Refuses to loop (a next link equal to the current request) and to collect
 * more than `maxItems`.
 */
export async function searchStac(s: StacSearchRequest, fetchJson: JsonFetch, signal?: AbortSignal): Promise<unknown[]> {
  const maxItems = s.maxItems ?? STAC_SEARCH_DEFAULTS.maxItems;
  const method = s.method ?? 'POST';
  let req: PageRequest | undefined =
    method === 'POST' ? { url: s.url, method, body: searchBody(s) } : { url: searchUrl(s), method };
  const seen = new Set<string>();
  const out: unknown[] = [];
  for (let page = 0; req; page++) {
    if (page >= STAC_SEARCH_DEFAULTS.maxPages)
      throw new RenderError('bad-request', `STAC search ${s.url} has more than ${STAC_SEARCH_DEFAULTS.maxPages} pages`);
    const key = `${req.method} ${req.url} ${req.body ? JSON.stringify(req.body) : ''}`;
    if (seen.has(key))
      throw new RenderError('corrupt', `STAC search ${s.url}: a next link points back at a page already read`);
    seen.add(key);
    const doc = await fetchJson(req.url, {
      method: req.method,
      ...(req.body ? { body: JSON.stringify(req.body) } : {}),
      signal,
    });
    const features = featuresOf(doc);
    if (out.length + features.length > maxItems) {
      throw new RenderError(
        'too-large',
        `STAC search ${s.url} matches more than ${maxItems} items; narrow it (bbox, datetime, filter) or raise maxItems`,
      );
    }
    for (const f of features) out.push(f);
    req = features.length === 0 ? undefined : nextPage(doc, req);
  }
  return out;
}
