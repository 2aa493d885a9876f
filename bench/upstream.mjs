// Child process: small, fast keep-alive upstreams on 127.0.0.1, one port per name.
//   node bench/upstream.mjs NAME[,NAME...] [ok|hang]
// Several names share one process on purpose: a proxy splitting traffic between legacy and
// candidate must not get an extra busy process on a 2-core machine that a single-upstream
// baseline never pays for.
// ok:   answers a small JSON body naming itself; request bodies are counted and discarded.
// hang: accepts every request and never answers (the proxy's timeout must end it).
// Started with fork(): reports {type:'ready', port} and answers {type:'stats', id}.
import http from 'node:http';

const [names = 'upstream', mode = 'ok'] = process.argv.slice(2);
const hanging = new Set();
const servers = [];
const ports = {};
const stats = {};

for (const name of names.split(',')) {
  stats[name] = { requests: 0, bytes: 0, connections: 0 };
  servers.push(serve(name, stats[name]));
}

function serve(name, st) {
  const body = Buffer.from(JSON.stringify({ served_by: name, ok: true, items: [1, 2, 3] }));
  // Raw header arrays skip Node's per-response header object work, keeping the limit high.
  const headers = ['content-type', 'application/json', 'content-length', String(body.length), 'x-served-by', name];

  function onBodyRequest(req, res) {
    let n = 0;
    req.on('data', (c) => {
      n += c.length;
    });
    req.on('end', () => {
      st.bytes += n;
      const b = Buffer.from(JSON.stringify({ served_by: name, received: n }));
      res.writeHead(200, ['content-type', 'application/json', 'content-length', String(b.length), 'x-served-by', name]);
      res.end(b);
    });
  }

  const server = http.createServer((req, res) => {
    st.requests++;
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
    st.connections++; // new TCP connections: a proxy that doesn't reuse them shows here
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 0;
  server.listen(0, '127.0.0.1', () => {
    ports[name] = server.address().port;
    if (Object.keys(ports).length === Object.keys(stats).length) {
      process.send?.({ type: 'ready', port: Object.values(ports)[0], ports, mode });
    }
  });
  return server;
}

process.on('message', (m) => {
  if (m?.type !== 'stats') return;
  const total = (k) => Object.values(stats).reduce((a, s) => a + s[k], 0);
  process.send({ id: m.id, requests: total('requests'), bytes: total('bytes'), connections: total('connections'), hanging: hanging.size, byName: stats });
});
// If the bench dies without cleaning up, don't outlive it.
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => {
  for (const res of hanging) res.destroy();
  for (const server of servers) server.closeAllConnections();
  Promise.all(servers.map((server) => new Promise((r) => server.close(r)))).then(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
});
