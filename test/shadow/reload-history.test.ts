import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { Registry } from 'prom-client';
import { stringify } from 'yaml';
import { http } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { silentLogger } from '../../src/observability/logger.js';
import { registerShadowMetrics } from '../../src/shadow/metrics.js';
import { Shadower } from '../../src/shadow/shadower.js';
import { MAX_RETIRED, RETIRED_TTL_MS } from '../../src/shadow/route-stats.js';

// A reload that stops shadowing a route (or removes it) and a later one that puts it back must
// continue the route's shadow totals: before, they restarted at 0 in /metrics (a counter reset to
// Prometheus) and in /api/v1/shadow (lost history). Routes gone for good are still forgotten.

interface Report {
  route: string;
  shadowed: boolean;
  unshadowed_at: string | null;
  forget_at: string | null;
  totals: { match: number; mismatch: number; error: number; dropped: number };
  top_fields: Array<{ path: string; count: number }>;
  noisy_fields: string[];
}

function send(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** catalog always shadowed; search per `search`: shadowed, configured without shadow, or absent. */
function cfg(legacy: string, candidate: string, search: 'shadowed' | 'plain' | 'absent'): ConfigInput {
  const catalog = { name: 'catalog', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', shadow: { percentage: 100 } };
  const s = { name: 'search', match: { path: '/search' }, legacy: 'legacy', candidate: 'candidate', flag: 'g', ...(search === 'shadowed' && { shadow: { percentage: 100, noiseSample: 100 } }) };
  return { upstreams: { legacy: { url: legacy }, candidate: { url: candidate } }, routes: search === 'absent' ? [catalog] : [catalog, s] } as unknown as ConfigInput;
}

for (const gap of ['plain', 'absent'] as const) {
  const how = gap === 'plain' ? 'keeps without its shadow section' : 'removes';
  t.test(`a route a reload ${how} keeps its shadow totals, and a reload that shadows it again continues them`, async (t) => {
    // The candidate's price is wrong; legacy's nonce differs between its own answers (learned noise).
    const legacy = await startUpstream(t, 'legacy', (_req, res) => send(res, { price: 10, nonce: Math.random() }));
    const candidate = await startUpstream(t, 'candidate', (_req, res) => send(res, { price: 11, nonce: 0 }));
    const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, 'shadowed'), { f: { enabled: false }, g: { enabled: false } });
    const { proxy, admin, running } = await startCutover(t, dirs);
    const report = async () => (await http(`${admin}/api/v1/shadow/search`)).json<Report>();
    const counter = async () => parseProm((await http(`${admin}/metrics`)).text).find('cutover_shadow_total', { route: 'search', result: 'mismatch' });
    const reload = async (search: 'shadowed' | 'plain' | 'absent') => {
      await writeFile(join(dirs.routesDir, 'routes.yaml'), stringify(cfg(legacy.url, candidate.url, search)));
      await running.cutover.reload();
    };
    let sent = 0;
    const mirror = async (n: number) => {
      for (let i = 0; i < n; i++) await http(`${proxy}/search/${sent++}`, { headers: { 'x-user-id': `u${sent}` } });
    };

    await http(`${proxy}/api/1`, { headers: { 'x-user-id': 'u0' } });
    await mirror(3);
    await waitFor(async () => (await report()).totals.mismatch === 3, 3000, 'three mismatches');
    await waitFor(async () => (await report()).noisy_fields.length === 1, 3000, 'the nonce learned noisy');

    await reload(gap);
    const off = await report();
    t.match(off, { route: 'search', shadowed: false, totals: { mismatch: 3 }, top_fields: [{ path: '$.price', count: 3 }] }, 'history shown, marked unshadowed');
    t.same(off.noisy_fields, [], 'learned noise is not kept: nothing refreshes it');
    t.ok(off.unshadowed_at !== null && off.forget_at !== null);
    t.equal(Date.parse(off.forget_at as string) - Date.parse(off.unshadowed_at as string), RETIRED_TTL_MS, 'forget_at: 24 h after');
    const listed = (await http(`${admin}/api/v1/shadow`)).json<{ routes: Report[] }>().routes;
    t.same(listed.map((r) => [r.route, r.shadowed]), [['catalog', true], ['search', false]], 'listed after the shadowed routes');
    t.match(await counter(), [{ value: 3 }], 'the /metrics series stays, flat');
    t.equal(running.cutover.shadow.forFlag('g'), undefined, "the flag's maxShadowMismatch gate reads no-data, not stale comparisons");
    if (gap === 'plain') {
      type Status = { routes: Array<{ name: string; shadow?: unknown }> };
      const status = (await http(`${admin}/api/v1/status`)).json<Status>();
      t.equal(status.routes.find((r) => r.name === 'search')?.shadow, undefined, 'the status page shows no shadow card for it');
    }

    await reload('shadowed');
    t.match(await report(), { shadowed: true, unshadowed_at: null, forget_at: null, totals: { mismatch: 3 } });
    await mirror(2);
    await waitFor(async () => (await report()).totals.mismatch === 5, 3000, 'two more mismatches');
    t.match(await counter(), [{ value: 5 }], 'the counter continues: no reset');
    t.match(running.cutover.shadow.forFlag('g'), { mismatched: 5 }, 'the gate reads the route again');
  });
}

t.test('unshadowed routes are forgotten after 24 h, or sooner past the newest 100', async (t) => {
  let now = 1_000_000_000;
  const route = (i: number) => ({ name: `r${i}`, flag: 'f', legacy: 'legacy', shadow: {} });
  const shadow = new Shadower({ concurrency: 1, queue: 1 }, silentLogger, [route(0), route(1)], () => now);
  t.teardown(() => shadow.close());
  const registry = new Registry();
  registerShadowMetrics(registry, shadow);
  const series = async () => parseProm(await registry.metrics()).find('cutover_shadow_total', { result: 'match' }).map((s) => s.labels.route);
  shadow.statsFor('r0').record('match');
  shadow.statsFor('r1').record('match');

  shadow.setRouteFlags([route(1)]);
  now += RETIRED_TTL_MS - 1;
  t.same(await series(), ['r1', 'r0'], 'r0 remembered just under 24 h');
  now += 1;
  t.same(await series(), ['r1'], 'then forgotten: its series is dropped');
  shadow.setRouteFlags([route(0), route(1)]);
  t.same(shadow.all().map((s) => [s.route, s.totals.match]), [['r1', 1]], 'shadowed again after that: it starts afresh');

  // Many routes unshadowed one reload after another: only the newest MAX_RETIRED are kept.
  const many = Array.from({ length: MAX_RETIRED + 5 }, (_, i) => route(i + 10));
  shadow.setRouteFlags(many);
  for (const r of many) shadow.statsFor(r.name).record('match');
  for (let i = 0; i < many.length; i++) {
    now += 1000;
    shadow.setRouteFlags(many.slice(i + 1));
  }
  const kept = shadow.all().map((s) => s.route);
  t.equal(kept.length, MAX_RETIRED);
  t.same(kept.slice(0, 2), ['r15', 'r16'], 'the oldest unshadowed went first (r0 and r1 too, though still young)');
});
