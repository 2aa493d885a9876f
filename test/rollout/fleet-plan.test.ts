// A rollout plan in fleet mode against a real HTTP server standing in for Unleash
// (test/helpers/fake-unleash.ts), with real traffic through the proxy for its gates.
import t from 'tap';
import { http } from '../helpers/http.js';
import { waitFor } from '../helpers/servers.js';
import { fleet } from '../helpers/fake-unleash.js';

t.test('a step decided while an operator\'s rollback is under way does not turn the flag back on', async (t) => {
  const f = await fleet(t); // toggle "flag" on at 25 %, routing /r
  const admin = `http://127.0.0.1:${f.adminPort}`;
  const proxy = `http://127.0.0.1:${f.running.proxyPort}`;
  let n = 0;
  const traffic = setInterval(() => {
    for (let k = 0; k < 5; k++) void http(`${proxy}/r/${n}`, { headers: { 'x-user-id': `user-${n++ % 500}` } }).catch(() => undefined);
  }, 20);
  t.teardown(() => clearInterval(traffic));
  const plan = { steps: [{ percentage: 10, hold: '1s' }, { percentage: 50, hold: '1m' }], gates: { maxErrorRate: 0.5, minRequests: 1, window: '10s' } };
  const put = await http(`${admin}/api/v1/rollouts/flag`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(plan) });
  t.equal(put.status, 200, 'the plan starts');
  t.same(f.u.rollout('flag'), [10]);
  // Bob rolls back while this replica's SDK cannot poll: his "off" is in Unleash at once, but his
  // call waits to see it here, and the plan's hold (1 s) runs out meanwhile.
  f.u.state.clientStatus = 500;
  const rollback = http(`${admin}/api/v1/flags/flag`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-cutover-actor': 'bob' }, body: JSON.stringify({ enabled: false }) });
  await waitFor(() => f.u.env('flag')?.enabled === false, 2000, 'the rollback in Unleash');
  await new Promise((r) => setTimeout(r, 2500)); // past the hold: ticks decide to advance
  f.u.state.clientStatus = 200;
  // 200, or 504 if the SDK's backoff after the 500s outlasts the wait: applied for the fleet either way.
  const status = (await rollback).status;
  t.ok(status === 200 || status === 504, `the rollback is answered (${status})`);
  await waitFor(async () => (await http(`${admin}/api/v1/rollouts/flag`)).json<{ state: string }>().state === 'paused', 5000, 'the plan paused by the rollback');
  await waitFor(() => f.running.cutover.store.flagQueueCount === 0, 5000, 'every change settled');
  t.match(f.u.env('flag'), { enabled: false }, 'off stays: the operator said so last');
  t.same(f.u.rollout('flag'), [10], 'the step to 50 % was not applied over it');
});
