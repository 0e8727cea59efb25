/**
 * The catalog of mosaics a process serves: built from configuration (or command-line sources) at start-up, plus
 * the mosaics registered at run time (POST /mosaics), which are kept in a store and restored on restart.
 * Opening a plain mosaic reads every source header; a catalogue mosaic (STAC items, a search, a mosaic index)
 * reads only its catalogue. A mosaic that fails to open is reported, not fatal to the others.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseCrs } from './crs.ts';
import type { Engine } from './engine.ts';
import { CogmillError, errorMessage, RenderError } from './errors.ts';
import { sniffKind } from './mosaic.catalogue.ts';
import { type Mosaic, type MosaicCatalogueSpec, type MosaicSpec, PERIOD_UNITS } from './mosaic.ts';
import { parseSortby } from './stac.ts';
import type { Bounds, Composite, DType, Resampling } from './types.ts';

/** A STAC input as written in a definition. */
export interface MosaicStacDefinition {
  /** ItemCollection JSON, stac-geoparquet, or a STAC API landing page: file, http(s):// or s3:// */
  readonly items?: string;
  /** a STAC API `/search` endpoint */
  readonly search?: string;
  readonly method?: 'GET' | 'POST';
  readonly collections?: readonly string[];
  readonly ids?: readonly string[];
  readonly bbox?: Bounds;
  readonly datetime?: string;
  readonly query?: Readonly<Record<string, unknown>>;
  readonly filter?: Readonly<Record<string, unknown>> | string;
  /** `-datetime,eo:cloud_cover` or [{ field, direction }] */
  readonly sortby?: string | readonly { readonly field: string; readonly direction?: 'asc' | 'desc' }[];
  readonly limit?: number;
  readonly maxItems?: number;
}

const TIFF_NAME = /\.(tif|tiff|gtiff)([?#]|$)/i;

/** A mosaic as written in configuration: source patterns not yet expanded, CRS as text or code. */
export interface MosaicDefinition {
  readonly id: string;
  readonly title?: string;
  /** files, folders, globs, URLs; one ItemCollection / stac-geoparquet / STAC API URL is read as a catalogue */
  readonly sources?: readonly string[];
  /** a STAC catalogue instead of sources */
  readonly stac?: MosaicStacDefinition;
  /** a mosaic index written by `cogmill index` (a STAC ItemCollection) instead of sources */
  readonly index?: string;
  /** assets stacked as bands (STAC items with one COG per band) */
  readonly assets?: readonly string[];
  /** P1D, P1W, P1M or P1Y: time periods a client picks with `datetime` */
  readonly period?: string;
  /** one band set per period (bands B04@2024-W01, B11@2024-W01, B04@2024-W02, ...), each composited over its items */
  readonly periodBands?: boolean;
  readonly crs?: number | string;
  readonly resolution?: number | readonly [number, number];
  readonly bounds?: Bounds;
  readonly bands?: readonly number[];
  readonly nodata?: number | 'nan';
  readonly dtype?: DType;
  readonly composite?: Composite;
  readonly resampling?: Resampling;
  readonly blockSize?: number;
}

export interface CatalogEntry {
  readonly id: string;
  readonly definition: MosaicDefinition;
  /** from configuration / the command line (fixed), or registered at run time (can be replaced and deleted) */
  readonly origin: 'config' | 'registered';
  mosaic?: Mosaic;
  error?: { code: number; kind: string; message: string };
}

/**
 * Where registered mosaics are kept between restarts. `put` and `remove` get the one change and the whole set after
 * it: a file rewrites the set, a shared store (Redis) applies the change, so replicas do not undo each other's.
 */
export interface CatalogStore {
  /** what a person reads in logs and errors: the file, or the Redis key */
  readonly where: string;
  load(): Promise<MosaicDefinition[]>;
  put(definition: MosaicDefinition, all: readonly MosaicDefinition[]): Promise<void>;
  remove(id: string, all: readonly MosaicDefinition[]): Promise<void>;
  close?(): Promise<void>;
}

/** Registered mosaics in a JSON file, replaced atomically (write, then rename) on every change. */
export class CatalogStoreFile implements CatalogStore {
  readonly file: string;
  constructor(file: string) {
    this.file = path.resolve(file);
  }
  get where(): string {
    return this.file;
  }
  async load(): Promise<MosaicDefinition[]> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw e;
    }
    const doc = JSON.parse(text) as { mosaics?: MosaicDefinition[] };
    return Array.isArray(doc.mosaics) ? doc.mosaics : [];
  }
  put(_definition: MosaicDefinition, all: readonly MosaicDefinition[]): Promise<void> {
    return this.save(all);
  }
  remove(_id: string, all: readonly MosaicDefinition[]): Promise<void> {
    return this.save(all);
  }
  private async save(definitions: readonly MosaicDefinition[]): Promise<void> {
    const tmp = `${this.file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify({ mosaics: definitions }, null, 2)}\n`);
    await rename(tmp, this.file);
  }
}

export class Catalog {
  private readonly engine: Engine;
  private readonly entries = new Map<string, CatalogEntry>();
  private readonly store: CatalogStore | undefined;
  /** serialises registrations and their writes to the store */
  private queue: Promise<unknown> = Promise.resolve();
  private refreshTimer: ReturnType<typeof setInterval> | undefined;

  constructor(engine: Engine, options: { store?: CatalogStore } = {}) {
    this.engine = engine;
    this.store = options.store;
  }

  /**
   * The catalogue of a definition: its `stac` or `index`, or its only source when that is a document (recognised
   * by its first bytes, whatever its name: a TIFF stays a source).
   */
  private async catalogueOf(def: MosaicDefinition): Promise<MosaicCatalogueSpec | undefined> {
    if (def.stac) {
      const { sortby, ...rest } = def.stac;
      if (!rest.items && !rest.search)
        throw new RenderError('bad-request', `mosaic ${def.id}: stac needs items (a file or URL) or search (a URL)`);
      return { ...rest, ...(sortby !== undefined ? { sortby: parseSortby(sortby) } : {}) };
    }
    if (def.index) return { items: def.index };
    const sources = def.sources ?? [];
    if (sources.length !== 1) return undefined;
    const only = sources[0];
    if (TIFF_NAME.test(only) || /[*?[{]/.test(only) || only.endsWith('/')) return undefined;
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(only) || only.startsWith('file://')) {
      const { stat } = await import('node:fs/promises');
      const st = await stat(only.replace(/^file:\/\//, '')).catch(() => undefined);
      if (!st?.isFile()) return undefined;
    }
    try {
      const src = await this.engine.source(only);
      const kind = sniffKind((await src.read(0, 64)).bytes);
      return kind === 'json' || kind === 'parquet' ? { items: only } : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Open a definition: expand its sources, or read its catalogue. `trusted` (configuration, command line): the
   * catalogue's own place and its assets' folders are allowed like configured roots and prefixes; otherwise
   * every asset must lie under the configured allow-lists.
   */
  async open(def: MosaicDefinition, signal?: AbortSignal, options: { trusted?: boolean } = {}): Promise<Mosaic> {
    const res = def.resolution;
    if (def.periodBands && def.period === undefined)
      throw new RenderError('bad-request', `mosaic ${def.id}: periodBands needs a period (P1D, P1W, P1M or P1Y)`);
    if (def.period !== undefined && !(PERIOD_UNITS as readonly string[]).includes(def.period)) {
      throw new RenderError('bad-request', `mosaic ${def.id}: period must be one of ${PERIOD_UNITS.join(', ')}`);
    }
    const catalogue = await this.catalogueOf(def);
    const common = {
      id: def.id,
      title: def.title,
      crs: def.crs === undefined ? undefined : typeof def.crs === 'number' ? def.crs : parseCrs(def.crs).epsg,
      resolution:
        res === undefined ? undefined : typeof res === 'number' ? ([res, res] as const) : ([res[0], res[1]] as const),
      bounds: def.bounds,
      bands: def.bands,
      nodata: def.nodata === 'nan' ? Number.NaN : def.nodata,
      dtype: def.dtype,
      composite: def.composite,
      resampling: def.resampling,
      blockSize: def.blockSize,
    };
    if (catalogue) {
      const spec: MosaicSpec = {
        ...common,
        sources: [],
        catalogue: { ...catalogue, trusted: options.trusted === true },
        ...(def.assets ? { assets: def.assets } : {}),
        ...(def.period ? { period: def.period } : {}),
        ...(def.periodBands ? { periodBands: true } : {}),
      };
      return this.engine.openMosaic(spec, signal);
    }
    if (def.assets || def.period || def.periodBands)
      throw new RenderError('bad-request', `mosaic ${def.id}: assets and period need a STAC catalogue (stac, index)`);
    const patterns = def.sources ?? [];
    const sources = await this.engine.expand(patterns);
    if (sources.length === 0)
      throw new RenderError(
        'bad-request',
        `mosaic ${def.id}: no GeoTIFF matches ${patterns.join(', ') || '(no sources)'}`,
      );
    return this.engine.openMosaic({ ...common, sources }, signal);
  }

  /** Load every definition; failures are kept per entry (see `problems`). */
  async load(defs: readonly MosaicDefinition[]): Promise<void> {
    await this.loadAs(defs, 'config');
  }

  private async loadAs(defs: readonly MosaicDefinition[], origin: CatalogEntry['origin']): Promise<void> {
    await Promise.all(
      defs.map(async (def) => {
        const entry: CatalogEntry = { id: def.id, definition: def, origin };
        this.entries.set(def.id, entry);
        try {
          entry.mosaic = await this.open(def, undefined, { trusted: origin === 'config' });
        } catch (e) {
          entry.error =
            e instanceof CogmillError
              ? { code: e.code, kind: e.kind, message: e.message }
              : { code: 500, kind: 'internal', message: errorMessage(e) };
        }
      }),
    );
  }

  /** Re-open the registered mosaics kept in the store (at start-up); those that fail are kept with their error. */
  async restore(): Promise<void> {
    if (!this.store) return;
    const defs = (await this.store.load()).filter((d) => !this.entries.has(d.id));
    await this.loadAs(defs, 'registered');
  }

  private registered(): MosaicDefinition[] {
    return this.list()
      .filter((e) => e.origin === 'registered')
      .map((e) => e.definition);
  }

  /**
   * Read the store again and take what other processes changed in it (a store shared by replicas: Redis): mosaics
   * registered or replaced elsewhere are opened (a failure is kept with its error, as at start-up), those removed
   * elsewhere are dropped; configured mosaics are never touched. Returns the ids that changed. The store is read
   * outside the registration queue (a store that does not answer delays no registration); the changes are applied
   * in it, against the entries as they are then.
   */
  async refresh(): Promise<string[]> {
    if (!this.store) return [];
    const stored = await this.store.load();
    return this.serial(async () => {
      const byId = new Map(stored.map((d) => [d.id, d]));
      const changed: string[] = [];
      for (const e of this.list())
        if (e.origin === 'registered' && !byId.has(e.id)) {
          this.entries.delete(e.id);
          changed.push(e.id);
        }
      const fresh = stored.filter((d) => {
        const e = this.entries.get(d.id);
        return !e || (e.origin === 'registered' && JSON.stringify(e.definition) !== JSON.stringify(d));
      });
      await this.loadAs(fresh, 'registered');
      changed.push(...fresh.map((d) => d.id));
      return changed;
    });
  }

  /**
   * `refresh` every `ms` in the background until `close` (a failed read keeps the mosaics as they are and is
   * reported to `onError`); one at a time.
   */
  refreshEvery(ms: number, onError: (e: unknown) => void = () => {}): void {
    if (!this.store || ms <= 0 || this.refreshTimer) return;
    let running = false;
    this.refreshTimer = setInterval(() => {
      if (running) return;
      running = true;
      this.refresh()
        .catch(onError)
        .finally(() => {
          running = false;
        });
    }, ms);
    this.refreshTimer.unref();
  }

  /** Close the store's connection (if it has one). */
  async close(): Promise<void> {
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = undefined;
    await this.store?.close?.();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => {});
    return p;
  }

  /**
   * Register a mosaic at run time (its sources and assets must lie under the allow-lists). `replace`: an existing
   * registered mosaic with this id is replaced (PUT); otherwise the id must be free (POST). Configured mosaics are
   * never replaced. The mosaic is opened first: a definition that cannot be opened is refused and nothing is kept.
   */
  register(def: MosaicDefinition, options: { replace: boolean; signal?: AbortSignal }): Promise<Mosaic> {
    return this.serial(async () => {
      const existing = this.entries.get(def.id);
      if (existing?.origin === 'config')
        throw new RenderError('conflict', `mosaic ${def.id} comes from the configuration and cannot be replaced`);
      if (existing && !options.replace)
        throw new RenderError('conflict', `mosaic ${def.id} exists; PUT /mosaics/${def.id} replaces it`);
      const mosaic = await this.open(def, options.signal, { trusted: false });
      const before = this.entries.get(def.id);
      this.entries.set(def.id, { id: def.id, definition: def, origin: 'registered', mosaic });
      try {
        await this.store?.put(def, this.registered());
      } catch (e) {
        if (before) this.entries.set(def.id, before);
        else this.entries.delete(def.id);
        throw new RenderError('internal', `mosaic ${def.id} could not be stored: ${errorMessage(e)}`, { cause: e });
      }
      return mosaic;
    });
  }

  /** Remove a registered mosaic. */
  unregister(id: string): Promise<void> {
    return this.serial(async () => {
      const e = this.entries.get(id);
      if (!e) throw new RenderError('not-found', `no mosaic with id "${id}"; GET /mosaics lists them`);
      if (e.origin === 'config')
        throw new RenderError('conflict', `mosaic ${id} comes from the configuration and cannot be deleted`);
      this.entries.delete(id);
      try {
        await this.store?.remove(id, this.registered());
      } catch (err) {
        this.entries.set(id, e);
        throw new RenderError('internal', `mosaic ${id} could not be removed from the store: ${errorMessage(err)}`, {
          cause: err,
        });
      }
    });
  }

  add(mosaic: Mosaic, def: MosaicDefinition): void {
    const origin = this.entries.get(mosaic.id)?.origin ?? 'config';
    this.entries.set(mosaic.id, { id: mosaic.id, definition: def, origin, mosaic });
  }

  /** The mosaic with this id, or a typed 404 / the error it failed to open with. */
  get(id: string): Mosaic {
    const e = this.entries.get(id);
    if (!e) throw new RenderError('not-found', `no mosaic with id "${id}"; GET /mosaics lists them`);
    if (!e.mosaic) {
      const err = e.error!;
      throw new CogmillError(err.kind as never, `mosaic ${id} could not be opened: ${err.message}`);
    }
    return e.mosaic;
  }

  list(): CatalogEntry[] {
    return [...this.entries.values()];
  }

  problems(): CatalogEntry[] {
    return this.list().filter((e) => e.error);
  }
}
