import t from 'tap';
import { SignJWT, generateKeyPair, exportSPKI, exportJWK } from 'jose';
import { createServer } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { KeyObject } from 'node:crypto';
import { http, postJson, servedBy } from '../helpers/http.js';
import { serveArgs, spawnCutover, startCutover, startUpstream, twoSided, writeConfig } from '../helpers/servers.js';
import { bucketOf } from '../../src/routing/bucket.js';

t.test('users split by bucket, stick to their side, and move only forward', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 25 } });
  const { proxy, admin } = await startCutover(t, dirs);
  const users = Array.from({ length: 400 }, (_, i) => `user-${i}`);
  const side = async () => {
    const out = new Map<string, string>();
    for (let i = 0; i < users.length; i += 50) {
      const batch = users.slice(i, i + 50);
      const got = await Promise.all(batch.map((u) => servedBy(proxy, '/api/v1/orders/1', u)));
      batch.forEach((u, j) => out.set(u, got[j] as string));
    }
    return out;
  };
  const at25 = await side();
  for (const u of users) t.equal(at25.get(u), bucketOf('f', u) <= 25 ? 'candidate' : 'legacy', u) || t.bailout(u);
  t.same(await side(), at25, 'same users, same sides on a second pass');
  t.equal((await postJson(`${admin}/api/v1/flags/f`, { percentage: 50 })).status, 200, 'flag set to 50 %');
  const at50 = await side();
  for (const u of users) t.equal(at50.get(u), bucketOf('f', u) <= 50 ? 'candidate' : 'legacy', u) || t.bailout(u);
  t.ok(users.every((u) => at25.get(u) !== 'candidate' || at50.get(u) === 'candidate'), 'nobody moved back at 50%');
  const moved = users.filter((u) => at25.get(u) === 'legacy' && at50.get(u) === 'candidate').length;
  t.ok(moved > 0, `users moved forward to the candidate (${moved})`);
  t.equal((await postJson(`${admin}/api/v1/flags/f`, { enabled: false })).status, 200);
  t.ok([...(await side()).values()].every((s) => s === 'legacy'), 'rollback sends everyone to legacy at once');
});

t.test('cohort, exclusions and anonymous requests through the proxy', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), {
    f: { enabled: true, percentage: 0, cohort: ['pilot'], exclude: ['vip'] },
  });
  const { proxy, admin } = await startCutover(t, dirs);
  t.equal(await servedBy(proxy, '/api/a', 'pilot'), 'candidate');
  t.equal(await servedBy(proxy, '/api/a', 'someone'), 'legacy');
  t.equal(await servedBy(proxy, '/api/a'), 'legacy', 'no user id: legacy');
  await postJson(`${admin}/api/v1/flags/f`, { percentage: 100 });
  t.equal(await servedBy(proxy, '/api/a', 'vip'), 'legacy', 'excluded even at 100%');
  t.equal(await servedBy(proxy, '/api/a', 'someone'), 'candidate');
  await postJson(`${admin}/api/v1/flags/f`, { anonymous: 'candidate' });
  t.equal(await servedBy(proxy, '/api/a'), 'candidate', 'flag may send anonymous requests to the candidate');
});

t.test('two proxy processes route every user identically', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 40 } });
  const [a, b] = await Promise.all([spawnCutover(t, serveArgs(dirs)), spawnCutover(t, serveArgs(dirs))]);
  let differ = 0;
  let cand = 0;
  for (let i = 0; i < 300; i += 30) {
    const ids = Array.from({ length: 30 }, (_, j) => `p-${i + j}-é`);
    const ra = await Promise.all(ids.map((u) => servedBy(a!.proxy, '/api/z', u)));
    const rb = await Promise.all(ids.map((u) => servedBy(b!.proxy, '/api/z', u)));
    ra.forEach((s, j) => {
      if (s !== rb[j]) differ++;
      if (s === 'candidate') cand++;
    });
  }
  t.equal(differ, 0);
  t.ok(cand > 60 && cand < 180, `both sides used (${cand}/300 on candidate)`);
});

t.test('identity from cookie and verified JWT; forged tokens are not trusted', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = twoSided(legacy, candidate, {
    identity: { sources: [{ jwt: { secret: 'test-secret-at-least-32-bytes-long!!', claim: 'sub' } }, { cookie: 'uid' }] },
  });
  const dirs = await writeConfig(t, cfg, { f: { enabled: true, percentage: 0, cohort: ['alice'] } });
  const { proxy } = await startCutover(t, dirs);
  const sign = (secret: string, sub: string) =>
    new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setExpirationTime('5m').sign(new TextEncoder().encode(secret));
  const good = await sign('test-secret-at-least-32-bytes-long!!', 'alice');
  const forged = await sign('some-other-secret-at-least-32-bytes', 'alice');
  const via = async (headers: Record<string, string>) => (await http(`${proxy}/api/x`, { headers })).json<{ served_by: string }>().served_by;
  t.equal(await via({ authorization: `Bearer ${good}` }), 'candidate', 'verified JWT sub');
  t.equal(await via({ authorization: `Bearer ${forged}` }), 'legacy', 'forged JWT is ignored');
  t.equal(await via({ 'x-user-id': 'alice' }), 'legacy', 'the default header source is not configured here');
  t.equal(await via({ cookie: 'a=1; uid=alice' }), 'candidate', 'falls through to the cookie source');
  t.equal(await via({ authorization: `Bearer ${forged}`, cookie: 'uid=alice' }), 'candidate', 'bad token then next source');
});

t.test('unmatched requests: default upstream, else 404 JSON', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const withDefault = await writeConfig(t, twoSided(legacy, candidate, { default: 'legacy' }));
  const a = await startCutover(t, withDefault);
  t.equal(await servedBy(a.proxy, '/elsewhere', 'u'), 'legacy');
  const noDefault = await writeConfig(t, twoSided(legacy, candidate));
  const b = await startCutover(t, noDefault);
  const r = await http(`${b.proxy}/elsewhere?x=1`);
  t.equal(r.status, 404);
  t.match(r.json(), { error: 'no_route', message: 'no route matches GET /elsewhere' });
  t.ok(r.headers['x-request-id']);
});

t.test('path tricks route and forward by the normalized path', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = {
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
    routes: [
      { name: 'customers', match: { path: '/api/v1/customers' }, legacy: 'legacy', candidate: 'candidate', flag: 'f' },
      { name: 'orders', match: { path: '/api/v1/orders' }, legacy: 'legacy' },
    ],
  };
  const dirs = await writeConfig(t, cfg, { f: { enabled: true, percentage: 100 } });
  const { proxy } = await startCutover(t, dirs);
  const { rawPath } = await import('../helpers/http.js');
  for (const p of ['/api/v1/customers/../orders/7?q=1', '/api/v1/customers/%2e%2e/orders/7?q=1', '//api//v1/orders/7?q=1']) {
    const r = await rawPath(proxy, 'GET', p);
    const body = JSON.parse(r.text) as { served_by: string; url: string };
    t.equal(body.served_by, 'legacy', `${p} is an orders request`);
    t.equal(body.url, '/api/v1/orders/7?q=1', `${p} forwarded normalized`);
  }
});

t.test('escaped unreserved characters cannot slip past a route: routed and forwarded decoded', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  // At 100 % with a default upstream: a request that missed the route would be served by legacy.
  const cfg = { ...twoSided(legacy, candidate, { default: 'legacy' }, '/api/v1/customers') };
  const dirs = await writeConfig(t, cfg, { f: { enabled: true, percentage: 100 } });
  const { proxy } = await startCutover(t, dirs);
  const { rawPath } = await import('../helpers/http.js');
  const cases: Array<[string, string, string, string]> = [
    ['GET', '/api/v1/customer%73/1?q=%41', 'candidate', '/api/v1/customers/1?q=%41'],
    ['POST', '/api/v1/%63ustomers/1', 'candidate', '/api/v1/customers/1'],
    ['GET', '/api/v1/customers%2f1', 'legacy', '/api/v1/customers%2F1'],
  ];
  for (const [method, p, side, forwarded] of cases) {
    const r = await rawPath(proxy, method, p, undefined, { 'x-user-id': 'u1' });
    const body = JSON.parse(r.text) as { served_by: string; url: string };
    t.equal(body.served_by, side, `${method} ${p} served by ${side}`);
    t.equal(body.url, forwarded, `${method} ${p} forwarded as the path that was matched`);
  }
});

t.test('a route listing GET also takes HEAD: both answered by the same side', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = {
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
    default: 'legacy',
    routes: [{ name: 'customers', match: { path: '/api/v1/customers', methods: ['GET'] }, legacy: 'legacy', candidate: 'candidate', flag: 'f' }],
  };
  const dirs = await writeConfig(t, cfg, { f: { enabled: true, percentage: 100 } });
  const { proxy } = await startCutover(t, dirs);
  const { rawPath } = await import('../helpers/http.js');
  for (const method of ['GET', 'HEAD']) {
    const r = await rawPath(proxy, method, '/api/v1/customers/1', undefined, { 'x-user-id': 'u1' });
    t.equal(r.headers['x-served-by'], 'candidate', `${method} served by the candidate`);
  }
  t.equal(candidate.seen.at(-1)?.method, 'HEAD', 'HEAD reached the candidate as HEAD');
  const post = await rawPath(proxy, 'POST', '/api/v1/customers/1', undefined, { 'x-user-id': 'u1' });
  t.equal(post.headers['x-served-by'], 'legacy', 'other methods still fall through to the default');
});

t.test('JWT identity with a PEM public key, a JWKS URL, and explicitly unverified tokens', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const { publicKey, privateKey } = await generateKeyPair('RS256');
  const other = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256' };
  const jwks = createServer((_req, res) => res.end(JSON.stringify({ keys: [jwk] })));
  jwks.listen(0, '127.0.0.1');
  await once(jwks, 'listening');
  t.teardown(() => jwks.close());
  const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
  const sign = (key: CryptoKey | KeyObject, sub: string, exp = '5m') =>
    new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setSubject(sub).setExpirationTime(exp).sign(key);
  const good = await sign(privateKey, 'alice');
  const forged = await sign(other.privateKey, 'alice');
  const expired = await sign(privateKey, 'alice', '-1m');
  const sources = {
    pem: { jwt: { publicKey: await exportSPKI(publicKey) } },
    jwks: { jwt: { jwksUrl } },
    unverified: { jwt: { unverified: true as const } },
  };
  for (const [kind, source] of Object.entries(sources)) {
    const cfg = twoSided(legacy, candidate, { identity: { sources: [source] } });
    const { proxy } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: true, percentage: 0, cohort: ['alice'] } }));
    const via = async (token: string) => (await http(`${proxy}/api/x`, { headers: { authorization: `Bearer ${token}` } })).json<{ served_by: string }>().served_by;
    t.equal(await via(good), 'candidate', `${kind}: valid token identifies alice`);
    t.equal(await via(expired), 'legacy', `${kind}: expired token is not trusted`);
    t.equal(await via(forged), kind === 'unverified' ? 'candidate' : 'legacy', `${kind}: ${kind === 'unverified' ? 'signature not checked, as configured' : 'wrong signature ignored'}`);
  }
});
