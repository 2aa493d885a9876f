import t, { type Test } from 'tap';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';
import type { RolloutView } from '../../src/rollout/driver.js';

// What an operator does around a plan, on a real proxy with real files: start it again after a
// rollback.

async function setup(t: Test) {
  const legacy = await startUpstream(t, 'legacy');
  const cand = { failing: false };
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    res.writeHead(cand.failing ? 500 : 200, { 'content-type': 'application/json' });
    res.end(cand.failing ? '{"error":"boom"}' : '{"served_by":"candidate"}');
  });
  const config: ConfigInput = {
    // No ejection: this is about the gates' window, not about a candidate still ejected after its fix.
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url, outlier: { consecutiveFailures: 1000 } } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', timeout: '1s' }],
  };
  const dirs = await writeConfig(t, config, { f: { enabled: false, percentage: 0 } });
  return { dirs, cand };
}

/** ~150 requests a second from 2,000 users until stopped. */
function traffic(t: Test, proxy: string) {
  let i = 0;
  const inflight = new Set<Promise<unknown>>();
  const timer = setInterval(() => {
    for (let k = 0; k < 3 && inflight.size < 300; k++) {
      const n = i++;
      const p: Promise<unknown> = http(`${proxy}/api/items/${n}`, { headers: { 'x-user-id': `user-${n % 2000}` } })
        .catch(() => undefined)
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }
  }, 20);
  const stop = async () => {
    clearInterval(timer);
    await Promise.all(inflight);
  };
  t.teardown(stop);
  return stop;
}

const put = (url: string, body: unknown) => http(url, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const rollout = async (admin: string) => (await http(`${admin}/api/v1/rollouts/f`)).json<RolloutView>();
const flag = async (admin: string) => (await http(`${admin}/api/v1/flags/f`)).json<{ enabled: boolean; percentage: number }>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
t.test('rolled back on errors, candidate fixed, PUT again at once: no second rollback on the old errors', async (t) => {
  const { dirs, cand } = await setup(t);
  const { proxy, admin } = await startCutover(t, dirs);
  traffic(t, proxy);
  const plan = { steps: [{ percentage: 25, hold: '1m' }, { percentage: 100, hold: '1m' }], gates: { maxErrorRate: 0.02, minRequests: 20, window: '10s' } };
  cand.failing = true;
  t.equal((await put(`${admin}/api/v1/rollouts/f`, plan)).status, 200);
  await waitFor(async () => (await rollout(admin)).state === 'rolled_back', 6000, 'rolled back');
  const first = await rollout(admin);
  t.match(first.reason, /^maxErrorRate [\d.]+ > 0\.02 \(\d+ errors in \d+ candidate requests/);

  cand.failing = false;
  const again = await put(`${admin}/api/v1/rollouts/f`, plan);
  t.equal(again.status, 200, 'PUT it again');
  await sleep(2500); // two or three evaluations, the old errors still well inside the 10 s window
  const v = await rollout(admin);
  t.match(v, { state: 'running', step: 1, window: { candidateErrors: 0 } }, `still running: ${v.reason ?? ''}`);
  t.ok(v.window.candidateRequests >= 20, `judged on the new plan's ${v.window.candidateRequests} requests`);
  t.equal(v.verdict, 'green');
  t.match(await flag(admin), { enabled: true, percentage: 25 });
});
