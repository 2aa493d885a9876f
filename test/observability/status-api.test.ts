import t from 'tap';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, writeConfig } from '../helpers/servers.js';
import { bucketOf } from '../../src/routing/bucket.js';
import { CutoverObserver } from '../../src/observability/observer-impl.js';
import { silentLogger } from '../../src/observability/logger.js';
import { statusBody, type StatusBody } from '../../src/admin/status-api.js';

t.test('GET /api/v1/status after real traffic: flags, health and per-target live stats', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    const fail = req.url?.includes('/fail');
    setTimeout(() => {
      res.writeHead(fail ? 503 : 200, { 'content-type': 'application/json' });
      res.end(fail ? '{}' : '{"served_by":"candidate"}');
    }, 5);
  });
  const dirs = await writeConfig(
    t,
    {
      upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
      default: 'legacy',
      routes: [
        { name: 'api', match: { path: '/api', methods: ['GET'] }, legacy: 'legacy', candidate: 'candidate', flag: 'f' },
        { name: 'orders', match: { path: '/orders' }, legacy: 'legacy', candidate: 'candidate', flag: 'not_created_yet' },
      ],
    },
    { f: { enabled: true, percentage: 50, description: 'half' }, spare: { enabled: false } },
  );
  const { proxy, admin } = await startCutover(t, dirs);

  const users = Array.from({ length: 40 }, (_, i) => `user-${i}`);
  const toCandidate = users.filter((u) => bucketOf('f', u) <= 50);
  t.ok(toCandidate.length > 5 && toCandidate.length < 35, `${toCandidate.length} of 40 users are in the 50 %`);
  for (const u of users) t.equal((await http(`${proxy}/api/ok`, { headers: { 'x-user-id': u } })).status, 200);
  for (const u of toCandidate.slice(0, 2)) t.equal((await http(`${proxy}/api/fail`, { headers: { 'x-user-id': u } })).status, 200);
  await http(`${proxy}/static/x.png`);

  const r = await http(`${admin}/api/v1/status`);
  t.equal(r.status, 200);
  t.match(r.headers['content-type'], /^application\/json/);
  const s = r.json<StatusBody>();
  t.ok(Date.parse(s.time) > 0);
  t.same(
    s.routes.map((x) => x.name),
    ['api', 'orders', 'default'],
    'configured routes, then the default upstream',
  );

  const api = s.routes[0] as StatusBody['routes'][number];
  t.same(api.match, { path: '/api', methods: ['GET'] });
  t.equal(api.flag, 'f');
  t.match(api.flag_state, { exists: true, enabled: true, percentage: 50 });
  t.equal(api.legacy.upstream, 'legacy');
  t.equal(api.candidate?.upstream, 'candidate');
  t.match(api.legacy.health, { healthy: true });
  t.match(api.candidate?.health, { healthy: true });

  const cand = api.candidate as NonNullable<typeof api.candidate>;
  t.equal(cand.requests_total, toCandidate.length + 2);
  t.same(cand.codes, { '200': toCandidate.length, '503': 2 });
  t.equal(cand['1m'].requests, toCandidate.length + 2);
  t.equal(cand['1m'].errors, 2);
  t.ok(Math.abs((cand['1m'].error_rate as number) - 2 / (toCandidate.length + 2)) < 1e-3, `candidate error rate ${cand['1m'].error_rate}`);
  t.ok(cand['1m'].rate > 0);
  const p = [cand['1m'].p50_ms, cand['1m'].p95_ms, cand['1m'].p99_ms] as number[];
  t.ok(p.every((v) => typeof v === 'number' && v >= 5 / 1.26 && v < 2000), `candidate percentiles ${p} (it sleeps 5 ms)`);
  t.ok(p[0]! <= p[1]! && p[1]! <= p[2]!, 'p50 <= p95 <= p99');
  t.same(cand['5m'].requests, cand['1m'].requests, 'the 5 minute window holds the same traffic');

  t.equal(api.legacy['1m'].requests, users.length - toCandidate.length + 2, 'legacy: its users plus the two fallbacks');
  t.equal(api.legacy['1m'].errors, 0);
  t.equal(api.legacy['1m'].error_rate, 0);
  t.same(api.fallbacks, { total: 2, by_reason: { '5xx': 2 }, '1m': 2, '5m': 2 });

  const orders = s.routes[1] as StatusBody['routes'][number];
  t.same(orders.flag_state, { exists: false, enabled: false, percentage: 0 }, 'a missing flag says so');
  t.equal(orders.legacy['1m'].requests, 0);
  t.equal(orders.legacy['1m'].p95_ms, null, 'no traffic: no percentile, not 0');
  t.equal(orders.legacy['1m'].error_rate, null);

  const dflt = s.routes[2] as StatusBody['routes'][number];
  t.equal(dflt.candidate, null);
  t.equal(dflt.legacy['1m'].requests, 1);

  t.same(
    s.flags.map((f) => [f.name, f.enabled, f.percentage, f.routes]),
    [
      ['f', true, 50, ['api']],
      ['spare', false, 100, []],
    ],
    'every flag, with the routes it drives',
  );
  t.same(
    s.upstreams.map((u) => [u.name, u.health?.healthy, u.routes]),
    [
      ['legacy', true, ['api', 'orders', 'default']],
      ['candidate', true, ['api', 'orders']],
    ],
  );
});

t.test('the observer, driven directly with a fake clock: windows move, totals stay', async (t) => {
  let now = 1_000_000;
  const clock = () => now;
  const obs = new CutoverObserver({ logger: silentLogger, clock, defaultMetrics: false, health: () => ({ old: { healthy: false, lastReason: 'timeout on route r' } }) });
  t.teardown(() => obs.close());
  const topology = () => ({ routes: [{ name: 'r', match: { path: '/r' }, flag: undefined, legacy: 'old', candidate: 'new' }], default: undefined, upstreams: ['old', 'new'] });
  const flags = { list: () => [] };

  // 60 s of 5 req/s to the candidate, 10 % of them timeouts (status 0), then 2 fallbacks.
  for (let i = 0; i < 300; i++) {
    obs.attempt({ route: 'r', target: 'candidate', upstream: 'new', status: i % 10 === 0 ? 0 : 200, failure: i % 10 === 0 ? 'timeout' : undefined, durationMs: 20 });
    now += 200;
  }
  obs.fallback('r', 'timeout');
  obs.fallback('r', 'unhealthy');
  obs.attempt({ route: 'r', target: 'candidate', upstream: 'new', status: 0, failure: 'aborted', durationMs: 3 });

  let s = statusBody({ observer: obs, flags, topology, startedAt: 1_000_000 }, now);
  const c = s.routes[0]!.candidate!;
  t.equal(c.requests_total, 301);
  t.same(c.codes, { '200': 270, timeout: 30, aborted: 1 });
  t.ok(Math.abs(c['1m'].rate - 5) < 0.2, `rate ${c['1m'].rate}`);
  t.equal(c['5m'].requests, 301);
  t.equal(c['5m'].errors, 30, 'timeouts are errors; a client abort is not');
  t.equal(c['1m'].requests, 296, 'the 1 minute window is the last 60 one-second slots: the first second (5 attempts) fell out');
  t.equal(c['1m'].errors, 29);
  t.ok((c['1m'].p50_ms as number) > 20 / 1.26 && (c['1m'].p50_ms as number) < 20 * 1.26);
  t.same(s.routes[0]!.fallbacks, { total: 2, by_reason: { timeout: 1, unhealthy: 1 }, '1m': 2, '5m': 2 });
  t.same(s.routes[0]!.legacy.health, { healthy: false, lastReason: 'timeout on route r' });
  t.equal(s.uptime_s, 60);

  now += 120_000; // two quiet minutes
  s = statusBody({ observer: obs, flags, topology, startedAt: 1_000_000 }, now);
  const c2 = s.routes[0]!.candidate!;
  t.equal(c2['1m'].requests, 0, 'the last minute is empty');
  t.equal(c2['1m'].rate, 0);
  t.equal(c2['5m'].requests, 301, 'the last five still hold it');
  t.ok(Math.abs(c2['5m'].rate - 301 / 180) < 0.05, `5m rate ${c2['5m'].rate} = 301 over the 180 s observed`);
  t.equal(c2.requests_total, 301, 'totals never expire');
  t.equal(s.routes[0]!.fallbacks['1m'], 0);
  t.equal(s.routes[0]!.fallbacks.total, 2);

  const text = await obs.metrics.text();
  t.match(text, /cutover_requests_total\{route="r",target="candidate",code="timeout"\} 30/);
  t.match(text, /cutover_fallbacks_total\{route="r",reason="unhealthy"\} 1/);
  t.match(text, /cutover_upstream_healthy\{upstream="old"\} 0/);
  t.notMatch(text, /process_cpu/, 'defaultMetrics: false leaves process metrics out');
});

t.test('the observer never throws into the proxy, and says so once', async (t) => {
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }));
  const obs = new CutoverObserver({ logger, defaultMetrics: false });
  t.teardown(() => obs.close());
  const broken = new Proxy({}, { get: () => { throw new Error('boom'); } });
  t.doesNotThrow(() => obs.attempt(broken as never));
  t.doesNotThrow(() => obs.request(broken as never));
  (obs.metrics as unknown as { fallbacks: () => never }).fallbacks = () => {
    throw new Error('boom');
  };
  t.throws(() => obs.metrics.fallbacks('r'), /boom/, 'the fallback counter really throws');
  t.doesNotThrow(() => obs.fallback('r', 'timeout'));
  await new Promise((r) => setImmediate(r));
  t.equal(lines.filter((l) => l.includes('observer failed')).length, 1, 'reported once');
});
