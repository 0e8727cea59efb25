/** A small static file server with HTTP Range support and request recording, for HTTP source tests. */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface StaticServer {
  readonly url: string;
  readonly requests: { method: string; path: string; range?: string }[];
  /** when set, the server waits this long before answering (to test timeouts) */
  delayMs: number;
  stop(): Promise<void>;
}

export async function startStaticServer(root: string): Promise<StaticServer> {
  const state: StaticServer = {
    url: '',
    requests: [],
    delayMs: 0,
    stop: async () => {},
  };
  const server: Server = createServer(async (req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    state.requests.push({ method: req.method ?? 'GET', path: rel, range: req.headers.range });
    if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
    const file = path.join(root, path.normalize(rel));
    if (!file.startsWith(root)) {
      res.writeHead(403).end();
      return;
    }
    let s: Awaited<ReturnType<typeof stat>>;
    try {
      s = await stat(file);
    } catch {
      res.writeHead(404).end();
      return;
    }
    const etag = `"${s.size}-${Math.floor(s.mtimeMs)}"`;
    const headers = { etag, 'accept-ranges': 'bytes', 'last-modified': s.mtime.toUTCString() };
    if (req.headers['if-match'] && req.headers['if-match'] !== etag) {
      res.writeHead(412, headers).end();
      return;
    }
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (m) {
      const start = Number(m[1]);
      const end = Math.min(m[2] ? Number(m[2]) : s.size - 1, s.size - 1);
      if (start >= s.size) {
        res.writeHead(416, { ...headers, 'content-range': `bytes */${s.size}` }).end();
        return;
      }
      res.writeHead(206, {
        ...headers,
        'content-length': end - start + 1,
        'content-range': `bytes ${start}-${end}/${s.size}`,
      });
      if (req.method === 'HEAD') res.end();
      else createReadStream(file, { start, end }).pipe(res);
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': s.size });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  (state as { url: string }).url = `http://127.0.0.1:${port}`;
  state.stop = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}
