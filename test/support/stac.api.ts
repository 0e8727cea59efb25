/**
 * A STAC API stand-in for tests: `/search` over a fixed list of items, by POST (next links carry a POST body with a
 * token and `merge: true`) and by GET (next links carry the token in the query), with collections, bbox and datetime
 * filters and a landing page linking to the search. Records every request.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StacApi {
  readonly url: string;
  readonly requests: { method: string; path: string; body?: Record<string, unknown> }[];
  stop(): Promise<void>;
}

function matches(f: Record<string, unknown>, q: Record<string, unknown>): boolean {
  const cols = q.collections as string[] | undefined;
  if (cols?.length && !cols.includes(String(f.collection))) return false;
  const bbox = q.bbox as number[] | undefined;
  const b = f.bbox as number[];
  if (bbox && (b[0] > bbox[2] || b[2] < bbox[0] || b[1] > bbox[3] || b[3] < bbox[1])) return false;
  if (typeof q.datetime === 'string') {
    const [a, z] = q.datetime.split('/');
    const t = Date.parse(String((f.properties as Record<string, unknown>).datetime));
    if (a && a !== '..' && t < Date.parse(a)) return false;
    if (z && z !== '..' && t > Date.parse(z)) return false;
  }
  return true;
}

export async function startStacApi(features: readonly Record<string, unknown>[]): Promise<StacApi> {
  const state: StacApi = { url: '', requests: [], stop: async () => {} };
  const server: Server = createServer(async (req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length
      ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>)
      : undefined;
    state.requests.push({ method: req.method ?? 'GET', path: u.pathname + u.search, ...(body ? { body } : {}) });
    const send = (status: number, doc: unknown) => {
      res.writeHead(status, { 'content-type': 'application/geo+json' }).end(JSON.stringify(doc));
    };
    if (u.pathname === '/') {
      send(200, {
        type: 'Catalog',
        id: 'stand-in',
        conformsTo: [],
        links: [{ rel: 'search', href: `${state.url}/search` }],
      });
      return;
    }
    if (u.pathname !== '/search') return send(404, { code: 'NotFound' });
    let q: Record<string, unknown>;
    if (req.method === 'POST') q = body ?? {};
    else {
      q = {};
      for (const [k, v] of u.searchParams) q[k] = v;
      if (typeof q.collections === 'string') q.collections = q.collections.split(',');
      if (typeof q.bbox === 'string') q.bbox = q.bbox.split(',').map(Number);
    }
    const limit = Math.min(Number(q.limit ?? 10), 1000);
    const start = Number(q.token ?? 0);
    const all = features.filter((f) => matches(f, q));
    const page = all.slice(start, start + limit);
    const links: Record<string, unknown>[] = [];
    if (start + limit < all.length) {
      if (req.method === 'POST') {
        links.push({
          rel: 'next',
          href: `${state.url}/search`,
          method: 'POST',
          body: { token: start + limit },
          merge: true,
        });
      } else {
        const n = new URL(u.href.replace('http://x', state.url));
        n.searchParams.set('token', String(start + limit));
        links.push({ rel: 'next', href: n.href, method: 'GET' });
      }
    }
    send(200, { type: 'FeatureCollection', features: page, numberMatched: all.length, links });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  (state as { url: string }).url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.stop = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}
