/** HTTP(S) sources read with Range requests, with timeouts and retries with backoff. */
import { SourceError } from './errors.ts';
import { sleep } from './retry.ts';
import type { ReadOptions, Source, SourceRead, SourceStats } from './source.ts';

export interface HttpSettings {
  readonly timeoutMs: number;
  readonly retries: number;
  readonly retryBaseMs: number;
}

export const HTTP_DEFAULTS: HttpSettings = { timeoutMs: 15_000, retries: 3, retryBaseMs: 100 };

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);

/** Strip credentials and query strings from a URL before it appears in a message or a log. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    u.search = u.search ? '?…' : '';
    return u.toString();
  } catch {
    return url;
  }
}

export class SourceHttp implements Source {
  readonly url: string;
  readonly stats: SourceStats = { requests: 0, bytes: 0 };
  private readonly settings: HttpSettings;
  private readonly fetchFn: typeof fetch;

  constructor(url: string, settings: Partial<HttpSettings> = {}, fetchFn: typeof fetch = fetch) {
    this.url = url;
    this.settings = { ...HTTP_DEFAULTS, ...settings };
    this.fetchFn = fetchFn;
  }

  private async request(
    method: 'GET' | 'HEAD',
    headers: Record<string, string>,
    options?: ReadOptions,
  ): Promise<Response> {
    const { timeoutMs, retries, retryBaseMs } = this.settings;
    let lastError: unknown;
    for (let attempt = 0; attempt <= retries; attempt++) {
      options?.signal?.throwIfAborted();
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = options?.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
      try {
        this.stats.requests++;
        const res = await this.fetchFn(this.url, { method, headers, signal });
        if (RETRYABLE_STATUS.has(res.status) && attempt < retries) {
          await res.body?.cancel().catch(() => {});
          lastError = new SourceError('unreachable', `${redactUrl(this.url)} answered ${res.status}`);
          await sleep(retryBaseMs * 2 ** attempt * (0.5 + Math.random()), options?.signal);
          continue;
        }
        return res;
      } catch (e) {
        if (options?.signal?.aborted) throw e;
        lastError = timeout.aborted
          ? new SourceError('timeout', `${redactUrl(this.url)} did not answer within ${timeoutMs} ms`, { cause: e })
          : new SourceError('unreachable', `${redactUrl(this.url)} is unreachable: ${(e as Error).message}`, {
              cause: e,
            });
        if (attempt < retries) await sleep(retryBaseMs * 2 ** attempt * (0.5 + Math.random()), options?.signal);
      }
    }
    throw lastError;
  }

  private fail(res: Response): never {
    const where = redactUrl(this.url);
    if (res.status === 404 || res.status === 410)
      throw new SourceError('not-found', `${where} was not found (HTTP ${res.status})`);
    if (res.status === 401 || res.status === 403)
      throw new SourceError(
        'forbidden',
        `${where} refused access (HTTP ${res.status}); check the credentials or URL signature`,
      );
    if (res.status === 412) throw new SourceError('changed', `${where} changed while it was being read`);
    if (res.status === 416) throw new SourceError('bad-request', `${where} rejected the byte range (HTTP 416)`);
    throw new SourceError('unreachable', `${where} answered HTTP ${res.status}`);
  }

  async stat(options?: ReadOptions): Promise<{ size: number; etag: string; lastModified?: Date }> {
    const headers: Record<string, string> = {};
    if (options?.ifMatch) headers['if-match'] = options.ifMatch;
    const res = await this.request('HEAD', headers, options);
    if (!res.ok) this.fail(res);
    const size = Number(res.headers.get('content-length'));
    if (!Number.isFinite(size)) throw new SourceError('unreachable', `${redactUrl(this.url)} gave no Content-Length`);
    const etag = res.headers.get('etag') ?? res.headers.get('last-modified') ?? `size-${size}`;
    if (options?.ifMatch && etag !== options.ifMatch) this.changed();
    const lm = res.headers.get('last-modified');
    return { size, etag, lastModified: lm ? new Date(lm) : undefined };
  }

  private changed(): never {
    throw new SourceError('changed', `${redactUrl(this.url)} changed while it was being read`);
  }

  async read(offset: number, length: number, options?: ReadOptions): Promise<SourceRead> {
    if (length <= 0) {
      const s = await this.stat(options);
      return { bytes: new Uint8Array(0), size: s.size, etag: s.etag };
    }
    const headers: Record<string, string> = { range: `bytes=${offset}-${offset + length - 1}` };
    if (options?.ifMatch) headers['if-match'] = options.ifMatch;
    const res = await this.request('GET', headers, options);
    if (res.status === 416) {
      // the range starts past the end: nothing to read
      await res.body?.cancel().catch(() => {});
      const s = await this.stat(options);
      return { bytes: new Uint8Array(0), size: s.size, etag: s.etag };
    }
    if (!res.ok) this.fail(res);
    const etag = res.headers.get('etag') ?? res.headers.get('last-modified') ?? '';
    if (options?.ifMatch && etag && etag !== options.ifMatch) {
      await res.body?.cancel().catch(() => {});
      this.changed();
    }
    let bytes: Uint8Array;
    let size: number;
    try {
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      throw new SourceError(
        'unreachable',
        `${redactUrl(this.url)}: connection dropped while reading: ${(e as Error).message}`,
        {
          cause: e,
        },
      );
    }
    if (res.status === 206) {
      const m = /bytes (\d+)-(\d+)\/(\d+|\*)/.exec(res.headers.get('content-range') ?? '');
      if (!m || Number(m[1]) !== offset)
        throw new SourceError('unreachable', `${redactUrl(this.url)} sent a bad Content-Range`);
      size = m[3] === '*' ? Number.NaN : Number(m[3]);
    } else {
      // the server ignored the Range header and sent everything
      size = bytes.byteLength;
      bytes = bytes.subarray(offset, offset + length);
    }
    this.stats.bytes += bytes.byteLength;
    return { bytes, size, etag: etag || `size-${size}` };
  }
}
