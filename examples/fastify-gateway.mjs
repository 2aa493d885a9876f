// A Fastify gateway: cutover takes the requests its routes match, Fastify keeps the rest.
//   Run: node examples/fastify-gateway.mjs
import Fastify from 'fastify';
import { createCutover } from 'cutover';
import { cutoverFastify } from 'cutover/fastify';
import { onStop, sampleBackends } from './shared.mjs';

const backends = await sampleBackends();
const cutover = createCutover({ routes: backends.routes });
await cutover.ready;
await cutover.flags.set('customer_read', { enabled: true, percentage: 50 });

const app = Fastify();
await app.register(cutoverFastify, { cutover });
app.get('/gateway/info', async () => ({ served_by: 'gateway' }));
app.post('/gateway/echo', async (req) => ({ served_by: 'gateway', body: req.body }));

const address = await app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1' });
console.log(`fastify gateway on ${address}`);
onStop(async () => {
  await app.close();
  await cutover.close();
  backends.close();
});
