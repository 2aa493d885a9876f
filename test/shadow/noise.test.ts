import t, { type Test } from 'tap';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { RouteShadowStats } from '../../src/shadow/results.js';

// Noise learning asks legacy twice; only leaf fields two good (same 2xx) legacy answers disagree
// on may become noise, and only once two probes saw them differ.

interface Report {
  totals: { match: number; mismatch: number; error: number; dropped: number };
  top_fields: Array<{ path: string; count: number }>;
  noisy_fields: string[];
}

const GOOD = { id: 1, items: [{ sku: 1, price: 10 }, { sku: 2, price: 20 }] };
const WRONG_PRICES = { id: 1, items: [{ sku: 1, price: 99 }, { sku: 2, price: 99 }] };

function send(res: ServerResponse, body: unknown, status = 200): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** Mirrored and probe requests carry x-cutover-shadow; the real request does not. */
const isProbe = (req: { headers: IncomingHttpHeaders }) => req.headers['x-cutover-shadow'] === '1';

/**
 * Legacy answers GOOD to real requests and `probe` to noise probes; the candidate gets every
 * price wrong. Sends `n` requests one at a time (each compared before the next) and returns the
 * report.
 */
async function run(t: Test, probe: (req: IncomingMessage, res: ServerResponse) => void, n = 6): Promise<Report> {
  const legacy = await startUpstream(t, 'legacy', (req, res) => (isProbe(req) ? probe(req, res) : send(res, GOOD)));
  const candidate = await startUpstream(t, 'candidate', (_req, res) => send(res, WRONG_PRICES));
  const routes = {
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
    routes: [{ name: 'catalog', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', shadow: { percentage: 100, noiseSample: 100 } }],
  } as unknown as ConfigInput;
  const { proxy, admin } = await startCutover(t, await writeConfig(t, routes, { f: { enabled: false } }));
  const report = async () => (await http(`${admin}/api/v1/shadow/catalog`)).json<Report>();
  for (let i = 0; i < n; i++) {
    await http(`${proxy}/api/p/${i}`, { headers: { 'x-user-id': `u${i}` } });
    await waitFor(async () => ((r) => r.totals.match + r.totals.mismatch + r.totals.error === i + 1)(await report()), 3000, `comparison ${i + 1}`);
  }
  t.equal(legacy.seen.filter(isProbe).length, n, 'legacy was probed for every mirrored GET');
  return report();
}

t.test('a legacy error page on the probe teaches nothing', async (t) => {
  // Every probe gets 503: before the fix the first one marked $.id, $.items and $.error noisy,
  // and a candidate with every price wrong then matched.
  const r = await run(t, (_req, res) => send(res, { error: 'busy' }, 503));
  t.same(r.noisy_fields, []);
  t.match(r.totals, { mismatch: 6, match: 0 });
  t.same(r.top_fields.map(({ path, count }) => ({ path, count })), [{ path: '$.items[*].price', count: 6 }]);
});

t.test('a 2xx probe with another 2xx status teaches nothing', async (t) => {
  const r = await run(t, (_req, res) => send(res, { accepted: true }, 202));
  t.same(r.noisy_fields, []);
  t.match(r.totals, { mismatch: 6, match: 0 });
});

t.test('a probe answer of another type never learns $ (which would cover every field)', async (t) => {
  const r = await run(t, (_req, res) => send(res, []));
  t.same(r.noisy_fields, []);
  t.match(r.totals, { mismatch: 6, match: 0 });
});

t.test('whole objects and arrays are never learned, only leaves', async (t) => {
  // items as a string (a type change below $), and a missing object-valued field
  const r = await run(t, (_req, res) => send(res, { id: 1, items: 'unavailable', extra: { a: 1 } }));
  t.same(r.noisy_fields, []);
  t.match(r.totals, { mismatch: 6, match: 0 });
  t.same(r.top_fields.map(({ path, count }) => ({ path, count })), [{ path: '$.items[*].price', count: 6 }]);
});

t.test('a field one probe saw differ is not ignored until a second probe sees it too', async (t) => {
  let probes = 0;
  // Only the first probe returns another id; the price stays wrong throughout.
  const r = await run(t, (_req, res) => send(res, { ...GOOD, id: ++probes === 1 ? 2 : 1 }));
  t.same(r.noisy_fields, [], 'one odd legacy answer does not make $.id noise');
  t.match(r.totals, { mismatch: 6, match: 0 });
});

t.test('one-off suspects make room: noise learning never stops for good', async (t) => {
  const stats = new RouteShadowStats('r', 'f');
  for (let i = 0; i < 150; i++) stats.markNoisy(`$.once${i}`); // a deploy's worth of one-off paths
  stats.markNoisy('$.nonce');
  stats.markNoisy('$.nonce');
  t.ok(stats.noisy.has('$.nonce'), 'a field seen differing by two probes is still learned');
  t.notOk(stats.noisy.has('$.once0'), 'one-off paths are not');
});
