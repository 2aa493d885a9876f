// UnleashAdmin and the fleet-mode admin POST against a small real HTTP server standing in for
// Unleash (test/helpers/fake-unleash.ts).
import t, { type Test } from 'tap';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { postJson } from '../helpers/http.js';
import { startCutover, waitFor, writeConfig } from '../helpers/servers.js';
import { ADMIN, BACKEND, ENV, fakeUnleash, fleet } from '../helpers/fake-unleash.js';
import { UnleashAdmin, UnleashChangeError } from '../../src/flags/unleash-admin.js';

function admin(t: Test, api: string): UnleashAdmin {
  const a = new UnleashAdmin({ apiUrl: api, token: ADMIN, environment: ENV, project: 'default', timeoutMs: 2000 });
  t.teardown(() => a.close());
  return a;
}

async function refusal(p: Promise<unknown>): Promise<UnleashChangeError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!(err instanceof UnleashChangeError)) throw new Error(`expected an UnleashChangeError, got ${String(err)}`);
  return err;
}

t.test('the safe order: on = rollout first, off = toggle first', async (t) => {
  const u = await fakeUnleash(t);
  const a = admin(t, u.api);
  u.seed('flag', false, 10);
  t.same(await a.apply('flag', { enabled: true, percentage: 25 }), { expected: { enabled: true, percentage: 25 }, wrote: true });
  t.same(u.calls, ['GET feature', 'PUT strategies', 'POST on', 'GET feature'], 'turning on: the rollout is set before the toggle goes on');
  u.calls.length = 0;
  t.same(await a.apply('flag', { enabled: false, percentage: 10 }), { expected: { enabled: false, percentage: 10 }, wrote: true });
  t.same(u.calls, ['GET feature', 'POST off', 'PUT strategies', 'GET feature'], 'turning off: the toggle goes off before the rollout changes');
});

t.test('turning on fails after the rollout changed: the rollout is put back', async (t) => {
  const u = await fakeUnleash(t);
  const a = admin(t, u.api);
  u.seed('flag', false, 10);
  u.failures.set(3, 'fail');
  const err = await refusal(a.apply('flag', { enabled: true, percentage: 25 }));
  t.same(u.calls, ['GET feature', 'PUT strategies', 'POST on', 'PUT strategies'], 'the undo is the same PUT with the previous parameters');
  t.match(u.env('flag'), { enabled: false }, 'the toggle stays off');
  t.same(u.rollout('flag'), [10], 'and the rollout is 10 again');
  t.equal(err.applied, undefined, 'nothing is live');
  t.match(err.message, /could not turn the toggle on .*injected failure.*Undone: set the rollout from 10 to 25 %\. Nothing that routes was changed in Unleash\./);
});

t.test('turning off succeeded, the rollout update fails: the off stays (the safe direction)', async (t) => {
  const u = await fakeUnleash(t);
  const a = admin(t, u.api);
  u.seed('flag', true, 25);
  u.failures.set(3, 'fail');
  const err = await refusal(a.apply('flag', { enabled: false, percentage: 10 }));
  t.same(u.calls, ['GET feature', 'POST off', 'PUT strategies'], 'no undo of the off');
  t.match(u.env('flag'), { enabled: false });
  t.same(u.rollout('flag'), [25], 'the rollout was not changed');
  t.same(err.applied, { enabled: false }, 'what is live: the off');
  t.match(err.message, /The toggle is OFF in Unleash for the whole fleet \(kept: turning off is the safe direction\); the rollout was not changed\./);
  t.notMatch(err.message, /Nothing that routes was changed/);
});

t.test('the undo fails too: the error says exactly what is left changed', async (t) => {
  const u = await fakeUnleash(t);
  const a = admin(t, u.api);
  u.seed('flag', false, 10);
  u.failures.set(3, 'fail').set(4, 'fail');
  const err = await refusal(a.apply('flag', { enabled: true, percentage: 25 }));
  t.same(u.calls, ['GET feature', 'PUT strategies', 'POST on', 'PUT strategies']);
  t.same(u.rollout('flag'), [25], 'the rollout is left at 25 (the toggle is off)');
  t.same(err.applied, { percentage: 25 });
  t.match(err.message, /LEFT CHANGED in Unleash: the rollout at 25 % \(was 10\) \(undoing "set the rollout from 10 to 25 %" failed too: .*answered 500.*\); set it back there or repeat the call\./);
});

t.test('a new toggle: the created strategy is deleted, the created toggle stays (off) and the error says so', async (t) => {
  const u = await fakeUnleash(t);
  const a = admin(t, u.api);
  u.failures.set(4, 'fail');
  const err = await refusal(a.apply('fresh', { enabled: true, percentage: 5 }));
  t.same(u.calls, ['GET feature', 'POST features', 'POST strategies', 'POST on', 'DELETE strategies']);
  t.match(u.env('fresh'), { enabled: false, strategies: [] }, 'the toggle exists, off, without the strategy');
  t.equal(err.applied, undefined, 'nothing that routes is live');
  t.match(err.message, /Undone: create a flexibleRollout strategy at 5 %\. Nothing that routes was changed in Unleash\. Left in Unleash: the toggle "fresh" \(created in project "default", off in "development": it sends nobody to the candidate\)\./);
});

t.test('no answer to "on" (applied, answer lost): it is switched off again, then the rollout put back', async (t) => {
  const u = await fakeUnleash(t);
  const a = admin(t, u.api);
  u.seed('flag', false, 10);
  u.failures.set(3, 'lost');
  const err = await refusal(a.apply('flag', { enabled: true, percentage: 25 }));
  t.same(u.calls, ['GET feature', 'PUT strategies', 'POST on', 'POST off', 'PUT strategies']);
  t.match(u.env('flag'), { enabled: false });
  t.same(u.rollout('flag'), [10]);
  t.equal(err.applied, undefined);
});

t.test('no answer to "off": never switched back on; the error says it may be off', async (t) => {
  const u = await fakeUnleash(t);
  const a = admin(t, u.api);
  u.seed('flag', true, 25);
  u.failures.set(2, 'lost');
  const err = await refusal(a.apply('flag', { enabled: false, percentage: 10 }));
  t.same(u.calls, ['GET feature', 'POST off'], 'no "on" to undo it, no rollout change after it');
  t.match(u.env('flag'), { enabled: false });
  t.same(u.rollout('flag'), [25]);
  t.match(err.message, /Unleash did not answer, so "turn the toggle off" may have happened: check the toggle in Unleash, or repeat the call\.$/);
  t.notMatch(err.message, /Nothing that routes was changed/);
});

t.test('admin POST: 200 once this replica routes by it, audited with the caller', async (t) => {
  const f = await fleet(t);
  const r = await f.post({ enabled: false });
  t.equal(r.status, 200);
  t.match(r.json(), { enabled: false, source: 'unleash' });
  t.match(await f.adminLines(), [{ actor: /^admin-api:alice@/, reason: 'applied in unleash', before: { enabled: true }, after: { enabled: false } }]);
});

t.test('admin POST, partly applied: 502 says the off is live (and seen here), and it is audited', async (t) => {
  const f = await fleet(t);
  f.u.calls.length = 0;
  f.u.failures.set(3, 'fail'); // GET, off, PUT <- fails
  const r = await f.post({ enabled: false, percentage: 10, health_check_interval: 30 });
  t.equal(r.status, 502);
  t.match(r.json(), { error: 'partly_applied', message: /OFF in Unleash .*kept.* This replica already routes by that\. The per-replica settings in this call \(health_check_interval\) were not written\./ });
  t.match(await f.adminLines(), [{ actor: /alice/, reason: /^applied in unleash; partly applied: the toggle is off/, after: { enabled: false, percentage: 25 } }]);
});

t.test('admin POST, Unleash refuses the first step: 502, nothing changed, nothing audited', async (t) => {
  const f = await fleet(t);
  f.u.calls.length = 0;
  f.u.failures.set(2, 'fail');
  const r = await f.post({ enabled: false });
  t.match(r.json(), { error: 'unleash_error', message: /Nothing that routes was changed/ });
  t.equal(r.status, 502);
  t.match(f.u.env('flag'), { enabled: true });
  t.same(await f.adminLines(), []);
});

t.test("admin POST when this replica's SDK stopped (401 on its backend token): 504 not_seen_here, audited as such", async (t) => {
  const f = await fleet(t);
  f.u.state.clientStatus = 401;
  await new Promise((r) => setTimeout(r, 600)); // a poll or two: the SDK meets the 401
  const started = Date.now();
  const r = await f.post({ enabled: false });
  const tookMs = Date.now() - started;
  t.equal(r.status, 504, `not a 200 with the old state (answered after ${tookMs} ms)`);
  t.match(r.json(), { error: 'not_seen_here', message: /^the change \{"enabled":false\} was applied in Unleash for the whole fleet \(environment "development"\), but THIS replica has not seen it within 3\.4 s and still routes by the old state \(its last successful fetch from Unleash: [\d.]+ s ago; last error: .*401.*\)/ });
  t.match(f.u.env('flag'), { enabled: false }, 'the change is in Unleash');
  t.match(await f.adminLines(), [{ actor: /alice/, reason: 'applied in unleash; NOT seen by this replica within 3.4 s (answered 504)', before: { enabled: true }, after: { enabled: false } }]);
});

t.test('admin POST: the local settings cannot be written after the routing change: 500 says it is applied and audited', async (t) => {
  const f = await fleet(t);
  await mkdir(join(f.dirs.flagsDir, 'flag.json')); // a directory where the flag file goes: the write fails
  const r = await f.post({ enabled: false, health_check_interval: 30 });
  t.equal(r.status, 500);
  t.match(r.json(), { error: 'applied_then_failed', message: /^the routing change \{"enabled":false\} was applied in unleash for the whole fleet, this replica routes by it and its audit log has it, but the per-replica settings \(health_check_interval\) were not written: / });
  t.match(await f.adminLines(), [{ reason: 'applied in unleash', after: { enabled: false } }], 'the routing change is audited');
});

t.test('admin POST: the audit log cannot be written: 500 says the change is applied and where it is logged', async (t) => {
  const f = await fleet(t);
  await mkdir(join(f.dirs.flagsDir, 'audit.log'));
  const r = await f.post({ enabled: false });
  t.equal(r.status, 500);
  t.match(r.json(), { error: 'applied_then_failed', message: /applied in unleash for the whole fleet and this replica routes by it\. It is NOT in this replica's audit log \(.*EISDIR.*\); the proxy log has it\./ });
  t.match(f.u.env('flag'), { enabled: false });
});

t.test('shutting down while the SDK retries a failing fetch does not crash the process', async (t) => {
  // unleash-client's destroy() drops its repository's listeners while a fetch may still be
  // retrying; that fetch's error was then an 'error' event nobody listened to: an uncaught
  // exception on SIGTERM during an Unleash outage, in the middle of draining.
  const u = await fakeUnleash(t);
  u.seed('flag', true, 25);
  const dirs = await writeConfig(t, { upstreams: { legacy: { url: 'http://127.0.0.1:9' } }, routes: [] });
  const { running } = await startCutover(t, dirs, { serve: { drainTimeoutMs: 200, unleash: { url: u.api, apiToken: BACKEND, refreshIntervalMs: 100, startupWaitMs: 3000, disableMetrics: true } } });
  await u.stop(); // each fetch now fails to connect and is retried twice (1 s, 2 s)
  await new Promise((r) => setTimeout(r, 500));
  await running.shutdown();
  await new Promise((r) => setTimeout(r, 3500)); // the retries end; their error must go nowhere
  t.pass('no uncaught error after shutdown');
});

t.test('a slow Unleash call for one flag does not hold up a rollback of another', async (t) => {
  const f = await fleet(t);
  f.u.seed('ramp', true, 10);
  // A flag of cutover's (it changes only those): this replica has a settings file for it.
  await writeFile(join(f.dirs.flagsDir, 'ramp.json'), JSON.stringify({ enabled: false, percentage: 0, health_check_interval: 30 }));
  await waitFor(() => f.running.cutover.store.uses('ramp'), 3000, 'ramp.json to be read');
  f.u.slow.set('ramp', 1500); // every admin call about "ramp": 1.5 s
  const started = Date.now();
  const ramp = postJson(`http://127.0.0.1:${f.adminPort}/api/v1/flags/ramp`, { percentage: 50 }).then((r) => ({ status: r.status, at: Date.now() - started }));
  await new Promise((r) => setTimeout(r, 100)); // the ramp's first call is under way
  const rollback = await f.post({ enabled: false });
  const rolledBackAt = Date.now() - started;
  t.equal(rollback.status, 200, 'rollback answered');
  const r = await ramp;
  t.equal(r.status, 200, 'the ramp still went through');
  t.ok(rolledBackAt < r.at, `the rollback (${rolledBackAt} ms) did not wait for the ramp (${r.at} ms)`);
  t.ok(rolledBackAt < 1500, `the rollback took less than one slow call (${rolledBackAt} ms)`);
  t.match(f.u.env('flag'), { enabled: false });
  t.same(f.u.rollout('ramp'), [50]);
});
