/**
 * The items of a catalogue mosaic, from wherever its definition says: a STAC API search, or a document recognised
 * by its content (a parquet file starts with "PAR1"; a JSON document is an ItemCollection / FeatureCollection,
 * an Item, or a STAC API landing page whose `search` link is then searched). An ItemCollection with `next` links
 * (a saved search page) is followed like a search. Then the parts of the query a document can answer are applied
 * (collections, ids, bbox, datetime) and the items are put in compositing order (sortby).
 */
import { RenderError } from './errors.ts';
import type { MosaicSpec } from './mosaic.ts';
import type { Source } from './source.ts';
import { isParquet, readStacParquet } from './stac.parquet.ts';
import { type JsonFetch, nextPage, searchStac, type TextFetch } from './stac.search.ts';
import {
  type CatalogItem,
  eachFeature,
  featuresOf,
  filterItems,
  parseStacItem,
  type StacParseOptions,
  sortItems,
} from './stac.ts';

export interface CatalogueIo {
  readonly fetchJson: JsonFetch;
  readonly fetchText: TextFetch;
  readonly source: (location: string) => Promise<Source>;
  readonly signal?: AbortSignal;
}

/** What a SOURCE argument is, from its first bytes. */
export type SourceKind = 'tiff' | 'parquet' | 'json' | 'unknown';

export function sniffKind(head: Uint8Array): SourceKind {
  if (head.length >= 4 && ((head[0] === 0x49 && head[1] === 0x49) || (head[0] === 0x4d && head[1] === 0x4d)))
    return 'tiff';
  if (isParquet(head)) return 'parquet';
  for (const b of head) {
    if (b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09 || b === 0xef || b === 0xbb || b === 0xbf) continue;
    return b === 0x7b || b === 0x5b ? 'json' : 'unknown';
  }
  return 'unknown';
}

function linkOf(doc: unknown, rel: string): string | undefined {
  if (!doc || typeof doc !== 'object' || !Array.isArray((doc as { links?: unknown }).links)) return undefined;
  const l = (doc as { links: { rel?: unknown; href?: unknown }[] }).links.find(
    (x) => x && x.rel === rel && typeof x.href === 'string',
  );
  return l?.href as string | undefined;
}

export async function loadCatalogueItems(spec: MosaicSpec, io: CatalogueIo): Promise<CatalogItem[]> {
  const c = spec.catalogue;
  if (!c) throw new RenderError('internal', `mosaic ${spec.id} has no catalogue`);
  const sortFields = (c.sortby ?? []).map((s) => s.field);
  const parse = (base: string | undefined): StacParseOptions => ({
    ...(spec.assets?.length ? { assets: spec.assets } : {}),
    ...(base ? { base } : {}),
    sortFields,
  });
  const fromFeatures = (features: unknown[], base: string | undefined) =>
    features.map((f) => parseStacItem(f, parse(base)));

  let items: CatalogItem[];
  let fromApi = false;
  if (c.search) {
    const features = await searchStac({ ...c, url: c.search }, io.fetchJson, io.signal);
    items = fromFeatures(features, c.search);
    fromApi = true;
  } else if (c.items) {
    const src = await io.source(c.items);
    const head = (await src.read(0, 64, { signal: io.signal })).bytes;
    const kind = sniffKind(head);
    if (kind === 'parquet') {
      items = await readStacParquet(src, { ...parse(c.items), signal: io.signal });
    } else if (kind === 'json') {
      // one feature at a time: the document's text and the compact items, never the whole object graph
      items = [];
      const parsed = items;
      const doc = eachFeature(
        await io.fetchText(c.items, { method: 'GET', signal: io.signal }),
        (f) => parsed.push(parseStacItem(f, parse(c.items))),
        c.items,
      );
      const search = linkOf(doc, 'search');
      if (search && !Array.isArray(doc.features)) {
        // a STAC API landing page
        const url = new URL(search, c.items).href;
        items = fromFeatures(await searchStac({ ...c, url }, io.fetchJson, io.signal), url);
        fromApi = true;
      } else {
        // a saved search page: follow its next links
        let req = nextPage(doc, { url: c.items, method: 'GET' });
        for (let pages = 0; req && /^https?:/i.test(req.url); pages++) {
          if (pages > 10_000) throw new RenderError('corrupt', `${c.items}: too many next links`);
          const page = await io.fetchJson(req.url, {
            method: req.method,
            ...(req.body ? { body: JSON.stringify(req.body) } : {}),
            signal: io.signal,
          });
          const more = featuresOf(page);
          for (const f of more) items.push(parseStacItem(f, parse(req.url)));
          req = more.length === 0 ? undefined : nextPage(page, req);
        }
      }
    } else {
      throw new RenderError(
        'bad-request',
        `${c.items} is neither a STAC ItemCollection (JSON) nor stac-geoparquet (it starts with ${kind === 'tiff' ? 'a TIFF header: list it as a source instead' : 'unknown bytes'})`,
      );
    }
  } else {
    throw new RenderError(
      'bad-request',
      `mosaic ${spec.id}: a catalogue needs items (a file or URL) or search (a URL)`,
    );
  }
  if (!fromApi && (c.query !== undefined || c.filter !== undefined)) {
    throw new RenderError(
      'bad-request',
      `mosaic ${spec.id}: query and filter are answered by a STAC API search; a document takes collections, ids, bbox and datetime`,
    );
  }
  const dups = new Set<string>();
  for (const it of items) {
    const key = `${it.collection ?? ''}/${it.id}`;
    if (dups.has(key)) throw new RenderError('bad-request', `mosaic ${spec.id}: item ${key} is listed twice`);
    dups.add(key);
  }
  return sortItems(filterItems(items, c), c.sortby ?? []);
}
