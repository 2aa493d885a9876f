import t from 'tap';
import { connect } from 'node:net';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, twoSided, writeConfig } from '../helpers/servers.js';

/** Sends raw bytes and returns what came back before the server closed (or 1.5 s passed). */
function raw(base: string, bytes: string, holdMs = 1500): Promise<string> {
  const u = new URL(base);
  return new Promise((resolve) => {
    let out = '';
    const sock = connect(Number(u.port), u.hostname, () => sock.write(bytes));
    sock.on('data', (d) => (out += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', () => resolve(out));
    setTimeout(() => {
      sock.destroy();
      resolve(out);
    }, holdMs);
  });
}

t.test('malformed HTTP is answered 4xx and never forwarded', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = twoSided(legacy, candidate, { limits: { maxBody: '1kb', maxHeaderSize: '4kb' } });
  const { proxy } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: true, percentage: 50 } }));
  const cases: Array<[string, string, RegExp]> = [
    ['CL and TE', 'POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', /^HTTP\/1\.1 400/],
    ['duplicate CL', 'POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!', /^HTTP\/1\.1 400/],
    ['obs-fold', 'GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: a\r\n  folded\r\n\r\n', /^HTTP\/1\.1 400/],
    ['invalid header byte', 'GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: a\u0001b\r\n\r\n', /^HTTP\/1\.1 400/],
    ['invalid header name', 'GET /api/x HTTP/1.1\r\nHost: a\r\nX A: b\r\n\r\n', /^HTTP\/1\.1 400/],
    ['oversized headers', `GET /api/x HTTP/1.1\r\nHost: a\r\nX-A: ${'a'.repeat(5000)}\r\n\r\n`, /^HTTP\/1\.1 431/],
    ['bare LF', 'GET /api/x HTTP/1.1\nHost: a\n\n', /^HTTP\/1\.1 400/],
    ['declared body over the limit', `POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n${'x'.repeat(2000)}`, /^HTTP\/1\.1 413/],
    [
      'chunked body over the limit',
      `POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n${'400\r\n' + 'y'.repeat(1024) + '\r\n'}${'400\r\n' + 'y'.repeat(1024) + '\r\n'}0\r\n\r\n`,
      /^HTTP\/1\.1 413/,
    ],
  ];
  for (const [what, bytes, expected] of cases) {
    const before = legacy.seen.length + candidate.seen.length;
    const answer = await raw(proxy, bytes);
    t.match(answer, expected, what);
    if (!what.startsWith('chunked')) t.equal(legacy.seen.length + candidate.seen.length, before, `${what}: nothing forwarded`);
  }
  t.equal((await http(`${proxy}/api/ok`, { headers: { 'x-user-id': 'u' } })).status, 200, 'still serving');
  const small = await http(`${proxy}/api/ok`, { method: 'POST', body: 'x'.repeat(1000) });
  t.equal(small.status, 200, 'a body under the limit passes');
});

t.test('an absolute-form request target routes by its path, as RFC 9112 requires', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const { proxy } = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: false } }));
  const answer = await raw(proxy, 'GET http://shop.example.com/api/v1/../v1/customers/7?x=1 HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n');
  t.match(answer, /^HTTP\/1\.1 200/, 'routed');
  t.equal(legacy.seen.at(-1)?.url, '/api/v1/customers/7?x=1', 'the upstream gets the origin-form');
  const outside = await raw(proxy, 'GET http://shop.example.com/other HTTP/1.1\r\nHost: shop.example.com\r\nConnection: close\r\n\r\n');
  t.match(outside, /^HTTP\/1\.1 404/, 'a path no route matches is still 404');
  t.equal(legacy.seen.length + candidate.seen.length, 1, 'nothing else forwarded');
  t.equal(legacy.seen.at(-1)?.headers['x-forwarded-host'], 'shop.example.com');

  // The target's authority replaces the Host header (RFC 9112 3.2.2): preserveHost forwards it.
  const cfg = twoSided(legacy, candidate);
  cfg.upstreams!.legacy = { url: legacy.url, preserveHost: true };
  const kept = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: false } }));
  const answer2 = await raw(kept.proxy, 'GET http://shop.example.com:8080/api/v1/orders HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n');
  t.match(answer2, /^HTTP\/1\.1 200/);
  t.equal(legacy.seen.at(-1)?.headers.host, 'shop.example.com:8080', 'Host from the target, not the header');
  t.equal(legacy.seen.at(-1)?.headers['x-forwarded-host'], 'shop.example.com:8080');
});

t.test('slowloris: a client that never finishes its headers is cut off', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = twoSided(legacy, candidate, { limits: { headersTimeout: '300ms' } });
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  const started = Date.now();
  const answer = await raw(proxy, 'GET /api/x HTTP/1.1\r\nHost: a\r\nX-Slow: 1\r\n', 5000);
  t.ok(Date.now() - started < 2500, `closed after ${Date.now() - started} ms`);
  t.ok(answer === '' || answer.startsWith('HTTP/1.1 408'), `answered 408 or just closed (got ${JSON.stringify(answer.slice(0, 40))})`);
  t.equal(legacy.seen.length, 0);
});

t.test('an idle keep-alive connection outlives headersTimeout', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = twoSided(legacy, candidate, { limits: { headersTimeout: '300ms' } });
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  const u = new URL(proxy);
  const replies = await new Promise<string>((resolve) => {
    let out = '';
    const sock = connect(Number(u.port), u.hostname, () => {
      sock.write('GET /api/1 HTTP/1.1\r\nHost: a\r\n\r\n');
      setTimeout(() => sock.write('GET /api/2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'), 800);
    });
    sock.on('data', (d) => (out += d.toString()));
    sock.on('close', () => resolve(out));
    setTimeout(() => sock.destroy(), 3000);
  });
  t.equal(replies.match(/HTTP\/1\.1 200/g)?.length, 2, 'both requests on one connection answered');
});

t.test('the QA override needs the secret and never reaches upstreams', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = twoSided(legacy, candidate, { qaOverride: { secret: 'qa-secret-0123456789' } });
  const { proxy } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: false } }));
  const via = async (value?: string) =>
    (await http(`${proxy}/api/q`, { headers: { 'x-user-id': 'u1', ...(value !== undefined && { 'x-cutover-force': value }) } })).json<{ served_by: string }>().served_by;
  t.equal(await via(), 'legacy');
  t.equal(await via('candidate:qa-secret-0123456789'), 'candidate', 'forced with the secret');
  t.equal(await via('candidate:wrong'), 'legacy', 'wrong secret ignored');
  t.equal(await via('candidate'), 'legacy', 'no secret ignored');
  t.ok([...legacy.seen, ...candidate.seen].every((s) => s.headers['x-cutover-force'] === undefined), 'header stripped');
});
