import t from 'tap';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { createCutover, ConfigError, FlagValidationError } from '../src/index.js';
import { silentLogger } from '../src/observability/logger.js';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { http } from './helpers/http.js';
import { startUpstream, tempDir } from './helpers/servers.js';

t.test('createCutover: handler (with next), flags facade, ready, close', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const flagsDir = await tempDir(t);
  const cutover = createCutover({
    routes: {
      upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
      default: 'legacy',
      routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f' }],
    },
    flagsDir,
    logger: silentLogger,
    userId: (req) => (req.headers['x-session'] as string | undefined)?.split(':')[0],
  });
  const server = createServer((req, res) => cutover.handler(req, res, () => res.end('host')));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  await cutover.ready;
  t.equal((await http(`${base}/elsewhere`)).text, 'host', 'next() wins over the default upstream when given');
  t.same(cutover.flags.list(), []);
  await t.rejects(cutover.flags.set('bad name!', { enabled: true }), FlagValidationError);
  await t.rejects(cutover.flags.set('f', { percentage: 101 } as never), FlagValidationError);
  const view = await cutover.flags.set('f', { enabled: true, cohort: ['alice'], percentage: 0 });
  t.match(view, { name: 'f', enabled: true, percentage: 0, updated_by: 'library' });
  t.same(cutover.flags.get('f'), view);
  const via = async (session: string) => (await http(`${base}/api/x`, { headers: { 'x-session': session } })).json<{ served_by: string }>().served_by;
  t.equal(await via('alice:123'), 'candidate', "the host's userId function decides the user");
  t.equal(await via('bob:456'), 'legacy');
  const file = JSON.parse(await readFile(join(flagsDir, 'f.json'), 'utf8'));
  t.equal(file.enabled, true, 'persisted like an admin change');
  const audit = (await readFile(join(flagsDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  t.match(audit.at(-1), { source: 'library', flag: 'f' });
  await cutover.close();
});

t.test('until ready the handler answers 503, then it serves', async (t) => {
  // Fleet mode waits at start for the first fetch from Unleash: a real server on loopback that
  // holds that fetch until the test lets it go keeps `ready` pending as long as needed.
  const legacy = await startUpstream(t, 'legacy');
  let hold: (release: () => void) => void = () => undefined;
  const held = new Promise<() => void>((resolve) => (hold = resolve));
  const unleash = createServer((req, res) => {
    if (!req.url?.includes('/client/features')) return void res.end('{}'); // register, metrics
    hold(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"version":2,"features":[],"segments":[]}'));
  });
  unleash.listen(0, '127.0.0.1');
  await once(unleash, 'listening');
  t.teardown(() => {
    unleash.closeAllConnections();
    return new Promise<void>((r) => unleash.close(() => r()));
  });
  const cutover = createCutover({
    routes: { upstreams: { legacy: { url: legacy.url } }, routes: [{ name: 'r', match: { path: '/' }, legacy: 'legacy' }] },
    unleash: { url: `http://127.0.0.1:${(unleash.address() as AddressInfo).port}/api`, apiToken: '*:development.test', startupWaitMs: 60_000, timeoutMs: 60_000, disableMetrics: true },
    logger: silentLogger,
  });
  t.teardown(() => cutover.close());
  let isReady = false;
  void cutover.ready.then(() => (isReady = true));
  const server = createServer((req, res) => cutover.handler(req, res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const release = await held;
  const before = await http(`${base}/x`);
  t.equal(isReady, false, 'ready is still pending');
  t.equal(before.status, 503, 'before ready: 503');
  t.equal(before.headers['retry-after'], '1');
  t.match(before.json(), { error: 'starting' });
  release();
  await cutover.ready;
  const after = await http(`${base}/x`);
  t.equal(after.status, 200, 'once ready, the same handler serves');
  t.equal(after.json<{ served_by: string }>().served_by, 'legacy');
});

t.test('a bad config rejects ready; the handler keeps answering 503', async (t) => {
  const cutover = createCutover({ routesDir: '/nonexistent-dir', logger: silentLogger });
  const server = createServer((req, res) => cutover.handler(req, res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  await t.rejects(cutover.ready, ConfigError);
  const r = await http(`http://127.0.0.1:${(server.address() as AddressInfo).port}/x`);
  t.equal(r.status, 503);
  t.equal(r.headers['retry-after'], '1');
  await cutover.close();
});

t.test('an in-memory store when no flagsDir is given', async (t) => {
  const up = await startUpstream(t, 'legacy');
  const cutover = createCutover({ routes: { upstreams: { legacy: { url: up.url } }, routes: [{ name: 'r', match: { path: '/' }, legacy: 'legacy' }] }, logger: silentLogger });
  await cutover.ready;
  await cutover.flags.set('x', { enabled: true });
  t.match(cutover.flags.get('x'), { enabled: true, percentage: 100 });
  await cutover.close();
});

t.test('a route whose flag does not exist says so at start, and its users go to legacy', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const lines: Array<{ msg: string; route?: string; flag?: string; level: number }> = [];
  const logger = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString())), cb()) }));
  const cutover = createCutover({
    routes: { upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } }, routes: [{ name: 'orders', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'order_cutover' }] },
    logger,
  });
  await cutover.ready;
  t.teardown(() => cutover.close());
  t.match(lines.find((l) => l.msg.startsWith('route flag does not exist yet')), { level: 40, route: 'orders', flag: 'order_cutover' });
  const server = createServer((req, res) => cutover.handler(req, res));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const r = await http(`http://127.0.0.1:${(server.address() as AddressInfo).port}/api/x`, { headers: { 'x-user-id': 'u1' } });
  t.equal(r.json<{ served_by: string }>().served_by, 'legacy');
});
