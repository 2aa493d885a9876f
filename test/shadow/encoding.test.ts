import t, { type Test } from 'tap';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { request } from 'undici';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

// Shadow compares what the answers say, not how each side compressed them; the client still
// gets legacy's bytes exactly as legacy sent them.

interface Report {
  totals: { match: number; mismatch: number; error: number; dropped: number };
  top_fields: Array<{ path: string; count: number }>;
  examples: Array<{ result: string; reason?: string; differences: Array<{ path: string; legacy: unknown; candidate: unknown }> }>;
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

const DOC = { id: 1, name: 'shoe', items: [{ sku: 1, price: 10 }, { sku: 2, price: 20 }] };

function encoded(body: Buffer, encoding: string | undefined): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', ...(encoding !== undefined && { 'content-encoding': encoding }) });
    res.end(body);
  };
}

const json = (v: unknown) => Buffer.from(JSON.stringify(v));

async function setup(t: Test, legacy: Handler, candidate: Handler, shadow: Record<string, unknown> = {}) {
  const l = await startUpstream(t, 'legacy', legacy);
  const c = await startUpstream(t, 'candidate', candidate);
  const routes = {
    upstreams: { legacy: { url: l.url }, candidate: { url: c.url } },
    routes: [{ name: 'catalog', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', shadow: { percentage: 100, ...shadow } }],
  } as unknown as ConfigInput;
  const { proxy, admin } = await startCutover(t, await writeConfig(t, routes, { f: { enabled: false } }));
  const report = async () => (await http(`${admin}/api/v1/shadow/catalog`)).json<Report>();
  /** Sends `n` browser-like GETs and waits until all were compared (or failed). */
  const send = async (n: number) => {
    for (let i = 0; i < n; i++) await http(`${proxy}/api/p/${i}`, { headers: { 'x-user-id': `u${i}`, 'accept-encoding': 'gzip, deflate, br' } });
    await waitFor(async () => ((r) => r.totals.match + r.totals.mismatch + r.totals.error === n)(await report()), 3000, `${n} shadow results`);
    return report();
  };
  return { proxy, send, candidate: c };
}

t.test('the same JSON gzipped at two levels matches, and the client gets legacy bytes untouched', async (t) => {
  const legacyBytes = gzipSync(json(DOC), { level: 9 });
  const { proxy, send } = await setup(t, encoded(legacyBytes, 'gzip'), encoded(gzipSync(json(DOC), { level: 1 }), 'gzip'), { headers: ['content-type', 'content-encoding'] });
  t.not(legacyBytes.equals(gzipSync(json(DOC), { level: 1 })), 'the two sides really send different bytes');
  const r = await send(5);
  t.same(r.totals, { match: 5, mismatch: 0, error: 0, dropped: 0 });

  const got = await request(`${proxy}/api/raw`, { headers: { 'accept-encoding': 'gzip' } });
  t.equal(got.headers['content-encoding'], 'gzip', 'the client still gets the encoded answer');
  t.ok(Buffer.from(await got.body.arrayBuffer()).equals(legacyBytes), "byte for byte legacy's body");
});

t.test('br against identity (and deflate against gzip) match; content-encoding is not a finding', async (t) => {
  const a = await setup(t, encoded(brotliCompressSync(json(DOC)), 'br'), encoded(json(DOC), undefined), { headers: ['content-type', 'content-encoding'] });
  t.same((await a.send(3)).totals, { match: 3, mismatch: 0, error: 0, dropped: 0 }, 'br / identity');
  const b = await setup(t, encoded(deflateSync(json(DOC)), 'deflate'), encoded(gzipSync(json(DOC)), 'gzip'));
  t.same((await b.send(3)).totals, { match: 3, mismatch: 0, error: 0, dropped: 0 }, 'deflate / gzip');
});

t.test('differing JSON under gzip is found at its JSON path', async (t) => {
  const wrong = { ...DOC, items: DOC.items.map((i) => ({ ...i, price: 99 })) };
  const { send } = await setup(t, encoded(gzipSync(json(DOC)), 'gzip'), encoded(brotliCompressSync(json(wrong)), 'br'));
  const r = await send(4);
  t.same(r.totals, { match: 0, mismatch: 4, error: 0, dropped: 0 });
  t.same(r.top_fields.map(({ path, count }) => ({ path, count })), [{ path: '$.items[*].price', count: 4 }]);
  t.match(r.examples[0]?.differences, [{ path: '$.items[*].price', legacy: 10, candidate: 99 }]);
});

t.test('an unknown encoding compares raw bytes and says so', async (t) => {
  const same = await setup(t, encoded(Buffer.from('opaque'), 'zstd'), encoded(Buffer.from('opaque'), 'zstd'));
  t.same((await same.send(2)).totals, { match: 2, mismatch: 0, error: 0, dropped: 0 }, 'identical raw bytes match');
  const differ = await setup(t, encoded(Buffer.from('opaque-1'), 'zstd'), encoded(json(DOC), undefined));
  const r = await differ.send(2);
  t.same(r.totals, { match: 0, mismatch: 2, error: 0, dropped: 0 });
  t.match(r.examples[0]?.differences, [{ path: 'body', legacy: /content-encoding zstd \(not decoded: unknown encoding zstd\)/ }]);
});

t.test('a corrupt gzip body is reported as not decoded, not as an equal body', async (t) => {
  const { send } = await setup(t, encoded(gzipSync(json(DOC)), 'gzip'), encoded(Buffer.from('not gzip at all'), 'gzip'));
  const r = await send(2);
  t.same(r.totals, { match: 0, mismatch: 2, error: 0, dropped: 0 });
  t.match(r.examples[0]?.differences, [{ path: 'body', candidate: /content-encoding gzip \(not decoded: / }]);
});

t.test('a small body that decodes past maxBody is an error, not a 5 MB buffer', async (t) => {
  const bomb = gzipSync(json({ pad: 'x'.repeat(5 * 1024 * 1024) }));
  t.ok(bomb.length < 64 * 1024, `compressed: ${bomb.length} bytes`);
  const { send } = await setup(t, encoded(bomb, 'gzip'), encoded(bomb, 'gzip'), { maxBody: '64kb' });
  const r = await send(2);
  t.same(r.totals, { match: 0, mismatch: 0, error: 2, dropped: 0 });
  t.match(r.examples[0], { result: 'error', reason: /larger than shadow maxBody/ });
});
