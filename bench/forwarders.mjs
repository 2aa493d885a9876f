// Child process: a baseline forwarder on 127.0.0.1 in front of one upstream.
//   node bench/forwarders.mjs undici|http-proxy|reply-from http://127.0.0.1:PORT
// These are what a team would write or pick instead of cutover, kept minimal but correct enough
// (hop-by-hop headers dropped, keep-alive pools of 128, 502 on upstream failure) to be fair.
import http from 'node:http';
import { Pool } from 'undici';
import httpProxy from 'http-proxy';
import Fastify from 'fastify';
import replyFrom from '@fastify/reply-from';

const [kind, target] = process.argv.slice(2);
const origin = new URL(target);

// Written out here rather than imported from src/proxy/headers.ts on purpose: a baseline must
// not share cutover's code (or its costs), only its rules.
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'expect',
  'host',
]);

function fail(res, err) {
  if (res.headersSent) return res.destroy(err);
  res.writeHead(502, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: 'bad_gateway', message: err.message }));
}

/** The "Node floor": undici Pool.stream writing straight into the response (backpressure included). */
function undiciForwarder() {
  const pool = new Pool(origin.origin, { connections: 128, pipelining: 1, keepAliveTimeout: 4000 });
  const factory = ({ statusCode, headers, opaque }) => {
    const out = {};
    for (const k in headers) if (!HOP_BY_HOP.has(k)) out[k] = headers[k];
    opaque.writeHead(statusCode, out);
    return opaque;
  };
  return (req, res) => {
    const headers = {};
    for (const k in req.headers) if (!HOP_BY_HOP.has(k)) headers[k] = req.headers[k];
    headers.host = origin.host;
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    pool.stream(
      { path: req.url, method: req.method, headers, body: hasBody ? req : null, opaque: res },
      factory,
      (err) => err && fail(res, err),
    );
  };
}

/** What most Node teams reach for: node-http-proxy with a keep-alive agent. */
function httpProxyForwarder() {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 128 });
  const proxy = httpProxy.createProxyServer({ target: origin.origin, agent });
  proxy.on('error', (err, _req, res) => fail(res, err));
  return (req, res) => proxy.web(req, res);
}

/**
 * What Fastify teams reach for: @fastify/reply-from (undici underneath) with bodies passed through
 * unparsed, as its README recommends for a proxy. Fastify owns the server here.
 */
async function replyFromForwarder() {
  const app = Fastify({ logger: false, keepAliveTimeout: 65_000 });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
  await app.register(replyFrom, { base: origin.origin, undici: { connections: 128, pipelining: 1, keepAliveTimeout: 4000 } });
  app.all('/*', (req, reply) => reply.from(req.url));
  await app.ready();
  return app.server;
}

const handler = kind === 'undici' ? undiciForwarder() : kind === 'http-proxy' ? httpProxyForwarder() : null;
if (!handler && kind !== 'reply-from') {
  process.stderr.write(`unknown forwarder ${kind}\n`);
  process.exit(2);
}
const server = handler ? http.createServer(handler) : await replyFromForwarder();
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(0, '127.0.0.1', () => process.send?.({ type: 'ready', port: server.address().port }));

process.on('message', (m) => {
  if (m?.type === 'stats') process.send({ id: m.id });
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
});
