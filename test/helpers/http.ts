import { request as undiciRequest, Agent } from 'undici';
import { request as nodeRequest } from 'node:http';

// One client agent for tests, closed by node at exit; short keep-alive so servers close cleanly.
const agent = new Agent({ keepAliveTimeout: 100, keepAliveMaxTimeout: 100 });

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: <T = Record<string, unknown>>() => T;
}

export async function http(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<Reply> {
  const r = await undiciRequest(url, {
    method: (opts.method ?? 'GET') as 'GET',
    headers: opts.headers ?? {},
    body: opts.body ?? null,
    dispatcher: agent,
  });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text, json: <T>() => JSON.parse(text) as T };
}

export function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return http(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/** Which side served a request to the standard test upstreams. */
export async function servedBy(proxy: string, path: string, userId?: string): Promise<string> {
  const r = await http(proxy + path, { headers: userId !== undefined ? { 'x-user-id': userId } : {} });
  if (r.status !== 200) throw new Error(`${path} for ${userId}: ${r.status} ${r.text}`);
  return r.json<{ served_by: string }>().served_by;
}

/** A request whose path is sent byte for byte (no URL normalization), via node:http. */
export async function rawPath(
  base: string,
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }> {
  const { request } = await import('node:http');
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, method, path, headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** How a slowPost ended: status 0 and `error` when the connection failed; ms counted from its first byte. */
export interface SlowPost {
  status: number;
  servedBy: string;
  /** To the end of the upload (-1: not finished). */
  uploadMs: number;
  /** To the response headers (-1: none). */
  answeredMs: number;
  error?: string;
}

/** A POST to `url` whose body is written in `pieces` one-byte writes, `gapMs` apart: a slow client's upload. */
export function slowPost(url: string, headers: Record<string, string>, pieces: number, gapMs: number): Promise<SlowPost> {
  const u = new URL(url);
  const started = performance.now();
  let uploadMs = -1;
  return new Promise((resolve) => {
    const req = nodeRequest({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { ...headers, 'content-length': String(pieces) } }, (res) => {
      const answeredMs = performance.now() - started;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, servedBy: String(res.headers['x-served-by'] ?? ''), uploadMs, answeredMs }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: 0, servedBy: '', uploadMs, answeredMs: -1, error: err.code ?? err.message }));
    let sent = 0;
    const piece = () => {
      if (req.destroyed) return; // cut off (requestTimeout, a stall)
      if (++sent < pieces) {
        req.write('x');
        setTimeout(piece, gapMs);
        return;
      }
      req.end('x', () => (uploadMs = performance.now() - started));
    };
    piece();
  });
}
