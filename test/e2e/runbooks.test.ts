import t, { type Test } from 'tap';
import { readdir, readFile } from 'node:fs/promises';
import { http, postJson, servedBy } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { serveArgs, spawnCutover, startCutover, startUpstream, waitFor, writeConfig, type Upstream } from '../helpers/servers.js';
import { bucketOf } from '../../src/routing/bucket.js';
import type { ConfigInput } from '../../src/config/schema.js';

// The migration runbooks' flag-service sequences, replayed in their order with their bodies as
// written (the curl -d strings), against a real cutover and real upstreams. What single calls do
// is pinned elsewhere (test/admin/flags-api.test.ts: every payload accepted; test/proxy/routing.test.ts:
// buckets and stickiness; test/upstream/health.test.ts: auto-disable on GETs); here it is the
// sequences: the split after each step, and what a rollback leaves behind.
// Runbook references: phase-2 = 001_96ed675967bb1497.txt, phase-3 = 000_afa881865eabe86c.txt,
// image service = 003_1ebe45831f5e696f.txt (in the shared runbooks directory).

const USERS = Array.from({ length: 200 }, (_, i) => `user-${i}`);

/** The shipped flags/*.json, so the runbooks run against the files a new install (and `cutover demo`) starts from. */
async function shippedFlags(): Promise<Record<string, object>> {
  const dir = new URL('../../flags/', import.meta.url);
  const out: Record<string, object> = {};
  for (const f of (await readdir(dir)).filter((n) => n.endsWith('.json'))) out[f.slice(0, -5)] = JSON.parse(await readFile(new URL(f, dir), 'utf8')) as object;
  return out;
}

function shop(magento: Upstream, customers: Upstream, orders: Upstream, images: Upstream): ConfigInput {
  return {
    upstreams: { magento: { url: magento.url }, 'customer-service': { url: customers.url }, 'order-service': { url: orders.url }, 'image-service': { url: images.url } },
    routes: [
      { name: 'customers-read', match: { path: '/api/v1/customers', methods: ['GET', 'HEAD'] }, legacy: 'magento', candidate: 'customer-service', flag: 'customer_read' },
      { name: 'customers-write', match: { path: '/api/v1/customers', methods: ['POST', 'PUT', 'PATCH', 'DELETE'] }, legacy: 'magento', candidate: 'customer-service', flag: 'customer_write' },
      { name: 'orders', match: { path: '/api/v1/orders' }, legacy: 'magento', candidate: 'order-service', flag: 'order_cutover' },
      { name: 'images', match: { path: '/images' }, legacy: 'magento', candidate: 'image-service', flag: 'image_service' },
    ],
  } as ConfigInput;
}

/** A candidate that answers like the test upstreams until `broken`, then 500 (or 503 to writes). */
async function breakable(t: Test, name: string) {
  const state = { broken: false };
  const up = await startUpstream(t, name, (req, res) => {
    req.resume();
    req.on('end', () => {
      if (state.broken) {
        res.writeHead(req.method === 'GET' ? 500 : 503, { 'content-type': 'application/json' });
        return res.end('{"error":"down"}');
      }
      res.writeHead(req.method === 'POST' ? 201 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ served_by: name, id: 42 }));
    });
  });
  return { up, state };
}

async function shopWith(t: Test, how: 'in-process' | 'cli' = 'in-process') {
  const magento = await startUpstream(t, 'magento');
  const customers = await breakable(t, 'customer-service');
  const orders = await breakable(t, 'order-service');
  const images = await breakable(t, 'image-service');
  const dirs = await writeConfig(t, shop(magento, customers.up, orders.up, images.up), await shippedFlags());
  const cut = how === 'cli' ? await spawnCutover(t, serveArgs(dirs)) : await startCutover(t, dirs);
  return { ...cut, magento, customers, orders, images };
}

/** `curl -X POST .../api/v1/flags/<flag> -H "Content-Type: application/json" -d '<body>'`, body as written. */
async function runbookCall(t: Test, admin: string, flag: string, body: string) {
  const r = await postJson(`${admin}/api/v1/flags/${flag}`, body);
  t.equal(r.status, 200, `POST ${flag} ${body.replace(/\s+/g, ' ')}`);
  return r.json<{ enabled: boolean; percentage: number; routes?: string[]; warning?: string }>();
}

/** Who serves each user (GET), 50 at a time. */
async function sides(proxy: string, path: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (let i = 0; i < USERS.length; i += 50) {
    const batch = USERS.slice(i, i + 50);
    const got = await Promise.all(batch.map((u) => servedBy(proxy, path, u)));
    batch.forEach((u, j) => out.set(u, got[j] as string));
  }
  return out;
}

/** Every user is where their bucket says for `pct`; returns how many are on the candidate. */
function splitIs(t: Test, got: Map<string, string>, flag: string, pct: number, candidate: string): number {
  const wrong = USERS.filter((u) => got.get(u) !== (pct > 0 && bucketOf(flag, u) <= pct ? candidate : 'magento'));
  t.same(wrong, [], `${flag} at ${pct} %: every user on the side of their bucket`);
  return USERS.filter((u) => got.get(u) === candidate).length;
}

interface RouteStatus {
  name: string;
  candidate: { '1m': { requests: number; errors: number; error_rate: number | null } };
  fallbacks: { by_reason: Record<string, number> };
}

/** The runbook's check-service-stability.sh, as a script reading cutover's status would do it. */
async function stable(admin: string, route: string): Promise<boolean> {
  const status = (await http(`${admin}/api/v1/status`)).json<{ routes: RouteStatus[] }>();
  const r = status.routes.find((x) => x.name === route);
  if (!r) throw new Error(`no route ${route} in /api/v1/status`);
  return r.candidate['1m'].errors === 0;
}

t.test('phase 2, 4.1 then the emergency rollback: customer_write on the shipped flag file moves writes, switches itself off, and writes never land twice', async (t) => {
  const { proxy, admin, magento, customers } = await shopWith(t);
  // phase-2 lines 296-302, body verbatim
  const on = await runbookCall(t, admin, 'customer_write', `{
    "enabled": true,
    "auto_disable_on_failure": true,
    "health_check_interval": 30
  }`);
  t.match(on, { enabled: true, percentage: 100, routes: ['customers-write'] }, '"enabled": true means every user, as for a new flag');
  const write = (u: string) => postJson(`${proxy}/api/v1/customers`, { email: `${u}@example.com` }, { 'x-user-id': u });
  const by = async (users: string[]) => Promise.all(users.map(async (u) => (await write(u)).json<{ served_by: string }>().served_by));
  t.same(new Set(await by(USERS.slice(0, 20))), new Set(['customer-service']), 'every write to the new service');
  t.equal(magento.seen.filter((s) => s.method === 'POST').length, 0, 'no write reached Magento');

  // The microservice fails: the writes it may have taken are not replayed; after 3, the flag is off.
  customers.state.broken = true;
  for (const u of USERS.slice(20, 23)) t.equal((await write(u)).status, 503, `${u}: the candidate's 503, not a second write on Magento`);
  t.equal(magento.seen.filter((s) => s.method === 'POST').length, 0, 'still no write on Magento');
  // The switch-off is written (fsync, audit) just after the third answer went out.
  await waitFor(async () => (await http(`${admin}/api/v1/flags/customer_write`)).json<{ enabled: boolean }>().enabled === false, 2000, 'auto-disabled');
  t.equal((await write('user-24')).json<{ served_by: string }>().served_by, 'magento', 'writes are back on Magento');

  // emergency-rollback-phase2.sh (lines 467-471): every write flag off, flags that never existed included.
  for (const service of ['customer', 'catalog', 'order']) t.match(await runbookCall(t, admin, `${service}_write`, '{"enabled": false}'), { enabled: false });
  const seen = customers.up.seen.length;
  t.same(new Set(await by(USERS.slice(25, 35))), new Set(['magento']), 'every write on Magento');
  t.equal(customers.up.seen.length, seen, 'the microservice gets no write after the rollback');
});

/** cutover-order-service-gradual.sh (phase-3 lines 166-192); `check` stands in for the days of monitoring. */
async function orderCutover(t: Test, admin: string, proxy: string, check: (pct: number) => Promise<boolean>): Promise<number | 'completed'> {
  let before = new Map<string, string>();
  for (const percentage of [25, 50, 75, 100]) {
    await runbookCall(t, admin, 'order_cutover', `{"enabled": true, "percentage": ${percentage}}`);
    const now = await sides(proxy, '/api/v1/orders/1');
    const n = splitIs(t, now, 'order_cutover', percentage, 'order-service');
    t.ok(Math.abs(n / USERS.length - percentage / 100) < 0.12, `${percentage} %: ${n} of ${USERS.length} users on the order service`);
    t.ok(USERS.every((u) => before.get(u) !== 'order-service' || now.get(u) === 'order-service'), `${percentage} %: nobody moved back`);
    before = now;
    if (!(await check(percentage))) {
      const rolled = Date.now();
      t.match(await runbookCall(t, admin, 'order_cutover', '{"enabled": false}'), { enabled: false, percentage });
      t.ok(Date.now() - rolled < 10_000, 'rollback under 10 s (phase 2 success criteria)');
      return percentage;
    }
  }
  return 'completed';
}

t.test('phase 3, 2.2 with the real CLI: order_cutover 25 -> 50 -> 75 -> 100, stable at each step', async (t) => {
  const { proxy, admin, orders } = await shopWith(t, 'cli');
  t.equal(await orderCutover(t, admin, proxy, () => stable(admin, 'orders')), 'completed');
  const expected = [25, 50, 75, 100].reduce((n, p) => n + USERS.filter((u) => bucketOf('order_cutover', u) <= p).length, 0);
  t.equal(orders.up.seen.length, expected, 'the order service got exactly the requests of its users, step by step');
  t.ok([...(await sides(proxy, '/api/v1/orders/2')).values()].every((s) => s === 'order-service'), 'at 100 % every user is on the order service');
});

t.test('phase 3, 2.2: the order service fails at 50 %, the stability check sees it, the rollback sends everyone to Magento', async (t) => {
  const { proxy, admin, orders } = await shopWith(t);
  const ended = await orderCutover(t, admin, proxy, async (pct) => {
    if (pct === 50) {
      orders.state.broken = true;
      // Users do not notice (GETs fall back to Magento); the status does.
      t.ok([...(await sides(proxy, '/api/v1/orders/3')).values()].every((s) => s === 'magento'), 'failures hidden by fallback');
    }
    return stable(admin, 'orders');
  });
  t.equal(ended, 50, 'rolled back at the 50 % step');
  const status = (await http(`${admin}/api/v1/status`)).json<{ routes: RouteStatus[] }>();
  const r = status.routes.find((x) => x.name === 'orders') as RouteStatus;
  t.ok(r.candidate['1m'].errors > 0 && (r.candidate['1m'].error_rate ?? 0) > 0, 'status: candidate errors over the last minute');
  t.ok((r.fallbacks.by_reason['5xx'] ?? 0) > 0, 'status: fallbacks by reason');
  orders.state.broken = false;
  const reached = orders.up.seen.length;
  t.ok([...(await sides(proxy, '/api/v1/orders/4')).values()].every((s) => s === 'magento'), 'after the rollback every user is on Magento');
  t.equal(orders.up.seen.length, reached, 'and the order service gets nothing, healthy again or not');
});

t.test('image service 5.2/5.4: 10 -> 50 -> 100 %, rollback to the previous percentage, then off', async (t) => {
  const { proxy, admin, images } = await shopWith(t);
  const at10 = await runbookCall(t, admin, 'image_service', '{"enabled": true, "percentage": 10}');
  t.match(at10, { routes: ['images'] });
  const n10 = splitIs(t, await sides(proxy, '/images/1'), 'image_service', 10, 'image-service');
  const prom = parseProm((await http(`${admin}/metrics`)).text);
  t.equal(prom.value('cutover_requests_total', { route: 'images', target: 'candidate' }), n10, 'metrics per traffic source: the candidate count is the split');
  t.equal(prom.value('cutover_requests_total', { route: 'images', target: 'legacy' }), USERS.length - n10);

  await runbookCall(t, admin, 'image_service', '{"percentage": 50}');
  splitIs(t, await sides(proxy, '/images/1'), 'image_service', 50, 'image-service');
  // NO-GO at 50 %: "rollback to previous percentage" (ROLLOUT_PERCENTAGE=10) keeps the 10 % where they were.
  await runbookCall(t, admin, 'image_service', '{"percentage": 10}');
  t.equal(splitIs(t, await sides(proxy, '/images/1'), 'image_service', 10, 'image-service'), n10, 'the same 10 % as before');
  await runbookCall(t, admin, 'image_service', '{"percentage": 50}');
  await runbookCall(t, admin, 'image_service', '{"percentage": 100}');
  t.equal(splitIs(t, await sides(proxy, '/images/1'), 'image_service', 100, 'image-service'), USERS.length);
  // "Rollback tested (set percentage to 0)", then the immediate rollback (USE_IMAGE_SERVICE=false, ROLLOUT_PERCENTAGE=0).
  t.match(await runbookCall(t, admin, 'image_service', '{"percentage": 0}'), { enabled: true, percentage: 0 });
  splitIs(t, await sides(proxy, '/images/1'), 'image_service', 0, 'image-service');
  t.match(await runbookCall(t, admin, 'image_service', '{"enabled": false, "percentage": 0}'), { enabled: false, percentage: 0 });
  const reached = images.up.seen.length;
  splitIs(t, await sides(proxy, '/images/1'), 'image_service', 0, 'image-service');
  t.equal(images.up.seen.length, reached, 'nothing reaches the image service when off');
});

t.test('phase 3, 2.1: a flag no route uses says so instead of silently moving nobody', async (t) => {
  const { proxy, admin } = await shopWith(t);
  // Phase 3 enables customer_cutover, but the customer routes here (as in routes/example.yaml) use customer_read/customer_write.
  const r = await runbookCall(t, admin, 'customer_cutover', '{"enabled": true, "percentage": 100}');
  t.same(r.routes, [], 'no route routes by it');
  t.match(r.warning, /no route uses flag "customer_cutover"/);
  t.equal(await servedBy(proxy, '/api/v1/customers/1', 'user-1'), 'magento', 'and indeed nobody moved');
  t.same((await http(`${admin}/api/v1/flags/customer_cutover`)).json<{ routes: string[] }>().routes, [], 'GET says the same');
  t.notOk('warning' in (await runbookCall(t, admin, 'order_cutover', '{"enabled": true, "percentage": 25}')), 'no warning for a routed flag');
});

t.test("the runbooks' latency targets are bucket bounds of /metrics: p95 < 50 ms, p99 < 200 ms, fallback < 5 s", async (t) => {
  const { proxy, admin } = await shopWith(t);
  await runbookCall(t, admin, 'order_cutover', '{"enabled": true, "percentage": 100}');
  await sides(proxy, '/api/v1/orders/5');
  const buckets = parseProm((await http(`${admin}/metrics`)).text).find('cutover_request_duration_seconds_bucket', { route: 'orders', target: 'candidate' });
  const le = buckets.map((b) => b.labels.le);
  for (const target of ['0.05', '0.1', '0.2', '1', '5']) t.ok(le.includes(target), `le="${target}" exists, so the share under the target is exact`);
  const under = (x: string) => (buckets.find((b) => b.labels.le === x)?.value ?? 0) / (buckets.at(-1)?.value ?? 1);
  t.ok(under('0.2') >= 0.99, `p99 < 200 ms on loopback (${under('0.2')})`);
});
