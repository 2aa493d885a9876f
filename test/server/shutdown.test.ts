import t from 'tap';
import { http } from '../helpers/http.js';
import { serveArgs, spawnCutover, startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';

t.test('SIGTERM: in-flight requests finish, new connections are refused, exit 0', async (t) => {
  let arrived = 0;
  const legacy = await startUpstream(t, 'legacy', (_req, res) => {
    arrived++;
    setTimeout(() => res.end('slow but complete'), 700);
  });
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const cut = await spawnCutover(t, [...serveArgs(dirs), '--drain-timeout', '5s']);
  const inflight = Array.from({ length: 5 }, (_, i) => http(`${cut.proxy}/api/slow/${i}`));
  await waitFor(() => arrived === 5, 3000, 'requests in flight');
  const stoppedAt = Date.now();
  cut.child.kill('SIGTERM');
  await waitFor(async () => (await http(`${cut.admin}/readyz`).catch(() => ({ status: 0 }))).status !== 200, 2000, 'readiness red');
  const results = await Promise.all(inflight);
  t.same(results.map((r) => [r.status, r.text]), Array(5).fill([200, 'slow but complete']), 'every in-flight request completed');
  t.equal(await cut.exited, 0, 'exit code 0');
  t.ok(Date.now() - stoppedAt < 5000, 'within the drain timeout');
  await t.rejects(http(`${cut.proxy}/api/after`), 'new connections refused after shutdown');
});

t.test('the drain timeout bounds a request that never ends', async (t) => {
  let arrived = false;
  const legacy = await startUpstream(t, 'legacy', () => {
    arrived = true; // never answers
  });
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const cut = await spawnCutover(t, [...serveArgs(dirs), '--drain-timeout', '500ms']);
  const stuck = http(`${cut.proxy}/api/forever`).catch((e: Error) => e);
  await waitFor(() => arrived, 3000, 'request in flight');
  const started = Date.now();
  cut.child.kill('SIGTERM');
  t.equal(await cut.exited, 0);
  t.ok(Date.now() - started < 3000, `exited ${Date.now() - started} ms after SIGTERM`);
  t.type(await stuck, Error, 'the stuck request was cut');
});
