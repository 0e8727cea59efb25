/**
 * A fault-injecting HTTP reverse proxy for tests: put it in front of a real server (radosgw) and let chosen
 * requests fail the way object stores and networks fail: a 503 with an S3 error body, a connection cut in the
 * middle of a request or a response, or a delay.
 *
 * Requests and answers are streamed (multipart parts are many MiB) and forwarded byte for byte with the headers
 * the client sent, Host included: a SigV4 signature covers the Host header, and radosgw checks it.
 * Which requests fail is decided by a seeded PRNG, so a run can be repeated.
 */
import {
  Agent,
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type ServerResponse,
} from 'node:http';
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { prng as seededRandom } from '../../src/demo.data.ts';

export type FaultAction =
  /** answer at once with an S3 error (default 503 SlowDown) without forwarding */
  | { readonly kind: 'error'; readonly status?: number; readonly code?: string; readonly message?: string }
  /**
   * forward, then cut both connections after `afterBytes` bytes of the request body (or, for a request without
   * a body, of the response body); default: half of the body, or 64 KiB when its length is unknown
   */
  | { readonly kind: 'reset'; readonly afterBytes?: number }
  /** hold the request `ms` milliseconds, then forward it */
  | { readonly kind: 'delay'; readonly ms: number };

export interface FaultRule {
  /** key in `stats.faults` */
  readonly name: string;
  /** HTTP method(s) the rule applies to; all when absent */
  readonly method?: string | readonly string[];
  /** further condition on the request URL (path and query) and headers */
  readonly match?: (url: URL, headers: IncomingHttpHeaders) => boolean;
  /** chance that a matching request fails (default 1) */
  readonly probability?: number;
  /** the rule stops firing after this many faults */
  readonly maxTimes?: number;
  readonly action: FaultAction;
}

export interface FaultProxyStats {
  /** requests received */
  requests: number;
  /** requests passed on to the target (delayed and cut ones included) */
  forwarded: number;
  /** faults injected, per rule name */
  faults: Record<string, number>;
}

export interface FaultProxy {
  /** `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly stats: FaultProxyStats;
  /** replace the rules (their `maxTimes` counts start again) */
  setRules(rules: readonly FaultRule[]): void;
  stop(): Promise<void>;
}

const KiB = 1024;
const DEFAULT_CUT_BYTES = 64 * KiB;

/** URL predicates for the S3 requests tests usually target (path-style addressing: /bucket/key). */
export const S3_REQUEST = {
  /** PUT /bucket/key?partNumber=N&uploadId=U */
  uploadPart: (u: URL) => u.searchParams.has('partNumber') && u.searchParams.has('uploadId'),
  /** POST /bucket/key?uploads */
  createMultipartUpload: (u: URL) => u.searchParams.has('uploads'),
  /** POST (complete), DELETE (abort), GET (list parts) /bucket/key?uploadId=U */
  multipartUpload: (u: URL) => u.searchParams.has('uploadId') && !u.searchParams.has('partNumber'),
  /** GET/HEAD/PUT /bucket/key on the object itself (the SDK adds `?x-id=GetObject`), not a sub-resource */
  object: (u: URL) =>
    /^\/[^/]+\/.+/.test(u.pathname) &&
    [...u.searchParams.keys()].every((k) => k === 'x-id' || k === 'versionId' || k.startsWith('response-')),
} as const;

function xmlEscape(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function methodMatches(rule: FaultRule, method: string): boolean {
  if (rule.method === undefined) return true;
  const methods = typeof rule.method === 'string' ? [rule.method] : rule.method;
  return methods.some((m) => m.toUpperCase() === method);
}

function hasBody(headers: IncomingHttpHeaders): boolean {
  const length = Number(headers['content-length'] ?? 0);
  return length > 0 || headers['transfer-encoding'] !== undefined;
}

function cutPoint(action: { afterBytes?: number }, contentLength: string | undefined): number {
  if (action.afterBytes !== undefined) return action.afterBytes;
  const length = Number(contentLength);
  return Number.isFinite(length) && length > 0 ? Math.floor(length / 2) : DEFAULT_CUT_BYTES;
}

/**
 * Copy `src` into `dst` with backpressure. With `cutAfter`, stop after that many bytes and call `onCut` once the
 * bytes before the cut have been handed to the socket; otherwise end `dst` when `src` ends.
 */
function relay(src: Readable, dst: Writable, cutAfter: number | undefined, onCut: () => void): void {
  let sent = 0;
  let cut = false;
  const onData = (chunk: Buffer) => {
    if (cut) return;
    if (cutAfter !== undefined && sent + chunk.byteLength >= cutAfter) {
      cut = true;
      src.off('data', onData);
      src.pause();
      dst.write(chunk.subarray(0, cutAfter - sent), () => onCut());
      return;
    }
    sent += chunk.byteLength;
    if (!dst.write(chunk)) src.pause();
  };
  src.on('data', onData);
  dst.on('drain', () => {
    if (!cut) src.resume();
  });
  src.on('end', () => {
    if (cut) return;
    if (cutAfter !== undefined) onCut();
    else dst.end();
  });
}

export async function startFaultProxy(target: string, rules: readonly FaultRule[], seed = 1): Promise<FaultProxy> {
  const targetUrl = new URL(target);
  const random = seededRandom(seed);
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const stats: FaultProxyStats = { requests: 0, forwarded: 0, faults: {} };
  let active: readonly FaultRule[] = rules;
  let fired = new Map<FaultRule, number>();
  const sockets = new Set<Socket>();
  let requestSeq = 0;

  const pick = (req: IncomingMessage): FaultRule | undefined => {
    const method = (req.method ?? 'GET').toUpperCase();
    const url = new URL(req.url ?? '/', 'http://proxy.invalid');
    for (const rule of active) {
      if (!methodMatches(rule, method)) continue;
      if (rule.match && !rule.match(url, req.headers)) continue;
      const times = fired.get(rule) ?? 0;
      if (rule.maxTimes !== undefined && times >= rule.maxTimes) continue;
      if (rule.probability !== undefined && rule.probability < 1 && random() >= rule.probability) continue;
      fired.set(rule, times + 1);
      stats.faults[rule.name] = (stats.faults[rule.name] ?? 0) + 1;
      return rule;
    }
    return undefined;
  };

  const answerError = (
    req: IncomingMessage,
    res: ServerResponse,
    action: Extract<FaultAction, { kind: 'error' }>,
    expectContinue: boolean,
  ) => {
    const status = action.status ?? 503;
    const code = action.code ?? 'SlowDown';
    const requestId = `fault-${++requestSeq}`;
    const body =
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
      `<Error><Code>${xmlEscape(code)}</Code><Message>${xmlEscape(action.message ?? 'Please reduce your request rate.')}</Message>` +
      `<Resource>${xmlEscape(new URL(req.url ?? '/', 'http://proxy.invalid').pathname)}</Resource>` +
      `<RequestId>${requestId}</RequestId></Error>`;
    const send = (close: boolean) => {
      if (res.destroyed) return;
      res.writeHead(status, {
        'content-type': 'application/xml',
        'content-length': Buffer.byteLength(body),
        'x-amz-request-id': requestId,
        ...(close ? { connection: 'close' } : {}),
      });
      res.end(body);
    };
    if (expectContinue) {
      // the client holds its body back until told to continue: refuse it now, as S3 does
      send(true);
    } else {
      // read the body first so the connection stays usable for the next request
      req.on('end', () => send(false));
      req.on('error', () => res.destroy());
      req.resume();
    }
  };

  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    cut: Extract<FaultAction, { kind: 'reset' }> | undefined,
  ) => {
    stats.forwarded++;
    const upstream = request({
      protocol: targetUrl.protocol,
      host: targetUrl.hostname,
      port: targetUrl.port,
      method: req.method,
      path: req.url,
      // raw headers, in order and unchanged: Host stays the one the client signed
      headers: req.rawHeaders,
      setHost: false,
      agent,
    });
    const cutBoth = () => {
      upstream.destroy();
      req.socket.destroy();
    };
    const cutRequest = cut !== undefined && hasBody(req.headers);
    upstream.on('continue', () => {
      if (!res.headersSent) res.writeContinue();
    });
    upstream.on('response', (ures) => {
      if (res.destroyed) {
        ures.destroy();
        return;
      }
      res.writeHead(ures.statusCode ?? 502, ures.statusMessage, ures.rawHeaders);
      const cutResponse = cut !== undefined && !cutRequest;
      relay(ures, res, cutResponse ? cutPoint(cut, ures.headers['content-length']) : undefined, cutBoth);
      ures.on('error', () => res.destroy());
    });
    upstream.on('error', () => {
      if (!res.headersSent && !res.destroyed) {
        res.writeHead(502, { 'content-type': 'text/plain', connection: 'close' });
        res.end('fault proxy: target unreachable');
      } else {
        res.destroy();
      }
    });
    req.on('error', () => upstream.destroy());
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    relay(req, upstream, cutRequest ? cutPoint(cut, req.headers['content-length']) : undefined, cutBoth);
  };

  const handle = (req: IncomingMessage, res: ServerResponse, expectContinue: boolean) => {
    stats.requests++;
    const rule = pick(req);
    const action = rule?.action;
    if (action?.kind === 'error') {
      answerError(req, res, action, expectContinue);
    } else if (action?.kind === 'delay') {
      const timer = setTimeout(() => {
        if (!res.destroyed) forward(req, res, undefined);
      }, action.ms);
      res.on('close', () => clearTimeout(timer));
    } else {
      forward(req, res, action);
    }
  };

  const server = createServer();
  server.on('request', (req, res) => handle(req, res, false));
  server.on('checkContinue', (req, res) => handle(req, res, true));
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('clientError', (_err, socket: Socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('fault proxy: no listening port');

  let stopped: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${address.port}`,
    stats,
    setRules(next) {
      active = next;
      fired = new Map();
    },
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
        agent.destroy();
      });
      return stopped;
    },
  };
}
