import t from 'tap';
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

t.test('a reused keep-alive socket the upstream closed is retried once for GET', async (t) => {
  // The upstream answers, then closes each socket right after without saying so.
  let served = 0;
  const up = await startUpstream(t, 'legacy', (_req, res) => {
    served++;
    res.end('ok', () => setTimeout(() => res.socket?.destroy(), 5));
  });
  const cfg = { upstreams: { legacy: { url: up.url, keepAliveTimeout: '30s' } }, routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy' }] };
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  let failures = 0;
  for (let i = 0; i < 30; i++) {
    const r = await http(`${proxy}/api/${i}`);
    if (r.status !== 200) failures++;
    await new Promise((res) => setTimeout(res, 10));
  }
  t.equal(failures, 0, `no failed GETs (${served} served)`);
});
