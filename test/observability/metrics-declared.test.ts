import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { http, postJson } from '../helpers/http.js';
import { parseProm, type Scrape } from '../helpers/prom.js';
import { startCutover, startUpstream, twoSided, writeConfig } from '../helpers/servers.js';
import { CutoverMetrics, DECLARED_CODES, DECLARED_FLAG_SOURCES } from '../../src/observability/metrics.js';
import { FALLBACK_REASONS } from '../../src/observability/observer.js';

// Prometheus's rate()/increase() never count a series' first sample as an increase
// (prometheus/prometheus#1673): a counter that appears at 1 hides that first step. The series
// whose label values config tells must be there at 0 before anything happens.

async function scrape(admin: string): Promise<Scrape> {
  const r = await http(`${admin}/metrics`);
  if (r.status !== 200) throw new Error(`/metrics: ${r.status} ${r.text}`);
  return parseProm(r.text);
}

/** The sample with exactly these labels (not a sum: it must exist). */
function sample(prom: Scrape, name: string, labels: Record<string, string>): number | undefined {
  const s = prom.find(name, labels).filter((x) => Object.keys(x.labels).length === Object.keys(labels).length);
  return s.length === 1 ? s[0]?.value : undefined;
}

t.test('before any traffic or change, the config-known series are at 0; the first failure and change step from there', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end('{"error":"boom"}');
  });
  const { proxy, admin } = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 100 } }));

  let prom = await scrape(admin);
  for (const reason of FALLBACK_REASONS) t.equal(sample(prom, 'cutover_fallbacks_total', { route: 'api', reason }), 0, `fallbacks{reason="${reason}"} at 0`);
  for (const source of DECLARED_FLAG_SOURCES) t.equal(sample(prom, 'cutover_flag_changes_total', { flag: 'f', source }), 0, `flag_changes{source="${source}"} at 0`);
  for (const target of ['legacy', 'candidate']) {
    for (const code of DECLARED_CODES) t.equal(sample(prom, 'cutover_requests_total', { route: 'api', target, code }), 0, `requests{${target}, code="${code}"} at 0`);
  }
  t.equal(prom.find('cutover_requests_total', { code: '200' }).length, 0, 'success codes are not declared: they appear on first use');
  t.equal(prom.find('cutover_request_duration_seconds_count').length, 0, 'the histogram waits for the first attempt');

  for (let i = 0; i < 3; i++) t.equal((await http(`${proxy}/api/x/${i}`, { headers: { 'x-user-id': `u${i}` } })).status, 200, 'legacy serves the fallback');
  t.equal((await postJson(`${admin}/api/v1/flags/f`, { enabled: false })).status, 200);

  prom = await scrape(admin);
  t.equal(sample(prom, 'cutover_requests_total', { route: 'api', target: 'candidate', code: '500' }), 3, 'the candidate 500s: 0 -> 3');
  t.equal(sample(prom, 'cutover_fallbacks_total', { route: 'api', reason: '5xx' }), 3, 'the 5xx fallbacks: 0 -> 3');
  t.equal(sample(prom, 'cutover_flag_changes_total', { flag: 'f', source: 'admin-api' }), 1, 'the first change: 0 -> 1');
  t.equal(sample(prom, 'cutover_flag_changes_total', { flag: 'f', source: 'auto-disable' }), 0);

  const status = (await http(`${admin}/api/v1/status`)).json<{ routes: Array<{ name: string; candidate: { codes: object }; legacy: { codes: object }; fallbacks: { by_reason: object } }> }>();
  const api = status.routes.find((r) => r.name === 'api');
  t.same(api?.candidate.codes, { '500': 3 }, 'the status API lists only codes that happened');
  t.same(api?.legacy.codes, { '200': 3 });
  t.same(api?.fallbacks.by_reason, { '5xx': 3 }, 'and only reasons that happened');
});

t.test('a reload declares the routes and flags it adds; a flag created at run time gets its other sources', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = twoSided(legacy, candidate);
  const dirs = await writeConfig(t, cfg, { f: { enabled: false } });
  const { running, admin } = await startCutover(t, dirs);
  let prom = await scrape(admin);
  t.equal(prom.find('cutover_fallbacks_total', { route: 'web' }).length, 0);

  cfg.routes = [...(cfg.routes ?? []), { name: 'web', match: { path: '/web' }, legacy: 'legacy', candidate: 'candidate', flag: 'g' }, { name: 'static', match: { path: '/static' }, legacy: 'legacy' }];
  await writeFile(join(dirs.routesDir, 'routes.yaml'), stringify(cfg));
  await running.cutover.reload();
  prom = await scrape(admin);
  t.equal(sample(prom, 'cutover_fallbacks_total', { route: 'web', reason: 'timeout' }), 0, 'new route with a candidate: fallbacks at 0');
  t.equal(sample(prom, 'cutover_requests_total', { route: 'web', target: 'candidate', code: 'connect' }), 0);
  t.equal(sample(prom, 'cutover_flag_changes_total', { flag: 'g', source: 'auto-disable' }), 0, 'a flag named by a route, not yet in flags/');
  t.equal(sample(prom, 'cutover_requests_total', { route: 'static', target: 'legacy', code: '503' }), 0, 'a legacy-only route: its legacy codes');
  t.equal(prom.find('cutover_requests_total', { route: 'static', target: 'candidate' }).length, 0, 'no candidate series without a candidate');
  t.equal(prom.find('cutover_fallbacks_total', { route: 'static' }).length, 0, 'no fallbacks without a candidate');

  t.equal((await postJson(`${admin}/api/v1/flags/h`, { enabled: true })).status, 200);
  prom = await scrape(admin);
  t.equal(sample(prom, 'cutover_flag_changes_total', { flag: 'h', source: 'admin-api' }), 1);
  t.equal(sample(prom, 'cutover_flag_changes_total', { flag: 'h', source: 'auto-disable' }), 0, 'its later auto-disable will be a step from 0');
});

t.test('past maxSeries, routes share one _overflow fallback series, counted once', async (t) => {
  const m = new CutoverMetrics({ defaultMetrics: false, maxSeries: 1 });
  m.fallbacks('a').inc('timeout');
  m.fallbacks('b').inc('timeout');
  m.fallbacks('c').inc('timeout');
  const prom = parseProm(await m.text());
  t.equal(sample(prom, 'cutover_fallbacks_total', { route: 'a', reason: 'timeout' }), 1);
  t.equal(sample(prom, 'cutover_fallbacks_total', { route: '_overflow', reason: 'timeout' }), 2, 'b and c, not once per route name pointing at it');
});
