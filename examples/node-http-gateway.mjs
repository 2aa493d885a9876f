// A plain node:http gateway with cutover inside it: /api/v1/customers is routed between legacy
// and the new service by flag; every other path is the gateway's own; the admin API is mounted
// under /admin.   Run: node examples/node-http-gateway.mjs   (PORT=3000 by default)
import { createServer } from 'node:http';
import { createCutover } from 'cutover';
import { onStop, sampleBackends } from './shared.mjs';

const backends = await sampleBackends();
const cutover = createCutover({ routes: backends.routes });
await cutover.ready;
await cutover.flags.set('customer_read', { enabled: true, percentage: 50 });

const server = createServer((req, res) => {
  if (req.url.startsWith('/admin/')) {
    req.url = req.url.slice('/admin'.length);
    return cutover.adminHandler(req, res);
  }
  cutover.handler(req, res, () => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ served_by: 'gateway', path: req.url }) + '\n');
  });
});
server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`node:http gateway on http://127.0.0.1:${server.address().port}`);
});
onStop(async () => {
  server.close();
  await cutover.close();
  backends.close();
});
