import t from 'tap';
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { http } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

// README claims from "Forwarding" that had no test of their own.

// "One keep-alive undici Pool per upstream (bounded by `connections`)": more concurrent requests
// than connections queue in cutover; the upstream never sees more sockets than that.
t.test('the upstream pool is bounded by connections: 10 concurrent slow requests, 2 connections', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (req, res) => {
    req.resume();
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ served_by: 'legacy' }));
    }, 200);
  });
  let open = 0;
  let peak = 0;
  let opened = 0;
  legacy.server.on('connection', (sock) => {
    opened++;
    peak = Math.max(peak, ++open);
    sock.on('close', () => open--);
  });
  const cfg: ConfigInput = {
    upstreams: { legacy: { url: legacy.url, connections: 2 } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy' }],
  };
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  const started = Date.now();
  const replies = await Promise.all(Array.from({ length: 10 }, (_, i) => http(`${proxy}/api/slow/${i}`)));
  const ms = Date.now() - started;
  t.same(replies.map((r) => r.status), Array(10).fill(200), 'every request answered');
  t.equal(peak, 2, 'the upstream saw at most 2 connections at once (and the pool did use both)');
  t.equal(opened, 2, 'kept alive: the same 2 connections served all 10');
  t.ok(ms >= 5 * 200 - 50, `the rest queued in cutover: 10 requests of 200 ms over 2 connections took ${ms} ms`);
});

/** Starts a 200 response and never ends it; counts the responses cutover cancelled. */
function endless(name: string, closed: { n: number }) {
  return (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'x-served-by': name });
    res.write('partial');
    res.on('close', () => closed.n++);
  };
}

// "If the client goes away, the upstream request is cancelled ... and counted under
// code="aborted" (or its status, if it had answered)". metrics.test.ts covers a client leaving
// before the answer; here it leaves mid-body, after the status reached it.
for (const target of ['legacy', 'candidate'] as const) {
  t.test(`a client leaving mid-body of a ${target} 200 is counted under code="200", not "aborted"`, async (t) => {
    const closed = { n: 0 };
    const legacy = await startUpstream(t, 'legacy', target === 'legacy' ? endless('legacy', closed) : undefined);
    const candidate = await startUpstream(t, 'candidate', target === 'candidate' ? endless('candidate', closed) : undefined);
    const cfg: ConfigInput = {
      upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
      routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', timeout: '5s' }],
    };
    const flags = { f: { enabled: target === 'candidate', percentage: 100 } };
    const { proxy, admin } = await startCutover(t, await writeConfig(t, cfg, flags));

    const req = request(`${proxy}/api/x`, { headers: { 'x-user-id': 'u1' } });
    req.on('error', () => undefined);
    req.end();
    const [res] = (await once(req, 'response')) as [IncomingMessage];
    t.equal(res.headers['x-served-by'], target, `the ${target} answered`);
    await once(res, 'data');
    req.destroy();
    await waitFor(() => closed.n === 1, 5000, "the upstream's response cancelled");

    const count = async (code?: string) =>
      parseProm((await http(`${admin}/metrics`)).text).value('cutover_requests_total', { route: 'api', target, ...(code !== undefined && { code }) });
    await waitFor(async () => (await count()) === 1, 5000, 'the attempt recorded');
    t.equal(await count('200'), 1, 'counted under its status');
    t.equal(await count('aborted'), 0, 'not under aborted');
  });
}
