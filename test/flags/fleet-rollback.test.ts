// Fleet mode against a real HTTP server standing in for Unleash (test/helpers/fake-unleash.ts),
// with Admin API calls it applies and answers late (a slow Unleash): a rollback does not wait
// behind a change to the same flag, `expect` is checked against Unleash's current state, and a
// change made through the admin API is audited and counted once.
import t from 'tap';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { http } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { waitFor } from '../helpers/servers.js';
import { afters, breaks, fleet, offAt25, SLOW_MS, slowRamp, timed } from '../helpers/fake-unleash.js';

t.test('a rollback answers at once behind a slow change to the same flag; the queued change is refused; the slow "on" landing after it is undone', async (t) => {
  const f = await fleet(t);
  const seen = await offAt25(f);
  const { started, ramp } = await slowRamp(f);
  const queued = timed(f, { percentage: 75 }, 'alice', started);
  await new Promise((r) => setTimeout(r, 100));
  const rollback = await timed(f, { enabled: false }, 'bob', started);
  t.equal(rollback.status, 200, 'the rollback is answered');
  t.ok(rollback.at - 250 < SLOW_MS / 2, `within ${rollback.at - 250} ms of being sent, not behind the slow call (${SLOW_MS} ms)`);
  const q = await queued;
  t.equal(q.status, 409, 'the change queued before it is refused, not applied after it');
  t.match(q.json, { error: 'superseded_by_rollback', message: /^not applied: a rollback of "flag" \(\{"enabled":false\} by admin-api:bob@127\.0\.0\.1\) arrived while this change waited its turn/ });
  t.ok(q.at <= rollback.at, 'and told so no later than the rollback');
  const r = await ramp;
  t.equal(r.status, 409, 'the change under way is answered too');
  t.match(r.json, { error: 'superseded_by_rollback', message: /was applied in Unleash for the whole fleet, but a rollback of this flag arrived while it was being applied and overrides it/ });
  await waitFor(() => f.running.cutover.store.flagQueueCount === 0, 5000, 'the re-assert');
  t.match(f.u.env('flag'), { enabled: false }, 'Unleash ends off: its late "on" was switched off again');
  t.same(f.u.rollout('flag'), [50], 'the refused 75 % never reached Unleash');
  t.equal(f.running.cutover.store.view('flag')?.enabled, false, 'and this replica routes by that');
  const lines = (await f.audit()).slice(seen);
  // bob's first call found the toggle off already (alice's "on" not landed): it changed nothing, so no line of its own.
  t.same(afters(lines), ['admin-api:alice true,50', 'admin-api:bob false,50'], 'what was live fleet-wide, each once, in the order it took effect');
  t.match(lines[0], { reason: 'applied in unleash; applied, then overridden by a rollback that arrived during it', before: { enabled: false, percentage: 25 } });
  t.match(lines[1], { reason: /re-asserted/, before: { enabled: true, percentage: 50 }, after: { enabled: false } });
  t.same(breaks(await f.audit()), [], 'each line starts where the one before left the flag');
});

t.test('a change sent after a rollback waits for its re-assert: what the operator said last stands', async (t) => {
  const f = await fleet(t);
  await offAt25(f);
  const { started, ramp } = await slowRamp(f);
  t.equal((await timed(f, { enabled: false }, 'bob', started)).status, 200);
  f.u.late.delete('POST on');
  const again = await timed(f, { enabled: true, percentage: 10 }, 'carol', started);
  t.equal(again.status, 200, 'applied');
  t.ok(again.at >= SLOW_MS, 'after the change the rollback overtook had settled (and the rollback was re-asserted)');
  t.equal((await ramp).status, 409);
  t.match(f.u.env('flag'), { enabled: true }, 'Unleash ends as carol said');
  t.same(f.u.rollout('flag'), [10]);
});

t.test('a change sent while a rollback that overtook nothing is under way runs after it: the slow "off" does not undo it', async (t) => {
  const f = await fleet(t); // on at 25 %
  f.u.late.set('POST off', SLOW_MS);
  const started = Date.now();
  const rollback = timed(f, { enabled: false }, 'bob', started);
  await new Promise((r) => setTimeout(r, 150));
  const again = timed(f, { enabled: true, percentage: 10 }, 'carol', started);
  t.equal((await rollback).status, 200);
  const a = await again;
  t.equal(a.status, 200, 'applied');
  t.ok(a.at >= SLOW_MS, `after the rollback settled (${a.at} ms), not alongside it`);
  t.match(f.u.env('flag'), { enabled: true }, 'Unleash ends as carol said last');
  t.same(f.u.rollout('flag'), [10]);
});

t.test('a rollback live in Unleash but not audited (500 applied_then_failed) is still re-asserted over the "on" it overtook', async (t) => {
  const f = await fleet(t);
  await offAt25(f);
  await rm(join(f.dirs.flagsDir, 'audit.log'));
  await mkdir(join(f.dirs.flagsDir, 'audit.log')); // appends fail: EISDIR
  const { started, ramp } = await slowRamp(f);
  // The toggle is still off (alice's "on" has not landed): bob's rollback writes its 10 %, which has a line to write.
  const rollback = await timed(f, { enabled: false, percentage: 10 }, 'bob', started);
  t.equal(rollback.status, 500);
  t.match(rollback.json, { error: 'applied_then_failed', message: /^the routing change \{"enabled":false,"percentage":10\} was applied in unleash for the whole fleet and this replica routes by it/ });
  t.equal((await ramp).status, 409);
  await waitFor(() => f.running.cutover.store.flagQueueCount === 0, 5000, 'the re-assert');
  t.match(f.u.env('flag'), { enabled: false }, 'the caller was told its "off" is live: the late "on" does not outlast it');
  t.equal(f.running.cutover.store.view('flag')?.enabled, false);
});

t.test('a rollback refused by its expect as "already off" (the dashboard\'s Disable) still stands against an "on" landing after it', async (t) => {
  const f = await fleet(t);
  await offAt25(f);
  const { started, ramp } = await slowRamp(f);
  const disable = await timed(f, { enabled: false, expect: { enabled: true } }, 'dashboard', started);
  t.equal(disable.status, 409, 'Unleash has it off (the "on" has not landed): "already off"');
  t.match(disable.json, { error: 'precondition_failed', current: { enabled: false } });
  t.equal((await ramp).status, 409);
  await waitFor(() => f.running.cutover.store.flagQueueCount === 0, 5000, 'the re-assert');
  t.match(f.u.env('flag'), { enabled: false }, 'and off it stays');
});

t.test('expect is checked against the toggle in Unleash now, not as this replica last polled it', async (t) => {
  const f = await fleet(t);
  f.u.state.clientStatus = 500; // this replica's SDK keeps its last state (on, 25 %)
  await new Promise((r) => setTimeout(r, 400));
  (f.u.env('flag') as { enabled: boolean }).enabled = false; // Bob, in Unleash's UI
  f.u.calls.length = 0;
  t.equal(f.running.cutover.store.view('flag')?.enabled, true, 'this replica still shows it on');
  const r = await f.post({ percentage: 50, expect: { enabled: true } });
  t.equal(r.status, 409);
  t.match(r.json(), { error: 'precondition_failed', message: /it is enabled false, not enabled true as expected/, current: { enabled: false, percentage: 25 } });
  t.same(f.u.calls, ['GET feature'], 'one read, nothing written');
  const local = await f.post({ health_check_interval: 30, expect: { enabled: true } });
  t.equal(local.status, 409, 'also for a change of per-replica settings only');
  await t.rejects(stat(join(f.dirs.flagsDir, 'flag.json')), 'nothing written');
  t.same(f.u.rollout('flag'), [25]);
  t.same(await f.adminLines(), []);
});

t.test('expect when Unleash cannot be read: refused, nothing changed', async (t) => {
  const f = await fleet(t);
  f.u.calls.length = 0;
  f.u.failures.set(1, 'fail').set(2, 'fail');
  const r = await f.post({ percentage: 50, expect: { enabled: true } });
  t.equal(r.status, 502);
  t.match(r.json(), { error: 'unleash_error', message: /^Unleash: could not read toggle "flag" \(.*answered 500.*\); "expect" could not be checked against Unleash's current state, so nothing was changed$/ });
  const local = await f.post({ health_check_interval: 30, expect: { enabled: true } });
  t.equal(local.status, 502, 'also for per-replica settings only');
  t.same(f.u.calls, ['GET feature', 'GET feature'], 'only the reads');
  await t.rejects(stat(join(f.dirs.flagsDir, 'flag.json')));
  t.same(await f.adminLines(), []);
});

t.test('an admin change is audited and counted once, as admin-api; a change made in Unleash still as unleash', async (t) => {
  const f = await fleet(t);
  const changes = async (source: string) => parseProm((await http(`http://127.0.0.1:${f.adminPort}/metrics`)).text).value('cutover_flag_changes_total', { flag: 'flag', source });
  t.equal((await f.post({ percentage: 50 })).status, 200);
  // A toggle Unleash lacks, created by the change (through states of its own: off, no strategy, ...).
  await writeFile(join(f.dirs.flagsDir, 'fresh.json'), JSON.stringify({ enabled: false, percentage: 0, health_check_interval: 30 }));
  await waitFor(() => f.running.cutover.store.uses('fresh'), 3000, 'fresh.json to be read');
  t.equal((await f.post({ enabled: true, percentage: 5 }, 'fresh')).status, 200);
  await new Promise((r) => setTimeout(r, 600)); // three more polls
  t.same((await f.audit()).filter((l) => l.source !== 'file').map((l) => `${l.source} ${l.flag}`), ['admin-api flag', 'admin-api fresh'], 'no unleash line for what the poll saw of them');
  t.same([await changes('admin-api'), await changes('unleash')], [1, 0]);
  (f.u.env('flag') as { enabled: boolean }).enabled = false; // Bob, in Unleash's UI
  await waitFor(async () => (await f.audit()).some((l) => l.source === 'unleash'), 3000, "Bob's change in the audit log");
  t.match((await f.audit()).filter((l) => l.source === 'unleash'), [{ flag: 'flag', before: { enabled: true, percentage: 50 }, after: { enabled: false, percentage: 50 } }]);
  t.same([await changes('admin-api'), await changes('unleash')], [1, 1]);
});

t.test('a rollback that fails outright (Unleash answers 500) does not make the change it overtook claim to be overridden: it is live, answered and audited once as applied', async (t) => {
  const f = await fleet(t);
  const seen = await offAt25(f);
  f.u.failures.set(4, 'fail'); // GET, PUT 50, POST on (slow) are the ramp's; the rollback's read fails
  const { started, ramp } = await slowRamp(f);
  const rollback = await timed(f, { enabled: false }, 'bob', started);
  t.equal(rollback.status, 502, 'the rollback failed, nothing of it changed');
  const r = await ramp;
  t.equal(r.status, 200, `the change it overtook is answered as applied, not as overridden (${r.json.message ?? 'no error'})`);
  t.match(r.json, { enabled: true, percentage: 50 });
  t.match(f.u.env('flag'), { enabled: true }, 'Unleash has it on');
  t.same(f.u.rollout('flag'), [50]);
  t.match(f.running.cutover.store.view('flag'), { enabled: true, percentage: 50 }, 'and this replica routes by it');
  await waitFor(() => f.running.cutover.store.flagQueueCount === 0, 5000, 'the lane to settle');
  await new Promise((r) => setTimeout(r, 600)); // three more polls: the SDK's report of the "on" is not a change made elsewhere
  const lines = (await f.audit()).slice(seen);
  t.same(lines.map((l) => `${l.actor.split('@')[0]} ${String(l.after?.enabled)},${String(l.after?.percentage)}`), ['admin-api:alice true,50'], 'audited once, as alice');
  t.equal(lines[0]?.reason, 'applied in unleash', 'not as applied, then overridden');
});
