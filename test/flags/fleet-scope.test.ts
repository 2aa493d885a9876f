// Fleet mode against a real HTTP server standing in for a company's Unleash
// (test/helpers/fake-unleash.ts), whose environment also holds other applications' toggles:
// cutover lists, exports and changes only the flags it uses (a route's flag, or a flag with a
// local file), and refuses to touch the rest. Routing by any toggle a route names is unaffected.
import t, { type Test } from 'tap';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ADMIN, BACKEND, fakeUnleash, type AuditLine } from '../helpers/fake-unleash.js';
import { http, postJson, servedBy } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import { bucketOf, inRollout } from '../../src/routing/bucket.js';

async function setup(t: Test) {
  const u = await fakeUnleash(t);
  u.seed('flag', true, 25); // route r's flag
  u.seed('tuned', true, 50); // no route, but this replica has flags/tuned.json
  u.seed('checkout_new_ui', true, 100); // another application's toggle
  u.seed('search_v2', false, 10); // another application's toggle
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const upstreams = { legacy: { url: legacy.url }, candidate: { url: candidate.url } };
  const route = (name: string, flag: string) => ({ name, match: { path: `/${name}` }, legacy: 'legacy', candidate: 'candidate', flag });
  const dirs = await writeConfig(t, { upstreams, routes: [route('r', 'flag'), route('orders', 'order_cutover')] }, { tuned: { enabled: false, percentage: 0, health_check_interval: 30 } });
  const { running, admin, proxy } = await startCutover(t, dirs, { serve: { drainTimeoutMs: 500, unleash: { url: u.api, apiToken: BACKEND, adminToken: ADMIN, refreshIntervalMs: 200, startupWaitMs: 3000, disableMetrics: true } } });
  const names = async () => (await http(`${admin}/api/v1/flags`)).json<{ flags: Array<{ name: string }> }>().flags.map((f) => f.name);
  const audit = async () => (await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditLine);
  const metrics = async () => parseProm((await http(`${admin}/metrics`)).text);
  const reroute = async (...routes: Array<ReturnType<typeof route>>) => {
    await writeFile(join(dirs.routesDir, 'routes.yaml'), stringify({ upstreams, routes }));
    await running.cutover.reload();
  };
  return { u, dirs, running, admin, proxy, names, audit, metrics, route, reroute };
}

t.test("only cutover's flags are listed and exported, not the other toggles in its Unleash environment", async (t) => {
  const f = await setup(t);
  t.same(await f.names(), ['flag', 'tuned'], 'GET /api/v1/flags: the route flag and the flag with a local file');
  const status = (await http(`${f.admin}/api/v1/status`)).json<{ flags: Array<{ name: string }> }>();
  t.same(status.flags.map((x) => x.name), ['flag', 'tuned'], 'the status API (the dashboard) the same');
  const m = await f.metrics();
  for (const name of ['cutover_flag_enabled', 'cutover_flag_percentage']) {
    t.same(m.find(name).map((s) => s.labels.flag), ['flag', 'tuned'], `${name}: one series per flag cutover uses`);
  }
  t.equal((await http(`${f.admin}/api/v1/flags/checkout_new_ui`)).status, 404, "GET of another application's toggle: 404");
  t.equal(f.running.cutover.flags.get('checkout_new_ui'), undefined, 'the library API does not show it either');
});

t.test("a change to another application's toggle is refused with 409 and changes nothing", async (t) => {
  const f = await setup(t);
  f.u.calls.length = 0;
  for (const body of [{ enabled: false }, { percentage: 0 }, { description: 'mine now' }, { enabled: false, auto_disable_on_failure: true }]) {
    const r = await postJson(`${f.admin}/api/v1/flags/checkout_new_ui`, body, { 'x-cutover-actor': 'alice' });
    t.equal(r.status, 409, `${JSON.stringify(body)}: 409`);
    t.match(r.json(), { error: 'not_used_by_cutover', message: /"checkout_new_ui" is not used by cutover: no route uses it.*nothing was changed/ });
  }
  const created = await postJson(`${f.admin}/api/v1/flags/brand_new`, { enabled: true, percentage: 10 });
  t.equal(created.status, 409, 'a name no route uses is not created in Unleash either');
  t.same(f.u.calls, [], 'no call reached the Unleash Admin API');
  t.match(f.u.env('checkout_new_ui'), { enabled: true }, 'the toggle is still on for the company');
  t.same(f.u.rollout('checkout_new_ui'), [100], 'at its rollout');
  t.notOk(f.u.toggles.has('brand_new'), 'nothing created');
  await t.rejects(stat(join(f.dirs.flagsDir, 'checkout_new_ui.json')), 'no local file written (which would make it a cutover flag)');
  t.same((await f.audit()).filter((l) => l.source === 'admin-api'), [], 'no audit line');
});

t.test("cutover's own flags still change: a route's flag (created in Unleash if missing) and one with a local file", async (t) => {
  const f = await setup(t);
  const r = await postJson(`${f.admin}/api/v1/flags/flag`, { enabled: false });
  t.equal(r.status, 200, "the route's flag");
  t.match(f.u.env('flag'), { enabled: false });
  const tuned = await postJson(`${f.admin}/api/v1/flags/tuned`, { percentage: 60 });
  t.equal(tuned.status, 200, 'the flag with a local file');
  t.same(f.u.rollout('tuned'), [60]);
  const order = await postJson(`${f.admin}/api/v1/flags/order_cutover`, { enabled: true, percentage: 10 });
  t.equal(order.status, 200, "a route's flag Unleash lacks is created there");
  t.same(f.u.rollout('order_cutover'), [10]);
  t.same(await f.names(), ['flag', 'order_cutover', 'tuned']);
});

t.test('changes made in Unleash to other toggles are not audited nor counted', async (t) => {
  const f = await setup(t);
  (f.u.env('checkout_new_ui') as { enabled: boolean }).enabled = false;
  (f.u.env('flag') as { enabled: boolean }).enabled = false;
  await waitFor(async () => (await f.audit()).some((l) => l.flag === 'flag' && l.after?.enabled === false), 3000, "flag's change in the audit log");
  await new Promise((r) => setTimeout(r, 400)); // two more polls
  t.same((await f.audit()).map((l) => l.flag), ['flag'], "only cutover's flag has an audit line");
  // Series of cutover's flags are created at 0 (rate() sees their first step); other toggles get none.
  const changes = (await f.metrics()).find('cutover_flag_changes_total');
  t.same(changes.filter((s) => s.value > 0).map((s) => [s.labels.flag, s.labels.source, s.value]), [['flag', 'unleash', 1]], "only cutover's flag counted a change");
  t.same([...new Set(changes.map((s) => s.labels.flag))].sort(), ['flag', 'order_cutover', 'tuned'], 'and only cutover flags have cutover_flag_changes_total series');
});

t.test('routing by a toggle is unaffected; a route added for it makes it a cutover flag', async (t) => {
  const f = await setup(t);
  const users = Array.from({ length: 100 }, (_, i) => `u${i}`);
  const wrong: string[] = [];
  for (const u of users) if ((await servedBy(f.proxy, '/r', u)) !== (inRollout(bucketOf('flag', u), 25) ? 'candidate' : 'legacy')) wrong.push(u);
  t.same(wrong, [], 'route r routes by its toggle at 25 %, user for user');
  t.ok(f.running.cutover.store.get('checkout_new_ui'), 'the hot path still has every toggle, for routes added by a reload');
  await f.reroute(f.route('r', 'flag'), f.route('checkout', 'checkout_new_ui'));
  t.equal(await servedBy(f.proxy, '/checkout', 'u1'), 'candidate', 'a new route routes by the toggle at once (on, 100 %)');
  t.same(await f.names(), ['checkout_new_ui', 'flag', 'tuned'], 'and it is listed');
  t.equal((await postJson(`${f.admin}/api/v1/flags/checkout_new_ui`, { percentage: 50 })).status, 200, 'and can be changed');
  t.same(f.u.rollout('checkout_new_ui'), [50]);
  await f.reroute(f.route('r', 'flag'));
  t.same(await f.names(), ['flag', 'tuned'], 'a route removed by a reload: no longer listed');
  t.equal((await postJson(`${f.admin}/api/v1/flags/checkout_new_ui`, { enabled: false })).status, 409, 'nor changeable');
});
