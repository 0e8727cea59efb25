/**
 * An engine whose sources count their reads into the current request's (or job's) IO counters, found through an
 * AsyncLocalStorage: the server's summary line per request, and the tile workers' answers, report them.
 */
import type { AsyncLocalStorage } from 'node:async_hooks';
import { Engine, type EngineSettings } from './engine.ts';
import type { ReadOptions, Source, SourceRead } from './source.ts';

/** Source IO of one request or job. */
export interface SourceIo {
  sourceRequests: number;
  sourceBytes: number;
}

/** A Source that counts its reads into the current scope's IO counters. */
class SourceCounted implements Source {
  private readonly inner: Source;
  private readonly scope: AsyncLocalStorage<SourceIo>;

  constructor(inner: Source, scope: AsyncLocalStorage<SourceIo>) {
    this.inner = inner;
    this.scope = scope;
  }

  get url(): string {
    return this.inner.url;
  }

  async read(offset: number, length: number, options?: ReadOptions): Promise<SourceRead> {
    const io = this.scope.getStore();
    const r = await this.inner.read(offset, length, options);
    if (io) {
      io.sourceRequests++;
      io.sourceBytes += r.bytes.byteLength;
    }
    return r;
  }

  stat(options?: ReadOptions) {
    return this.inner.stat(options);
  }

  close(): Promise<void> {
    return this.inner.close?.() ?? Promise.resolve();
  }
}

/** The engine, with every source it hands out counting its reads per scope. */
export class EngineCounted extends Engine {
  private readonly scope: AsyncLocalStorage<SourceIo>;
  private readonly counted = new WeakMap<Source, SourceCounted>();

  constructor(settings: Partial<EngineSettings>, scope: AsyncLocalStorage<SourceIo>) {
    super(settings);
    this.scope = scope;
  }

  override async source(location: string): Promise<Source> {
    const s = await super.source(location);
    let c = this.counted.get(s);
    if (!c) {
      c = new SourceCounted(s, this.scope);
      this.counted.set(s, c);
    }
    return c;
  }
}
