// The fleet-mode FlagStore against a real HTTP server standing in for Unleash
// (test/helpers/fake-unleash.ts): its per-flag queues and its audit lines.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { fleet } from '../helpers/fake-unleash.js';

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
