/**
 * The catalog of mosaics a process serves: built from configuration (or command-line sources) once at start-up.
 * Opening a mosaic reads every source header; a mosaic that fails to open is reported, not fatal to the others.
 */

import { parseCrs } from './crs.ts';
import type { Engine } from './engine.ts';
import { CogmillError, errorMessage, RenderError } from './errors.ts';
import type { Mosaic, MosaicSpec } from './mosaic.ts';
import type { Bounds, Composite, DType, Resampling } from './types.ts';

/** A mosaic as written in configuration: source patterns not yet expanded, CRS as text or code. */
export interface MosaicDefinition {
  readonly id: string;
  readonly title?: string;
  readonly sources: readonly string[];
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
  mosaic?: Mosaic;
  error?: { code: number; kind: string; message: string };
}

export class Catalog {
  private readonly engine: Engine;
  private readonly entries = new Map<string, CatalogEntry>();

  constructor(engine: Engine) {
    this.engine = engine;
  }

  /** Expand a definition's sources and open the mosaic. */
  async open(def: MosaicDefinition, signal?: AbortSignal): Promise<Mosaic> {
    const sources = await this.engine.expand(def.sources);
    if (sources.length === 0)
      throw new RenderError('bad-request', `mosaic ${def.id}: no GeoTIFF matches ${def.sources.join(', ')}`);
    const res = def.resolution;
    const spec: MosaicSpec = {
      id: def.id,
      title: def.title,
      sources,
      crs: def.crs === undefined ? undefined : typeof def.crs === 'number' ? def.crs : parseCrs(def.crs).epsg,
      resolution: res === undefined ? undefined : typeof res === 'number' ? [res, res] : [res[0], res[1]],
      bounds: def.bounds,
      bands: def.bands,
      nodata: def.nodata === 'nan' ? Number.NaN : def.nodata,
      dtype: def.dtype,
      composite: def.composite,
      resampling: def.resampling,
      blockSize: def.blockSize,
    };
    return this.engine.openMosaic(spec, signal);
  }

  /** Load every definition; failures are kept per entry (see `problems`). */
  async load(defs: readonly MosaicDefinition[]): Promise<void> {
    await Promise.all(
      defs.map(async (def) => {
        const entry: CatalogEntry = { id: def.id, definition: def };
        this.entries.set(def.id, entry);
        try {
          entry.mosaic = await this.open(def);
        } catch (e) {
          entry.error =
            e instanceof CogmillError
              ? { code: e.code, kind: e.kind, message: e.message }
              : { code: 500, kind: 'internal', message: errorMessage(e) };
        }
      }),
    );
  }

  add(mosaic: Mosaic, def: MosaicDefinition): void {
    this.entries.set(mosaic.id, { id: mosaic.id, definition: def, mosaic });
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
