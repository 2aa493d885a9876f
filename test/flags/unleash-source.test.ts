// Fleet mode without a server: Unleash is unreachable (a closed loopback port), so everything
// runs on the bootstrap file, as after a restart during an outage. The real-server test is
// unleash-server.test.ts.
import t, { type Test } from 'tap';
import { writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import { Unleash, InMemStorageProvider } from 'unleash-client';
import { http, postJson, servedBy } from '../helpers/http.js';
import { deadUrl, startCutover, startUpstream, writeConfig } from '../helpers/servers.js';
import { bucketOf, inRollout } from '../../src/routing/bucket.js';
import { decide } from '../../src/routing/decide.js';
import { environmentOfToken, UNLEASH_BOOTSTRAP_FILE } from '../../src/flags/unleash-source.js';

const TOKEN = '*:development.unit-test-secret';

const rollout = (name: string, pct: number, extra: Record<string, unknown> = {}) => ({
  name,
  type: 'release',
  enabled: true,
  project: 'default',
  stale: false,
  strategies: [{ name: 'flexibleRollout', constraints: [], parameters: { rollout: String(pct), stickiness: 'userId', groupId: name }, variants: [] }],
  variants: [],
  ...extra,
});

const FEATURES = [
  rollout('customer_read', 30),
  {
    ...rollout('pilot_only', 100),
    strategies: [
      {
        name: 'flexibleRollout',
        constraints: [{ contextName: 'userId', operator: 'IN', values: ['pilot-1', 'pilot-2'], inverted: false, caseInsensitive: false }],
        parameters: { rollout: '100', stickiness: 'userId', groupId: 'pilot_only' },
        variants: [],
      },
    ],
  },
  { ...rollout('switched_off', 100), enabled: false },
];

async function setup(t: Test, opts: { bootstrap?: boolean; localFlags?: Record<string, object>; startupWaitMs?: number } = {}) {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const routes = ['customer_read', 'pilot_only', 'switched_off', 'local_only'].map((flag) => ({
    name: flag,
    match: { path: `/${flag}` },
    legacy: 'legacy',
    candidate: 'candidate',
    flag,
  }));
  const dirs = await writeConfig(t, { upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } }, routes }, opts.localFlags ?? {});
  if (opts.bootstrap !== false) {
    await writeFile(
      join(dirs.flagsDir, UNLEASH_BOOTSTRAP_FILE),
      JSON.stringify({ saved_at: '2026-01-01T00:00:00.000Z', url: 'x', version: 2, features: FEATURES, segments: [] }),
    );
  }
  const url = `${await deadUrl()}/api`;
  const started = Date.now();
  const { running } = await startCutover(t, dirs, {
    flagsPollMs: 100,
    serve: { drainTimeoutMs: 1000, unleash: { url, apiToken: TOKEN, refreshIntervalMs: 1000, startupWaitMs: opts.startupWaitMs ?? 3000, disableMetrics: true } },
  });
  const startMs = Date.now() - started;
  return { proxy: `http://127.0.0.1:${running.proxyPort}`, admin: `http://127.0.0.1:${running.adminPort}`, running, dirs, url, startMs };
}

t.test('a restart during an outage routes on the bootstrap file', async (t) => {
  const { proxy, admin, running, startMs } = await setup(t);
  t.ok(startMs < 2500, `with a bootstrap file, start does not wait for an unreachable Unleash (${startMs} ms)`);
  const users = Array.from({ length: 300 }, (_, i) => `user-${i}`);
  for (const u of users) {
    const want = inRollout(bucketOf('customer_read', u), 30) ? 'candidate' : 'legacy';
    if ((await servedBy(proxy, '/customer_read/x', u)) !== want) t.fail(`user ${u}: expected ${want}`);
  }
  t.pass('300 users route as flexibleRollout 30% says (= cutover bucketOf for ASCII ids)');
  t.equal(await servedBy(proxy, '/customer_read/x'), 'legacy', 'no user id: legacy (stickiness userId)');

  t.equal(await servedBy(proxy, '/pilot_only/x', 'pilot-1'), 'candidate', 'constraints work: pilot-1 is in');
  t.equal(await servedBy(proxy, '/pilot_only/x', 'user-1'), 'legacy', 'constraints work: others are not');
  t.equal(await servedBy(proxy, '/switched_off/x', 'pilot-1'), 'legacy', 'a disabled toggle sends everyone to legacy');
  t.equal(await servedBy(proxy, '/local_only/x', 'pilot-1'), 'legacy', 'a flag Unleash does not have: legacy');

  const list = (await http(`${admin}/api/v1/flags`)).json<{ flags: Array<Record<string, unknown>>; source: Record<string, unknown> }>();
  t.match(list.source, { kind: 'unleash', up: false, serving_from: 'bootstrap', flags: 3, last_success_at: null }, 'the source is down, serving the bootstrap file');
  t.match(list.flags.find((f) => f.name === 'customer_read'), { source: 'unleash', enabled: true, percentage: 30, anonymous: 'legacy', unleash: { percentage_exact: true } });
  t.match(list.flags.find((f) => f.name === 'pilot_only'), { source: 'unleash', enabled: true, percentage: 100, unleash: { percentage_exact: false, strategies: [{ name: 'flexibleRollout', constraints: 1 }] } }, 'constraints make the percentage inexact, and say so');
  t.match(list.flags.find((f) => f.name === 'switched_off'), { enabled: false });

  const status = running.cutover.flagSource?.status();
  t.match(status, { kind: 'unleash', up: false, lastSuccessAt: undefined, servingFrom: 'bootstrap' }, 'status() for the metrics');
});

t.test('admin POSTs: 409 for routing fields without an admin token; local settings stay local', async (t) => {
  const { admin, running } = await setup(t);
  for (const body of [{ enabled: false }, { percentage: 50 }, { enabled: true, auto_disable_on_failure: true, health_check_interval: 30 }, { cohort: ['a'] }]) {
    const r = await postJson(`${admin}/api/v1/flags/customer_read`, body);
    t.equal(r.status, 409, `${JSON.stringify(body)}: 409`);
    t.match(r.json(), { error: 'owned_by_unleash', message: /owned by Unleash/ });
  }
  t.equal((await postJson(`${admin}/api/v1/flags/brand_new`, { enabled: true })).status, 409, 'creating a flag in fleet mode: 409 (it would exist on one replica only)');
  t.match((await http(`${admin}/api/v1/flags/customer_read`)).json(), { enabled: true, percentage: 30, auto_disable_on_failure: false }, 'nothing changed');

  const local = await postJson(`${admin}/api/v1/flags/customer_read`, { auto_disable_on_failure: true, health_check_interval: 30 });
  t.equal(local.status, 200, "cutover's own per-replica settings are accepted");
  t.match(local.json(), { source: 'unleash', enabled: true, percentage: 30, auto_disable_on_failure: true, health_check_interval: 30 });
  t.match(running.cutover.store.get('customer_read'), { autoDisableAfter: 3, healthIntervalMs: 30_000 }, 'and take effect for this replica');
});

t.test('local flag files do not route in fleet mode', async (t) => {
  const { admin, proxy } = await setup(t, { localFlags: { local_only: { enabled: true, percentage: 100 }, customer_read: { enabled: false, percentage: 0 } } });
  t.equal(await servedBy(proxy, '/local_only/x', 'u1'), 'legacy', 'a file-only flag sends everyone to legacy');
  const view = (await http(`${admin}/api/v1/flags/local_only`)).json();
  t.match(view, { source: 'file', enabled: false, ignored: /only unleash routes.*file says enabled: true/ }, 'and the API says why');
  // customer_read's file says off, but Unleash's 30% decides
  const users = Array.from({ length: 200 }, (_, i) => `u${i}`);
  let n = 0;
  for (const u of users) if ((await servedBy(proxy, '/customer_read/x', u)) === 'candidate') n++;
  t.equal(n, users.filter((u) => inRollout(bucketOf('customer_read', u), 30)).length, `Unleash decides over the file (${n} of 200 on the candidate)`);
});

t.test('no bootstrap and no Unleash: everyone on legacy, after a bounded wait', async (t) => {
  const { proxy, admin, startMs } = await setup(t, { bootstrap: false, startupWaitMs: 500 });
  t.ok(startMs >= 450 && startMs < 3000, `waited ${startMs} ms for a first fetch`);
  t.equal(await servedBy(proxy, '/customer_read/x', 'user-1'), 'legacy');
  t.match((await http(`${admin}/api/v1/flags`)).json(), { flags: [], source: { up: false, serving_from: 'nothing' } });
});

t.test("non-ASCII ids: fleet mode decides with the Node SDK's hashing", async (t) => {
  // unleash-client hashes the low byte of each UTF-16 unit, cutover's file mode hashes UTF-8
  // (as Unleash's Go, Java and Rust SDKs do). In fleet mode the SDK decides: show which.
  // (Ids like these come from JWT claims; decide() is what the proxy calls with them.)
  const { running } = await setup(t);
  const flag = running.cutover.store.get('customer_read');
  const sdk = new Unleash({
    url: 'http://127.0.0.1:9/api',
    appName: 'oracle',
    disableMetrics: true,
    refreshInterval: 0,
    bootstrap: { data: FEATURES as never },
    storageProvider: new InMemStorageProvider(),
    skipInstanceCountWarning: true,
  });
  t.teardown(() => sdk.destroy());
  await once(sdk, 'ready');
  const ids = ['josé', 'zoë', 'müller', 'łukasz', '山田', 'user-ß', 'ana-maría', 'çağlar', 'renée', 'øystein', 'Ἀθηνᾶ', 'Дмитрий'];
  let differ = 0;
  for (const id of ids) {
    const viaProxy = decide(flag, id).target;
    const nodeSdk = sdk.isEnabled('customer_read', { userId: id }) ? 'candidate' : 'legacy';
    const utf8 = inRollout(bucketOf('customer_read', id), 30) ? 'candidate' : 'legacy';
    if (nodeSdk !== utf8) differ++;
    t.equal(viaProxy, nodeSdk, `${id}: fleet mode = unleash-client's decision`);
  }
  t.comment(`${differ} of ${ids.length} non-ASCII ids route differently under UTF-8 hashing (file mode)`);
  t.ok(differ > 0, 'fleet mode and file mode disagree for some non-ASCII ids, as the README says');
  // Pinned by name ('josé' happens to land on the same side under both hashings; 'zoë' does not).
  t.equal(decide(flag, 'zoë').target, 'candidate', 'zoë: fleet mode (unleash-client) sends her to candidate');
  t.notOk(inRollout(bucketOf('customer_read', 'zoë'), 30), 'zoë: file mode (UTF-8) would keep her on legacy');
});

t.test('the environment comes from the backend token', async (t) => {
  t.equal(environmentOfToken('*:production.abc'), 'production');
  t.equal(environmentOfToken('default:development.abc'), 'development');
  t.equal(environmentOfToken('*:*.abc'), undefined);
  t.equal(environmentOfToken('opaque-token'), undefined);
});
