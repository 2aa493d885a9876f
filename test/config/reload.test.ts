import t from 'tap';
import { unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { Agent, request } from 'undici';
import { serveArgs, spawnCutover, startCutover, startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';
import { servedBy } from '../helpers/http.js';

/** Keeps `connections` keep-alive connections busy until stopped; counts what went wrong. */
function load(url: string, connections: number) {
  const agent = new Agent({ connections, keepAliveTimeout: 10_000 });
  let stop = false;
  const stats = { ok: 0, failed: 0, errors: [] as string[] };
  const workers = Array.from({ length: connections }, async (_, i) => {
    while (!stop) {
      try {
        const r = await request(`${url}/api/load/${i}`, { dispatcher: agent, headers: { 'x-user-id': `u${i}` } });
        await r.body.text();
        if (r.statusCode === 200) stats.ok++;
        else stats.failed++;
      } catch (err) {
        stats.failed++;
        if (stats.errors.length < 5) stats.errors.push((err as Error).message);
      }
    }
  });
  return {
    stats,
    async stop() {
      stop = true;
      await Promise.all(workers);
      await agent.close();
    },
  };
}

t.test('routes/ edited live: a valid change applies without a dropped request; an invalid one is refused', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 100 } });
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(c.toString()), cb()) }));
  const { proxy, running } = await startCutover(t, dirs, { watchRoutes: true, logger });
  const file = join(dirs.routesDir, 'routes.yaml');

  const l = load(proxy, 50);
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await servedBy(proxy, '/api/x', 'u1'), 'candidate');
  // Valid change: /api now goes to legacy only.
  await writeFile(file, stringify({ upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } }, routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy' }] }));
  await waitFor(async () => (await servedBy(proxy, '/api/x', 'u1')) === 'legacy', 3000, 'valid change applied');
  // Invalid change: refused, the previous config keeps serving.
  await writeFile(file, 'routes:\n  - name: api\n    match: { path: /api }\n    legacy: nowhere\n');
  await new Promise((r) => setTimeout(r, 800));
  t.equal(await servedBy(proxy, '/api/x', 'u1'), 'legacy', 'old config still serving');
  // The directory is one config: a valid file next to an invalid one applies nothing.
  await writeFile(file, stringify({ upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } }, routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy' }] }));
  const broken = join(dirs.routesDir, 'zz-broken.yaml');
  await writeFile(broken, 'routes:\n  - name: other\n    match: { path: /other }\n    legacy: nowhere\n');
  const refusals = () => lines.filter((x) => x.includes('config reload refused')).length;
  await waitFor(async () => refusals() >= 2, 3000, 'the broken file refused');
  const toCandidate = { upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } }, routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f' }] };
  await writeFile(file, stringify(toCandidate));
  await waitFor(async () => refusals() >= 3, 3000, 'the valid edit refused while a broken file sits beside it');
  t.equal(await servedBy(proxy, '/api/x', 'u1'), 'legacy', 'nothing of the valid file applied');
  await unlink(broken);
  await waitFor(async () => (await servedBy(proxy, '/api/x', 'u1')) === 'candidate', 3000, 'applied once the broken file is gone');
  await l.stop();
  t.equal(l.stats.failed, 0, `no failed request under load (${l.stats.ok} ok) ${l.stats.errors.join('; ')}`);
  t.ok(l.stats.ok > 100, 'the load really ran');
  const refused = lines.map((x) => JSON.parse(x)).find((x) => x.msg === 'config reload refused; the running config keeps serving');
  t.ok(refused, 'refusal logged');
  t.match(JSON.stringify(refused?.problems), /unknown upstream \\"nowhere\\"/);
  t.equal(running.cutover.config.routes[0]?.candidate, 'candidate', 'config reflects the last applied change');
});

t.test('unchanged upstreams keep their pool; SIGHUP reloads a spawned proxy', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 100 } });
  const { running } = await startCutover(t, dirs);
  const poolBefore = running.cutover.health.byName.get('legacy')?.upstream.pool;
  const cfg = twoSided(legacy, candidate);
  cfg.upstreams!.candidate = { url: candidate.url, connections: 8 };
  await writeFile(join(dirs.routesDir, 'routes.yaml'), stringify(cfg));
  await running.cutover.reload();
  t.equal(running.cutover.health.byName.get('legacy')?.upstream.pool, poolBefore, 'legacy pool reused');
  t.not(running.cutover.health.byName.get('candidate')?.upstream.pool, undefined);

  const spawned = await spawnCutover(t, [...serveArgs(dirs), '--no-watch']);
  t.equal(await servedBy(spawned.proxy, '/api/x', 'u1'), 'candidate');
  await writeFile(join(dirs.routesDir, 'routes.yaml'), stringify({ upstreams: { legacy: { url: legacy.url } }, routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy' }] }));
  await new Promise((r) => setTimeout(r, 400));
  t.equal(await servedBy(spawned.proxy, '/api/x', 'u1'), 'candidate', '--no-watch: file change alone does nothing');
  spawned.child.kill('SIGHUP');
  await waitFor(async () => (await servedBy(spawned.proxy, '/api/x', 'u1')) === 'legacy', 3000, 'SIGHUP reload');
  t.ok(spawned.stdout.some((l) => l.includes('config reloaded')));
});
