import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

t.test('a shadow mismatch rate over the gate rolls the plan back; fixed and PUT again, it counts only its own comparisons', async (t) => {
  let candidatePrice = 12;
  const legacy = await startUpstream(t, 'legacy', (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"price": 10, "served_by": "x"}');
  });
  const candidate = await startUpstream(t, 'candidate', (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`{"price": ${candidatePrice}, "served_by": "x"}`);
  });
  const config = {
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', shadow: { percentage: 100 } }],
  } as unknown as ConfigInput;
  const dirs = await writeConfig(t, config, { f: { enabled: false, percentage: 0 } });
  const { proxy, admin } = await startCutover(t, dirs);
  const plan = { steps: [{ percentage: 10, hold: '1m' }, { percentage: 100, hold: '1m' }], gates: { maxShadowMismatch: 0.005, minRequests: 10, window: '10s' }, onFailure: 'rollback' };
  const put = await http(`${admin}/api/v1/rollouts/f`, { method: 'PUT', body: JSON.stringify(plan), headers: { 'content-type': 'application/json' } });
  t.equal(put.status, 200, put.text);
  let stop = false;
  const load = (async () => {
    for (let i = 0; !stop; i++) await http(`${proxy}/api/p/${i}`, { headers: { 'x-user-id': `user-${i % 500}` } }).catch(() => undefined);
  })();
  const started = Date.now();
  await waitFor(async () => (await http(`${admin}/api/v1/rollouts/f`)).json<{ state: string }>().state === 'rolled_back', 15_000, 'rolled back on shadow mismatches');
  stop = true;
  await load;
  const view = (await http(`${admin}/api/v1/rollouts/f`)).json<{ reason: string }>();
  t.match(view.reason, /maxShadowMismatch/);
  t.comment(`rolled back ${Date.now() - started} ms after the plan started: ${view.reason}`);
  const audit = (await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  t.match(audit.at(-1), { source: 'rollout', reason: /maxShadowMismatch/, after: { enabled: false } });

  // The candidate is fixed and the plan PUT again at once: the mismatches of the first run are
  // still inside the 10 s window, but they are not this plan's.
  candidatePrice = 10;
  const again = await http(`${admin}/api/v1/rollouts/f`, { method: 'PUT', body: JSON.stringify(plan), headers: { 'content-type': 'application/json' } });
  t.equal(again.status, 200, again.text);
  type Gate = { value: number | null; state: string; detail: string };
  const gate = async () => (await http(`${admin}/api/v1/rollouts/f`)).json<{ state: string; gates: { maxShadowMismatch?: Gate } }>();
  stop = false;
  const load2 = (async () => {
    for (let i = 0; !stop; i++) await http(`${proxy}/api/q/${i}`, { headers: { 'x-user-id': `user-${i % 500}` } }).catch(() => undefined);
  })();
  await waitFor(async () => {
    const v = await gate();
    return v.state !== 'running' || (v.gates.maxShadowMismatch?.state === 'ok' && (v.gates.maxShadowMismatch.value ?? 1) === 0);
  }, 15_000, "the gate passes on the new plan's own comparisons");
  stop = true;
  await load2;
  const after = await gate();
  t.equal(after.state, 'running', `not rolled back again (${after.gates.maxShadowMismatch?.detail})`);
});
