import t, { type Test } from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { http, postJson } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import { bucketOf } from '../../src/routing/bucket.js';
import type { ConfigInput } from '../../src/config/schema.js';
import type { RolloutView } from '../../src/rollout/driver.js';

// Real upstreams, a real proxy, real files; time is compressed (holds of a second or so) and
// the driver evaluates every second, as in production.

type Mode = 'ok' | '500' | 'slow';

async function setup(t: Test) {
  const legacy = await startUpstream(t, 'legacy');
  const cand = { mode: 'ok' as Mode };
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    const answer = () => {
      if (cand.mode === '500') {
        res.writeHead(500, { 'content-type': 'application/json' });
        return res.end('{"error":"boom"}');
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"served_by":"candidate"}');
    };
    if (cand.mode === 'slow') setTimeout(answer, 600);
    else answer();
  });
  const config: ConfigInput = {
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', timeout: '1s' }],
  };
  const dirs = await writeConfig(t, config, { f: { enabled: false, percentage: 0 } });
  const cut = await startCutover(t, dirs);
  return { ...cut, dirs, cand, candidate };
}

/** ~150 requests a second from 2,000 users until stopped; `base()` is read per request (restarts). */
function traffic(t: Test, base: () => string, perTick = 3, tickMs = 20) {
  let i = 0;
  let stopped = false;
  const inflight = new Set<Promise<unknown>>();
  const timer = setInterval(() => {
    for (let k = 0; k < perTick && inflight.size < 300; k++) {
      const n = i++;
      const p: Promise<unknown> = http(`${base()}/api/items/${n}`, { headers: { 'x-user-id': `user-${n % 2000}` } })
        .catch(() => undefined)
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
  }, tickMs);
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    await Promise.all(inflight);
  };
  t.teardown(stop);
  return { stop };
}

const put = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  http(url, { method: 'PUT', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
const rollout = async (admin: string) => (await http(`${admin}/api/v1/rollouts/f`)).json<RolloutView>();
/** Waits for a plan state; a plan that ends some other way fails at once, with its reason. */
const reach = (admin: string, state: string, ms: number) =>
  waitFor(
    async () => {
      const v = await rollout(admin);
      if (v.state !== state && v.state !== 'running') throw new Error(`plan is ${v.state}, not ${state}: ${v.reason}`);
      return v.state === state;
    },
    ms,
    `plan ${state}`,
  );
const flag = async (admin: string) => (await http(`${admin}/api/v1/flags/f`)).json<{ enabled: boolean; percentage: number }>();
const audit = async (flagsDir: string) =>
  (await readFile(join(flagsDir, 'audit.log'), 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { source: string; flag: string; reason?: string; after: { enabled: boolean; percentage: number } });

t.test('a healthy candidate completes the plan through every step: 25 -> 50 -> 75 -> 100', async (t) => {
  const { proxy, admin, dirs, candidate } = await setup(t);
  traffic(t, () => proxy);
  const plan = {
    steps: [25, 50, 75, 100].map((percentage) => ({ percentage, hold: '1s' })),
    gates: { maxErrorRate: 0.01, maxP95Ms: 1000, maxP99Ms: 2000, maxErrorRateVsLegacy: 2, maxShadowMismatch: 0.005, minRequests: 20, window: '10s' },
    onFailure: 'rollback',
  };
  const r = await put(`${admin}/api/v1/rollouts/f`, plan);
  t.equal(r.status, 200, 'PUT answers 200');
  t.match(r.json(), { flag: 'f', state: 'running', step: 1, steps: 4, percentage: 25, routes: ['api'], flagState: { enabled: true, percentage: 25 } });

  await reach(admin, 'completed', 15_000);
  const v = await rollout(admin);
  t.match(v, { state: 'completed', step: 4, percentage: 100, nextStepAt: null, flagState: { enabled: true, percentage: 100 } });
  t.match(v.reason, /step 4 held 1s with every gate green: plan complete at 100 %/);
  t.same(v.history.map((h) => [h.event, h.percentage]), [['started', 25], ['advanced', 50], ['advanced', 75], ['advanced', 100], ['completed', 100]]);
  const times = v.history.map((h) => Date.parse(h.time));
  for (let i = 1; i < times.length; i++) t.ok((times[i] as number) - (times[i - 1] as number) >= 1000, `step ${i} held at least 1 s (${(times[i] as number) - (times[i - 1] as number)} ms)`);
  t.match(v.gates, { maxErrorRate: { state: 'ok', limit: 0.01 }, maxP95Ms: { state: 'ok', limit: 1000 }, maxP99Ms: { state: 'ok' } });
  t.match(v.gates.maxShadowMismatch, { state: /^(no-data|ok)$/ }, 'no shadow traffic configured: no-data, not blocking');
  t.ok(candidate.seen.length > 100, `the candidate served ${candidate.seen.length} requests`);

  const steps = (await audit(dirs.flagsDir)).filter((l) => l.flag === 'f' && l.source === 'rollout');
  t.same(steps.map((l) => l.after.percentage), [25, 50, 75, 100], 'every step persisted and audited as source "rollout"');
  t.match(steps[1]?.reason, /^step 2\/4 -> 50 % \(step 1 held 1s with every gate green\)$/);
  // The API answers from memory; the state file is written right after (atomically): wait for it.
  const stateFile = join(dirs.flagsDir, '.rollouts', 'f.json');
  await waitFor(async () => JSON.parse(await readFile(stateFile, 'utf8')).state === 'completed', 3000, 'state file says completed');
  t.match(JSON.parse(await readFile(stateFile, 'utf8')), { version: 1, flag: 'f', state: 'completed', step: 4 });

  const prom = parseProm((await http(`${admin}/metrics`)).text);
  t.equal(prom.value('cutover_rollout_state', { flag: 'f', state: 'completed' }), 1);
  t.equal(prom.value('cutover_rollout_state', { flag: 'f', state: 'running' }), 0);
  t.equal(prom.value('cutover_rollout_step', { flag: 'f' }), 4);
  t.equal(prom.value('cutover_rollout_gate_limit', { flag: 'f', gate: 'maxP95Ms' }), 1000);
  t.equal(prom.find('cutover_rollout_gate_value', { flag: 'f', gate: 'maxErrorRate' }).length, 1);
  t.same((await http(`${admin}/api/v1/rollouts`)).json<{ rollouts: RolloutView[] }>().rollouts.map((x) => x.flag), ['f']);
});

t.test('a candidate that starts answering 500 mid-plan is rolled back within 5 s, with the gate, value and limit', async (t) => {
  const { proxy, admin, dirs, cand } = await setup(t);
  traffic(t, () => proxy);
  const plan = {
    steps: [{ percentage: 25, hold: '1s' }, { percentage: 50, hold: '1m' }, { percentage: 100, hold: '1s' }],
    gates: { maxErrorRate: 0.02, maxP95Ms: 1000, minRequests: 20, window: '10s' },
    onFailure: 'rollback',
  };
  t.equal((await put(`${admin}/api/v1/rollouts/f`, plan)).status, 200);
  await waitFor(async () => (await rollout(admin)).step === 2, 6000, 'step 2');
  await new Promise((r) => setTimeout(r, 500));
  t.same(await flag(admin), { ...(await flag(admin)), enabled: true, percentage: 50 });

  cand.mode = '500';
  const t0 = Date.now();
  await waitFor(async () => (await flag(admin)).enabled === false, 5000, 'flag rolled back');
  const elapsed = Date.now() - t0;
  t.ok(elapsed < 5000, `rolled back ${elapsed} ms after the candidate started failing`);
  t.comment(`time from failure to rollback: ${elapsed} ms`);

  const v = await rollout(admin);
  t.match(v, { state: 'rolled_back', step: 2, percentage: 50, nextStepAt: null, flagState: { enabled: false } });
  const m = /^maxErrorRate ([\d.]+) > 0\.02 \((\d+) errors in (\d+) candidate requests/.exec(v.reason ?? '');
  t.ok(m, `reason names gate, value and limit: ${v.reason}`);
  t.ok(Number(m?.[1]) > 0.02, 'the value is over the limit');
  const last = (await audit(dirs.flagsDir)).filter((l) => l.flag === 'f').at(-1);
  t.match(last, { source: 'rollout', reason: v.reason, after: { enabled: false, percentage: 50 } }, 'audited with the same reason');
  t.equal(JSON.parse(await readFile(join(dirs.flagsDir, 'f.json'), 'utf8')).enabled, false, 'persisted');
  const stateFile = async () => JSON.parse(await readFile(join(dirs.flagsDir, '.rollouts', 'f.json'), 'utf8')).state;
  await waitFor(async () => (await stateFile()) === 'rolled_back', 3000, 'plan state persisted');
  await new Promise((r) => setTimeout(r, 1200));
  t.match(await flag(admin), { enabled: false }, 'a rolled back plan does nothing more');
});

t.test('a candidate that gets slow is rolled back to the previous step on p95', async (t) => {
  const { proxy, admin, cand } = await setup(t);
  traffic(t, () => proxy);
  const plan = {
    steps: [{ percentage: 25, hold: '1s' }, { percentage: 50, hold: '1m' }],
    gates: { maxP95Ms: 300, minRequests: 20, window: '5s' },
    rollbackTo: 'previous',
  };
  t.equal((await put(`${admin}/api/v1/rollouts/f`, plan)).status, 200);
  await waitFor(async () => (await rollout(admin)).step === 2, 6000, 'step 2');
  cand.mode = 'slow';
  const t0 = Date.now();
  await reach(admin, 'rolled_back', 5000);
  t.comment(`slow candidate rolled back after ${Date.now() - t0} ms`);
  const v = await rollout(admin);
  t.match(v.reason, /^maxP95Ms \d+(\.\d+)? > 300 \(candidate p95 over \d+ attempts, last (5 s|[1-4] s, since the plan started)\)$/); // the plan may be younger than its 5 s window
  t.match(await flag(admin), { enabled: true, percentage: 25 }, 'rollbackTo previous: back to 25 %');
});

t.test('a restart mid-plan resumes it; the hold counts from the persisted since', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(
    t,
    { upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } }, routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f' }] },
    { f: { enabled: false } },
  );
  let cut = await startCutover(t, dirs);
  traffic(t, () => cut.proxy);
  const plan = { steps: [{ percentage: 50, hold: '1s' }, { percentage: 100, hold: '3s' }], gates: { maxErrorRate: 0.05, minRequests: 10, window: '10s' } };
  t.equal((await put(`${cut.admin}/api/v1/rollouts/f`, plan)).status, 200);
  await waitFor(async () => (await rollout(cut.admin)).step === 2, 6000, 'step 2');
  const before = await rollout(cut.admin);
  await cut.running.shutdown();
  await new Promise((r) => setTimeout(r, 2000));
  cut = await startCutover(t, dirs);
  const restartedAt = Date.now();
  const after = await rollout(cut.admin);
  t.match(after, { state: 'running', step: 2, percentage: 100, since: before.since, nextStepAt: before.nextStepAt }, 'same plan, same step, same since');
  await reach(cut.admin, 'completed', 8000);
  const done = Date.parse((await rollout(cut.admin)).history.at(-1)?.time as string);
  t.ok(done - Date.parse(before.since) >= 3000, 'the 3 s hold was respected');
  t.ok(done - restartedAt < 3000, `completed ${done - restartedAt} ms after the restart: the hold counted from the persisted since`);
});

t.test('quiet traffic below minRequests waits instead of advancing', async (t) => {
  const { proxy, admin } = await setup(t);
  const plan = { steps: [{ percentage: 50, hold: '500ms' }, { percentage: 100, hold: '1s' }], gates: { maxErrorRate: 0.05, minRequests: 40, window: '30s' } };
  t.equal((await put(`${admin}/api/v1/rollouts/f`, plan)).status, 200);
  const users = Array.from({ length: 400 }, (_, i) => `quiet-${i}`).filter((u) => bucketOf('f', u) <= 50);
  const send = (us: string[]) => Promise.all(us.map((u) => http(`${proxy}/api/x`, { headers: { 'x-user-id': u } })));
  // The gates count whole 1 s slots from the plan's start: the second it started in is not counted.
  await new Promise((r) => setTimeout(r, 1020 - (Date.now() % 1000)));
  await send(users.slice(0, 10));
  await new Promise((r) => setTimeout(r, 2500));
  const v = await rollout(admin);
  t.match(v, { state: 'running', step: 1, verdict: 'waiting', window: { candidateRequests: 10, minRequests: 40 } }, '10 candidate requests < 40: waits');
  t.equal(v.gates.maxErrorRate?.state, 'waiting');
  t.ok(Date.parse(v.nextStepAt as string) < Date.parse(v.time), 'although the hold is over');
  t.equal((await flag(admin)).percentage, 50);
  await send(users.slice(10, 45));
  await waitFor(async () => (await rollout(admin)).step === 2, 3000, 'advances once the window has enough requests');
});

t.test('a manual flag change pauses the plan visibly; resume, pause, abort', async (t) => {
  const { admin, dirs } = await setup(t);
  const plan = { steps: [{ percentage: 25, hold: '1m' }, { percentage: 50, hold: '1m' }], gates: { minRequests: 10 } };
  t.equal((await put(`${admin}/api/v1/rollouts/f`, plan)).status, 200);
  await postJson(`${admin}/api/v1/flags/f`, { percentage: 60 }, { 'x-cutover-actor': 'alice' });
  await waitFor(async () => (await rollout(admin)).state === 'paused', 2000, 'paused');
  t.match((await rollout(admin)).reason, /^manual change by admin-api:alice@127\.0\.0\.1: percentage 25 -> 60; plan paused/);
  await new Promise((r) => setTimeout(r, 1200));
  t.equal((await flag(admin)).percentage, 60, "the plan does not undo a person's change");

  const resumed = await postJson(`${admin}/api/v1/rollouts/f/resume`, {});
  t.equal(resumed.status, 200);
  t.match(resumed.json(), { state: 'running', step: 1, reason: null });
  t.match(await flag(admin), { enabled: true, percentage: 25 }, 'resume puts the flag back to the step');
  t.match((await audit(dirs.flagsDir)).at(-1), { source: 'rollout', reason: /^plan resumed by 127\.0\.0\.1: step 1\/2 -> 25 %$/ });
  await postJson(`${admin}/api/v1/flags/f`, { description: 'docs only' });
  await new Promise((r) => setTimeout(r, 300));
  t.equal((await rollout(admin)).state, 'running', 'a change to a non-routing field does not pause');

  const paused = await http(`${admin}/api/v1/rollouts/f/pause`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"reason": "db migration tonight"}' });
  t.match(paused.json(), { state: 'paused', reason: 'paused by 127.0.0.1: db migration tonight' });
  t.equal((await postJson(`${admin}/api/v1/rollouts/f/pause`, {})).status, 409, 'already paused');
  const aborted = await http(`${admin}/api/v1/rollouts/f/abort`, { method: 'POST', headers: { 'content-type': 'application/json' } });
  t.equal(aborted.status, 200, 'an empty JSON-typed body is fine');
  t.match(aborted.json(), { state: 'aborted', reason: 'aborted by 127.0.0.1' });
  t.equal((await postJson(`${admin}/api/v1/rollouts/f/resume`, {})).status, 409);
  t.match(await flag(admin), { enabled: true, percentage: 25 }, 'abort leaves the flag where it is');
  t.same((await rollout(admin)).history.map((h) => h.event), ['started', 'paused', 'resumed', 'paused', 'aborted']);
});

t.test('plan files in flags/rollouts/ start once, survive a restart without restarting', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const plan = { steps: [{ percentage: 10, hold: '1h' }, { percentage: 100, hold: '1h' }], gates: { maxErrorRate: 0.01, minRequests: 100 } };
  const dirs = await writeConfig(
    t,
    { upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } }, routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f' }] },
    { f: { enabled: false } },
  );
  const { mkdir, writeFile } = await import('node:fs/promises');
  await mkdir(join(dirs.flagsDir, 'rollouts'));
  await writeFile(join(dirs.flagsDir, 'rollouts', 'f.json'), JSON.stringify(plan));
  await writeFile(join(dirs.flagsDir, 'rollouts', 'broken.json'), '{"steps": []}');
  let cut = await startCutover(t, dirs);
  t.match(await rollout(cut.admin), { state: 'running', origin: 'file', startedBy: 'file:rollouts/f.json', step: 1, percentage: 10 });
  t.equal((await http(`${cut.admin}/api/v1/rollouts/broken`)).status, 404, 'an invalid plan file is logged and ignored');
  t.equal((await postJson(`${cut.admin}/api/v1/rollouts/f/abort`, {})).status, 200);
  await cut.running.shutdown();
  cut = await startCutover(t, dirs);
  await new Promise((r) => setTimeout(r, 400));
  t.equal((await rollout(cut.admin)).state, 'aborted', 'the same file does not start again');
  await writeFile(join(dirs.flagsDir, 'rollouts', 'f.json'), JSON.stringify({ ...plan, steps: [{ percentage: 20, hold: '1h' }] }));
  await waitFor(async () => (await rollout(cut.admin)).percentage === 20, 3000, 'a changed file starts its plan');
  t.match(await flag(cut.admin), { enabled: true, percentage: 20 });
});
