import t from 'tap';
import { Agent, request, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import { http } from '../helpers/http.js';
import { serve } from '../../src/server.js';
import { silentLogger } from '../../src/observability/logger.js';
import { serveArgs, spawnCutover, startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  reusedSocket: boolean;
}

/** One GET; on a connection of its own unless a keep-alive agent is given. */
function get(url: string, agent: Agent | false = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, reusedSocket: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The status on a fresh connection, or the connection error's code (ECONNREFUSED). */
const statusOf = (url: string): Promise<number | string> => get(url).then((r) => r.status, (e: NodeJS.ErrnoException) => e.code ?? e.message);

t.test('SIGTERM: /readyz 503 at once, the proxy serves through the drain delay, then refuses while in-flight requests finish; exit 0', async (t) => {
  const held: ServerResponse[] = [];
  const legacy = await startUpstream(t, 'legacy', (req, res) => {
    if (req.url?.startsWith('/api/slow')) held.push(res); // answered when the test says so
    else res.end('quick');
  });
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const delayMs = 3000;
  const cut = await spawnCutover(t, [...serveArgs(dirs), '--drain-delay', `${delayMs}ms`, '--drain-timeout', '10s']);
  const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => keepAlive.destroy());
  const before = await get(`${cut.proxy}/api/before`, keepAlive);
  t.equal(before.headers.connection, 'keep-alive', 'a keep-alive connection before the drain');

  const inflight = Array.from({ length: 3 }, (_, i) => get(`${cut.proxy}/api/slow/${i}`));
  for (const p of inflight) p.catch(() => undefined); // awaited below; an early failure must not go unhandled
  await waitFor(() => held.length === 3, 3000, 'requests in flight');
  const signalledAt = Date.now();
  cut.child.kill('SIGTERM');
  await waitFor(async () => (await statusOf(`${cut.admin}/readyz`)) === 503, 2000, '/readyz 503 on a fresh connection');

  const during = await get(`${cut.proxy}/api/during`);
  t.same([during.status, during.text], [200, 'quick'], 'a new connection during the drain delay is served');
  const reused = await get(`${cut.proxy}/api/during-keep-alive`, keepAlive);
  t.ok(reused.reusedSocket, 'the keep-alive connection from before the drain is still served');
  t.same([reused.status, reused.headers.connection], [200, 'close'], 'and told to close after this response');
  t.ok(Date.now() - signalledAt < delayMs, 'all of that within the drain delay');

  await waitFor(async () => (await statusOf(`${cut.proxy}/api/after`)) === 'ECONNREFUSED', delayMs + 3000, 'the proxy to refuse new connections');
  t.ok(Date.now() - signalledAt >= delayMs, `not before the drain delay (${Date.now() - signalledAt} ms after SIGTERM)`);
  t.equal(await statusOf(`${cut.admin}/readyz`), 503, 'the admin listener still answers 503 while the proxy drains');
  t.equal(cut.child.exitCode, null, 'still running: the in-flight requests hold the drain open');

  for (const res of held) res.end('slow but complete');
  const results = await Promise.all(inflight);
  t.same(results.map((r) => [r.status, r.text]), Array(3).fill([200, 'slow but complete']), 'every in-flight request completed');
  t.equal(await cut.exited, 0, 'exit code 0');
});

t.test('the drain timeout bounds a request that never ends', async (t) => {
  let arrived = false;
  const legacy = await startUpstream(t, 'legacy', () => {
    arrived = true; // never answers
  });
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const cut = await spawnCutover(t, [...serveArgs(dirs), '--drain-delay', '0s', '--drain-timeout', '500ms']);
  const stuck = http(`${cut.proxy}/api/forever`).catch((e: Error) => e);
  await waitFor(() => arrived, 3000, 'request in flight');
  const started = Date.now();
  cut.child.kill('SIGTERM');
  t.equal(await cut.exited, 0);
  t.ok(Date.now() - started < 3000, `exited ${Date.now() - started} ms after SIGTERM`);
  t.type(await stuck, Error, 'the stuck request was cut');
});

t.test('a second signal during the drain exits at once (code 1)', async (t) => {
  let arrived = false;
  const legacy = await startUpstream(t, 'legacy', () => {
    arrived = true; // never answers: the drain would last delay + timeout
  });
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const cut = await spawnCutover(t, [...serveArgs(dirs), '--drain-delay', '10s', '--drain-timeout', '10s']);
  const stuck = get(`${cut.proxy}/api/forever`).catch((e: Error) => e);
  await waitFor(() => arrived, 3000, 'request in flight');
  cut.child.kill('SIGTERM');
  await waitFor(async () => (await statusOf(`${cut.admin}/readyz`)) === 503, 2000, 'the drain to start');
  const secondAt = Date.now();
  cut.child.kill('SIGINT');
  t.equal(await cut.exited, 1, 'exit code 1');
  t.ok(Date.now() - secondAt < 2000, `exited ${Date.now() - secondAt} ms after the second signal`);
  t.type(await stuck, Error, 'the in-flight request was cut');
});

t.test('a malformed --drain-delay stops startup with a clear error', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  await t.rejects(spawnCutover(t, [...serveArgs(dirs), '--drain-delay', 'soon']), /--drain-delay must be a duration like 10s or 500ms, got soon/);
});

t.test('serve() refuses a negative drainDelayMs before it listens', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const opts = { ...dirs, port: 0, host: '127.0.0.1', adminPort: 0, adminHost: '127.0.0.1', drainTimeoutMs: 1000, logger: silentLogger };
  await t.rejects(serve({ ...opts, drainDelayMs: -1 }), /drainDelayMs must be a number of milliseconds >= 0, got -1/);
  await t.rejects(serve({ ...opts, drainDelayMs: Number.NaN }), /got NaN/);
});
