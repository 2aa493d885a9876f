import t from 'tap';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import { pino } from 'pino';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import { shadowSchema, type ConfigInput } from '../../src/config/schema.js';
import { RouteShadowStats } from '../../src/shadow/results.js';

// Shadow findings must not outlive their cause: learned noise expires unless probes keep seeing
// the field differ, and an operator can start the since-view afresh after fixing the candidate.
// (A route a reload stops shadowing: reload-history.test.ts.)

interface Report {
  totals: { match: number; mismatch: number; error: number; dropped: number };
  since: string;
  compared: number;
  mismatched: number;
  mismatch_rate: Record<string, { compared: number; mismatched: number }>;
  top_fields: Array<{ path: string; count: number }>;
  noisy_fields: string[];
  examples: unknown[];
}

function send(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const isProbe = (req: { headers: IncomingHttpHeaders }) => req.headers['x-cutover-shadow'] === '1';

function route(name: string, path: string, shadow: object): object {
  return { name, match: { path }, legacy: 'legacy', candidate: 'candidate', flag: 'f', shadow };
}

function cfg(legacy: string, candidate: string, routes: object[]): ConfigInput {
  return { upstreams: { legacy: { url: legacy }, candidate: { url: candidate } }, routes } as unknown as ConfigInput;
}

t.test('a field learned noisy counts again once no probe saw it differ for noiseTtl', async (t) => {
  // Legacy's id wobbles on the first two probes (a deploy, a cache filling), then is stable; the
  // candidate's id is wrong throughout. Before the fix $.id stayed noise for the process's life,
  // hiding that regression.
  let probes = 0;
  let wobble = true;
  const legacy = await startUpstream(t, 'legacy', (req, res) => send(res, { id: isProbe(req) && wobble ? 100 + ++probes : 1 }));
  const candidate = await startUpstream(t, 'candidate', (_req, res) => send(res, { id: 7 }));
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, [route('catalog', '/api', { percentage: 100, noiseSample: 100, noiseTtl: '1s' })]), { f: { enabled: false } });
  const { proxy, admin } = await startCutover(t, dirs);
  const report = async () => (await http(`${admin}/api/v1/shadow/catalog`)).json<Report>();
  let sent = 0;
  const compare = async () => {
    await http(`${proxy}/api/p`, { headers: { 'x-user-id': `u${sent}` } });
    const n = ++sent;
    await waitFor(async () => ((r) => r.totals.match + r.totals.mismatch === n)(await report()), 3000, `comparison ${n}`);
  };

  await compare(); // first probe: $.id a suspect only, so a mismatch
  await compare(); // second probe: $.id is noise
  wobble = false;
  await compare();
  let r = await report();
  t.match(r.totals, { mismatch: 1, match: 2 });
  t.same(r.noisy_fields, ['$.id'], 'learned');

  await sleep(1200);
  t.same((await report()).noisy_fields, [], 'no probe saw $.id differ for noiseTtl: forgotten');
  await compare();
  r = await report();
  t.match(r.totals, { mismatch: 2, match: 2 }, "the candidate's wrong id is a mismatch again");

  // A field that keeps differing stays noise past the TTL: every probe refreshes it.
  wobble = true;
  await compare();
  await compare();
  const until = Date.now() + 1500;
  while (Date.now() < until) {
    await compare();
    await sleep(250);
  }
  r = await report();
  t.same(r.noisy_fields, ['$.id'], 'still noise');
  t.equal(r.totals.mismatch, 3, 'relearned by two probes, then ignored throughout');
});

t.test('a suspect needs its second probe within noiseTtl', async (t) => {
  let now = 1_000_000;
  const stats = new RouteShadowStats('r', 'f', () => now);
  stats.noiseTtlMs = 60_000;
  stats.markNoisy('$.a');
  now += 61_000;
  stats.markNoisy('$.a');
  t.same(stats.noisyFields(), [], 'two probes a TTL apart: still only a suspect');
  now += 30_000;
  stats.markNoisy('$.a');
  t.same(stats.noisyFields(), ['$.a'], 'two probes within the TTL: noise');
  now += 59_000;
  stats.markNoisy('$.a');
  now += 59_000;
  t.same(stats.noisyFields(), ['$.a'], 're-observed: the TTL starts again');
  now += 1000;
  t.same(stats.noisyFields(), []);
});

t.test('noiseTtl under 1s is refused: it would silently never learn any noise', async (t) => {
  const r = shadowSchema.safeParse({ percentage: 10, noiseSample: 5, noiseTtl: '0s' });
  t.notOk(r.success);
  t.match(r.error?.issues[0], { path: ['noiseTtl'], message: /at least 1s/ });
  t.match(shadowSchema.parse({ percentage: 10 }), { noiseTtl: 600_000 }, 'default 10m');
});

t.test('DELETE /api/v1/shadow/:route starts the since-view afresh; totals, windows and /metrics stay', async (t) => {
  let wrong = true;
  const legacy = await startUpstream(t, 'legacy', (req, res) => send(res, { price: 10, nonce: isProbe(req) ? Math.random() : 0 }));
  const candidate = await startUpstream(t, 'candidate', (_req, res) => send(res, { price: wrong ? 99 : 10, nonce: 0 }));
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, [route('catalog', '/api', { percentage: 100, noiseSample: 100 })]), { f: { enabled: false } });
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString()) as Record<string, unknown>), cb()) }));
  const { proxy, admin } = await startCutover(t, dirs, { logger });
  const report = async () => (await http(`${admin}/api/v1/shadow/catalog`)).json<Report>();
  for (let i = 0; i < 3; i++) {
    await http(`${proxy}/api/p/${i}`, { headers: { 'x-user-id': `u${i}` } });
    await waitFor(async () => (await report()).totals.mismatch === i + 1, 3000, `mismatch ${i + 1}`);
  }
  const before = await report();
  t.match(before, { compared: 3, mismatched: 3, top_fields: [{ path: '$.price', count: 3 }], noisy_fields: ['$.nonce'] });

  wrong = false; // the candidate's fix is deployed
  const reset = await http(`${admin}/api/v1/shadow/catalog`, { method: 'DELETE', headers: { 'x-cutover-actor': 'alice' } });
  t.equal(reset.status, 200);
  const after = reset.json<Report>();
  t.match(after, { compared: 0, mismatched: 0, top_fields: [], noisy_fields: [], examples: [] }, 'the since-view is empty');
  t.ok(after.since > before.since, 'since moved to the reset');
  t.same(after.totals, before.totals, 'totals are for the process life');
  t.match(after.mismatch_rate['5m'], { compared: 3, mismatched: 3 }, 'the 5-minute window (a rollout gate input) is not wiped by hand');
  t.match((await http(`${admin}/metrics`)).text, /cutover_shadow_total\{route="catalog",result="mismatch"\} 3/, 'the counter does not go down');
  t.match(lines.find((l) => l.msg === 'shadow results reset'), { route: 'catalog', who: /^alice@/, compared: 3, mismatched: 3, noisyFields: ['$.nonce'] }, 'logged with who and what was discarded');

  await http(`${proxy}/api/p/9`, { headers: { 'x-user-id': 'u9' } });
  await waitFor(async () => (await report()).totals.match === 1, 3000, 'a match after the fix');
  t.match(await report(), { compared: 1, mismatched: 0, top_fields: [] });

  t.equal((await http(`${admin}/api/v1/shadow/nope`, { method: 'DELETE' })).status, 404, 'unknown route: 404');
  t.equal((await http(`${admin}/api/v1/shadow`, { method: 'PUT' })).status, 405);
  const all = await http(`${admin}/api/v1/shadow`, { method: 'DELETE' });
  t.equal(all.status, 200);
  t.match(all.json<{ routes: Report[] }>().routes, [{ compared: 0, totals: { match: 1, mismatch: 3 } }], 'DELETE /api/v1/shadow resets every route');
});
