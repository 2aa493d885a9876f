import t, { type Test } from 'tap';
import { createServer, request, type IncomingHttpHeaders, type RequestListener, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import { pino } from 'pino';
import { Writable } from 'node:stream';
import { WebSocket, WebSocketServer } from 'ws';
import { startCutover, writeConfig, waitFor } from '../helpers/servers.js';
import { upgradeLimits } from '../../src/proxy/websocket.js';

interface WsUpstream {
  url: string;
  server: Server;
  wss: WebSocketServer;
  openSockets: () => number;
  /** Headers of every upgrade request that reached it. */
  upgrades: IncomingHttpHeaders[];
}

/** A real WebSocket upstream that echoes with its name and the user it saw. */
async function wsUpstream(t: Test, name: string, opts: { refuse?: number; http?: RequestListener } = {}): Promise<WsUpstream> {
  const server = createServer(opts.http ?? ((_req, res) => res.end('plain http')));
  const wss = new WebSocketServer({ noServer: true });
  const upgrades: IncomingHttpHeaders[] = [];
  server.on('upgrade', (req, socket, head) => {
    upgrades.push(req.headers);
    if (opts.refuse) {
      socket.end(`HTTP/1.1 ${opts.refuse} Nope\r\ncontent-type: text/plain\r\ncontent-length: 6\r\n\r\nrefuse`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const user = req.headers['x-user-id'];
      ws.on('message', (m) => ws.send(`${name}:${user}:${m.toString()}`));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const c of wss.clients) c.terminate();
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, wss, openSockets: () => wss.clients.size, upgrades };
}

function open(proxy: string, path: string, user: string): Promise<WebSocket> {
  const ws = new WebSocket(proxy.replace('http', 'ws') + path, { headers: { 'x-user-id': user } });
  return new Promise((resolve, reject) => {
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
  });
}

async function roundTrip(ws: WebSocket, text: string): Promise<string> {
  const reply = once(ws, 'message');
  ws.send(text);
  return String((await reply)[0]);
}

function cfg(legacy: string, candidate: string) {
  return {
    upstreams: { legacy: { url: legacy }, candidate: { url: candidate } },
    routes: [{ name: 'ws', match: { path: '/ws' }, legacy: 'legacy', candidate: 'candidate', flag: 'f' }],
  };
}

t.test('upgrades follow the user\'s side and pass messages both ways', async (t) => {
  const legacy = await wsUpstream(t, 'legacy');
  const candidate = await wsUpstream(t, 'candidate');
  const { proxy } = await startCutover(t, await writeConfig(t, cfg(legacy.url, candidate.url), { f: { enabled: true, percentage: 0, cohort: ['pilot'] } }));
  const a = await open(proxy, '/ws/chat', 'pilot');
  const b = await open(proxy, '/ws/chat', 'someone');
  t.equal(await roundTrip(a, 'hi'), 'candidate:pilot:hi');
  t.equal(await roundTrip(b, 'yo'), 'legacy:someone:yo');
  t.equal(await roundTrip(a, 'x'.repeat(100_000)), `candidate:pilot:${'x'.repeat(100_000)}`, 'large frames');
  a.close();
  b.close();
  await waitFor(() => legacy.openSockets() + candidate.openSockets() === 0, 2000, 'upstream sockets closed when clients close');
});

t.test('a dying upstream closes the client, and a dying client closes the upstream', async (t) => {
  const legacy = await wsUpstream(t, 'legacy');
  const candidate = await wsUpstream(t, 'candidate');
  const { proxy } = await startCutover(t, await writeConfig(t, cfg(legacy.url, candidate.url), { f: { enabled: false } }));
  const a = await open(proxy, '/ws', 'u1');
  await roundTrip(a, 'ping');
  const closed = once(a, 'close');
  for (const c of legacy.wss.clients) c.terminate();
  await closed;
  t.pass('client saw the upstream go');
  const b = await open(proxy, '/ws', 'u2');
  await roundTrip(b, 'ping');
  b.terminate();
  await waitFor(() => legacy.openSockets() === 0, 2000, 'upstream side closed');
});

t.test('failed upgrades: refused candidate falls back, non-101 is relayed, dead legacy is 502', async (t) => {
  const legacy = await wsUpstream(t, 'legacy');
  const deadServer = createServer();
  deadServer.listen(0, '127.0.0.1');
  await once(deadServer, 'listening');
  const dead = `http://127.0.0.1:${(deadServer.address() as AddressInfo).port}`;
  await new Promise<void>((r) => deadServer.close(() => r()));
  const refusing = await wsUpstream(t, 'refusing', { refuse: 403 });

  const p1 = await startCutover(t, await writeConfig(t, cfg(legacy.url, dead), { f: { enabled: true, percentage: 100 } }));
  const ws = await open(p1.proxy, '/ws', 'u1');
  t.equal(await roundTrip(ws, 'hi'), 'legacy:u1:hi', 'candidate refused: legacy took the upgrade');
  ws.close();

  const p2 = await startCutover(t, await writeConfig(t, cfg(legacy.url, refusing.url), { f: { enabled: true, percentage: 100 } }));
  await t.rejects(open(p2.proxy, '/ws', 'u1'), /status 403/, 'the upstream refusal reaches the client');

  const p3 = await startCutover(t, await writeConfig(t, cfg(dead, legacy.url), { f: { enabled: false } }));
  await t.rejects(open(p3.proxy, '/ws', 'u1'), /status 502/);
});

t.test('shutdown closes open tunnels at the drain deadline', async (t) => {
  const legacy = await wsUpstream(t, 'legacy');
  const candidate = await wsUpstream(t, 'candidate');
  const { proxy, running } = await startCutover(t, await writeConfig(t, cfg(legacy.url, candidate.url)));
  const ws = await open(proxy, '/ws', 'u1');
  const closed = once(ws, 'close');
  const started = Date.now();
  await running.shutdown();
  await closed;
  t.ok(Date.now() - started < 4000, `shutdown finished in ${Date.now() - started} ms`);
});

/** An upstream that answers every upgrade with a chunked 200 it writes itself (SSE, long poll). */
async function streamingUpstream(t: Test, onUpgrade: (socket: Socket) => void): Promise<string> {
  const server = createServer((_req, res) => res.end('plain http'));
  const sockets = new Set<Socket>();
  server.on('upgrade', (_req, socket: Socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n6\r\npart1\n\r\n');
    onUpgrade(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy(); // upgraded: no longer the server's to close
    return new Promise<void>((r) => server.close(() => r()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

interface Relayed {
  status: number;
  body: string;
  /** The body ended by its own framing (false: the connection was cut). */
  complete: boolean;
}

/** An upgrade request from a real HTTP client, read as the plain response it gets instead. */
function upgradeAnsweredWithout101(proxy: string, user: string): Promise<Relayed> {
  return new Promise((resolve, reject) => {
    const req = request(`${proxy}/ws`, { headers: { connection: 'Upgrade', upgrade: 'websocket', 'x-user-id': user } });
    req.on('upgrade', () => reject(new Error('unexpected 101')));
    req.on('error', reject);
    req.on('response', (res) => {
      req.off('error', reject).on('error', () => undefined);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('error', () => undefined);
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body, complete: res.complete }));
    });
    req.end();
  });
}

function shortLimits(t: Test, limits: Partial<typeof upgradeLimits>): void {
  const saved = { ...upgradeLimits };
  Object.assign(upgradeLimits, limits);
  t.teardown(() => void Object.assign(upgradeLimits, saved));
}

function logLines(): { logger: pino.Logger; lines: string[] } {
  const lines: string[] = [];
  const sink = new Writable({ write: (c: Buffer, _e, cb) => (lines.push(c.toString()), cb()) });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

const ONE_STRIKE = { consecutiveFailures: 1, baseEjection: '60s' };

t.test('a non-101 answer that outlasts the answer timeout is relayed whole and scored once', async (t) => {
  shortLimits(t, { answerMs: 300 });
  const legacy = await wsUpstream(t, 'legacy');
  const candidate = await streamingUpstream(t, (socket) => {
    setTimeout(() => socket.end('6\r\npart2\n\r\n0\r\n\r\n'), 800);
  });
  const config = cfg(legacy.url, candidate);
  Object.assign(config.upstreams.candidate, { outlier: ONE_STRIKE });
  const { logger, lines } = logLines();
  const { proxy, running } = await startCutover(t, await writeConfig(t, config, { f: { enabled: true, percentage: 100 } }), { logger });
  const got = await upgradeAnsweredWithout101(proxy, 'u1');
  t.same(got, { status: 200, body: 'part1\npart2\n', complete: true }, 'the whole answer, no 502 written into it');
  const view = running.cutover.health.view().candidate;
  t.match(view, { healthy: true, ejections: 0, consecutiveFailures: 0 }, 'the answer counted as an answer, not also as a timeout');
  t.notOk(lines.some((l) => l.includes('upstream ejected')), 'no ejection logged');
});

t.test('a relayed answer idle past its limit is cut so the client can tell, without a 502 or a verdict', async (t) => {
  shortLimits(t, { relayIdleMs: 300 });
  const legacy = await wsUpstream(t, 'legacy');
  const candidate = await streamingUpstream(t, () => undefined); // part1, then nothing
  const config = cfg(legacy.url, candidate);
  Object.assign(config.upstreams.candidate, { outlier: ONE_STRIKE });
  const { proxy, running } = await startCutover(t, await writeConfig(t, config, { f: { enabled: true, percentage: 100 } }));
  const started = Date.now();
  const got = await upgradeAnsweredWithout101(proxy, 'u1');
  t.same(got, { status: 200, body: 'part1\n', complete: false }, 'cut mid-body, not ended as if complete');
  t.ok(Date.now() - started < 3000, `cut after ${Date.now() - started} ms`);
  t.match(running.cutover.health.view().candidate, { healthy: true, ejections: 0, consecutiveFailures: 0 }, 'not blamed on the candidate');
});

t.test('shutdown cuts a relayed answer still streaming at the drain deadline', async (t) => {
  const legacy = await wsUpstream(t, 'legacy');
  const candidate = await streamingUpstream(t, () => undefined);
  const { proxy, running } = await startCutover(t, await writeConfig(t, cfg(legacy.url, candidate), { f: { enabled: true, percentage: 100 } }));
  const relayed = upgradeAnsweredWithout101(proxy, 'u1');
  await new Promise((r) => setTimeout(r, 200));
  const started = Date.now();
  await running.shutdown();
  t.ok(Date.now() - started < 4000, `shutdown finished in ${Date.now() - started} ms`);
  t.match(await relayed, { status: 200, complete: false });
});

t.test('upgrades pass the same health gate: an ejected candidate gets none, its users go to legacy', async (t) => {
  const legacy = await wsUpstream(t, 'legacy');
  // Fails plain requests (which eject it) but would accept upgrades.
  const candidate = await wsUpstream(t, 'candidate', { http: (_req, res) => void res.writeHead(500).end() });
  const config = cfg(legacy.url, candidate.url);
  Object.assign(config.upstreams.candidate, { outlier: ONE_STRIKE });
  const { proxy, running } = await startCutover(t, await writeConfig(t, config, { f: { enabled: true, percentage: 100 } }));
  const before = await open(proxy, '/ws', 'u1');
  t.equal(await roundTrip(before, 'hi'), 'candidate:u1:hi', 'healthy: the upgrade goes to the candidate');
  before.close();
  t.equal((await fetch(`${proxy}/ws`, { headers: { 'x-user-id': 'u1' } })).status, 200, 'an HTTP request fails on the candidate and falls back');
  t.equal(running.cutover.health.view().candidate?.healthy, false, 'ejected');
  const after = await open(proxy, '/ws', 'u1');
  t.equal(await roundTrip(after, 'hi'), 'legacy:u1:hi', 'ejected: the same user upgrades on legacy');
  after.close();
  t.equal(candidate.upgrades.length, 1, 'the ejected candidate saw no upgrade');
});

t.test('the QA override applies to upgrades: forces a side (past the health gate) and is not forwarded', async (t) => {
  const secret = 'qa-secret-0123456789';
  const legacy = await wsUpstream(t, 'legacy');
  const candidate = await wsUpstream(t, 'candidate', { http: (_req, res) => void res.writeHead(500).end() });
  const config = { ...cfg(legacy.url, candidate.url), qaOverride: { header: 'x-cutover-force', secret } };
  Object.assign(config.upstreams.candidate, { outlier: ONE_STRIKE });
  const { proxy, running } = await startCutover(t, await writeConfig(t, config, { f: { enabled: false } }));
  const force = (user: string, value: string) => {
    const ws = new WebSocket(`${proxy.replace('http', 'ws')}/ws`, { headers: { 'x-user-id': user, 'x-cutover-force': value } });
    return new Promise<WebSocket>((resolve, reject) => {
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    });
  };
  const forced = await force('u1', `candidate:${secret}`);
  t.equal(await roundTrip(forced, 'hi'), 'candidate:u1:hi', 'flag off, forced: the candidate');
  forced.close();
  t.notOk(candidate.upgrades.some((h) => 'x-cutover-force' in h), 'the override header is not forwarded');
  const wrong = await force('u1', 'candidate:not-the-secret-at-all');
  t.equal(await roundTrip(wrong, 'hi'), 'legacy:u1:hi', 'a wrong secret is ignored');
  wrong.close();

  // Ejected (an HTTP request forced to it fails): a forced upgrade still reaches it.
  await fetch(`${proxy}/ws`, { headers: { 'x-user-id': 'u1', 'x-cutover-force': `candidate:${secret}` } });
  t.equal(running.cutover.health.view().candidate?.healthy, false, 'ejected');
  const past = await force('u1', `candidate:${secret}`);
  t.equal(await roundTrip(past, 'hi'), 'candidate:u1:hi', 'ejected, forced: still the candidate');
  past.close();
  t.ok(legacy.upgrades.every((h) => !('x-cutover-force' in h)), 'not forwarded to legacy either');
});
