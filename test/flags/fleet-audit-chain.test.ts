// Fleet mode's audit log as the flag's history, against a real HTTP server standing in for
// Unleash (test/helpers/fake-unleash.ts) that applies or answers some calls late: each line
// starts where the one before left the flag, in the order the states took effect, however a
// rollback and a change under way interleave; concurrent rollbacks and per-replica settings end
// as the last one accepted said.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { waitFor } from '../helpers/servers.js';
import { afters, breaks, fleet, offAt25, SLOW_MS, timed } from '../helpers/fake-unleash.js';

t.test('a change under way that landed before the rollback (only its answer was slow): its line comes first, the rollback\'s from there', async (t) => {
  const f = await fleet(t);
  const seen = await offAt25(f);
  f.u.answerLate.set('POST on', SLOW_MS); // alice's "on" is in Unleash at once, her answer is slow
  const started = Date.now();
  const ramp = timed(f, { enabled: true, percentage: 50 }, 'alice', started);
  await new Promise((r) => setTimeout(r, 150));
  const rollback = await timed(f, { enabled: false }, 'bob', started);
  t.equal(rollback.status, 200);
  await ramp;
  await waitFor(() => f.running.cutover.store.flagQueueCount === 0, 5000, 'the lane to settle');
  await new Promise((r) => setTimeout(r, 600)); // three more polls: nothing of it is audited again
  t.match(f.u.env('flag'), { enabled: false });
  const lines = (await f.audit()).slice(seen);
  t.same(afters(lines), ['admin-api:alice true,50', 'admin-api:bob false,50'], "alice's on, then bob's off: the log ends as Unleash is");
  t.match(lines[0], { before: { enabled: false, percentage: 25 }, reason: /live in unleash before the change by admin-api:bob@[^ ]+ that arrived during it$/ });
  t.match(lines[1], { before: { enabled: true, percentage: 50 }, after: { enabled: false, percentage: 50 }, reason: 'applied in unleash' });
  t.same(breaks(await f.audit()), []);
});

t.test('a change under way that lands after the rollback: the rollback\'s line, then its own from where the rollback left the flag', async (t) => {
  const f = await fleet(t); // on at 25 %
  f.u.late.set('PUT strategies', 1500); // alice's 50 % reaches Unleash 1.5 s late
  const started = Date.now();
  const ramp = timed(f, { percentage: 50 }, 'alice', started);
  await new Promise((r) => setTimeout(r, 150));
  t.equal((await timed(f, { enabled: false }, 'bob', started)).status, 200);
  await ramp; // 409 overridden, or 200 if this replica's SDK polled its 50 % first: the same line
  await waitFor(() => f.running.cutover.store.flagQueueCount === 0, 5000, 'the lane to settle');
  await new Promise((r) => setTimeout(r, 600));
  t.same(f.u.rollout('flag'), [50]);
  const lines = await f.audit();
  t.same(afters(lines), ['admin-api:bob false,25', 'admin-api:alice false,50']);
  t.match(lines[1], { before: { enabled: false, percentage: 25 } });
  t.same(breaks(lines), [], 'alice\'s line does not start from the "on" bob had already undone');
});

t.test('a change answered 504 not_seen_here is audited once, as its caller\'s: not again as unleash when the SDK sees it later', async (t) => {
  const f = await fleet(t);
  f.u.state.clientStatus = 500; // an Unleash outage for the SDK's polls only: it keeps its last state
  await new Promise((r) => setTimeout(r, 400));
  const r = await f.post({ enabled: false });
  t.equal(r.status, 504);
  f.u.state.clientStatus = 200; // over: the SDK polls the change (after its back-off)
  await waitFor(() => f.running.cutover.store.view('flag')?.enabled === false, 15_000, 'the SDK to see the change');
  await new Promise((r) => setTimeout(r, 600));
  const lines = await f.audit();
  t.same(lines.map((l) => `${l.source} ${String(l.before?.enabled)} -> ${String(l.after?.enabled)}`), ['admin-api true -> false'], 'one line, alice\'s');
  (f.u.env('flag') as { enabled: boolean }).enabled = true; // Bob, in Unleash's UI: still his own line
  await waitFor(async () => (await f.audit()).length === 2, 3000, "Bob's change in the audit log");
  t.match((await f.audit())[1], { source: 'unleash', before: { enabled: false }, after: { enabled: true } });
});

t.test('two rollbacks with different percentages at once: the one sent last stands, though the first one\'s call lands later', async (t) => {
  const f = await fleet(t); // on at 25 %
  f.u.late.set('PUT strategies', 1500); // the plan's rollback to 10 % reaches Unleash late
  const started = Date.now();
  const first = timed(f, { enabled: false, percentage: 10 }, 'plan', started);
  await new Promise((r) => setTimeout(r, 150));
  f.u.late.delete('PUT strategies');
  const second = await timed(f, { enabled: false, percentage: 0 }, 'bob', started);
  t.equal(second.status, 200);
  t.ok(second.at < 1500, `the later rollback did not wait (${second.at} ms)`);
  const one = await first;
  t.equal(one.status, 409, 'the earlier one is told a later rollback overrides it');
  t.match(one.json, { error: 'superseded_by_rollback' });
  await waitFor(() => f.running.cutover.store.flagQueueCount === 0, 5000, 'the re-assert');
  t.match(f.u.env('flag'), { enabled: false });
  t.same(f.u.rollout('flag'), [0], "bob's 0 %, sent last, stands");
  t.same(breaks(await f.audit()), []);
});

t.test("per-replica settings of a change a rollback overtook are not written after the rollback's", async (t) => {
  const f = await fleet(t);
  f.u.late.set('GET feature', 1000); // alice's read (for her expect) is answered 1 s late
  const started = Date.now();
  const slow = timed(f, { health_check_interval: 30, expect: { percentage: 25 } }, 'alice', started);
  await new Promise((r) => setTimeout(r, 150));
  f.u.late.delete('GET feature');
  t.equal((await timed(f, { enabled: false, health_check_interval: 10 }, 'bob', started)).status, 200);
  const s = await slow;
  t.equal(s.status, 409);
  t.match(s.json, { error: 'superseded_by_rollback', message: /^not applied: the per-replica settings in this call \(health_check_interval\) were not written: a rollback of "flag" arrived while it was under way/ });
  const file = JSON.parse(await readFile(join(f.dirs.flagsDir, 'flag.json'), 'utf8')) as { health_check_interval: number };
  t.equal(file.health_check_interval, 10, "bob's setting stands");
  t.equal(f.running.cutover.store.view('flag')?.health_check_interval, 10);
});
