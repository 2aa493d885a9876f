import t from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { http, postJson, servedBy } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import { NO, TRIAL, UpstreamHealth, YES } from '../../src/upstream/health.js';
import { createUpstream } from '../../src/upstream/pools.js';
import { pino } from 'pino';
import type { ConfigInput } from '../../src/config/schema.js';

t.test('outlier ejection grows while failing, lets one trial through, and restores on success', async (t) => {
  let now = 1_000_000;
  const up = createUpstream('c', { url: new URL('http://127.0.0.1:1'), connections: 1, connectTimeout: 100, headersTimeout: 100, bodyTimeout: 100, keepAliveTimeout: 100, preserveHost: false, outlier: { consecutiveFailures: 3, baseEjection: 1000, maxEjection: 2500 } });
  t.teardown(() => up.pool.close());
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info', base: null, timestamp: false }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  const h = new UpstreamHealth(up, { consecutiveFailures: 3, baseEjection: 1000, maxEjection: 2500 }, undefined, logger, () => now);
  h.failure('timeout', 'r');
  h.failure('5xx', 'r');
  t.equal(h.admit(), YES, 'two failures: still in');
  h.failure('connect', 'r');
  t.equal(h.admit(), NO, 'three consecutive: ejected');
  t.equal(h.view().ejectedUntil, now + 1000);
  // Requests admitted before the ejection still finish: their verdicts are not the trial's.
  h.success();
  t.equal(h.admit(), NO, 'a late success from before the ejection does not end it');
  h.failure('reset', 'r');
  t.equal(h.view().ejectedUntil, now + 1000, 'nor does a late failure lengthen it');
  now += 1000;
  t.equal(h.admit(), TRIAL, 'ejection over: one trial request');
  t.equal(h.admit(), NO, 'only one trial at a time');
  h.success();
  t.equal(h.admit(), NO, 'a late success while the trial is out does not restore, nor free the trial');
  h.failure('timeout', 'r', 'trial');
  t.equal(h.view().ejectedUntil, now + 2000, 'failed trial: ejected for twice as long');
  now += 2000;
  t.equal(h.admit(), TRIAL);
  h.released();
  t.equal(h.admit(), TRIAL, 'a released trial (no verdict) lets the next request try');
  now += 31_000;
  t.equal(h.admit(), TRIAL, 'a trial held past 30 s without a verdict does not shut the upstream out');
  h.failure('timeout', 'r', 'trial');
  t.equal(h.view().ejectedUntil, now + 2500, 'capped at maxEjection');
  now += 2500;
  t.equal(h.admit(), TRIAL);
  h.success('trial');
  t.ok(h.admit() === YES && h.admit() === YES, 'restored: no trial gating');
  t.same(h.view().ejections, 0);
  // README: every ejection and recovery is logged with its reason.
  const ejected = { level: 40, upstream: 'c', msg: 'upstream ejected' };
  t.same(lines, [
    { ...ejected, reason: 'connect on route r', ejectedMs: 1000, ejections: 1, afterTrial: false },
    { ...ejected, reason: 'timeout on route r', ejectedMs: 2000, ejections: 2, afterTrial: true },
    { ...ejected, reason: 'timeout on route r', ejectedMs: 2500, ejections: 3, afterTrial: true },
    { level: 30, upstream: 'c', reason: 'trial request succeeded', ejections: 3, msg: 'upstream restored after ejection' },
  ]);
  h.failure('5xx', 'r');
  h.success();
  h.failure('5xx', 'r');
  h.failure('5xx', 'r');
  t.equal(h.admit(), YES, 'a success in between resets the streak');
});

function cfg(legacyUrl: string, candidateUrl: string, candidateExtra: Record<string, unknown> = {}, legacyExtra: Record<string, unknown> = {}): ConfigInput {
  return {
    upstreams: { legacy: { url: legacyUrl, ...legacyExtra }, candidate: { url: candidateUrl, ...candidateExtra } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', timeout: '300ms' }],
  } as ConfigInput;
}

t.test('active probes take an unhealthy candidate out and bring it back; users keep their buckets', async (t) => {
  let healthy = true;
  // Legacy's own probe fails throughout: it is reported, never taken out of service.
  const legacy = await startUpstream(t, 'legacy', (req, res) => {
    if (req.url === '/health') {
      res.writeHead(503);
      return res.end();
    }
    res.end(JSON.stringify({ served_by: 'legacy' }));
  });
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    if (req.url === '/health') {
      res.writeHead(healthy ? 200 : 503);
      return res.end();
    }
    res.end(JSON.stringify({ served_by: 'candidate' }));
  });
  const health = { path: '/health', interval: '50ms', timeout: '1s', unhealthyAfter: 2, healthyAfter: 2 };
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, { health }, { health }), { f: { enabled: true, percentage: 50 } });
  const { proxy, admin, running } = await startCutover(t, dirs);
  await waitFor(() => !running.cutover.health.view().legacy!.healthy, 2000, 'legacy probe fails');
  const status = (await http(`${admin}/api/v1/status`)).json<{ upstreams: Array<{ name: string; health: { healthy: boolean; lastReason?: string } }> }>();
  t.match(status.upstreams.find((u) => u.name === 'legacy')?.health, { healthy: false, lastReason: 'probe /health: status 503' }, 'status API shows legacy unhealthy');
  const users = Array.from({ length: 40 }, (_, i) => `u${i}`);
  // servedBy throws on anything but 200.
  const sides = async () => Promise.all(users.map((u) => servedBy(proxy, '/api/x', u)));
  const before = await sides();
  t.ok(before.includes('candidate') && before.includes('legacy'), 'legacy keeps serving its users while its probe fails');
  healthy = false;
  await waitFor(() => !running.cutover.health.view().candidate!.healthy, 2000, 'probe marks candidate unhealthy');
  t.ok((await sides()).every((s) => s === 'legacy'), 'no traffic to an unhealthy candidate; unhealthy legacy answers all');
  t.equal(running.cutover.health.view().legacy!.healthy, false, 'legacy is still reported unhealthy');
  healthy = true;
  await waitFor(() => running.cutover.health.view().candidate!.healthy, 2000, 'recovers');
  t.same(await sides(), before, 'the same users return to the candidate');
});

t.test('auto_disable_on_failure: the flag switches itself off, persisted and audited', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', (_req, res) => {
    res.writeHead(500);
    res.end();
  });
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, { outlier: { consecutiveFailures: 1000 } }), {
    f: { enabled: true, percentage: 100, auto_disable_on_failure: true },
  });
  const { proxy, admin } = await startCutover(t, dirs);
  for (let i = 0; i < 3; i++) t.equal(await servedBy(proxy, '/api/x', `u${i}`), 'legacy', 'masked by fallback');
  await waitFor(async () => (await http(`${admin}/api/v1/flags/f`)).json<{ enabled: boolean }>().enabled === false, 2000, 'flag disabled');
  const file = JSON.parse(await readFile(join(dirs.flagsDir, 'f.json'), 'utf8'));
  t.equal(file.enabled, false, 'persisted');
  const audit = (await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  t.match(audit.at(-1), { source: 'auto-disable', flag: 'f', reason: /3 consecutive candidate failures \(last: 5xx on route api\)/, after: { enabled: false } });
  const reached = candidate.seen.length;
  await servedBy(proxy, '/api/y', 'u9');
  t.equal(candidate.seen.length, reached, 'no more candidate traffic');
  // Re-enabling is a human decision, and it sticks.
  await postJson(`${admin}/api/v1/flags/f`, { enabled: true, auto_disable_after: 5 });
  const before = candidate.seen.length;
  for (let i = 0; i < 5; i++) await servedBy(proxy, '/api/z', `v${i}`);
  t.equal(candidate.seen.length, before + 5, 'the fifth request still reached the candidate');
  await waitFor(async () => (await http(`${admin}/api/v1/flags/f`)).json<{ enabled: boolean }>().enabled === false, 2000, 'disabled again');
  // The audit's reason carries the count the switch-off was decided on: five, not four.
  const lines = (await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { source: string; reason?: string });
  t.same(
    lines.filter((l) => l.source === 'auto-disable').map((l) => l.reason),
    ['3 consecutive candidate failures (last: 5xx on route api)', '5 consecutive candidate failures (last: 5xx on route api)'],
  );
});

t.test("a flag's health_check_interval probes its candidate", async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  let probes = 0;
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    if (req.url === '/health') probes++;
    res.writeHead(req.url === '/health' ? 503 : 200);
    res.end(JSON.stringify({ served_by: 'candidate' }));
  });
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url), { f: { enabled: true, percentage: 100 } });
  const { proxy, admin, running } = await startCutover(t, dirs);
  await new Promise((r) => setTimeout(r, 200));
  t.equal(probes, 0, 'no health block, no interval: not probed');
  t.equal(await servedBy(proxy, '/api/x', 'u1'), 'candidate');
  await postJson(`${admin}/api/v1/flags/f`, { health_check_interval: 0.05 });
  await waitFor(() => !running.cutover.health.view().candidate!.healthy, 2000, 'unhealthy via flag-driven probes');
  t.ok(probes >= 3);
  t.equal(await servedBy(proxy, '/api/x', 'u1'), 'legacy');
});

t.test('the trial after an ejection is judged on its headers: a stream it opens restores the candidate at once', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    if (req.url?.includes('fail')) {
      res.writeHead(500, { 'content-type': 'application/json' });
      return void res.end('{"error":"boom"}');
    }
    if (!req.url?.includes('events')) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end('{"served_by":"candidate"}');
    }
    // An event stream that never ends on its own.
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: hello\n\n');
  });
  const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, { outlier: { consecutiveFailures: 1, baseEjection: '200ms' } }), { f: { enabled: true, percentage: 100 } });
  const { proxy, running } = await startCutover(t, dirs);
  t.equal((await http(`${proxy}/api/fail`, { headers: { 'x-user-id': 'u1' } })).status, 200, 'the failure fell back');
  t.equal(running.cutover.health.view().candidate?.healthy, false, 'ejected');
  await new Promise((r) => setTimeout(r, 250));
  // The trial: an event stream, held open.
  const stream = new AbortController();
  const res = await fetch(`${proxy}/api/events`, { headers: { 'x-user-id': 'u1' }, signal: stream.signal });
  t.equal(res.headers.get('content-type'), 'text/event-stream', 'the candidate serves the stream');
  // While a trial is out every other request stays on legacy: the candidate is back only once
  // the trial is judged.
  await waitFor(async () => (await servedBy(proxy, '/api/x', 'u2')) === 'candidate', 2000, 'restored while the stream is still open');
  stream.abort();
  await res.body?.cancel().catch(() => undefined);
  await new Promise((r) => setTimeout(r, 100));
  t.equal(await servedBy(proxy, '/api/x', 'u3'), 'candidate', 'the client leaving the stream changes nothing');
  t.equal(running.cutover.health.view().candidate?.ejections, 0, 'no ejection left');
});
