// Fleet mode against a REAL Unleash server: unleash-server 7.5.1 on a private PostgreSQL cluster
// (Debian's packages), both installed if missing and started on loopback by scripts/unleash/,
// torn down after. Two cutover processes route 2,000 users through real upstreams; the oracle
// is unleash-client itself (and cutover's own bucketOf for these ASCII ids).
import t from 'tap';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { InMemStorageProvider, Unleash } from 'unleash-client';
import { http, postJson } from '../helpers/http.js';
import { freePort, serveArgs, spawnCutover, startUpstream, writeConfig, type Spawned } from '../helpers/servers.js';
import { bucketOf, inRollout } from '../../src/routing/bucket.js';

// Cold machine: installing PostgreSQL and unleash-server takes most of this; warm runs take ~1 min.
t.setTimeout(300_000);

const run = promisify(execFile);
const SCRIPTS = fileURLToPath(new URL('../../scripts/unleash/', import.meta.url));
const ADMIN = '*:*.cutover-it-admin-secret';
const BACKEND = '*:development.cutover-it-backend-secret';
const ENV = 'development';
const TOGGLE = 'customer_read';
const REFRESH_MS = 1000;
const USERS = Array.from({ length: 2000 }, (_, i) =>
  i % 4 === 0 ? `user-${i}` : i % 4 === 1 ? `${i}` : i % 4 === 2 ? `customer${i}@example.com` : `u_${(i * 2654435761) % 2 ** 32}`,
);

/**
 * The environment for the infrastructure's processes: without the test runner's loaders and
 * coverage hooks (npm and the Unleash server have no business being instrumented).
 */
function infraEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k === 'NODE_OPTIONS' || k === 'NODE_V8_COVERAGE' || /^_?TAP/i.test(k)) delete env[k];
  return env;
}

/** Runs a scripts/unleash/ script; resolves with its stdout's last line. */
async function script(name: string, args: string[] = [], timeout = 240_000): Promise<string> {
  const { stdout } = await run(join(SCRIPTS, name), args, { timeout, maxBuffer: 16 * 1024 * 1024, env: infraEnv() });
  return stdout.trim().split('\n').pop() ?? '';
}

interface UnleashServer {
  url: string;
  child: ChildProcess;
  exited: Promise<unknown>;
}

async function startUnleash(install: string, port: number, databaseUrl: string): Promise<UnleashServer> {
  const child = spawn(
    process.execPath,
    [join(SCRIPTS, 'run-server.mjs'), '--install', install, '--port', String(port), '--database-url', databaseUrl, '--admin-token', ADMIN, '--backend-token', BACKEND],
    { stdio: ['ignore', 'pipe', 'pipe'], env: infraEnv() },
  );
  const exited = once(child, 'exit');
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const ready = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Unleash did not start in 90 s: ${stderr}`)), 90_000);
    child.on('exit', (code) => reject(new Error(`Unleash exited with ${code}: ${stderr}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.includes('"ready"')) {
        clearTimeout(timer);
        resolve(line);
      }
    });
  });
  return { url: (JSON.parse(ready) as { url: string }).url, child, exited };
}

async function stopUnleash(s: UnleashServer, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  s.child.kill(signal);
  await s.exited;
}

/** Unleash's Admin API, as an operator's script would call it. */
function adminApi(base: string) {
  const call = async (method: string, path: string, body?: unknown) => {
    const r = await http(`${base}/api/admin${path}`, {
      method,
      headers: { authorization: ADMIN, 'content-type': 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${r.text}`);
    return r.text ? r.json() : {};
  };
  const feature = `/projects/default/features/${TOGGLE}`;
  return {
    call,
    async createRollout(rollout: number): Promise<string> {
      await call('POST', '/projects/default/features', { name: TOGGLE, type: 'release' });
      const s = await call('POST', `${feature}/environments/${ENV}/strategies`, {
        name: 'flexibleRollout',
        constraints: [],
        parameters: { rollout: String(rollout), stickiness: 'userId', groupId: TOGGLE },
      });
      return s.id as string;
    },
    setRollout: (id: string, rollout: number) =>
      call('PUT', `${feature}/environments/${ENV}/strategies/${id}`, {
        name: 'flexibleRollout',
        constraints: [],
        parameters: { rollout: String(rollout), stickiness: 'userId', groupId: TOGGLE },
      }),
    on: () => call('POST', `${feature}/environments/${ENV}/on`),
    off: () => call('POST', `${feature}/environments/${ENV}/off`),
    get: (name = TOGGLE) => call('GET', `/projects/default/features/${name}`),
  };
}

/** Who serves each user, through a cutover process (real HTTP, 16 at a time). */
async function routeAll(proxy: string, users: readonly string[] = USERS): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < users.length) {
        const u = users[next++] as string;
        const r = await http(`${proxy}/api/customers/1`, { headers: { 'x-user-id': u } });
        if (r.status !== 200) throw new Error(`user ${u}: ${r.status} ${r.text}`);
        out.set(u, r.json<{ served_by: string }>().served_by);
      }
    }),
  );
  return out;
}

function countCandidate(m: Map<string, string>): number {
  let n = 0;
  for (const v of m.values()) if (v === 'candidate') n++;
  return n;
}

/** Users whose routing differs from what `expected` says. */
function disagreements(m: Map<string, string>, expected: (u: string) => boolean): string[] {
  return USERS.filter((u) => (m.get(u) === 'candidate') !== expected(u));
}

async function sourceOf(admin: string): Promise<{ up: boolean; serving_from: string; seconds_since_success: number | null }> {
  return (await http(`${admin}/api/v1/flags`)).json<{ source: { up: boolean; serving_from: string; seconds_since_success: number | null } }>().source;
}

async function until(what: string, ms: number, cond: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - start;
    if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

t.test('fleet mode against a real Unleash server', async (t) => {
  const began = Date.now();
  // ---- infrastructure: PostgreSQL + Unleash, from the project's own scripts -------------------
  try {
    await script('ensure-postgres.sh');
  } catch (err) {
    const why = `PostgreSQL is not available and could not be installed: ${(err as Error).message}`;
    process.stderr.write(`\n*** SKIPPING the real-Unleash integration test: ${why}\n\n`);
    t.skip(`SKIPPED LOUDLY: ${why}`, () => undefined);
    return;
  }
  let install: string;
  try {
    install = await script('ensure-server.sh');
  } catch (err) {
    const why = `unleash-server 7.5.1 could not be installed: ${(err as Error).message}`;
    process.stderr.write(`\n*** SKIPPING the real-Unleash integration test: ${why}\n\n`);
    t.skip(`SKIPPED LOUDLY: ${why}`, () => undefined);
    return;
  }
  const pgDir = await mkdtemp(join(tmpdir(), 'cutover-pg-'));
  t.teardown(async () => {
    await script('postgres.sh', ['stop', pgDir], 60_000).catch(() => undefined);
    await rm(pgDir, { recursive: true, force: true });
  });
  const databaseUrl = await script('postgres.sh', ['start', pgDir, String(await freePort())], 60_000);
  const unleashPort = await freePort();
  let server = await startUnleash(install, unleashPort, databaseUrl);
  t.teardown(() => stopUnleash(server, 'SIGKILL'));
  const infraMs = Date.now() - began;
  t.comment(`PostgreSQL + Unleash ready in ${infraMs} ms`);
  const api = adminApi(server.url);
  const apiUrl = `${server.url}/api`;

  // ---- the toggle: flexibleRollout 25%, stickiness userId, groupId = toggle name --------------
  const strategyId = await api.createRollout(25);
  await api.on();
  // Another application's toggle in the same environment: not cutover's to list or change.
  await api.call('POST', '/projects/default/features', { name: 'checkout_new_ui', type: 'release' });
  await api.call('POST', `/projects/default/features/checkout_new_ui/environments/${ENV}/on`);

  // The oracle: unleash-client, as any app in the company would use it.
  const oracle = new Unleash({
    url: apiUrl,
    appName: 'cutover-it-oracle',
    customHeaders: { Authorization: BACKEND },
    refreshInterval: 200,
    disableMetrics: true,
    storageProvider: new InMemStorageProvider(),
    skipInstanceCountWarning: true,
  });
  t.teardown(() => oracle.destroy());
  // Without a listener the SDK's failed fetches surface as unhandled rejections in this process.
  const oracleErrors: string[] = [];
  oracle.on('error', (err: Error) => oracleErrors.push(err.message));
  const oracleRollout = () => Number(oracle.getFeatureToggleDefinition(TOGGLE)?.strategies?.[0]?.parameters?.rollout);
  const oracleOn = (u: string) => oracle.isEnabled(TOGGLE, { userId: u });
  await until('the oracle to see 25%', 10_000, async () => oracle.getFeatureToggleDefinition(TOGGLE)?.enabled === true && oracleRollout() === 25);

  // ---- two cutover replicas (the second may apply admin changes in Unleash) -------------------
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, {
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
    routes: [
      { name: 'customers', match: { path: '/api/customers' }, legacy: 'legacy', candidate: 'candidate', flag: TOGGLE },
      { name: 'orders', match: { path: '/api/orders' }, legacy: 'legacy', candidate: 'candidate', flag: 'order_cutover' },
    ],
  });
  const flagsB = join(dirs.root, 'flags-b');
  await mkdir(flagsB);
  // LOG_LEVEL warn: no request lines, so the outage/recovery lines are easy to find.
  const fleetEnv = { UNLEASH_URL: apiUrl, UNLEASH_API_TOKEN: BACKEND, UNLEASH_APP_NAME: 'cutover-it', UNLEASH_REFRESH_INTERVAL: String(REFRESH_MS), LOG_LEVEL: 'warn' };
  let a: Spawned = await spawnCutover(t, serveArgs(dirs), fleetEnv);
  const b = await spawnCutover(t, serveArgs({ routesDir: dirs.routesDir, flagsDir: flagsB }), { ...fleetEnv, UNLEASH_ADMIN_TOKEN: ADMIN });

  // ---- 25 %: every user agrees with unleash-client, with bucketOf, and across replicas --------
  const a25 = await routeAll(a.proxy);
  const b25 = await routeAll(b.proxy);
  const vsOracle25 = disagreements(a25, oracleOn);
  const vsBucket25 = disagreements(a25, (u) => inRollout(bucketOf(TOGGLE, u), 25));
  const replicas25 = USERS.filter((u) => a25.get(u) !== b25.get(u));
  t.same(vsOracle25, [], `25%: ${USERS.length - vsOracle25.length}/${USERS.length} users agree with unleash-client isEnabled`);
  t.same(vsBucket25, [], `25%: ${USERS.length - vsBucket25.length}/${USERS.length} agree with cutover's bucketOf`);
  t.same(replicas25, [], `25%: two replicas route ${USERS.length - replicas25.length}/${USERS.length} users identically`);
  const n25 = countCandidate(a25);
  t.ok(n25 > 400 && n25 < 600, `25%: ${n25} of 2000 users on the candidate`);

  const flagView = (await http(`${a.admin}/api/v1/flags/${TOGGLE}`)).json();
  t.match(flagView, { name: TOGGLE, source: 'unleash', enabled: true, percentage: 25, unleash: { project: 'default', percentage_exact: true, strategies: [{ name: 'flexibleRollout', rollout: 25, stickiness: 'userId', groupId: TOGGLE }] } }, 'admin GET shows the Unleash toggle, its source and rollout');
  t.match(await sourceOf(a.admin), { up: true, serving_from: 'source' }, 'source is up');

  // ---- 409 without an admin token --------------------------------------------------------------
  const refused = await postJson(`${a.admin}/api/v1/flags/${TOGGLE}`, { enabled: true, percentage: 50 });
  t.equal(refused.status, 409, 'POST to an Unleash-owned flag without an admin token: 409');
  t.match(refused.json(), { error: 'owned_by_unleash', message: /owned by Unleash.*UNLEASH_ADMIN_TOKEN/ }, '409 says where to change it');

  // ---- 25 -> 60 % in Unleash: cutover follows within refresh interval + 2 s ---------------------
  const movers = USERS.filter((u) => {
    const bk = bucketOf(TOGGLE, u);
    return bk > 25 && bk <= 60;
  }).slice(0, 40);
  const changedAt = Date.now();
  await api.setRollout(strategyId, 60);
  const followMs = await until('replica A to route the 26..60 users to the candidate', REFRESH_MS + 2000 + 1000, async () => {
    const m = await routeAll(a.proxy, movers);
    return [...m.values()].every((v) => v === 'candidate');
  });
  const followBMs = Date.now() - changedAt;
  await until('replica B at 60%', 3000, async () => [...(await routeAll(b.proxy, movers)).values()].every((v) => v === 'candidate'));
  t.ok(followMs <= REFRESH_MS + 2000, `25 -> 60%: replica A followed in ${followMs} ms (limit ${REFRESH_MS + 2000} ms); B by ${Date.now() - changedAt} ms`);
  await until('the oracle to see 60%', 5000, async () => oracleRollout() === 60);
  const a60 = await routeAll(a.proxy);
  const b60 = await routeAll(b.proxy);
  t.same(disagreements(a60, oracleOn), [], '60%: every user agrees with unleash-client');
  t.same(disagreements(a60, (u) => inRollout(bucketOf(TOGGLE, u), 60)), [], '60%: every user agrees with bucketOf');
  t.same(USERS.filter((u) => a60.get(u) !== b60.get(u)), [], '60%: replicas agree');
  t.same(USERS.filter((u) => a25.get(u) === 'candidate' && a60.get(u) !== 'candidate'), [], '25 -> 60 only adds users');
  const n60 = countCandidate(a60);

  // ---- off in Unleash: nobody reaches the candidate --------------------------------------------
  await api.off();
  const offMs = await until('both replicas to send everyone to legacy', REFRESH_MS + 3000, async () => {
    const [ma, mb] = await Promise.all([routeAll(a.proxy, movers), routeAll(b.proxy, movers)]);
    return countCandidate(ma) === 0 && countCandidate(mb) === 0;
  });
  const seenBefore = candidate.seen.length;
  const aOff = await routeAll(a.proxy);
  const bOff = await routeAll(b.proxy);
  t.equal(countCandidate(aOff) + countCandidate(bOff), 0, `off: 0 of ${USERS.length * 2} requests reached the candidate (followed in ${offMs} ms)`);
  t.equal(candidate.seen.length, seenBefore, 'the candidate upstream saw no request');

  // ---- the runbook line through replica B (admin token): applied in Unleash, fleet-wide -------
  const applied = await postJson(`${b.admin}/api/v1/flags/${TOGGLE}`, { enabled: true, percentage: 50, auto_disable_on_failure: true, health_check_interval: 30 }, { 'x-cutover-actor': 'it' });
  t.equal(applied.status, 200, 'POST with an admin token: 200');
  t.match(applied.json(), { name: TOGGLE, source: 'unleash', enabled: true, percentage: 50, auto_disable_on_failure: true, health_check_interval: 30 }, 'answers the resulting state');
  t.match(JSON.parse(await readFile(join(flagsB, `${TOGGLE}.json`), 'utf8')), { auto_disable_on_failure: true, health_check_interval: 30 }, "per-replica settings went to that replica's flags/");
  t.notMatch((await http(`${a.admin}/api/v1/flags/${TOGGLE}`)).json(), { auto_disable_on_failure: true }, 'and not to the other replica');
  const inUnleash = await api.get();
  const dev = (inUnleash.environments as Array<{ name: string; enabled: boolean; strategies: Array<{ id: string; parameters: Record<string, string> }> }>).find((e) => e.name === ENV);
  t.match(dev, { enabled: true, strategies: [{ id: strategyId, parameters: { rollout: '50', stickiness: 'userId', groupId: TOGGLE } }] }, 'Unleash has it: on, the same strategy at 50');
  await until('replica A at 50%', REFRESH_MS + 2000, async () => (await http(`${a.admin}/api/v1/flags/${TOGGLE}`)).json().percentage === 50 && (await http(`${a.admin}/api/v1/flags/${TOGGLE}`)).json().enabled === true);
  await until('the oracle to see 50%', 5000, async () => oracleRollout() === 50 && oracle.getFeatureToggleDefinition(TOGGLE)?.enabled === true);
  const a50 = await routeAll(a.proxy);
  const b50 = await routeAll(b.proxy);
  t.same(disagreements(a50, oracleOn), [], '50% (set through cutover): every user agrees with unleash-client');
  t.same(USERS.filter((u) => a50.get(u) !== b50.get(u)), [], '50%: replicas agree');
  const created = await postJson(`${b.admin}/api/v1/flags/order_cutover`, { enabled: true, percentage: 10 });
  t.equal(created.status, 200, "a route's flag Unleash lacks, through an admin-token replica, is created in Unleash");
  const orderDev = ((await api.get('order_cutover')).environments as Array<{ name: string; enabled: boolean; strategies: unknown[] }>).find((e) => e.name === ENV);
  t.match(orderDev, { enabled: true, strategies: [{ name: 'flexibleRollout', parameters: { rollout: '10', stickiness: 'userId', groupId: 'order_cutover' } }] }, 'as flexibleRollout 10%, stickiness userId, groupId = name');
  const other = await postJson(`${b.admin}/api/v1/flags/checkout_new_ui`, { enabled: false });
  t.match({ status: other.status, ...other.json<object>() }, { status: 409, error: 'not_used_by_cutover' }, "another application's toggle: 409 even with an admin token");
  const checkoutDev = ((await api.get('checkout_new_ui')).environments as Array<{ name: string; enabled: boolean }>).find((e) => e.name === ENV);
  t.match(checkoutDev, { enabled: true }, 'and it stays on in Unleash');
  const listed = (await http(`${b.admin}/api/v1/flags`)).json<{ flags: Array<{ name: string }> }>().flags.map((f) => f.name);
  t.same(listed, ['order_cutover', TOGGLE].sort(), "GET /api/v1/flags lists cutover's flags only");
  const badShape = await postJson(`${b.admin}/api/v1/flags/${TOGGLE}`, { cohort: ['pilot-1'] });
  t.equal(badShape.status, 409, 'cohort has no place in Unleash: 409 even with an admin token');

  // ---- outage: stop Unleash; routing stays, status says down ----------------------------------
  const audit = (await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { source: string; flag: string });
  t.ok(audit.some((e) => e.source === 'unleash' && e.flag === TOGGLE), 'changes seen from Unleash are in the replica audit log');
  await new Promise((r) => setTimeout(r, 300)); // let the bootstrap file catch up with 50%
  // The oracle's job is done; it must not poll a server that is about to die.
  t.same(oracleErrors, [], 'the oracle fetched without errors while Unleash was up');
  oracle.destroy();
  // destroy() removes the SDK's listeners but does not cancel a poll already started (every
  // 200 ms): killing Unleash under it made that poll an unhandled rejection in this process
  // (seen once in three full runs). Let it finish against the live server first.
  await new Promise((r) => setTimeout(r, 1000));
  await stopUnleash(server, 'SIGKILL');
  const downMs = await until('replica A to report Unleash down', 15_000, async () => !(await sourceOf(a.admin)).up);
  await until('replica B to report Unleash down', 15_000, async () => !(await sourceOf(b.admin)).up);
  t.pass(`Unleash killed: replica A reported it down after ${downMs} ms`);
  const aDown = await routeAll(a.proxy);
  const bDown = await routeAll(b.proxy);
  t.same(USERS.filter((u) => aDown.get(u) !== a50.get(u)), [], `outage: all ${USERS.length} users route as before on replica A`);
  t.same(USERS.filter((u) => bDown.get(u) !== a50.get(u)), [], 'outage: and on replica B');
  const down = await sourceOf(a.admin);
  t.match(down, { up: false, serving_from: 'source' }, 'status: down, still on the last state fetched');
  t.ok((down.seconds_since_success ?? 0) >= 0, `seconds since last success: ${down.seconds_since_success}`);
  await until('the outage log line', 2000, async () => a.stdout.some((l) => l.includes('Unleash unreachable')));
  const outageLogs = a.stdout.filter((l) => l.includes('Unleash unreachable'));
  t.equal(outageLogs.length, 1, 'the outage is logged once');
  const duringOutage = await postJson(`${b.admin}/api/v1/flags/${TOGGLE}`, { enabled: false });
  t.equal(duringOutage.status, 502, 'an admin-token change during the outage: 502, nothing changes');
  t.equal(countCandidate(await routeAll(b.proxy, movers)) > 0, true, 'and routing did not change');

  // ---- restart of a replica while Unleash is down: serves from the bootstrap file --------------
  const bootstrap = JSON.parse(await readFile(join(dirs.flagsDir, '.unleash-bootstrap.json'), 'utf8')) as { features: Array<{ name: string }> };
  t.ok(bootstrap.features.some((f) => f.name === TOGGLE), 'the bootstrap file holds the toggle');
  a.child.kill('SIGTERM');
  t.equal(await a.exited, 0, 'replica A drained and exited');
  const restartAt = Date.now();
  a = await spawnCutover(t, serveArgs(dirs), fleetEnv);
  const restartMs = Date.now() - restartAt;
  t.match(await sourceOf(a.admin), { up: false, serving_from: 'bootstrap' }, `restarted replica serves from the bootstrap file (ready in ${restartMs} ms)`);
  const aRestarted = await routeAll(a.proxy);
  t.same(USERS.filter((u) => aRestarted.get(u) !== a50.get(u)), [], `restart during the outage: all ${USERS.length} users route as before`);
  t.ok(a.stdout.some((l) => l.includes('routing on the bootstrap file')), 'and says so in the log');

  // ---- Unleash back: both replicas recover (logged once) --------------------------------------
  server = await startUnleash(install, unleashPort, databaseUrl);
  const recoverMs = await until('replica A to report Unleash up', 30_000, async () => (await sourceOf(a.admin)).up);
  await until('replica B to report Unleash up', 30_000, async () => (await sourceOf(b.admin)).up);
  await until('the recovery log line', 2000, async () => b.stdout.some((l) => l.includes('Unleash reachable again')));
  const transitions = b.stdout.filter((l) => /Unleash (reachable again|unreachable)/.test(l)).map((l) => (JSON.parse(l) as { msg: string }).msg);
  t.same(transitions, ['Unleash unreachable: routing stays on the last good flag state', 'Unleash reachable again: flags in sync'], 'outage and recovery are logged once each');
  const aBack = await routeAll(a.proxy);
  t.same(USERS.filter((u) => aBack.get(u) !== a50.get(u)), [], 'routing unchanged after recovery');

  const totalMs = Date.now() - began;
  t.comment(
    JSON.stringify({
      infraMs,
      agree25: USERS.length - vsOracle25.length,
      candidate25: n25,
      candidate60: n60,
      followMs_25_to_60: followMs,
      followB_ms: followBMs,
      offMs,
      outageDetectedMs: downMs,
      restartFromBootstrapMs: restartMs,
      recoverMs,
      totalMs,
    }),
  );
});
