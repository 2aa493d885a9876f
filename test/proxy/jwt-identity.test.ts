import t, { type Test } from 'tap';
import { SignJWT, generateKeyPair, exportJWK, type JWK } from 'jose';
import { createServer } from 'node:http';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';

type Key = Awaited<ReturnType<typeof generateKeyPair>>;

/** A real JWKS endpoint whose keys and health the test changes, counting the requests it gets. */
async function startJwks(t: Test, keys: JWK[]) {
  const state = { keys, down: false, hang: false, hits: 0 };
  const server = createServer((_req, res) => {
    state.hits++;
    if (state.hang) return; // accepts, never answers
    if (state.down) {
      res.statusCode = 503;
      return res.end('down');
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ keys: state.keys }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return Object.assign(state, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json` });
}

const jwkOf = async (key: Key, kid: string): Promise<JWK> => ({ ...(await exportJWK(key.publicKey)), kid, alg: 'RS256' });
const sign = (key: Key, kid: string, sub: string) =>
  new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid }).setSubject(sub).setExpirationTime('1h').sign(key.privateKey);

/** cutover with one JWKS identity source; `via(token)` answers which side served the request. */
async function proxyWith(t: Test, jwksUrl: string, cohort: string[], logger?: Logger, jwksTimeout?: string) {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = twoSided(legacy, candidate, { identity: { sources: [{ jwt: { jwksUrl, ...(jwksTimeout !== undefined && { jwksTimeout }) } }] } });
  const { proxy } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: true, percentage: 0, cohort } }), logger ? { logger } : {});
  return async (token: string) =>
    (await http(`${proxy}/api/x`, { headers: { authorization: `Bearer ${token}` } })).json<{ served_by: string }>().served_by;
}

t.test('a JWKS outage is not remembered per token, and a burst during it does not stampede the JWKS', async (t) => {
  const k1 = await generateKeyPair('RS256');
  const jwks = await startJwks(t, [await jwkOf(k1, 'k1')]);
  const users = Array.from({ length: 20 }, (_, i) => `user-${i}`);
  const via = await proxyWith(t, jwks.url, ['alice', ...users]);
  const alice = await sign(k1, 'k1', 'alice');
  const tokens = await Promise.all(users.map((u) => sign(k1, 'k1', u)));
  jwks.down = true;
  const burst = await Promise.all(Array.from({ length: 20 }, () => via(alice)));
  t.ok(burst.every((s) => s === 'legacy'), "JWKS answers 503: a burst with alice's token is anonymous");
  t.equal(jwks.hits, 1, 'the burst shared one JWKS request');
  const started = Date.now();
  for (const [i, tok] of tokens.entries()) t.equal(await via(tok), 'legacy', `${users[i]}: anonymous while the JWKS is down`);
  // Retries come 1 s, then 2 s, ... after a failure: however slow this machine, 20 requests are not 20 fetches.
  const elapsed = Date.now() - started;
  t.ok(jwks.hits <= 1 + Math.ceil(elapsed / 1000), `${jwks.hits} JWKS requests in all for 40 requests over ${elapsed} ms`);
  jwks.down = false;
  const back = Date.now();
  await waitFor(async () => (await via(alice)) === 'candidate', 5000, 'alice to be identified again');
  t.pass(`the JWKS is back: alice is alice again after ${Date.now() - back} ms (her failure was not cached)`);
  t.equal(await via(tokens[3] as string), 'candidate', 'and so is everyone else');
});

t.test("a JWKS outage is in cutover's log: a warning per failed fetch, a line when it answers again", async (t) => {
  const k1 = await generateKeyPair('RS256');
  const jwks = await startJwks(t, [await jwkOf(k1, 'k1')]);
  jwks.down = true;
  const lines: Array<{ level: number; msg: string }> = [];
  const logger = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(c.toString())), cb()) }));
  const via = await proxyWith(t, jwks.url, ['alice'], logger);
  const alice = await sign(k1, 'k1', 'alice');
  t.equal(await via(alice), 'legacy', 'JWKS answers 503: anonymous');
  t.match(
    lines.filter((l) => l.msg.startsWith('JWKS')),
    [{ level: 40, msg: 'JWKS fetch failed: its users are anonymous until it answers', jwksUrl: jwks.url, retryInMs: 1000, err: /Expected 200 OK/ }],
  );
  jwks.down = false;
  await waitFor(async () => (await via(alice)) === 'candidate', 5000, 'alice to be identified again');
  t.match(lines.filter((l) => l.msg.startsWith('JWKS')).at(-1), { level: 30, msg: 'JWKS answers again', jwksUrl: jwks.url });
});

t.test('a token whose header names an alg no key serves is a bad token, not a JWKS outage', async (t) => {
  const k1 = await generateKeyPair('RS256');
  const jwks = await startJwks(t, [await jwkOf(k1, 'k1')]);
  const lines: Array<{ level: number; msg: string }> = [];
  const logger = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(JSON.parse(c.toString())), cb()) }));
  const via = await proxyWith(t, jwks.url, ['alice', 'mallory'], logger);
  t.equal(await via(await sign(k1, 'k1', 'alice')), 'candidate', 'the key set is fetched and works');
  const hits = jwks.hits;
  // Signed with a made-up HS256 secret, claiming the JWKS's kid: no RSA key verifies HS256.
  const forged = await new SignJWT({}).setProtectedHeader({ alg: 'HS256', kid: 'k1' }).setSubject('mallory').setExpirationTime('1h').sign(new TextEncoder().encode('x'.repeat(32)));
  for (let i = 0; i < 3; i++) t.equal(await via(forged), 'legacy', 'the forged token is anonymous');
  t.same(lines.filter((l) => l.msg.startsWith('JWKS')), [], 'no JWKS outage reported');
  t.equal(jwks.hits, hits, 'and the JWKS is not fetched again for it');
  t.equal(await via(await sign(k1, 'k1', 'alice')), 'candidate', 'real tokens still verify');
});

t.test('a hanging JWKS holds requests for the JWKS timeout (1 s by default), not 5 s', async (t) => {
  const k1 = await generateKeyPair('RS256');
  const jwks = await startJwks(t, [await jwkOf(k1, 'k1')]);
  jwks.hang = true;
  const alice = await sign(k1, 'k1', 'alice');
  const timed = async (via: (token: string) => Promise<string>) => {
    const started = Date.now();
    const side = await via(alice);
    return { side, ms: Date.now() - started };
  };
  const byDefault = await timed(await proxyWith(t, jwks.url, ['alice']));
  t.equal(byDefault.side, 'legacy', 'no keys: anonymous');
  t.ok(byDefault.ms >= 900 && byDefault.ms < 2500, `default: answered after ${byDefault.ms} ms`);
  const short = await timed(await proxyWith(t, jwks.url, ['alice'], undefined, '200ms'));
  t.equal(short.side, 'legacy');
  t.ok(short.ms >= 150 && short.ms < 900, `jwksTimeout: 200ms: answered after ${short.ms} ms`);
});

t.test('concurrent first requests share one JWKS fetch', async (t) => {
  const k1 = await generateKeyPair('RS256');
  const jwks = await startJwks(t, [await jwkOf(k1, 'k1')]);
  const via = await proxyWith(t, jwks.url, ['alice']);
  const alice = await sign(k1, 'k1', 'alice');
  const got = await Promise.all(Array.from({ length: 30 }, () => via(alice)));
  t.ok(got.every((s) => s === 'candidate'), 'all 30 identified alice');
  t.equal(jwks.hits, 1, 'one JWKS request');
});

t.test('verdicts are cached per token, a key the JWKS did not list yet is not, and fetched keys outlive an outage', async (t) => {
  // jose refetches a JWKS for an unknown kid only 30 s after its last fetch: this test waits that out once.
  t.setTimeout(60_000);
  const [a, b, c] = await Promise.all([generateKeyPair('RS256'), generateKeyPair('RS256'), generateKeyPair('RS256')]);
  const rotating = await startJwks(t, [await jwkOf(a, 'k1')]);
  const via = await proxyWith(t, rotating.url, ['alice', 'bob', 'carol']);
  const good = await sign(a, 'k1', 'alice');
  const forged = await sign(b, 'k1', 'bob');
  const rotated = await sign(c, 'k2', 'carol');
  t.equal(await via(good), 'candidate', 'alice verified');
  t.equal(await via(forged), 'legacy', 'bad signature: anonymous');
  t.equal(await via(rotated), 'legacy', 'kid k2 not in the JWKS (yet): anonymous');
  // The issuer rotates: k1 is now key b (so alice's token would no longer verify, bob's would), k2 appears.
  rotating.keys = [await jwkOf(b, 'k1'), await jwkOf(c, 'k2')];

  const outage = await startJwks(t, [await jwkOf(a, 'k1')]);
  const viaOutage = await proxyWith(t, outage.url, ['alice', 'dave']);
  t.equal(await viaOutage(good), 'candidate', 'second proxy: keys fetched');
  outage.down = true;

  await new Promise((r) => setTimeout(r, 31_000));
  t.equal(await via(rotated), 'candidate', 'after the cooldown jose refetches: carol is identified (her miss was not cached)');
  t.equal(rotating.hits, 2);
  t.equal(await via(good), 'candidate', "alice's verified token is answered from the cache, not verified again");
  t.equal(await via(forged), 'legacy', "bob's bad signature is answered from the cache, not verified again");

  t.equal(await viaOutage(await sign(c, 'k9', 'alice')), 'legacy', 'unknown kid: the refetch fails (JWKS down)');
  t.equal(outage.hits, 2);
  t.equal(await viaOutage(await sign(a, 'k1', 'dave')), 'candidate', 'during the outage a new token with a known key still verifies');
  t.equal(outage.hits, 2, 'without asking the JWKS again');
});

t.test('unverified tokens still have to match the configured issuer and audience', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const jwt = { unverified: true as const, issuer: 'https://auth.example.com', audience: 'shop' };
  const cfg = twoSided(legacy, candidate, { identity: { sources: [{ jwt }] } });
  const { proxy } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: true, percentage: 0, cohort: ['alice'] } }));
  const via = async (token: string) =>
    (await http(`${proxy}/api/x`, { headers: { authorization: `Bearer ${token}` } })).json<{ served_by: string }>().served_by;
  const other = await generateKeyPair('RS256');
  const token = (iss: string, aud: string | string[], exp = '1h') =>
    new SignJWT({}).setProtectedHeader({ alg: 'RS256' }).setSubject('alice').setIssuer(iss).setAudience(aud).setExpirationTime(exp).sign(other.privateKey);
  t.equal(await via(await token('https://auth.example.com', 'shop')), 'candidate', 'our issuer and audience: alice (signature not checked)');
  t.equal(await via(await token('https://auth.example.com', ['billing', 'shop'])), 'candidate', 'audience among several');
  t.equal(await via(await token('https://evil', 'shop')), 'legacy', 'another issuer: anonymous');
  t.equal(await via(await token('https://auth.example.com', 'billing')), 'legacy', "another service's audience: anonymous");
  t.equal(await via(await token('https://auth.example.com', 'shop', '-1m')), 'legacy', 'expired: anonymous');
  t.equal(await via('not.a-jwt'), 'legacy', 'garbage: anonymous');
});

t.test('unverified tokens still have to be signed with a configured algorithm, if algorithms are set', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = twoSided(legacy, candidate, { identity: { sources: [{ jwt: { unverified: true as const, algorithms: ['RS256', 'ES256'] } }] } });
  const { proxy } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: true, percentage: 0, cohort: ['alice'] } }));
  const via = async (token: string) =>
    (await http(`${proxy}/api/x`, { headers: { authorization: `Bearer ${token}` } })).json<{ served_by: string }>().served_by;
  const rsa = await generateKeyPair('RS256');
  const signed = (alg: string, key: Parameters<SignJWT['sign']>[0]) => new SignJWT({}).setProtectedHeader({ alg }).setSubject('alice').setExpirationTime('1h').sign(key);
  t.equal(await via(await signed('RS256', rsa.privateKey)), 'candidate', 'RS256 is configured: alice');
  t.equal(await via(await signed('HS256', new TextEncoder().encode('x'.repeat(32)))), 'legacy', 'HS256 is not: anonymous');
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"alice"}').toString('base64url')}.`;
  t.equal(await via(none), 'legacy', 'alg none: anonymous');
  const noAlg = `${Buffer.from('{"typ":"JWT"}').toString('base64url')}.${Buffer.from('{"sub":"alice"}').toString('base64url')}.x`;
  t.equal(await via(noAlg), 'legacy', 'no alg at all: anonymous');
});

t.test('a token not valid yet is anonymous only until its nbf; a verified one is trusted only until its exp', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const secret = 'a-shared-secret-for-this-test-only';
  const cfg = twoSided(legacy, candidate, { identity: { sources: [{ jwt: { secret } }] } });
  const { proxy } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: true, percentage: 0, cohort: ['alice', 'bob'] } }));
  const via = async (token: string) =>
    (await http(`${proxy}/api/x`, { headers: { authorization: `Bearer ${token}` } })).json<{ served_by: string }>().served_by;
  const key = new TextEncoder().encode(secret);
  const sleepUntil = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms - Date.now())));

  // The issuer's clock is 2 s ahead of ours: the token becomes valid here by itself.
  const nbf = Math.floor(Date.now() / 1000) + 2;
  const early = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setNotBefore(nbf).setExpirationTime('1h').sign(key);
  t.equal(await via(early), 'legacy', 'nbf ahead: anonymous for now');
  await sleepUntil(nbf * 1000 + 50);
  t.equal(await via(early), 'candidate', 'past its nbf: alice (the early verdict was not kept for a minute)');

  // A token with under a second left: 400-500 ms after it is verified, it expires.
  while (Date.now() % 1000 < 500 || Date.now() % 1000 >= 600) await new Promise((r) => setTimeout(r, 10));
  const exp = Math.ceil(Date.now() / 1000);
  const short = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('bob').setExpirationTime(exp).sign(key);
  t.equal(await via(short), 'candidate', 'bob, while his token is valid');
  await sleepUntil(exp * 1000 + 100);
  t.equal(await via(short), 'legacy', 'expired 100 ms ago: no longer bob (not cached past exp)');
});
