import t, { type Test } from 'tap';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { startCutover, writeConfig, waitFor } from '../helpers/servers.js';

interface WsUpstream {
  url: string;
  server: Server;
  wss: WebSocketServer;
  openSockets: () => number;
}

/** A real WebSocket upstream that echoes with its name and the user it saw. */
async function wsUpstream(t: Test, name: string, opts: { refuse?: number } = {}): Promise<WsUpstream> {
  const server = createServer((_req, res) => res.end('plain http'));
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
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
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, wss, openSockets: () => wss.clients.size };
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
