import t from 'tap';
import { createServer } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { http, postJson } from '../helpers/http.js';
import { startCutover, startUpstream, twoSided, writeConfig } from '../helpers/servers.js';
import { parsePlan, PlanValidationError } from '../../src/rollout/plan.js';
import { evaluateGates, type GateSample } from '../../src/rollout/gates.js';
import { RolloutDriver } from '../../src/rollout/driver.js';
import { FlagStore, type ExternalFlags } from '../../src/flags/store.js';
import { FlagOwnedError, type FlagView } from '../../src/flags/model.js';
import { CutoverObserver } from '../../src/observability/observer-impl.js';
import { silentLogger } from '../../src/observability/logger.js';
import { createAdminHandler } from '../../src/admin/router.js';

/** The runbook's order-service plan, verbatim from the issue. */
const ORDER_PLAN = {
  steps: [
    { percentage: 25, hold: '3d' },
    { percentage: 50, hold: '3d' },
    { percentage: 75, hold: '4d' },
    { percentage: 100, hold: '4d' },
  ],
  gates: { maxErrorRate: 0.001, maxP95Ms: 50, maxP99Ms: 200, maxErrorRateVsLegacy: 2.0, maxShadowMismatch: 0.005, minRequests: 100 },
  onFailure: 'rollback',
};

const put = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  http(url, { method: 'PUT', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

t.test('plans: the issue shape parses; every problem is named', async (t) => {
  const p = parsePlan(ORDER_PLAN);
  t.same(p.steps.map((s) => s.percentage), [25, 50, 75, 100]);
  t.equal(p.gates.window, '1m', 'default window');
  t.equal(p.onFailure, 'rollback');
  t.equal(parsePlan({ steps: [{ percentage: 100, hold: '500ms' }], gates: {} }).gates.minRequests, 100, 'default minRequests');
  t.same(parsePlan({ ...ORDER_PLAN, rollbackTo: 'previous' }).rollbackTo, 'previous');
  t.same(parsePlan({ ...ORDER_PLAN, rollbackTo: 0 }).rollbackTo, 0);

  const bad = {
    steps: [
      { percentage: 50, hold: '3d' },
      { percentage: 50, hold: 'soon' },
      { percentage: 40, hold: '1s' },
      { percentage: 101, hold: '1s', extra: 1 },
      { percentage: 12.5, hold: '-1s' },
    ],
    gates: { maxErrorRate: 2, maxP95Ms: -1, minRequests: 0, window: '10m', maxErrors: 3 },
    onFailure: 'explode',
    rollbackTo: 'somewhere',
    steps2: [],
  };
  let msg = '';
  try {
    parsePlan(bad);
  } catch (err) {
    t.type(err, PlanValidationError);
    msg = (err as Error).message;
  }
  for (const part of [
    /steps\[1\]\.hold: hold must be a duration/,
    /steps\[3\]\.percentage: Too big/,
    /steps\[3\]: unknown field "extra"/,
    /steps\[4\]\.percentage: must be a whole number/,
    /steps\[4\]\.hold: hold must be a duration/,
    /gates\.maxErrorRate: Too big/,
    /gates\.maxP95Ms: Too small/,
    /gates\.minRequests: Too small/,
    /gates\.window: window must be between 1s and 5m/,
    /gates: unknown field "maxErrors"/,
    /onFailure: Invalid option/,
    /rollbackTo: /,
    /unknown field "steps2"/,
  ]) {
    t.match(msg, part, String(part));
  }
  t.throws(() => parsePlan({ ...ORDER_PLAN, steps: [{ percentage: 50, hold: '1s' }, { percentage: 50, hold: '1s' }] }), /steps\[1\]\.percentage: must be greater than the previous step's 50/);
  t.throws(() => parsePlan({ ...ORDER_PLAN, steps: [] }), /steps: Too small/);
  t.throws(() => parsePlan({ ...ORDER_PLAN, onFailure: 'pause', rollbackTo: 'off' }), /rollbackTo: only applies with "onFailure": "rollback"/);
  t.throws(() => parsePlan([1]), /body must be a JSON object/);
  t.throws(() => parsePlan({ steps: [{ percentage: 10, hold: '1s' }] }), /gates: /, 'gates are required (may be {})');
});

function sample(over: Partial<GateSample> & { c?: [number, number]; l?: [number, number]; p95?: number }): GateSample {
  return {
    windowSeconds: 60,
    candidate: { requests: over.c?.[0] ?? 0, errors: over.c?.[1] ?? 0, p95_ms: over.p95 ?? null, p99_ms: over.p95 ?? null },
    skipped: over.skipped ?? 0,
    legacy: { requests: over.l?.[0] ?? 0, errors: over.l?.[1] ?? 0 },
    shadow: over.shadow,
  };
}

t.test('gates: waiting below minRequests, relative to legacy, shadow, skipped requests', async (t) => {
  const g = parsePlan(ORDER_PLAN).gates;
  let ev = evaluateGates(g, sample({ c: [99, 50], l: [1000, 0], p95: 500 }));
  t.equal(ev.verdict, 'waiting', 'a quiet window neither passes nor fails, however bad it looks');
  t.equal(ev.gates.maxErrorRate?.state, 'waiting');
  t.equal(ev.failure, undefined);

  ev = evaluateGates(g, sample({ c: [1000, 0], l: [3000, 0], p95: 20 }));
  t.equal(ev.verdict, 'green');
  t.match(ev.gates, { maxErrorRate: { value: 0, state: 'ok', ok: true }, maxP95Ms: { value: 20, state: 'ok' }, maxErrorRateVsLegacy: { value: 0, state: 'ok' } });
  t.match(ev.gates.maxShadowMismatch, { value: null, state: 'no-data', ok: null }, 'no shadow provider: no-data, does not block');

  ev = evaluateGates(g, sample({ c: [1000, 2], l: [1000, 0], p95: 20 }));
  t.equal(ev.verdict, 'red', 'absolute: 0.002 > 0.001');
  t.equal(ev.failure?.gate, 'maxErrorRate');
  t.match(ev.failure?.reason, /^maxErrorRate 0\.002 > 0\.001 \(2 errors in 1000 candidate requests, last 60 s\)$/);
  t.equal(ev.gates.maxErrorRateVsLegacy?.value, 2, 'legacy with no errors counts as one: 0.002 / 0.001');

  const rel = parsePlan({ steps: [{ percentage: 10, hold: '1s' }], gates: { maxErrorRateVsLegacy: 2, minRequests: 10 } }).gates;
  t.equal(evaluateGates(rel, sample({ c: [1000, 30], l: [1000, 10] })).failure?.reason.startsWith('maxErrorRateVsLegacy 3 > 2'), true, '3 % vs 1 %');
  t.equal(evaluateGates(rel, sample({ c: [1000, 15], l: [1000, 10] })).verdict, 'green', '1.5 % vs 1 %');
  t.match(evaluateGates(rel, sample({ c: [1000, 15] })).gates.maxErrorRateVsLegacy, { state: 'no-data', value: null }, 'no legacy traffic (100 %): no-data');

  const sh = parsePlan({ steps: [{ percentage: 10, hold: '1s' }], gates: { maxShadowMismatch: 0.01, minRequests: 10 } }).gates;
  t.equal(evaluateGates(sh, sample({ c: [50, 0], shadow: { compared: 5, mismatched: 5, windowSeconds: 300 } })).gates.maxShadowMismatch?.state, 'waiting', 'few comparisons: waiting');
  t.match(evaluateGates(sh, sample({ c: [50, 0], shadow: { compared: 200, mismatched: 4, windowSeconds: 300 } })).failure, { gate: 'maxShadowMismatch', value: 0.02, limit: 0.01 });
  t.equal(evaluateGates(sh, sample({ c: [50, 0], shadow: { compared: 0, mismatched: 0, windowSeconds: 300 } })).verdict, 'green', 'no comparisons: no-data, not blocking');

  ev = evaluateGates(rel, sample({ c: [5, 0], skipped: 20, l: [100, 0] }));
  t.equal(ev.window.candidateRequests, 25, 'requests that skipped an ejected candidate count');
  t.equal(ev.verdict, 'red', '...as errors');
});

t.test('driver with an injected clock: the runbook plan over 14 days, then a red gate', async (t) => {
  let now = Date.parse('2026-03-02T09:00:00Z');
  const clock = () => now;
  const flags = new FlagStore(silentLogger);
  await flags.start();
  const observer = new CutoverObserver({ logger: silentLogger, clock, defaultMetrics: false });
  const driver = new RolloutDriver({ flags, logger: silentLogger, observer, routesOf: (f) => (f === 'order_cutover' ? ['orders'] : []), clock, intervalMs: 3_600_000 });
  await driver.start();
  t.teardown(() => driver.close());
  const traffic = (n: number, candidateErrors = 0, ms = 10) => {
    for (let i = 0; i < n; i++) {
      observer.attempt({ route: 'orders', target: 'candidate', upstream: 'c', status: i < candidateErrors ? 503 : 200, durationMs: ms, failure: i < candidateErrors ? '5xx' : undefined });
      observer.attempt({ route: 'orders', target: 'legacy', upstream: 'l', status: 200, durationMs: ms, failure: undefined });
    }
  };

  const started = await driver.put('order_cutover', ORDER_PLAN, 'ops@10.0.0.1');
  t.match(started, { state: 'running', step: 1, steps: 4, percentage: 25, nextStepAt: '2026-03-05T09:00:00.000Z' });
  t.match(flags.view('order_cutover'), { enabled: true, percentage: 25 });

  traffic(500);
  await driver.tick();
  t.equal(driver.get('order_cutover')?.step, 1, 'hold not over');
  now += 3 * 86_400_000;
  await driver.tick();
  t.match(driver.get('order_cutover'), { step: 1, verdict: 'waiting' }, 'hold over, but the window is empty (3 days later): waits');
  traffic(99);
  await driver.tick();
  t.equal(driver.get('order_cutover')?.step, 1, '99 < minRequests: still waits');
  traffic(1);
  await driver.tick();
  t.match(driver.get('order_cutover'), { step: 2, percentage: 50, since: '2026-03-05T09:00:00.000Z' });
  t.equal(flags.view('order_cutover')?.percentage, 50);

  now += 3 * 86_400_000;
  traffic(200);
  await driver.tick();
  t.equal(flags.view('order_cutover')?.percentage, 75);
  now += 2 * 86_400_000;
  traffic(1000, 2); // 0.2 % errors, over 0.1 %
  await driver.tick();
  const v = driver.get('order_cutover');
  t.match(v, { state: 'rolled_back', step: 3, percentage: 75 });
  t.match(v?.reason, /^maxErrorRate 0\.002 > 0\.001 \(2 errors in 1000 candidate requests, last 60 s\)/);
  t.match(v?.gates.maxErrorRate, { value: 0.002, limit: 0.001, state: 'failing', ok: false });
  t.match(flags.view('order_cutover'), { enabled: false, percentage: 75 }, 'default rollback: off');
  t.same(v?.history.map((h) => h.event), ['started', 'advanced', 'advanced', 'rolled_back']);
  await t.rejects(driver.resume('order_cutover', 'x'), /only a paused plan can be resumed/);
  const again = await driver.put('order_cutover', { ...ORDER_PLAN, rollbackTo: 'previous', onFailure: 'rollback' }, 'ops');
  t.match(again, { state: 'running', step: 1 }, 'a finished plan can be started again');
});

t.test('PUT validation over HTTP: 400 with every problem, 415, 401; nothing changes', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: false, percentage: 0 } });
  const { admin } = await startCutover(t, dirs, { adminToken: 'tok' });
  const auth = { authorization: 'Bearer tok' };
  const flagBefore = await readFile(join(dirs.flagsDir, 'f.json'), 'utf8');

  t.equal((await put(`${admin}/api/v1/rollouts/f`, ORDER_PLAN)).status, 401, 'no token');
  t.equal((await http(`${admin}/api/v1/rollouts`)).status, 401);
  t.equal((await postJson(`${admin}/api/v1/rollouts/f/pause`, {})).status, 401);

  const r = await put(`${admin}/api/v1/rollouts/f`, { steps: [{ percentage: 50, hold: '1d' }, { percentage: 25, hold: '2x' }], gates: { maxP95Ms: '50' }, onFailure: 'retry' }, auth);
  t.equal(r.status, 400);
  t.equal(r.json<{ error: string }>().error, 'invalid_plan');
  const msg = r.json<{ message: string }>().message;
  for (const part of [/steps\[1\]\.hold/, /gates\.maxP95Ms/, /onFailure/]) t.match(msg, part);
  t.equal((await put(`${admin}/api/v1/rollouts/f`, '{"steps": [', auth)).status, 400, 'bad JSON');
  t.equal((await put(`${admin}/api/v1/rollouts/-bad`, ORDER_PLAN, auth)).status, 400, 'bad flag name');
  t.equal((await put(`${admin}/api/v1/rollouts/a%20b`, ORDER_PLAN, auth)).status, 400, 'bad flag name, encoded');
  const plain = await http(`${admin}/api/v1/rollouts/f`, { method: 'PUT', headers: { ...auth, 'content-type': 'text/plain' }, body: JSON.stringify(ORDER_PLAN) });
  t.equal(plain.status, 415, 'JSON only');
  const plainAction = await http(`${admin}/api/v1/rollouts/f/abort`, { method: 'POST', headers: auth });
  t.equal(plainAction.status, 415, 'actions need the JSON content type too (no cross-site form posts)');
  t.equal((await http(`${admin}/api/v1/rollouts/f`, { headers: auth })).status, 404);
  t.equal((await postJson(`${admin}/api/v1/rollouts/f/pause`, {}, auth)).status, 404);
  t.equal((await http(`${admin}/api/v1/rollouts/f`, { method: 'DELETE', headers: auth })).status, 405);

  t.equal(await readFile(join(dirs.flagsDir, 'f.json'), 'utf8'), flagBefore, 'the flag is untouched');
  t.same(await readdir(join(dirs.flagsDir, '.rollouts')), [], 'no plan state written');
  t.same((await http(`${admin}/api/v1/rollouts`, { headers: auth })).json(), { rollouts: [] });

  const ok = await put(`${admin}/api/v1/rollouts/f`, ORDER_PLAN, { ...auth, 'x-cutover-actor': 'alice' });
  t.equal(ok.status, 200);
  t.match(ok.json(), { flag: 'f', state: 'running', step: 1, percentage: 25, reason: null, startedBy: /^alice@127\.0\.0\.1$/, routes: ['api'] });
  const conflict = await put(`${admin}/api/v1/rollouts/f`, ORDER_PLAN, auth);
  t.equal(conflict.status, 409, 'one plan per flag at a time');
  t.match(conflict.json<{ message: string }>().message, /is running .*abort it first/);
  t.equal((await postJson(`${admin}/api/v1/rollouts/f/pause`, { reason: 'x', what: 1 }, auth)).status, 400, 'unknown field in an action body');
});

t.test('fleet mode without an Unleash admin token: a plan is refused with 409, nothing changes', async (t) => {
  const view: FlagView = { name: 'f', enabled: true, percentage: 10, cohort: [], exclude: [], anonymous: 'legacy', auto_disable_on_failure: false, auto_disable_after: 3, strict_validation: false, source: 'unleash' };
  const external: ExternalFlags = {
    kind: 'unleash',
    start: async () => undefined,
    compiled: () => undefined,
    view: (n) => (n === 'f' ? view : undefined),
    names: () => ['f'],
    apply: async () => {
      throw new FlagOwnedError('flag "f" is owned by Unleash (fleet mode): change it in Unleash, or give cutover UNLEASH_ADMIN_TOKEN', 'unleash');
    },
    read: async (n) => (n === 'f' ? view : undefined),
    status: () => ({ kind: 'unleash', up: true, lastSuccessAt: Date.now(), lastFailureAt: undefined, lastError: undefined, servingFrom: 'source', flags: 1 }),
    close: async () => undefined,
  };
  const flags = new FlagStore(silentLogger, undefined, external);
  flags.setRouteFlags(['f']); // a route's flag: cutover's own, not another application's toggle
  await flags.start();
  const rollouts = new RolloutDriver({ flags, logger: silentLogger, routesOf: () => [] });
  await rollouts.start();
  t.teardown(() => rollouts.close());
  const server = createServer(createAdminHandler({ flags, logger: silentLogger, isReady: () => true, rollouts }));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const admin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const r = await put(`${admin}/api/v1/rollouts/f`, ORDER_PLAN);
  t.equal(r.status, 409);
  t.match(r.json(), { error: 'owned_by_unleash', message: /UNLEASH_ADMIN_TOKEN.*a rollout plan needs cutover to be able to change the flag/ });
  t.equal((await http(`${admin}/api/v1/rollouts/f`)).status, 404, 'no plan was created');
  const other = await put(`${admin}/api/v1/rollouts/g`, ORDER_PLAN);
  t.equal(other.status, 409, "a plan on a toggle no route uses: another application's");
  t.match(other.json(), { error: 'not_used_by_cutover', message: /not used by cutover/ });
});

t.test('flagWindow: routes of a flag summed, percentiles from the merged histograms, unhealthy skips counted', async (t) => {
  const now = 5_000_000;
  const obs = new CutoverObserver({ logger: silentLogger, clock: () => now, defaultMetrics: false });
  const attempt = (route: string, target: 'legacy' | 'candidate', ms: number, status = 200) =>
    obs.attempt({ route, target, upstream: 'u', status, durationMs: ms, failure: status >= 500 ? '5xx' : undefined });
  for (let i = 0; i < 90; i++) attempt('a', 'candidate', 2);
  for (let i = 0; i < 10; i++) attempt('b', 'candidate', 400, i < 4 ? 503 : 200);
  for (let i = 0; i < 50; i++) attempt('a', 'legacy', 5);
  attempt('c', 'candidate', 1000, 500); // another flag's route
  obs.fallback('b', 'unhealthy');
  obs.fallback('b', 'unhealthy');
  obs.fallback('a', 'timeout');
  const w = obs.flagWindow(['a', 'b', 'not-seen'], 60_000);
  t.match(w.candidate, { requests: 100, errors: 4 });
  t.ok((w.candidate.p95_ms as number) > 300, `p95 ${w.candidate.p95_ms} ms: the slow route's tail shows in the merged histogram`);
  t.ok((w.candidate.p50_ms as number) < 3, `p50 ${w.candidate.p50_ms} ms`);
  t.match(w.legacy, { requests: 50, errors: 0 });
  t.equal(w.skipped, 2, 'only "unhealthy" fallbacks are skips');
  t.same(obs.flagWindow([], 60_000).candidate.requests, 0);
});
