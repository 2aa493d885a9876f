import { createServer, type Server } from 'node:http';
import { once } from 'node:events';

/**
 * A tiny sample backend for `cutover demo` and tests: answers every request with JSON saying
 * which side served it, so you can watch users move between "legacy" and "new".
 */
export function sampleBackend(servedBy: string): Server {
  return createServer((req, res) => {
    if (req.url === '/health') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"status":"ok"}');
      return;
    }
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      const body = JSON.stringify({
        served_by: servedBy,
        method: req.method,
        path: req.url,
        user: req.headers['x-user-id'] ?? null,
        body_bytes: bytes,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': servedBy });
      res.end(body + '\n');
    });
  });
}

export async function listenBackend(servedBy: string, port: number, host = '127.0.0.1'): Promise<Server> {
  const s = sampleBackend(servedBy);
  s.listen(port, host);
  await once(s, 'listening');
  return s;
}
