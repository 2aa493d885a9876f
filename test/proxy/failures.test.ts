import t, { type Test } from 'tap';
import { http } from '../helpers/http.js';
import { freePort, startCutover, startUpstream, writeConfig } from '../helpers/servers.js';

t.test('connection refused: 502 JSON with the request id', async (t) => {
  const port = await freePort();
  const cfg = { upstreams: { gone: { url: `http://127.0.0.1:${port}` } }, routes: [{ name: 'api', match: { path: '/api' }, legacy: 'gone' }] };
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  const r = await http(`${proxy}/api/x`, { headers: { 'x-request-id': 'req-1' } });
  t.equal(r.status, 502);
  t.match(r.json(), { error: 'bad_gateway', requestId: 'req-1', message: /upstream gone failed: connect/ });
  t.equal(r.headers['content-type'], 'application/json');
});

t.test('an upstream that never answers: 504 after headersTimeout', async (t) => {
  const hang = await startUpstream(t, 'hang', () => undefined);
  const cfg = {
    upstreams: { hang: { url: hang.url, headersTimeout: '200ms' } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'hang' }],
  };
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  const started = Date.now();
  const r = await http(`${proxy}/api/x`);
  t.equal(r.status, 504);
  t.match(r.json(), { error: 'upstream_timeout' });
  t.ok(Date.now() - started < 2000, 'bounded by the timeout');
});

/**
 * An upstream that closes a kept-alive connection as a second request arrives on it: the request
 * is reset before any response. `seen` counts the requests that reached it, by method.
 */
async function resetOnReuse(t: Test, always = false) {
  const perSocket = new WeakMap<object, number>();
  const seen: string[] = [];
  const up = await startUpstream(t, 'legacy', (req, res) => {
    seen.push(req.method ?? '');
    const n = (perSocket.get(req.socket) ?? 0) + 1;
    perSocket.set(req.socket, n);
    if (always || n > 1) return req.socket.destroy();
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  const cfg = {
    upstreams: { legacy: { url: up.url, keepAliveTimeout: '30s', connections: 1 } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy' }],
  };
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  return { proxy, seen };
}

t.test('legacy: a request reset on a reused keep-alive socket is retried once when idempotent and bodiless', async (t) => {
  const { proxy, seen } = await resetOnReuse(t);
  const status = async (method: string, body?: string) => (await http(`${proxy}/api/x`, { method, ...(body !== undefined && { body }) })).status;
  t.equal(await status('GET'), 200, 'first GET opens the connection');
  t.equal(await status('GET'), 200, 'second GET: reset on reuse, retried on a new connection');
  t.same(seen, ['GET', 'GET', 'GET'], 'the retry is the only extra request');
  t.equal(await status('POST'), 502, 'a POST reset on reuse is not retried, even without a body');
  t.same(seen.slice(3), ['POST'], 'the POST reached the upstream once');
  t.equal(await status('GET'), 200);
  t.equal(await status('DELETE'), 200, 'a bodiless DELETE is idempotent: retried');
  t.equal(await status('PUT', 'abc'), 502, 'a PUT whose body was streamed cannot be sent again');
  t.same(seen.slice(4), ['GET', 'DELETE', 'DELETE', 'PUT']);
});

t.test('legacy: an upstream resetting every request costs a GET exactly two tries', async (t) => {
  const { proxy, seen } = await resetOnReuse(t, true);
  const r = await http(`${proxy}/api/x`);
  t.equal(r.status, 502);
  t.match(r.json(), { error: 'bad_gateway', message: /reset/ });
  t.same(seen, ['GET', 'GET'], 'tried once more, then given up');
});
