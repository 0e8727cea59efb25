/** A small static file server with HTTP Range support and request recording, for HTTP source tests. */
import { EventEmitter, once } from 'node:events';
import { createReadStream, type ReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface StaticRequest {
  readonly method: string;
  readonly path: string;
  readonly range?: string;
  /** the client closed the connection before the answer was complete */
  aborted: boolean;
  /** the answer was sent in full */
  answered: boolean;
}

export interface StaticServer {
  readonly url: string;
  readonly requests: StaticRequest[];
  /** when set, the server waits this long before answering (to test timeouts) */
  delayMs: number;
  /** hold every request from now on (and those held already) until `release()`; nothing is answered meanwhile */
  hold(): void;
  /** answer the held requests and stop holding */
  release(): void;
  /** requests waiting in `hold()` */
  readonly held: number;
  /** resolves once `count` requests in all have arrived (counting from the start) */
  waitForRequests(count: number): Promise<void>;
  /** resolves once `count` requests in all were aborted by their client */
  waitForAborts(count: number): Promise<void>;
  stop(): Promise<void>;
}

/** Pipe a file into an answer; a read error ends the connection instead of leaving the client waiting. */
function send(body: ReadStream, res: ServerResponse): void {
  body.on('error', () => res.destroy());
  body.pipe(res);
}

export async function startStaticServer(root: string): Promise<StaticServer> {
  const base = path.resolve(root);
  const events = new EventEmitter();
  let gate: { promise: Promise<void>; open: () => void } | undefined;
  let held = 0;
  const requests: StaticRequest[] = [];
  const until = async (test: () => boolean): Promise<void> => {
    while (!test()) await once(events, 'change');
  };
  const state: StaticServer = {
    url: '',
    requests,
    delayMs: 0,
    hold: () => {
      if (gate) return;
      let open = () => {};
      const promise = new Promise<void>((r) => {
        open = r;
      });
      gate = { promise, open };
    },
    release: () => {
      const g = gate;
      gate = undefined;
      g?.open();
    },
    get held() {
      return held;
    },
    waitForRequests: (count) => until(() => requests.length >= count),
    waitForAborts: (count) => until(() => requests.filter((r) => r.aborted).length >= count),
    stop: async () => {},
  };
  const server: Server = createServer(async (req, res) => {
    const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const record: StaticRequest = {
      method: req.method ?? 'GET',
      path: rel,
      range: req.headers.range,
      aborted: false,
      answered: false,
    };
    requests.push(record);
    res.on('close', () => {
      record.answered = res.writableFinished;
      record.aborted = !res.writableFinished;
      events.emit('change');
    });
    events.emit('change');
    if (gate) {
      held++;
      events.emit('change');
      await gate.promise;
      held--;
    }
    if (state.delayMs) await new Promise((r) => setTimeout(r, state.delayMs));
    if (res.destroyed) return;
    const file = path.join(base, path.normalize(rel));
    if (file !== base && !file.startsWith(base + path.sep)) {
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
    if (!s.isFile()) {
      // a folder (or anything else that is not a file) has no bytes to serve: reading it would fail with EISDIR
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
      else send(createReadStream(file, { start, end }), res);
      return;
    }
    res.writeHead(200, { ...headers, 'content-length': s.size });
    if (req.method === 'HEAD') res.end();
    else send(createReadStream(file), res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  (state as { url: string }).url = `http://127.0.0.1:${port}`;
  state.stop = () =>
    new Promise<void>((r) => {
      state.release();
      server.closeAllConnections();
      server.close(() => r());
    });
  return state;
}
