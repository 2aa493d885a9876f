// The fleet-mode FlagStore against a real HTTP server standing in for Unleash
// (test/helpers/fake-unleash.ts): its per-flag queues and its audit lines.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fleet } from '../helpers/fake-unleash.js';
import { waitFor } from '../helpers/servers.js';

t.test('refused changes leave no per-flag queue behind', async (t) => {
  const f = await fleet(t);
  const store = f.running.cutover.store;
  const statuses = new Set<number>();
  for (let i = 0; i < 30; i++) {
    // A cohort has no place in Unleash: 409, whatever the name.
    statuses.add((await f.post({ enabled: true, cohort: ['u1'] }, `typo_${randomBytes(4).toString('hex')}`)).status);
  }
  t.same([...statuses], [409], '30 changes to names nobody has, all refused');
  t.equal((await f.post({ enabled: true }, 'Bad%20Name!')).status, 400, 'a bad name is refused');
  t.equal((await f.post({ enabled: 'yes' }, 'flag')).status, 400, 'a bad patch is refused');
  t.equal(store.flagQueueCount, 0, 'no queue kept for any of them');
  t.same(f.u.calls, [], 'nothing reached Unleash');
});

t.test('changes to one flag still run one at a time; its queue goes once they are done', async (t) => {
  const f = await fleet(t);
  const store = f.running.cutover.store;
  f.u.slow.set('flag', 300);
  f.u.calls.length = 0;
  const first = f.post({ percentage: 50 });
  await new Promise((r) => setTimeout(r, 50)); // the first change's GET is under way
  const second = f.post({ percentage: 10 });
  await new Promise((r) => setTimeout(r, 50));
  t.equal(store.flagQueueCount, 1, 'one queue for the flag while its changes run');
  t.same([(await first).status, (await second).status], [200, 200]);
  const one = ['GET feature', 'PUT strategies', 'GET feature']; // read, change, read back
  t.same(f.u.calls, [...one, ...one], 'the second change began after the first was done');
  t.same(f.u.rollout('flag'), [10], 'the later change is the one that stands');
  t.equal(store.flagQueueCount, 0, 'and no queue is left');
});

t.test("an admin change's audit line chains with a file edit landing during its Unleash calls", async (t) => {
  const f = await fleet(t);
  f.u.slow.set('flag', 500); // read, off, read back: 1.5 s
  const posted = f.post({ enabled: false });
  await new Promise((r) => setTimeout(r, 100));
  // A hand edit of this replica's settings, picked up by the rescan while the change is in Unleash.
  await writeFile(join(f.dirs.flagsDir, 'flag.json'), JSON.stringify({ enabled: false, percentage: 0, auto_disable_on_failure: true, auto_disable_after: 7 }));
  await waitFor(async () => (await f.audit()).some((l) => l.source === 'file'), 1000, 'the rescan');
  t.equal((await posted).status, 200);
  const lines = (await f.audit()).filter((l) => l.source !== 'unleash');
  t.same(lines.map((l) => l.source), ['file', 'admin-api']);
  t.match(lines[1], {
    before: { enabled: true, auto_disable_on_failure: true, auto_disable_after: 7 },
    after: { enabled: false, auto_disable_on_failure: true, auto_disable_after: 7 },
  }, "alice's line changes only what she changed; the file line has the edit");
});

t.test("an admin change's audit line starts where a change made in Unleash meanwhile left the flag; the poll's report of the admin change itself is not a second line", async (t) => {
  const f = await fleet(t);
  f.u.slow.set('flag', 500);
  const posted = f.post({ percentage: 50 });
  await new Promise((r) => setTimeout(r, 100));
  (f.u.env('flag') as { enabled: boolean }).enabled = false; // Bob, in Unleash's UI
  t.equal((await posted).status, 200);
  const lines = await f.audit();
  t.same(lines.map((l) => `${l.source} ${String(l.before?.enabled)},${String(l.before?.percentage)} -> ${String(l.after?.enabled)},${String(l.after?.percentage)}`), [
    'unleash true,25 -> false,25',
    'admin-api false,25 -> false,50',
  ], "Bob's off is not in alice's line, and alice's change is audited once");
});
