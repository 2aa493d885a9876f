import t, { type Test } from 'tap';
import { readFile, rename, rm, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { http, postJson } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';
import type { RolloutView } from '../../src/rollout/driver.js';

// What an operator does around a plan, on a real proxy with real files: start it again after a
// rollback, edit the flag file under it, restart cutover, change or remove its plan file.

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
/** Edits flags/f.json the way a person's editor would end up: a whole new file. */
async function editFlagFile(flagsDir: string, patch: Record<string, unknown>) {
  const file = join(flagsDir, 'f.json');
  const cur = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  await writeFile(`${file}.edit`, JSON.stringify({ ...cur, ...patch }));
  await rename(`${file}.edit`, file);
}

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

t.test('an edit to flags/f.json pauses the plan; a restart finding the flag moved starts it paused', async (t) => {
  const { dirs } = await setup(t);
  let cut = await startCutover(t, dirs);
  const plan = { steps: [{ percentage: 25, hold: '1h' }, { percentage: 100, hold: '1h' }], gates: { minRequests: 10 } };
  t.equal((await put(`${cut.admin}/api/v1/rollouts/f`, plan)).status, 200);

  await editFlagFile(dirs.flagsDir, { percentage: 40 });
  await waitFor(async () => (await rollout(cut.admin)).state === 'paused', 3000, 'paused by the file edit');
  t.match((await rollout(cut.admin)).reason, /^manual change by file.*: percentage 25 -> 40; plan paused \(resume to continue from step 1\)$/);
  await sleep(1200);
  t.match(await flag(cut.admin), { enabled: true, percentage: 40 }, 'the plan leaves the edit alone');
  t.equal((await postJson(`${cut.admin}/api/v1/rollouts/f/resume`, {})).status, 200);
  t.match(await flag(cut.admin), { enabled: true, percentage: 25 });

  const stateFile = join(dirs.flagsDir, '.rollouts', 'f.json');
  await waitFor(async () => JSON.parse(await readFile(stateFile, 'utf8')).state === 'running', 3000, 'state file says running');
  await cut.running.shutdown();
  await editFlagFile(dirs.flagsDir, { percentage: 60 }); // while cutover is down
  cut = await startCutover(t, dirs);
  const v = await rollout(cut.admin);
  t.match(v, { state: 'paused', step: 1 });
  t.match(v.reason, /^the flag changed while cutover was stopped: the plan expected it enabled at 25 %, found enabled at 60 % .*; plan paused$/);
  t.same(v.history.map((h) => h.event), ['started', 'paused', 'resumed', 'paused']);
  await sleep(1200);
  t.match(await flag(cut.admin), { enabled: true, percentage: 60 }, 'never guessed at: the flag stays as found');
  await waitFor(async () => JSON.parse(await readFile(stateFile, 'utf8')).state === 'paused', 3000, 'the pause is persisted');
});

t.test('plan files: a changed file waits while its plan runs or is paused; removing it stops nothing', async (t) => {
  const { dirs } = await setup(t);
  const file = join(dirs.flagsDir, 'rollouts', 'f.json');
  const plan = (percentage: number) => ({ steps: [{ percentage, hold: '1h' }, { percentage: 100, hold: '1h' }], gates: { minRequests: 10 } });
  await mkdir(join(dirs.flagsDir, 'rollouts'));
  await writeFile(file, JSON.stringify(plan(10)));
  const { admin } = await startCutover(t, dirs);
  t.match(await rollout(admin), { state: 'running', origin: 'file', percentage: 10 });

  await writeFile(file, JSON.stringify(plan(20)));
  await sleep(1000); // five rescans
  t.match(await rollout(admin), { state: 'running', percentage: 10, startedBy: 'file:rollouts/f.json' }, 'running: the changed file waits');
  t.match(await flag(admin), { enabled: true, percentage: 10 });

  t.equal((await postJson(`${admin}/api/v1/rollouts/f/pause`, {})).status, 200);
  await writeFile(file, JSON.stringify(plan(30)));
  await sleep(1000);
  t.match(await rollout(admin), { state: 'paused', percentage: 10 }, 'paused: the changed file still waits');

  await rm(file);
  await sleep(1000);
  t.match(await rollout(admin), { state: 'paused', percentage: 10 }, 'removing the file stops nothing');
  t.equal((await postJson(`${admin}/api/v1/rollouts/f/resume`, {})).status, 200);
  await sleep(1000);
  t.match(await rollout(admin), { state: 'running', percentage: 10 }, 'and the plan runs on without its file');
  t.equal((await postJson(`${admin}/api/v1/rollouts/f/abort`, {})).status, 200);
  await sleep(1000);
  t.equal((await rollout(admin)).state, 'aborted', 'no file, nothing starts after the abort');

  await writeFile(file, JSON.stringify(plan(30)));
  await waitFor(async () => (await rollout(admin)).percentage === 30, 3000, 'a changed file starts once no plan runs or is paused');
  t.match(await flag(admin), { enabled: true, percentage: 30 });

  // The file goes, an API plan comes and goes, then the same file content comes back: it starts.
  t.equal((await postJson(`${admin}/api/v1/rollouts/f/abort`, {})).status, 200);
  await rm(file);
  await sleep(1000);
  t.equal((await put(`${admin}/api/v1/rollouts/f`, plan(40))).status, 200);
  t.match(await rollout(admin), { state: 'running', origin: 'api', percentage: 40 });
  t.equal((await postJson(`${admin}/api/v1/rollouts/f/abort`, {})).status, 200);
  await writeFile(file, JSON.stringify(plan(30)));
  await waitFor(async () => (await rollout(admin)).origin === 'file', 3000, 'the returning file starts (the API plan was not taken for it)');
  t.match(await rollout(admin), { state: 'running', percentage: 30 });
});
