// README, Running a fleet: "The same state is exported for Prometheus as
// `cutover_flags_source_up` (1/0) and `cutover_flags_source_last_success_seconds` (seconds since
// the last successful fetch)", and the metrics table: "fleet mode only".
// The flag source here is an Unleash-shaped HTTP server on port 0 that can be made to fail.
import t from 'tap';
import { createServer as createHttp } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { http, servedBy } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';

const TOKEN = '*:development.unit-test-secret';
const FEATURES = {
  version: 2,
  features: [
    {
      name: 'f',
      type: 'release',
      enabled: true,
      project: 'default',
      stale: false,
      strategies: [{ name: 'flexibleRollout', constraints: [], parameters: { rollout: '100', stickiness: 'userId', groupId: 'f' }, variants: [] }],
      variants: [],
    },
  ],
  segments: [],
};

t.test('flag source metrics: up and a fresh last success while Unleash answers; 0 and an unchanged last success while it fails', async (t) => {
  let down = false;
  let fetches = 0;
  const sockets = new Set<Socket>();
  const unleash = createHttp((req, res) => {
    if (down) return void req.socket.destroy(); // an outage: every fetch fails on a reset connection
    req.resume();
    if (req.method === 'GET' && req.url?.startsWith('/api/client/features')) {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end(JSON.stringify(FEATURES));
    }
    res.writeHead(202);
    res.end();
  });
  unleash.on('connection', (s: Socket) => sockets.add(s));
  unleash.listen(0, '127.0.0.1');
  await once(unleash, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => unleash.close(() => r()));
  });
  const url = `http://127.0.0.1:${(unleash.address() as AddressInfo).port}/api`;

  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = {
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f' }],
  };
  const { proxy, admin } = await startCutover(t, await writeConfig(t, cfg), {
    serve: { drainTimeoutMs: 1000, unleash: { url, apiToken: TOKEN, refreshIntervalMs: 300, startupWaitMs: 3000, disableMetrics: true } },
  });
  const scrape = async () => {
    const m = parseProm((await http(`${admin}/metrics`)).text);
    const up = m.find('cutover_flags_source_up', { source: 'unleash' });
    const ago = m.find('cutover_flags_source_last_success_seconds', { source: 'unleash' });
    return { up: up[0]?.value, ago: ago[0]?.value, at: Date.now() };
  };

  await waitFor(async () => (await scrape()).up === 1, 5000, 'source up');
  t.equal(await servedBy(proxy, '/api/x', 'u1'), 'candidate', 'routing on the fetched toggle');
  // While Unleash answers, every refresh is a success: the age stays within a few refreshes.
  for (let i = 0; i < 3; i++) {
    const s = await scrape();
    t.equal(s.up, 1, 'cutover_flags_source_up is 1');
    t.ok(s.ago !== undefined && s.ago >= 0 && s.ago < 2, `last success is recent (${s.ago} s ago)`);
    await new Promise((r) => setTimeout(r, 400));
  }
  const fetchesUp = fetches;
  t.ok(fetchesUp >= 3, `cutover kept fetching (${fetchesUp} fetches)`);

  down = true;
  // A fetch counts as failed after the SDK's own retries (about 3 s).
  await waitFor(async () => (await scrape()).up === 0, 10_000, 'source down');
  const first = await scrape();
  await new Promise((r) => setTimeout(r, 1500));
  const later = await scrape();
  t.equal(later.up, 0, 'cutover_flags_source_up stays 0 during the outage');
  // Seconds since the last success grow with the clock: the last success itself did not move.
  const lastSuccessA = first.at - (first.ago ?? NaN) * 1000;
  const lastSuccessB = later.at - (later.ago ?? NaN) * 1000;
  t.ok(Math.abs(lastSuccessB - lastSuccessA) < 250, `the last success is unchanged (${Math.round(lastSuccessB - lastSuccessA)} ms apart)`);
  t.ok((later.ago ?? 0) >= 1.5, `and is as old as the outage at least (${later.ago} s ago)`);
  t.equal(fetches, fetchesUp, 'no fetch succeeded meanwhile');
  t.equal(await servedBy(proxy, '/api/x', 'u1'), 'candidate', 'routing keeps the last good state');

  down = false;
  await waitFor(async () => (await scrape()).up === 1, 10_000, 'source up again');
  const back = await scrape();
  t.ok(back.ago !== undefined && back.ago < 2, `the last success is recent again (${back.ago} s ago)`);
});

t.test('without an external flag source (flag files) neither metric is exported', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = {
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f' }],
  };
  const { admin } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: true, percentage: 100 } }));
  const m = parseProm((await http(`${admin}/metrics`)).text);
  t.same(m.find('cutover_flags_source_up'), [], 'no cutover_flags_source_up sample');
  t.same(m.find('cutover_flags_source_last_success_seconds'), [], 'no cutover_flags_source_last_success_seconds sample');
});
