import t from 'tap';
import { http, postJson, rawPath } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import { bucketOf } from '../../src/routing/bucket.js';
import { SHADOW_GROUP } from '../../src/shadow/shadower.js';
import type { ConfigInput } from '../../src/config/schema.js';

interface Report {
  totals: Record<string, number>;
  mismatch_rate: Record<string, { compared: number; mismatched: number; rate: number | null }>;
  top_fields: Array<{ path: string; count: number }>;
  noisy_fields: string[];
  examples: Array<{ result: string; reason?: string; differences: Array<{ path: string }> }>;
}

function cfg(legacy: string, candidate: string, shadow: Record<string, unknown>, extra: Record<string, unknown> = {}): ConfigInput {
  return {
    upstreams: { legacy: { url: legacy }, candidate: { url: candidate } },
    routes: [{ name: 'catalog', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', shadow }],
    ...extra,
  } as unknown as ConfigInput;
}

const json = (res: import('node:http').ServerResponse, body: unknown, status = 200) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

t.test('ignored fields match, real differences are found, candidate 500s are mismatches', async (t) => {
  let candidateMode: 'same' | 'field' | '500' = 'same';
  const legacy = await startUpstream(t, 'legacy', (req, res) => json(res, { id: req.url, name: 'shoe', updated_at: Date.now(), items: [{ sku: 1, etag: 'a' }] }));
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    if (candidateMode === '500') return json(res, { error: 'boom' }, 500);
    json(res, { updated_at: 0, id: req.url, name: candidateMode === 'field' ? 'sneaker' : 'shoe', items: [{ etag: 'zzz', sku: 1 }] });
  });
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, { percentage: 100, ignore: ['$.updated_at', '$.items[*].etag'] }), { f: { enabled: false } });
  const { proxy, admin } = await startCutover(t, dirs);
  const report = async () => (await http(`${admin}/api/v1/shadow/catalog`)).json<Report>();

  for (let i = 0; i < 5; i++) t.equal((await http(`${proxy}/api/p/${i}`, { headers: { 'x-user-id': `u${i}` } })).json<{ name: string }>().name, 'shoe');
  await waitFor(async () => (await report()).totals.match === 5, 3000, 'five matches');
  t.ok(candidate.seen.every((s) => s.headers['x-cutover-shadow'] === '1'), 'mirrored requests say so');
  t.ok(candidate.seen.every((s) => s.rawHeaders.filter((h, i) => i % 2 === 0 && h.toLowerCase() === 'host').length === 1), 'exactly one Host header');
  t.ok(candidate.seen.every((s) => s.headers.host === `127.0.0.1:${candidate.port}`), "the candidate's own Host");

  candidateMode = 'field';
  for (let i = 0; i < 4; i++) await http(`${proxy}/api/p/${i}`, { headers: { 'x-user-id': `u${i}` } });
  await waitFor(async () => (await report()).totals.mismatch === 4, 3000, 'four mismatches');
  let r = await report();
  t.same(r.top_fields.map(({ path, count }) => ({ path, count })), [{ path: '$.name', count: 4 }], 'the differing field, and only it');
  t.match(r.examples[0], { result: 'mismatch', differences: [{ path: '$.name', legacy: 'shoe', candidate: 'sneaker' }] });
  t.equal(r.mismatch_rate['5m']?.compared, 9);
  t.ok(Math.abs((r.mismatch_rate['5m']?.rate ?? 0) - 4 / 9) < 1e-9);

  candidateMode = '500';
  await http(`${proxy}/api/p/x`, { headers: { 'x-user-id': 'u1' } });
  await waitFor(async () => (await report()).totals.mismatch === 5, 3000, 'a 500 is a mismatch');
  r = await report();
  t.match(r.examples[0], { differences: [{ path: 'status', legacy: 200, candidate: 500 }] });

  const metrics = (await http(`${admin}/metrics`)).text;
  t.match(metrics, /cutover_shadow_total\{route="catalog",result="match"\} 5/);
  t.match(metrics, /cutover_shadow_total\{route="catalog",result="mismatch"\} 5/);
  const status = (await http(`${admin}/api/v1/status`)).json<{ routes: Array<{ name: string; shadow?: Record<string, { compared: number; mismatched: number }> }> }>();
  t.match(status.routes.find((x) => x.name === 'catalog')?.shadow?.['5m'], { compared: 10, mismatched: 5 }, 'shadow results in /api/v1/status (the dashboard reads them)');
  const list = (await http(`${admin}/api/v1/shadow`)).json<{ routes: Array<{ route: string }> }>();
  t.same(list.routes.map((x) => x.route), ['catalog']);
  t.equal((await http(`${admin}/api/v1/shadow/nope`)).status, 404);
  t.equal((await rawPath(admin, 'GET', '/api/v1/shadow/%E0')).status, 400, 'malformed escape: 400, not 500');
});

t.test('a slow candidate never slows the client; shadows time out as errors; no health or auto-disable impact', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (_req, res) => json(res, { ok: true }));
  const candidate = await startUpstream(t, 'candidate', (_req, res) => setTimeout(() => json(res, { ok: true }), 1500));
  // On at 0 %: every user on legacy, with auto-disable armed to fire on the first candidate failure.
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, { percentage: 100, timeout: '300ms' }), { f: { enabled: true, percentage: 0, auto_disable_on_failure: true, auto_disable_after: 1 } });
  const { proxy, admin, running } = await startCutover(t, dirs);
  for (let i = 0; i < 5; i++) {
    const started = Date.now();
    await http(`${proxy}/api/slow/${i}`, { headers: { 'x-user-id': `u${i}` } });
    t.ok(Date.now() - started < 150, `client answered in ${Date.now() - started} ms`);
  }
  await waitFor(async () => (await http(`${admin}/api/v1/shadow/catalog`)).json<Report>().totals.error === 5, 3000, 'five shadow errors');
  t.equal(running.cutover.health.view().candidate?.healthy, true, 'shadow failures do not eject the candidate');
  t.match((await http(`${admin}/api/v1/flags/f`)).json(), { enabled: true }, 'nor auto-disable the flag');
});

t.test('sampling by user bucket; writes only when opted in, with the same body', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (req, res) => {
    req.resume();
    req.on('end', () => json(res, { ok: true }));
  });
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    req.on('end', () => json(res, { ok: true }));
  });
  // One shadow job at a time: jobs run in the order they were submitted (used below).
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, { percentage: 30 }, { shadowing: { concurrency: 1, queue: 256 } }), { f: { enabled: false } });
  const { proxy } = await startCutover(t, dirs);
  const users = Array.from({ length: 60 }, (_, i) => `user-${i}`);
  const expected = new Set(users.filter((u) => bucketOf(SHADOW_GROUP, u) <= 30));
  for (const u of users) await http(`${proxy}/api/a`, { headers: { 'x-user-id': u } });
  await waitFor(() => candidate.seen.length === expected.size, 3000, 'every sampled user mirrored');
  const shadowedUsers = new Set(candidate.seen.map((s) => s.headers['x-user-id']));
  t.same([...shadowedUsers].sort(), [...expected].sort(), 'exactly the users whose shadow bucket is in the 30%');

  // A user inside the sample, so only the method decides: their GETs are mirrored (checked
  // above), their POST must not be. The GET after it is a barrier: with one job at a time, once
  // it reached the candidate, a mirrored POST would have reached it first.
  const sampled = [...expected][0] as string;
  t.ok(candidate.seen.some((s) => s.method === 'GET' && s.headers['x-user-id'] === sampled), `${sampled} is mirrored`);
  await postJson(`${proxy}/api/a`, { order: 1 }, { 'x-user-id': sampled });
  await http(`${proxy}/api/barrier`, { headers: { 'x-user-id': sampled } });
  await waitFor(() => candidate.seen.some((s) => s.url === '/api/barrier'), 3000, 'the barrier GET mirrored');
  t.equal(legacy.seen.filter((s) => s.method === 'POST').length, 1, 'legacy served the POST');
  t.notOk(candidate.seen.some((s) => s.method === 'POST'), 'writes are not mirrored by default');

  const cand2: Array<{ method: string; bytes: number }> = [];
  const candidate2 = await startUpstream(t, 'candidate', (req, res) => {
    let n = 0;
    req.on('data', (c: Buffer) => (n += c.length));
    req.on('end', () => {
      cand2.push({ method: req.method ?? '', bytes: n });
      json(res, { ok: true });
    });
  });
  const dirs2 = await writeConfig(t, cfg(legacy.url, candidate2.url, { percentage: 100, writes: true }), { f: { enabled: false } });
  const p2 = await startCutover(t, dirs2);
  const body = JSON.stringify({ order: 'x'.repeat(3000) });
  await http(`${p2.proxy}/api/orders`, { method: 'POST', body, headers: { 'x-user-id': 'u', 'content-type': 'application/json' } });
  await waitFor(() => cand2.length === 1, 3000, 'write mirrored');
  t.same(cand2[0], { method: 'POST', bytes: body.length }, 'the candidate got the same body');
});

t.test('bounded: a full shadow queue drops (and counts) instead of queueing without bound', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (_req, res) => json(res, { ok: true }));
  const candidate = await startUpstream(t, 'candidate', (_req, res) => setTimeout(() => json(res, { ok: true }), 500));
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, { percentage: 100 }, { shadowing: { concurrency: 1, queue: 2 } }), { f: { enabled: false } });
  const { proxy, admin } = await startCutover(t, dirs);
  await Promise.all(Array.from({ length: 10 }, (_, i) => http(`${proxy}/api/q/${i}`, { headers: { 'x-user-id': `u${i}` } })));
  await waitFor(async () => {
    const r = (await http(`${admin}/api/v1/shadow/catalog`)).json<Report>();
    return r.totals.match === 3 && r.totals.dropped === 7;
  }, 5000, '1 running + 2 queued compared, 7 dropped');
  t.pass();
});

t.test('noise cancellation: fields where legacy disagrees with itself stop counting', async (t) => {
  let n = 0;
  const legacy = await startUpstream(t, 'legacy', (_req, res) => json(res, { name: 'x', nonce: n++ }));
  const candidate = await startUpstream(t, 'candidate', (_req, res) => json(res, { name: 'x', nonce: -1 }));
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, { percentage: 100, noiseSample: 100 }), { f: { enabled: false } });
  const { proxy, admin } = await startCutover(t, dirs);
  const report = async () => (await http(`${admin}/api/v1/shadow/catalog`)).json<Report>();
  // One at a time, so each comparison sees exactly the probes before it.
  for (let i = 0; i < 5; i++) {
    await http(`${proxy}/api/n`, { headers: { 'x-user-id': `u${i}` } });
    await waitFor(async () => ((r) => (r.totals.match ?? 0) + (r.totals.mismatch ?? 0) === i + 1)(await report()), 3000, `comparison ${i + 1}`);
  }
  const r = await report();
  t.match(r.totals, { mismatch: 1, match: 4 }, 'one probe is not enough: noise once two probes saw it');
  t.same(r.noisy_fields, ['$.nonce']);
  t.same(r.top_fields, [], 'a confirmed noisy field leaves the top fields');
});

t.test("mirrored requests carry exactly one x-cutover-shadow: 1, whatever the client sent", async (t) => {
  const legacy = await startUpstream(t, 'legacy', (_req, res) => json(res, { ok: true }));
  const candidate = await startUpstream(t, 'candidate', (_req, res) => json(res, { ok: true }));
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, { percentage: 100, noiseSample: 100 }), { f: { enabled: false } });
  const { proxy } = await startCutover(t, dirs);
  const marks = (h: string[]) => h.flatMap((v, i) => (i % 2 === 0 && v.toLowerCase() === 'x-cutover-shadow' ? [h[i + 1]] : []));
  await rawPath(proxy, 'GET', '/api/m', undefined, { 'x-user-id': 'u1', 'X-Cutover-Shadow': '1' });
  await rawPath(proxy, 'GET', '/api/m', undefined, { 'x-user-id': 'u2', 'x-cutover-shadow': '0' });
  await waitFor(() => candidate.seen.length === 2 && legacy.seen.length === 4, 3000, 'two mirrored, two probed');
  const real = legacy.seen.filter((s) => s.headers['x-cutover-shadow'] === undefined);
  t.equal(real.length, 2, "the real requests reached legacy without the client's mark");
  for (const s of [...candidate.seen, ...legacy.seen.filter((x) => !real.includes(x))]) t.same(marks(s.rawHeaders), ['1'], 'exactly one mark, "1"');
});

t.test('fallbacks are not mirrored: the candidate already had that request', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (req, res) => {
    req.resume();
    json(res, { ok: true });
  });
  const seen: string[] = [];
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    seen.push(`${req.url} ${req.headers['x-cutover-shadow'] ?? 'live'}`);
    json(res, { error: 'down' }, 500);
  });
  // Everyone on the candidate, every read shadowed: a 500 falls back to legacy, which must not
  // then mirror the same request to the candidate a second time.
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, { percentage: 100 }), { f: { enabled: true, percentage: 100 } });
  const { proxy, admin } = await startCutover(t, dirs);
  for (let i = 0; i < 3; i++) {
    const r = await http(`${proxy}/api/item/${i}`, { headers: { 'x-user-id': `u${i}` } });
    t.equal(r.status, 200, 'legacy answered after the fallback');
  }
  await new Promise((r) => setTimeout(r, 300));
  t.same(seen, ['/api/item/0 live', '/api/item/1 live', '/api/item/2 live'], 'the candidate saw each request once, live');
  const report = await http(`${admin}/api/v1/shadow/catalog`);
  const totals = report.status === 404 ? {} : report.json<Report>().totals;
  t.equal((totals.match ?? 0) + (totals.mismatch ?? 0), 0, 'nothing compared');
});
