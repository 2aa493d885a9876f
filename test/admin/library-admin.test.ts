// The admin handler mounted in a host app (README "Use as a library"): the same guards as the
// CLI's admin listener, since the host app's port is usually public.
import t, { type Test } from 'tap';
import { createServer, request } from 'node:http';
import { once } from 'node:events';
import { networkInterfaces } from 'node:os';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import { createCutover, type CutoverOptions } from '../../src/cutover.js';
import { createLogger } from '../../src/observability/logger.js';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { stream, lines };
}

/** The README snippet: admin mounted under /cutover-admin/ of a host server listening on every address. */
async function gateway(t: Test, opts: Partial<CutoverOptions> = {}) {
  const log = capture();
  const cutover = createCutover({
    routes: { upstreams: { legacy: { url: 'http://127.0.0.1:1' } }, routes: [{ name: 'a', match: { path: '/api' }, legacy: 'legacy' }] },
    logger: createLogger({ level: 'warn', destination: log.stream }),
    ...opts,
  });
  await cutover.ready;
  await cutover.flags.set('f', { enabled: false });
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/cutover-admin/')) {
      req.url = req.url.slice('/cutover-admin'.length);
      return cutover.adminHandler(req, res);
    }
    cutover.handler(req, res, () => res.end('mine'));
  });
  server.listen(0, '0.0.0.0');
  await once(server, 'listening');
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await cutover.close();
  });
  return { cutover, port: (server.address() as AddressInfo).port, log };
}

function call(addr: string, port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const q = request({ host: addr, port, method, path, headers: { ...(body && { 'content-type': 'application/json' }), ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    q.on('error', reject);
    q.end(body);
  });
}

/** An address of this machine that is not loopback, if it has one. */
function externalAddress(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((i) => i !== undefined && !i.internal && i.family === 'IPv4')?.address;
}

t.test('library mode without a token: only local requests to a loopback Host, with one warning', async (t) => {
  const { cutover, port, log } = await gateway(t, { adminToken: undefined }); // CUTOVER_ADMIN_TOKEN unset
  const flip = '{"enabled": true, "percentage": 100}';
  t.equal(await call('127.0.0.1', port, 'POST', '/cutover-admin/api/v1/flags/f', { host: 'gateway.example.com' }, flip), 403, 'a public Host name cannot flip flags');
  t.equal(await call('127.0.0.1', port, 'GET', '/cutover-admin/api/v1/flags', { host: 'gateway.example.com:3000' }), 403);
  t.equal(await call('127.0.0.1', port, 'GET', '/cutover-admin/', { host: 'gateway.example.com' }), 403, 'nor load the dashboard');
  t.equal(cutover.flags.get('f')?.enabled, false, 'nothing changed');
  const warnings = log.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('admin API refused a non-local request'));
  t.equal(warnings.length, 1, 'warned once, not per request');
  t.match(warnings[0], { host: 'gateway.example.com' });

  const ext = externalAddress();
  if (ext) {
    // A remote client can send any Host it likes: the peer address must be local too.
    t.equal(await call(ext, port, 'GET', '/cutover-admin/api/v1/flags', { host: 'localhost' }), 403, `from ${ext} with Host: localhost`);
  } else t.comment('no non-loopback address on this machine: peer check not exercised');

  t.equal(await call('127.0.0.1', port, 'GET', '/cutover-admin/healthz', { host: 'pod-10-1-2-3' }), 200, 'probes pass');
  t.equal(await call('127.0.0.1', port, 'POST', '/cutover-admin/api/v1/flags/f', { host: `localhost:${port}` }, flip), 200, 'from this machine to localhost: allowed');
  t.equal(cutover.flags.get('f')?.enabled, true);
});

t.test('library mode with a token: any Host, bearer token required', async (t) => {
  const { port } = await gateway(t, { adminToken: 'tok-0123456789abcdef' });
  const ext = externalAddress() ?? '127.0.0.1';
  t.equal(await call(ext, port, 'GET', '/cutover-admin/api/v1/flags', { host: 'gateway.example.com' }), 401);
  t.equal(await call(ext, port, 'GET', '/cutover-admin/api/v1/flags', { host: 'gateway.example.com', authorization: 'Bearer tok-0123456789abcdef' }), 200);
});

t.test('the configured token is trimmed (a Secret file keeps its newline); an unusable one is refused at once', async (t) => {
  const { port } = await gateway(t, { adminToken: 's3cret-token\n' });
  t.equal(await call('127.0.0.1', port, 'GET', '/cutover-admin/api/v1/flags', { authorization: 'Bearer s3cret-token' }), 200, 'the token without its newline works');
  t.equal(await call('127.0.0.1', port, 'GET', '/cutover-admin/api/v1/flags', {}), 401, 'and is still required');
  const routes = { upstreams: { legacy: { url: 'http://127.0.0.1:1' } }, routes: [{ name: 'a', match: { path: '/api' }, legacy: 'legacy' }] };
  for (const bad of ['', ' \n', 'first line\nsecond line', 'two words']) {
    t.throws(() => createCutover({ routes, adminToken: bad }), /the admin token \(CUTOVER_ADMIN_TOKEN, or the adminToken option\) (is empty|contains whitespace)/, JSON.stringify(bad));
  }
});
