// Child process: a small, fast keep-alive upstream on 127.0.0.1.
//   node bench/upstream.mjs NAME [ok|hang]
// ok:   answers a small JSON body naming itself; request bodies are counted and discarded.
// hang: accepts every request and never answers (the proxy's timeout must end it).
// Started with fork(): reports {type:'ready', port} and answers {type:'stats', id}.
import http from 'node:http';

const [name = 'upstream', mode = 'ok'] = process.argv.slice(2);
const body = Buffer.from(JSON.stringify({ served_by: name, ok: true, items: [1, 2, 3] }));
// Raw header arrays skip Node's per-response header object work, keeping the limit high.
const headers = ['content-type', 'application/json', 'content-length', String(body.length), 'x-served-by', name];

let requests = 0;
let connections = 0; // new TCP connections: a proxy that doesn't reuse them shows here
let bytes = 0;
const hanging = new Set();

function onBodyRequest(req, res) {
  let n = 0;
  req.on('data', (c) => {
    n += c.length;
  });
  req.on('end', () => {
    bytes += n;
    const b = Buffer.from(JSON.stringify({ served_by: name, received: n }));
    res.writeHead(200, ['content-type', 'application/json', 'content-length', String(b.length), 'x-served-by', name]);
    res.end(b);
  });
}

const server = http.createServer((req, res) => {
  requests++;
  if (mode === 'hang') {
    hanging.add(res);
    res.on('close', () => hanging.delete(res));
    req.resume();
    return;
  }
  if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) {
    return onBodyRequest(req, res);
  }
  res.writeHead(200, headers);
  res.end(body);
});
// Longer than any proxy's pool idle timeout, so the proxy always closes first (no reuse races).
server.on('connection', () => {
  connections++;
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.requestTimeout = 0;

server.listen(0, '127.0.0.1', () => {
  process.send?.({ type: 'ready', port: server.address().port, name, mode });
});

process.on('message', (m) => {
  if (m?.type === 'stats') process.send({ id: m.id, requests, bytes, connections, hanging: hanging.size });
});
// If the bench dies without cleaning up, don't outlive it.
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => {
  for (const res of hanging) res.destroy();
  server.closeAllConnections();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
});
