// An Express gateway that authenticates first and lets cutover route by the user it found.
//   Run: node examples/express-gateway.mjs
//   curl -H 'Authorization: Bearer user-42' localhost:3000/api/v1/customers/1
import express from 'express';
import { createCutover } from 'cutover';
import { cutoverMiddleware } from 'cutover/express';
import { onStop, sampleBackends } from './shared.mjs';

const backends = await sampleBackends();
const cutover = createCutover({
  routes: backends.routes,
  userId: (req) => req.user?.id, // the gateway's own auth decides who the user is
});
await cutover.ready;
await cutover.flags.set('customer_read', { enabled: true, percentage: 50 });

const app = express();
app.get('/health', (_req, res) => res.json({ status: 'ok' }));
// Toy auth: "Bearer <user id>". A real gateway verifies a session or a JWT here.
app.use((req, res, next) => {
  const m = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
  if (!m) return res.status(401).json({ error: 'unauthorized' });
  req.user = { id: m[1] };
  next();
});
app.use(cutoverMiddleware(cutover)); // before any body parser
app.get('/gateway/whoami', (req, res) => res.json({ served_by: 'gateway', user: req.user.id }));

const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
  console.log(`express gateway on http://127.0.0.1:${server.address().port}`);
});
onStop(async () => {
  server.close();
  await cutover.close();
  backends.close();
});
