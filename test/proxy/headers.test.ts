import t from 'tap';
import { createServer as createNetServer } from 'node:net';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { http, rawPath } from '../helpers/http.js';
import { startCutover, startUpstream, twoSided, writeConfig } from '../helpers/servers.js';

t.test('hop-by-hop headers are stripped in both directions', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (_req, res) => {
    res.writeHead(200, {
      'content-type': 'text/plain',
      connection: 'keep-alive, x-upstream-private',
      'x-upstream-private': 'secret',
      'keep-alive': 'timeout=5',
      'proxy-authenticate': 'Basic',
      'x-kept': 'yes',
    });
    res.end('ok');
  });
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const { proxy } = await startCutover(t, dirs);
  // node:http sends Connection as given (undici's client would replace it).
  const r = await rawPath(proxy, 'GET', '/api/h', undefined, {
      connection: 'x-client-private',
      'x-client-private': 'secret',
      te: 'trailers',
      'proxy-authorization': 'Basic Zm9vOmJhcg==',
      'x-custom': 'kept',
  });
  t.equal(r.status, 200);
  const got = legacy.seen[0]!.headers;
  for (const h of ['x-client-private', 'te', 'proxy-authorization', 'upgrade', 'trailer']) t.notOk(got[h], `request ${h} dropped`);
  t.equal(got['x-custom'], 'kept');
  t.notOk(r.headers['x-upstream-private'], 'response header named in Connection dropped');
  t.notOk(r.headers['proxy-authenticate']);
  t.notOk(r.headers['keep-alive'] === 'timeout=5', 'upstream keep-alive not relayed');
  t.equal(r.headers['x-kept'], 'yes');
});

t.test('X-Forwarded-* overwritten from untrusted peers, appended from trusted proxies', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const spoof = { 'x-forwarded-for': '6.6.6.6', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example', host: 'shop.example' };

  const untrusted = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate)));
  await http(`${untrusted.proxy}/api/f`, { headers: spoof });
  t.match(legacy.seen.at(-1)!.headers, { 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'http', 'x-forwarded-host': 'shop.example' });

  const trusted = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate, { trustedProxies: ['127.0.0.0/8'] })));
  await http(`${trusted.proxy}/api/f`, { headers: spoof });
  t.match(legacy.seen.at(-1)!.headers, { 'x-forwarded-for': '6.6.6.6, 127.0.0.1', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'evil.example' });
});

t.test('Host follows the upstream unless preserveHost; x-request-id generated or passed on', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = twoSided(legacy, candidate);
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  const r1 = await http(`${proxy}/api/r`, { headers: { host: 'shop.example' } });
  t.equal(legacy.seen.at(-1)!.headers.host, `127.0.0.1:${legacy.port}`);
  const generated = legacy.seen.at(-1)!.headers['x-request-id'];
  t.match(generated, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  t.equal(r1.headers['x-request-id'], generated, 'the client sees the same id');
  await http(`${proxy}/api/r`, { headers: { 'x-request-id': 'abc-123' } });
  t.equal(legacy.seen.at(-1)!.headers['x-request-id'], 'abc-123');

  const keep = twoSided(legacy, candidate);
  keep.upstreams!.legacy = { url: legacy.url, preserveHost: true };
  const p2 = await startCutover(t, await writeConfig(t, keep));
  await http(`${p2.proxy}/api/r`, { headers: { host: 'shop.example' } });
  t.equal(legacy.seen.at(-1)!.headers.host, 'shop.example');
});

t.test('upstream base path and query string are kept', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = twoSided(legacy, candidate);
  cfg.upstreams!.legacy = { url: `${legacy.url}/magento/` };
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  await http(`${proxy}/api/items?page=2&q=a%20b`);
  t.equal(legacy.seen.at(-1)!.url, '/magento/api/items?page=2&q=a%20b');
});

t.test('an upstream header Node will not relay becomes a 502, not a crash', async (t) => {
  const raw = createNetServer((sock) => {
    sock.once('data', () => sock.end('HTTP/1.1 200 OK\r\nX-Bad: a\u0001b\r\nContent-Length: 2\r\n\r\nok'));
  });
  raw.listen(0, '127.0.0.1');
  await once(raw, 'listening');
  t.teardown(() => raw.close());
  const candidate = await startUpstream(t, 'candidate');
  const cfg = {
    upstreams: { bad: { url: `http://127.0.0.1:${(raw.address() as AddressInfo).port}` }, candidate: { url: candidate.url } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'bad', candidate: 'candidate', flag: 'f' }],
  };
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  const r = await http(`${proxy}/api/x`);
  t.equal(r.status, 502);
  t.match(r.json(), { error: 'bad_gateway' });
  t.equal((await http(`${proxy}/api/x`)).status, 502, 'still serving');
});
