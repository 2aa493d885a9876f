// Shared by the examples: two sample backends and a config that routes /api/v1/customers
// between them behind the customer_read flag.
import { listenBackend } from 'cutover';

export async function sampleBackends() {
  const legacy = await listenBackend('legacy', 0);
  const fresh = await listenBackend('new', 0);
  const url = (s) => `http://127.0.0.1:${s.address().port}`;
  return {
    routes: {
      upstreams: { legacy: { url: url(legacy) }, customers: { url: url(fresh) } },
      routes: [
        { name: 'customers', match: { path: '/api/v1/customers' }, legacy: 'legacy', candidate: 'customers', flag: 'customer_read', timeout: '300ms' },
      ],
    },
    close: () => {
      legacy.close();
      fresh.close();
    },
  };
}

export function onStop(fn) {
  for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => Promise.resolve(fn()).then(() => process.exit(0)));
}
