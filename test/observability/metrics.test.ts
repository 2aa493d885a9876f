import t, { type Test } from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { http, postJson } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { startCutover, startUpstream, twoSided, waitFor, writeConfig, deadUrl } from '../helpers/servers.js';
import { DURATION_BUCKETS_S } from '../../src/observability/metrics.js';

async function scrape(admin: string, headers: Record<string, string> = {}) {
  const r = await http(`${admin}/metrics`, { headers });
  if (r.status !== 200) throw new Error(`/metrics: ${r.status} ${r.text}`);
  return { reply: r, prom: parseProm(r.text) };
}

/** legacy answers 200; the candidate answers 503 for paths containing /fail, else 200. */
async function flakySetup(t: Test, flag = { enabled: true, percentage: 100 }) {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    if (req.url?.includes('/fail')) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end('{"error":"down"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"served_by":"candidate"}');
  });
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: flag });
  return { ...(await startCutover(t, dirs)), dirs, legacy, candidate };
}

t.test('after real traffic: one count per upstream attempt, so candidate failures masked by fallback still show', async (t) => {
  const { proxy, admin } = await flakySetup(t);
  for (let i = 0; i < 20; i++) {
    const r = await http(`${proxy}/api/ok/${i}`, { headers: { 'x-user-id': `u${i}` } });
    t.equal(r.status, 200);
  }
  for (let i = 0; i < 2; i++) {
    const r = await http(`${proxy}/api/fail/${i}`, { headers: { 'x-user-id': `u${i}` } });
    t.equal(r.status, 200, 'the client never sees the candidate 503');
    t.equal(r.json<{ served_by: string }>().served_by, 'legacy');
  }

  const { reply, prom } = await scrape(admin);
  t.match(reply.headers['content-type'], /^text\/plain; version=0\.0\.4/);

  t.equal(prom.value('cutover_requests_total', { route: 'api', target: 'candidate', code: '200' }), 20);
  t.equal(prom.value('cutover_requests_total', { route: 'api', target: 'candidate', code: '503' }), 2, 'masked candidate failures');
  t.equal(prom.value('cutover_requests_total', { route: 'api', target: 'legacy', code: '200' }), 2, 'legacy served the fallbacks');
  t.equal(prom.value('cutover_requests_total'), 24, 'nothing else was counted');
  t.equal(prom.value('cutover_fallbacks_total', { route: 'api', reason: '5xx' }), 2);

  // the histogram: cumulative, +Inf = count, a bucket per documented bound
  for (const [target, n] of [
    ['candidate', 22],
    ['legacy', 2],
  ] as const) {
    const buckets = prom.find('cutover_request_duration_seconds_bucket', { route: 'api', target });
    t.same(
      buckets.map((b) => b.labels.le),
      [...DURATION_BUCKETS_S.map(String), '+Inf'],
      `${target}: buckets 1 ms .. 10 s`,
    );
    for (let i = 1; i < buckets.length; i++) t.ok((buckets[i] as { value: number }).value >= (buckets[i - 1] as { value: number }).value, 'cumulative');
    t.equal(buckets.at(-1)?.value, n, `${target}: +Inf bucket`);
    t.equal(prom.value('cutover_request_duration_seconds_count', { route: 'api', target }), n);
    const sum = prom.value('cutover_request_duration_seconds_sum', { route: 'api', target });
    t.ok(sum > 0 && sum < n * 1, `${target}: sum ${sum} s is plausible`);
  }

  t.equal(prom.types.get('cutover_requests_total'), 'counter');
  t.equal(prom.types.get('cutover_request_duration_seconds'), 'histogram');
  t.equal(prom.types.get('cutover_fallbacks_total'), 'counter');
  for (const g of ['cutover_upstream_healthy', 'cutover_flag_enabled', 'cutover_flag_percentage']) t.equal(prom.types.get(g), 'gauge', g);
  t.equal(prom.types.get('cutover_flag_changes_total'), 'counter');
  t.ok(prom.find('process_cpu_user_seconds_total').length === 1, "prom-client's default process metrics are there");
  t.ok(prom.find('nodejs_eventloop_lag_seconds').length === 1);

  // Label values are bounded: route and upstream names, never paths or user ids.
  const values = prom.samples.flatMap((s) => Object.values(s.labels));
  t.notOk(values.some((v) => v.includes('/api') || /^u\d+$/.test(v)), 'no raw path or user id in any label');
});

t.test('connect failures are counted by kind; once the candidate is ejected, fallbacks say "unhealthy"', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const dirs = await writeConfig(
    t,
    {
      upstreams: { legacy: { url: legacy.url }, candidate: { url: await deadUrl() } },
      routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f' }],
    },
    { f: { enabled: true, percentage: 100 } },
  );
  const { proxy, admin } = await startCutover(t, dirs);
  for (let i = 0; i < 8; i++) t.equal((await http(`${proxy}/api/x`, { headers: { 'x-user-id': `u${i}` } })).status, 200);
  const { prom } = await scrape(admin);
  const connect = prom.value('cutover_requests_total', { route: 'api', target: 'candidate', code: 'connect' });
  const unhealthy = prom.value('cutover_fallbacks_total', { route: 'api', reason: 'unhealthy' });
  t.ok(connect >= 1, `candidate connect failures counted under code="connect" (${connect})`);
  t.equal(prom.value('cutover_fallbacks_total', { route: 'api', reason: 'connect' }), connect, 'each one fell back');
  t.ok(unhealthy >= 1, `after ejection, fallbacks by reason "unhealthy" (${unhealthy})`);
  t.equal(connect + unhealthy, 8, 'every request is accounted for once');
  t.equal(prom.value('cutover_requests_total', { route: 'api', target: 'legacy', code: '200' }), 8);
  t.equal(prom.value('cutover_upstream_healthy', { upstream: 'candidate' }), 0, 'the ejected candidate shows as unhealthy');
  t.equal(prom.value('cutover_upstream_healthy', { upstream: 'legacy' }), 1);
});

t.test('flag gauges and change counter follow the API and the files', async (t) => {
  const { admin, dirs } = await flakySetup(t, { enabled: false, percentage: 10 });
  let { prom } = await scrape(admin);
  t.equal(prom.value('cutover_flag_enabled', { flag: 'f' }), 0);
  t.equal(prom.value('cutover_flag_percentage', { flag: 'f' }), 10);
  t.equal(prom.value('cutover_flag_changes_total'), 0, 'loading at start is not a change (the series are there, at 0)');

  t.equal((await postJson(`${admin}/api/v1/flags/f`, { enabled: true, percentage: 40 })).status, 200);
  t.equal((await postJson(`${admin}/api/v1/flags/g`, { enabled: true })).status, 200);
  ({ prom } = await scrape(admin));
  t.equal(prom.value('cutover_flag_enabled', { flag: 'f' }), 1);
  t.equal(prom.value('cutover_flag_percentage', { flag: 'f' }), 40);
  t.equal(prom.value('cutover_flag_percentage', { flag: 'g' }), 100, 'a new flag starts at 100 %');
  t.equal(prom.value('cutover_flag_changes_total', { flag: 'f', source: 'admin-api' }), 1);
  t.equal(prom.value('cutover_flag_changes_total', { flag: 'g', source: 'admin-api' }), 1);

  await writeFile(join(dirs.flagsDir, 'f.json'), JSON.stringify({ enabled: true, percentage: 60 }));
  await waitFor(async () => (await scrape(admin)).prom.value('cutover_flag_percentage', { flag: 'f' }) === 60, 5000, 'file edit seen');
  ({ prom } = await scrape(admin));
  t.equal(prom.value('cutover_flag_changes_total', { flag: 'f', source: 'file' }), 1, 'a hand edit counts under source="file"');
  t.equal(prom.value('cutover_flag_changes_total', { flag: 'f', source: 'admin-api' }), 1);
});

t.test('two cutovers in one process keep separate registries', async (t) => {
  const a = await flakySetup(t);
  const b = await flakySetup(t);
  for (let i = 0; i < 3; i++) await http(`${a.proxy}/api/ok/${i}`, { headers: { 'x-user-id': `u${i}` } });
  await http(`${b.proxy}/api/ok/1`, { headers: { 'x-user-id': 'u1' } });
  t.equal((await scrape(a.admin)).prom.value('cutover_requests_total', { route: 'api' }), 3);
  t.equal((await scrape(b.admin)).prom.value('cutover_requests_total', { route: 'api' }), 1);
});

t.test('/metrics and /api/v1/status need the admin token when one is set; the page and probes do not', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: false } });
  const { admin } = await startCutover(t, dirs, { adminToken: 's3cret' });
  for (const path of ['/metrics', '/api/v1/status']) {
    const r = await http(admin + path);
    t.equal(r.status, 401, `${path} without a token`);
    t.equal(r.headers['www-authenticate'], 'Bearer');
    t.equal((await http(admin + path, { headers: { authorization: 'Bearer wrong' } })).status, 401, `${path} with a wrong token`);
    t.equal((await http(admin + path, { headers: { authorization: 'Bearer s3cret' } })).status, 200, `${path} with the token`);
  }
  const page = await http(`${admin}/`);
  t.equal(page.status, 200, 'the dashboard page loads without a token (it holds no data)');
  t.match(page.headers['content-type'], /^text\/html/);
  t.equal((await http(`${admin}/healthz`)).status, 200);
  t.equal((await http(`${admin}/metrics`, { method: 'POST', headers: { authorization: 'Bearer s3cret' } })).status, 405);
});

interface TargetView {
  requests_total: number;
  codes: Record<string, number>;
  '1m': { requests: number; errors: number; p50_ms: number | null };
}
type StatusView = { routes: Array<{ name: string; candidate?: TargetView; legacy: TargetView }> };

t.test('hedging: a candidate that loses every hedge still fills its window, as slow answers, not errors', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', (_req, res) => {
    const timer = setTimeout(() => res.end('{"served_by":"candidate"}'), 400);
    res.on('close', () => clearTimeout(timer));
  });
  const cfg = twoSided(legacy, candidate);
  Object.assign(cfg.routes?.[0] as object, { hedge: '50ms', timeout: '2s' });
  const { proxy, admin } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: true, percentage: 100 } }));
  for (let i = 0; i < 5; i++) {
    const r = await http(`${proxy}/api/h/${i}`, { headers: { 'x-user-id': `u${i}` } });
    t.equal(r.json<{ served_by: string }>().served_by, 'legacy', `request ${i}: legacy won the hedge`);
  }
  const { prom } = await scrape(admin);
  t.equal(prom.value('cutover_requests_total', { route: 'api', target: 'candidate', code: 'hedged' }), 5, 'each cancelled candidate attempt counted');
  t.equal(prom.value('cutover_requests_total', { route: 'api', target: 'legacy', code: '200' }), 5);
  t.equal(prom.value('cutover_request_duration_seconds_count', { route: 'api', target: 'candidate' }), 5);
  t.ok(prom.value('cutover_request_duration_seconds_sum', { route: 'api', target: 'candidate' }) >= 5 * 0.045, 'each lasted at least the hedge delay');
  t.equal(prom.value('cutover_fallbacks_total', { route: 'api', reason: 'hedge' }), 5);

  const api = (await http(`${admin}/api/v1/status`)).json<StatusView>().routes.find((r) => r.name === 'api');
  const cand = api?.candidate as TargetView;
  t.same(cand.codes, { hedged: 5 });
  t.equal(cand['1m'].requests, 5, "the candidate's window holds the requests");
  t.equal(cand['1m'].errors, 0, 'a lost hedge is not an error');
  t.ok((cand['1m'].p50_ms as number) >= 45 / 1.26, `its latency is at least the hedge delay (p50 ${cand['1m'].p50_ms} ms)`);
});

t.test('a client that leaves first: the attempt is counted as code="aborted", not as an error', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', () => undefined); // never answers
  const cfg = twoSided(legacy, candidate);
  Object.assign(cfg.routes?.[0] as object, { timeout: '5s' });
  const { proxy, admin } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: true, percentage: 100 } }));
  const { request } = await import('node:http');
  const req = request(`${proxy}/api/leave`, { headers: { 'x-user-id': 'u1' } });
  req.on('error', () => undefined);
  req.end();
  await waitFor(() => candidate.seen.length === 1, 5000, 'the candidate got the request');
  req.destroy();
  await waitFor(async () => (await scrape(admin)).prom.value('cutover_requests_total', { route: 'api', target: 'candidate' }) === 1, 5000, 'the attempt recorded');
  const { prom } = await scrape(admin);
  t.equal(prom.value('cutover_requests_total', { route: 'api', target: 'candidate', code: 'aborted' }), 1);
  const api = (await http(`${admin}/api/v1/status`)).json<StatusView>().routes.find((r) => r.name === 'api');
  t.equal(api?.candidate?.['1m'].requests, 1);
  t.equal(api?.candidate?.['1m'].errors, 0, 'the client leaving is not an upstream error');
  t.equal(legacy.seen.length, 0, 'nothing fell back');
});

t.test("cutover_requests_total's help lists every code value that is not a status, as the README and Grafana use them", async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const { admin } = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: false } }));
  const help = (await scrape(admin)).prom.help.get('cutover_requests_total') ?? '';
  for (const code of ['connect', 'reset', 'timeout', 'protocol', 'aborted', 'hedged', '0']) t.match(help, new RegExp(`\\b${code}\\b`), `help names ${code}`);
});

t.test("cutover_rollout_gate_value: help and README give each gate's unit (fraction, ms, or a ratio to legacy)", async (t) => {
  const { readFile } = await import('node:fs/promises');
  const { GATE_NAMES } = await import('../../src/rollout/plan.js');
  const units: Record<string, RegExp> = {
    maxErrorRate: /fraction/,
    maxShadowMismatch: /fraction/,
    maxP95Ms: /milliseconds|\bms\b/,
    maxP99Ms: /milliseconds|\bms\b/,
    maxErrorRateVsLegacy: /ratio/,
  };
  t.same(Object.keys(units).sort(), [...GATE_NAMES].sort(), 'every gate has a unit here');
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const { admin } = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: false } }));
  const help = (await scrape(admin)).prom.help.get('cutover_rollout_gate_value') ?? '';
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const row = readme.split('\n').find((l) => l.startsWith('| `cutover_rollout_gate_value`')) ?? '';
  // Clauses are separated by ';': each gate's clause names its unit.
  const unitOf = (text: string, gate: string) => text.split(';').find((c) => new RegExp(`\\b${gate}\\b`).test(c)) ?? '';
  for (const [gate, unit] of Object.entries(units)) {
    t.match(unitOf(help, gate), unit, `help: ${gate}`);
    t.match(unitOf(row, gate), unit, `README: ${gate}`);
  }
});
