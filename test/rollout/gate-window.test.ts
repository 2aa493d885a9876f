import t, { type Test } from 'tap';
import { RolloutDriver } from '../../src/rollout/driver.js';
import { FlagStore } from '../../src/flags/store.js';
import { CutoverObserver } from '../../src/observability/observer-impl.js';
import { silentLogger } from '../../src/observability/logger.js';

// The driver with an injected clock (as in plan.test.ts): which traffic the gates judge after a
// plan starts again, is resumed or raises a step, and what a red gate does per onFailure/rollbackTo.

const T0 = Date.parse('2026-03-02T09:00:00Z');

/** Flag `x` is behind route `x-route`; the driver only ticks when the test says so. */
async function rig(t: Test) {
  let now = T0;
  const clock = () => now;
  const flags = new FlagStore(silentLogger);
  await flags.start();
  const observer = new CutoverObserver({ logger: silentLogger, clock, defaultMetrics: false });
  const driver = new RolloutDriver({ flags, logger: silentLogger, observer, routesOf: (f) => [`${f}-route`], clock, intervalMs: 3_600_000 });
  await driver.start();
  t.teardown(() => driver.close());
  /** `n` candidate attempts on the flag's route, the first `errors` of them 503s. */
  const traffic = (flag: string, n: number, errors = 0) => {
    for (let i = 0; i < n; i++) {
      const bad = i < errors;
      observer.attempt({ route: `${flag}-route`, target: 'candidate', upstream: 'c', status: bad ? 503 : 200, durationMs: 5, failure: bad ? '5xx' : undefined });
    }
  };
  const advance = (ms: number) => (now += ms);
  const iso = (ms = now) => new Date(ms).toISOString();
  return { flags, driver, traffic, advance, iso, now: () => now };
}

const gates = { maxErrorRate: 0.01, minRequests: 100 };

t.test('PUT it again after a rollback: the new plan is not judged on the traffic that rolled the old one back', async (t) => {
  const { flags, driver, traffic, advance, iso } = await rig(t);
  const plan = { steps: [{ percentage: 25, hold: '1m' }, { percentage: 100, hold: '1h' }], gates };
  await driver.put('f', plan, 'ops');
  traffic('f', 200, 20);
  await driver.tick();
  t.match(driver.get('f'), { state: 'rolled_back', reason: /^maxErrorRate 0\.1 > 0\.01 \(20 errors in 200 candidate requests/ });
  t.match(flags.view('f'), { enabled: false });

  advance(10_000); // the candidate is fixed; the 20 errors are still in the last minute
  const again = await driver.put('f', plan, 'ops');
  t.match(again, { state: 'running', step: 1, window: { candidateRequests: 0, from: iso() } }, 'the window starts at the new plan');
  traffic('f', 50);
  await driver.tick();
  t.match(driver.get('f'), { state: 'running', verdict: 'waiting', window: { candidateRequests: 50, candidateErrors: 0 } }, 'only the new plan\'s 50 requests: waits, no second rollback');
  traffic('f', 50);
  await driver.tick();
  t.match(driver.get('f'), { state: 'running', step: 1, verdict: 'green', gates: { maxErrorRate: { value: 0, state: 'ok' } } });
  t.match(flags.view('f'), { enabled: true, percentage: 25 });

  // A step raise does not restart the window: the earlier step's traffic is the same candidate's.
  advance(59_000);
  traffic('f', 100);
  advance(1_500); // the hold is over 500 ms before this tick: step 2 begins after these requests
  await driver.tick();
  t.match(driver.get('f'), { state: 'running', step: 2, percentage: 100, window: { candidateRequests: 100 } }, 'step 1\'s requests still count at step 2');
  t.equal(driver.get('f')?.window.from, again.window.from, 'window.from stays at the plan\'s start');
});

t.test('onFailure "pause": a red gate pauses and leaves the flag; resume restarts the hold and the gates\' traffic', async (t) => {
  const { flags, driver, traffic, advance, iso, now } = await rig(t);
  const plan = { steps: [{ percentage: 25, hold: '10m' }, { percentage: 50, hold: '10m' }], gates, onFailure: 'pause' };
  await driver.put('f', plan, 'ops');
  traffic('f', 200, 20);
  await driver.tick();
  t.match(driver.get('f'), { state: 'paused', step: 1, reason: /^maxErrorRate 0\.1 > 0\.01 \(20 errors in 200 candidate requests, last 1 s, since the plan started\); paused \(onFailure: pause\)$/ });
  t.match(flags.view('f'), { enabled: true, percentage: 25 }, 'the flag is left for a person');
  traffic('f', 100, 100);
  await driver.tick();
  t.match(driver.get('f'), { state: 'paused' }, 'a paused plan judges nothing');
  t.match(flags.view('f'), { enabled: true, percentage: 25 }, 'and never rolls back');

  advance(5_000);
  const resumedAt = now();
  const resumed = await driver.resume('f', 'ops');
  t.match(resumed, { state: 'running', step: 1, since: iso(resumedAt), nextStepAt: iso(resumedAt + 600_000), window: { from: iso(resumedAt), candidateRequests: 0 } }, 'the hold starts over');
  advance(12_000);
  traffic('f', 50);
  await driver.tick();
  t.match(driver.get('f'), { state: 'running', verdict: 'waiting', window: { candidateRequests: 50 } }, 'the errors before the resume are not judged again');
  t.match(driver.get('f')?.gates, { maxErrorRate: { detail: '0 errors in 50 candidate requests, last 12 s, since the plan resumed; waiting for 100 requests' } }, 'the detail says the span since the resume');

  advance(600_000 - 5_000 - 12_000 + 1_000); // 10 min since the plan started, 9m56s since the resume
  traffic('f', 100);
  await driver.tick();
  t.match(driver.get('f'), { state: 'running', step: 1, verdict: 'green' }, 'green, but the hold counts from the resume');
  advance(5_000);
  await driver.tick();
  t.match(driver.get('f'), { state: 'running', step: 2, percentage: 50 }, 'advances once 10m have passed since the resume');
  t.same(driver.get('f')?.history.map((h) => h.event), ['started', 'paused', 'resumed', 'advanced']);
});

t.test('rollbackTo 0 and "previous" on the first step', async (t) => {
  const { flags, driver, traffic } = await rig(t);
  await flags.set('was-on', { enabled: true, percentage: 5 }, { source: 'admin-api', who: 'ops' });
  await flags.set('was-off', { enabled: false, percentage: 30 }, { source: 'admin-api', who: 'ops' });
  const steps = [{ percentage: 40, hold: '1h' }, { percentage: 100, hold: '1h' }];
  await driver.put('zero', { steps, gates, rollbackTo: 0 }, 'ops');
  await driver.put('was-on', { steps, gates, rollbackTo: 'previous' }, 'ops');
  await driver.put('was-off', { steps, gates, rollbackTo: 'previous' }, 'ops');
  await driver.put('new', { steps, gates, rollbackTo: 'previous' }, 'ops');
  for (const f of ['zero', 'was-on', 'was-off', 'new']) {
    t.match(flags.view(f), { enabled: true, percentage: 40 }, `${f}: step 1`);
    traffic(f, 100, 50);
  }
  await driver.tick();
  for (const f of ['zero', 'was-on', 'was-off', 'new']) t.equal(driver.get(f)?.state, 'rolled_back', `${f}: rolled back`);
  t.match(flags.view('zero'), { enabled: true, percentage: 0 }, '0: percentage 0, still enabled (a cohort keeps its pilot users)');
  t.match(flags.view('was-on'), { enabled: true, percentage: 5 }, 'previous on step 1: the flag as it was before the plan');
  t.match(flags.view('was-off'), { enabled: false, percentage: 30 }, '...disabled, at its old percentage');
  t.match(flags.view('new'), { enabled: false }, '...or off when there was no flag');
});

t.test('a plan younger than its window says how much it covers', async (t) => {
  const { driver, traffic, advance } = await rig(t);
  await driver.put('f', { steps: [{ percentage: 25, hold: '1h' }, { percentage: 100, hold: '1h' }], gates: { ...gates, maxP95Ms: 100 } }, 'ops');
  advance(12_400);
  traffic('f', 150);
  await driver.tick();
  t.match(driver.get('f')?.gates, {
    maxErrorRate: { state: 'ok', detail: '0 errors in 150 candidate requests, last 12 s, since the plan started' },
    maxP95Ms: { state: 'ok', detail: 'candidate p95 over 150 attempts, last 12 s, since the plan started' },
  });
  advance(60_000);
  traffic('f', 150);
  await driver.tick();
  t.match(driver.get('f')?.gates, { maxErrorRate: { detail: '0 errors in 150 candidate requests, last 60 s' } }, 'once the plan is older than the window, the window');
});
