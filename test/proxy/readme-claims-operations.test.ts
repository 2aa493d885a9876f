import t from 'tap';
import { Agent, request } from 'node:http';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';

// README claims from "Operations" that had no test of their own.

// "The proxy port serves neither: every path there is routed traffic."
t.test('/healthz and /readyz on the proxy port are routed traffic, not cutover probes', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const cfg = { upstreams: { legacy: { url: legacy.url } }, routes: [{ name: 'all', match: { path: '/' }, legacy: 'legacy' }] };
  const { proxy, admin } = await startCutover(t, await writeConfig(t, cfg));
  for (const p of ['/healthz', '/readyz']) {
    const r = await http(proxy + p);
    t.equal(r.json<{ served_by: string; url: string }>().served_by, 'legacy', `${p} on the proxy port reaches the upstream`);
    t.equal((await http(admin + p)).status, 200, `${p} is answered on the admin port`);
  }
  t.same(legacy.seen.map((s) => s.url), ['/healthz', '/readyz'], 'exactly the proxied requests reached legacy');
  const none = { upstreams: { legacy: { url: legacy.url } }, routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy' }] };
  const bare = await startCutover(t, await writeConfig(t, none));
  t.match((await http(`${bare.proxy}/healthz`)).json(), { error: 'no_route' }, 'unrouted: 404 no_route like any other path');
});

// "A forced candidate request skips the health gate (QA wants to reach it) but is still
// protected by fallback."
t.test('QA override: a forced candidate request skips the health gate, and still falls back', async (t) => {
  let mode: 'ok' | '500' = 'ok';
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    if (req.url === '/health') {
      res.writeHead(503); // probes keep the candidate out for the whole test
      return res.end();
    }
    req.resume();
    res.writeHead(mode === 'ok' ? 200 : 500, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ served_by: 'candidate' }));
  });
  const health = { path: '/health', interval: '50ms', timeout: '1s', unhealthyAfter: 1, healthyAfter: 1 };
  const cfg = {
    ...twoSided(legacy, candidate, { qaOverride: { secret: 'qa-secret-0123456789' } }),
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url, health } },
  };
  const { proxy, running } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: true, percentage: 100 } }));
  await waitFor(() => running.cutover.health.view().candidate?.healthy === false, 3000, 'candidate out on its probes');
  const via = async (force: boolean) => {
    const r = await http(`${proxy}/api/q`, { headers: { 'x-user-id': 'u1', ...(force && { 'x-cutover-force': 'candidate:qa-secret-0123456789' }) } });
    return `${r.status} ${r.json<{ served_by: string }>().served_by}`;
  };
  t.equal(await via(false), '200 legacy', "the flag's user goes to legacy while the candidate is out");
  t.equal(await via(true), '200 candidate', 'the forced request reaches the unhealthy candidate');
  mode = '500';
  t.equal(await via(true), '200 legacy', 'a forced request the candidate fails is answered by legacy');
});

// "The proxy's keep-alive timeout is 65 s, above the usual load-balancer idle timeout".
// Node's default is 5 s: an idle connection that outlives 6 s shows the longer timeout is set.
t.test('an idle keep-alive client connection outlives Node\'s default 5 s timeout', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const { proxy } = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate)));
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const u = new URL(proxy);
  const get = () =>
    new Promise<{ reused: boolean; connection: string | undefined }>((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: '/api/ka', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve({ reused: req.reusedSocket, connection: res.headers.connection }));
      });
      req.on('error', reject);
      req.end();
    });
  t.same(await get(), { reused: false, connection: 'keep-alive' }, 'first request opens the connection');
  let closed = false;
  const [sock] = Object.values(agent.freeSockets).flat();
  sock?.on('close', () => (closed = true));
  await new Promise((r) => setTimeout(r, 6000));
  t.notOk(closed, 'the proxy did not close it after 6 s idle');
  t.same(await get(), { reused: true, connection: 'keep-alive' }, 'the next request reuses it');
});
