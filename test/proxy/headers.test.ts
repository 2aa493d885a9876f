import t from 'tap';
import { connect, createServer as createNetServer } from 'node:net';
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
      'proxy-authentication-info': 'nextnonce="abc"',
      upgrade: 'h2c',
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
      'proxy-connection': 'keep-alive',
      'keep-alive': '300',
      // Without "Connection: upgrade" this is an ordinary request that merely names a protocol.
      upgrade: 'h2c',
      'http2-settings': 'AAMAAABkAAQAAP__',
      'x-custom': 'kept',
  });
  t.equal(r.status, 200);
  const got = legacy.seen[0]!.headers;
  for (const h of ['x-client-private', 'te', 'proxy-authorization', 'proxy-connection', 'keep-alive', 'upgrade', 'http2-settings', 'connection']) {
    // undici sets its own Connection toward the upstream; any other header must be gone.
    const own = h === 'connection' && (got[h] === 'keep-alive' || got[h] === 'close');
    t.ok(got[h] === undefined || own, `request ${h} dropped (${String(got[h])})`);
  }
  t.equal(got['x-custom'], 'kept');
  t.notOk(r.headers['x-upstream-private'], 'response header named in Connection dropped');
  t.notOk(r.headers['proxy-authenticate']);
  t.notOk(r.headers['proxy-authentication-info']);
  t.notOk(r.headers.upgrade, 'upstream Upgrade not relayed on an ordinary response');
  t.notOk(r.headers['keep-alive'] === 'timeout=5', 'upstream keep-alive not relayed');
  t.equal(r.headers['x-kept'], 'yes');
});

t.test('a chunked upload: its Trailer header and trailers are not relayed, its body is', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const { proxy } = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate)));
  const u = new URL(proxy);
  const answer = await new Promise<string>((resolve) => {
    let out = '';
    const sock = connect(Number(u.port), u.hostname, () =>
      sock.write('POST /api/t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\nx-t: 1\r\n\r\n'),
    );
    sock.on('data', (d) => (out += d.toString()));
    sock.on('close', () => resolve(out));
  });
  t.match(answer, /^HTTP\/1\.1 200/);
  const seen = legacy.seen.at(-1)!;
  t.equal(seen.headers.trailer, undefined, 'Trailer dropped');
  t.equal(seen.headers['x-t'], undefined, 'the trailer field never became a header');
  t.equal(seen.bodyBytes, 3, 'the body arrived whole');
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

t.test('a malformed upstream response header becomes a 502, not a crash', async (t) => {
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

t.test('each response relays its own header values, as names and values change between responses', async (t) => {
  // The proxy remembers header names (and each name's last value) by their bytes: every
  // response must still carry its own values, casing and hop-by-hop treatment.
  let n = 0;
  const legacy = await startUpstream(t, 'legacy', (_req, res) => {
    n++;
    const head: string[] = ['X-Seq', String(40 + (n % 10)), 'content-type', n % 2 ? 'text/plain' : 'text/html!', 'x-same', 'same'];
    head.push(n % 2 ? 'X-Mixed-Case' : 'x-mixed-case', `v${n % 3}`);
    if (n % 3 === 0) head.push('Connection', 'keep-alive, x-dropped', 'x-dropped', 'secret', 'X-Request-Id', `up-${n}`);
    else head.push('x-dropped', `kept-${n}`);
    head.push('set-cookie', `s=${n}`, 'set-cookie', `t=${n}`);
    res.writeHead(200, head);
    res.end('ok');
  });
  const candidate = await startUpstream(t, 'candidate');
  const { proxy } = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate)));
  for (let i = 1; i <= 12; i++) {
    const r = await rawPath(proxy, 'GET', '/api/h', undefined, { 'x-request-id': `client-${i}` });
    t.equal(r.status, 200);
    t.equal(r.headers['x-seq'], String(40 + (i % 10)), `response ${i}: its own value`);
    t.equal(r.headers['content-type'], i % 2 ? 'text/plain' : 'text/html!');
    t.equal(r.headers['x-same'], 'same');
    t.equal(r.headers['x-mixed-case'], `v${i % 3}`);
    t.same(r.headers['set-cookie'], [`s=${i}`, `t=${i}`]);
    if (i % 3 === 0) {
      t.notOk(r.headers['x-dropped'], `response ${i}: named in Connection, dropped`);
      t.equal(r.headers['x-request-id'], `up-${i}`, "the upstream's request id kept");
    } else {
      t.equal(r.headers['x-dropped'], `kept-${i}`, `response ${i}: not named in Connection, kept`);
      t.equal(r.headers['x-request-id'], `client-${i}`);
    }
  }
});

t.test("a client's x-cutover-shadow never reaches an upstream on a real request", async (t) => {
  // Candidates may dry-run requests marked as shadow (no payment, no email): a client setting the
  // mark on a real order would be told it succeeded while nothing happened.
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const marks = (h: string[]) => h.filter((v, i) => i % 2 === 0 && v.toLowerCase() === 'x-cutover-shadow');
  const toLegacy = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: false } }));
  await rawPath(toLegacy.proxy, 'POST', '/api/orders', '{"order":1}', { 'X-Cutover-Shadow': '1' });
  await rawPath(toLegacy.proxy, 'GET', '/api/cart', undefined, { 'x-cutover-shadow': '1' });
  const toCandidate = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 100 } }));
  await rawPath(toCandidate.proxy, 'POST', '/api/orders', '{"order":2}', { 'x-user-id': 'u1', 'x-cutover-shadow': '1' });
  t.equal(legacy.seen.length, 2);
  t.equal(candidate.seen.length, 1);
  for (const s of [...legacy.seen, ...candidate.seen]) t.same(marks(s.rawHeaders), [], `${s.method} ${s.url}: no shadow mark`);
});
