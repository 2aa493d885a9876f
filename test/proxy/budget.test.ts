import t, { type Test } from 'tap';
import { createServer, request } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

// The route's budget is the whole request (Envoy's route timeout): no attempt outlives it, the
// candidate's included. (A timeout longer than the budget is refused at load: config tests.)
// The upstreams' headersTimeout of 2 s stands in for "much later than the budget".
const ALL_IN = { f: { enabled: true, percentage: 100 } };

function config(legacyUrl: string, candidateUrl: string, route: Record<string, unknown>): ConfigInput {
  return {
    upstreams: { legacy: { url: legacyUrl, headersTimeout: '2s' }, candidate: { url: candidateUrl, headersTimeout: '2s' } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', ...route }],
  } as ConfigInput;
}

async function timed(t: Test, route: Record<string, unknown>, legacyHangs: boolean) {
  const legacy = await startUpstream(t, 'legacy', legacyHangs ? () => undefined : undefined);
  const candidate = await startUpstream(t, 'candidate', () => undefined); // never answers
  const { proxy } = await startCutover(t, await writeConfig(t, config(legacy.url, candidate.url, route), ALL_IN));
  const started = Date.now();
  const r = await http(`${proxy}/api/b`, { headers: { 'x-user-id': 'u1' } });
  return { r, ms: Date.now() - started, legacy, candidate };
}

t.test('a budget without a timeout bounds a hanging candidate: 504 at the budget', async (t) => {
  const { r, ms } = await timed(t, { budget: '300ms' }, false);
  t.equal(r.status, 504);
  t.ok(ms >= 290 && ms < 1000, `answered at the budget (${ms} ms), not the candidate's 2 s headersTimeout`);
});

t.test('hedged, both hanging: the request ends at the budget', async (t) => {
  const { r, ms, legacy } = await timed(t, { budget: '300ms', hedge: '50ms' }, true);
  t.equal(legacy.seen.length, 1, 'the hedge asked legacy too');
  t.equal(r.status, 504);
  t.ok(ms >= 290 && ms < 1000, `answered at the budget (${ms} ms)`);
});

// A slow upload on a replayWrites route (the body is buffered before the candidate is asked) must
// not eject a candidate that answers in 60 ms. The budget starts once such a body is in
// (budget-upload.test.ts), so the upload no longer cuts the candidate's timer at all; a budget
// spent before dispatch (a JWT verified first) still can: see the next test.
t.test('a slow upload buffered first is not held against the candidate', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    req.on('end', () => setTimeout(() => res.end('candidate'), 60));
  });
  const route = { timeout: '300ms', budget: '300ms', replayWrites: { maxBody: '1mb' } };
  const { proxy, admin } = await startCutover(t, await writeConfig(t, config(legacy.url, candidate.url, route), ALL_IN));
  const post = (key: string, uploadMs: number) =>
    new Promise<number>((resolve, reject) => {
      const u = new URL(`${proxy}/api/x`);
      const r = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'x-user-id': 'u1', 'idempotency-key': key, 'content-length': '2' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      r.on('error', reject);
      r.write('a');
      setTimeout(() => r.end('b'), uploadMs);
    });
  const statuses: number[] = [];
  for (let i = 0; i < 4; i++) statuses.push(await post(`slow-${i}`, 260));
  t.ok(statuses.every((s) => s === 504 || s === 200), `answered (${statuses.join(', ')})`);
  const status = await http(`${admin}/api/v1/status`);
  const health = status.json<{ upstreams: { name: string; health: unknown }[] }>().upstreams.find((u) => u.name === 'candidate')?.health;
  t.match(health, { healthy: true, consecutiveFailures: 0, ejections: 0 }, 'the candidate is not blamed for the time the upload took');
  t.equal(await post('fast', 10), 200, 'a quick upload is served by the candidate');
});

// A budget spent before the candidate is asked (here verifying a JWT against a slow JWKS) leaves
// it a timer far below its own timeout: that timeout is not the candidate's, and must not eject it.
t.test('a candidate timeout the budget cut short (a slow JWT check first) is not held against it', async (t) => {
  const key = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(key.publicKey)), kid: 'k1', alg: 'RS256' };
  const jwks = createServer((_req, res) => setTimeout(() => res.setHeader('content-type', 'application/json').end(JSON.stringify({ keys: [jwk] })), 200));
  jwks.listen(0, '127.0.0.1');
  await once(jwks, 'listening');
  t.teardown(() => {
    jwks.closeAllConnections();
    jwks.close();
  });
  const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    setTimeout(() => res.end('candidate'), 250);
  });
  const cfg = { ...config(legacy.url, candidate.url, { timeout: '300ms', budget: '300ms' }), identity: { sources: [{ jwt: { jwksUrl } }] } } as ConfigInput;
  const { proxy, admin } = await startCutover(t, await writeConfig(t, cfg, ALL_IN));
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'RS256', kid: 'k1' }).setSubject('alice').setExpirationTime('1h').sign(key.privateKey);
  const r = await http(`${proxy}/api/x`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(candidate.seen.length, 1, 'the candidate was asked, with what the JWKS fetch left of the budget');
  t.equal(r.status, 504, 'it timed out, and nothing was left for legacy');
  const status = await http(`${admin}/api/v1/status`);
  const health = status.json<{ upstreams: { name: string; health: unknown }[] }>().upstreams.find((u) => u.name === 'candidate')?.health;
  t.match(health, { healthy: true, consecutiveFailures: 0, ejections: 0 }, 'the candidate is not blamed for the time the JWT check took');
});
