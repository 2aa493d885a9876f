import { request as undiciRequest, Agent } from 'undici';

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
