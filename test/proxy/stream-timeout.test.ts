import t, { type Test } from 'tap';
import { request } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { http, slowPost as slowUpload } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { startCutover, startStalledUpstream, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

// A body cutover streams (a POST on a route without replayWrites) reaches the candidate at the
// client's pace, and the candidate cannot answer before it has it all. The attempt's timer (the
// route's `timeout`, and its `budget`) restarts once the whole body is sent, as Envoy starts its
// route timeout once the whole request is in: a slow client neither times out a candidate that
// answers promptly nor gets it ejected or its flag auto-disabled. (Buffered bodies:
// budget-upload.test.ts.)
const PIECES = 5;
const GAP_MS = 120; // the upload takes about 480 ms, more than the route's timer
// One strike would eject the candidate and auto-disable its flag: any blame shows.
const STRICT = { f: { enabled: true, percentage: 100, auto_disable_on_failure: true, auto_disable_after: 1 } };

function config(legacyUrl: string, candidateUrl: string, route: Record<string, unknown>): ConfigInput {
  return {
    upstreams: {
      legacy: { url: legacyUrl, headersTimeout: '3s' },
      candidate: { url: candidateUrl, headersTimeout: '3s', outlier: { consecutiveFailures: 1, baseEjection: '60s' } },
    },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', ...route }],
  } as ConfigInput;
}

/** An upstream that reads the whole body, then answers 200 after `delayMs` (never, if undefined). */
function afterBody(delayMs: number | undefined) {
  return (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    if (delayMs !== undefined) req.on('end', () => setTimeout(() => res.writeHead(200, { 'x-served-by': 'candidate' }).end(), delayMs));
  };
}

/** A POST (streamed: no Idempotency-Key) uploaded one byte every GAP_MS; `afterUploadMs`: from its last byte to the answer. */
async function slowPost(proxy: string) {
  const r = await slowUpload(`${proxy}/api/orders`, { 'x-user-id': 'u1' }, PIECES, GAP_MS);
  return { ...r, afterUploadMs: r.answeredMs < 0 ? -1 : r.answeredMs - r.uploadMs };
}

async function setup(t: Test, route: Record<string, unknown>, candidateDelayMs: number | undefined) {
  const candidate = await startUpstream(t, 'candidate', afterBody(candidateDelayMs));
  return { ...(await proxyTo(t, route, candidate.url)), candidate };
}

/** `candidate`: settings over the candidate upstream's; `limits`: the listener's. */
async function proxyTo(t: Test, route: Record<string, unknown>, candidateUrl: string, candidate: Record<string, unknown> = {}, limits: ConfigInput['limits'] = {}) {
  const legacy = await startUpstream(t, 'legacy');
  const cfg = { ...config(legacy.url, candidateUrl, route), limits };
  Object.assign((cfg.upstreams as Record<string, object>).candidate!, candidate);
  const cut = await startCutover(t, await writeConfig(t, cfg, STRICT));
  /** The candidate's passive health, the flag, and its attempts counted as timeouts. */
  const verdicts = async () => {
    const status = (await http(`${cut.admin}/api/v1/status`)).json<{ upstreams: { name: string; health: unknown }[] }>();
    const prom = parseProm((await http(`${cut.admin}/metrics`)).text);
    return {
      health: status.upstreams.find((u) => u.name === 'candidate')?.health,
      enabled: (await http(`${cut.admin}/api/v1/flags/f`)).json<{ enabled: boolean }>().enabled,
      timeouts: prom.value('cutover_requests_total', { route: 'api', target: 'candidate', code: 'timeout' }),
    };
  };
  return { ...cut, legacy, verdicts };
}

for (const [what, route] of [
  ['timeout', { timeout: '200ms' }],
  ['budget', { budget: '250ms' }],
  ['timeout and budget', { timeout: '200ms', budget: '300ms' }],
] as const) {
  t.test(`a slow streamed upload does not spend the candidate's ${what}: it answers, and is not blamed`, async (t) => {
    const { proxy, legacy, verdicts } = await setup(t, route, 30);
    for (let i = 0; i < 2; i++) {
      const r = await slowPost(proxy);
      t.ok(r.uploadMs >= (PIECES - 1) * GAP_MS - 20, `the upload took ${Math.round(r.uploadMs)} ms, longer than the route's timer`);
      t.match(r, { status: 200, servedBy: 'candidate' }, `request ${i + 1}: served by the candidate once its body was in`);
    }
    t.equal(legacy.seen.length, 0, 'nothing fell back');
    t.match(await verdicts(), { health: { healthy: true, consecutiveFailures: 0, ejections: 0 }, enabled: true, timeouts: 0 }, 'no timeout, no ejection, flag still on');
  });
}

t.test('the timer still bounds the candidate, counted from the end of the upload', async (t) => {
  const { proxy, candidate, verdicts } = await setup(t, { timeout: '200ms' }, undefined); // reads the body, never answers
  const r = await slowPost(proxy);
  t.equal(candidate.seen.length, 1);
  t.equal(r.status, 504, 'a write that reached the candidate is not replayed: 504');
  t.ok(r.afterUploadMs >= 180 && r.afterUploadMs < 1000, `504 ${Math.round(r.afterUploadMs)} ms after the upload ended: the 200 ms timeout, from there`);
  // It had its whole timeout with the whole body: that one is the candidate's.
  t.match(await verdicts(), { health: { healthy: false, ejections: 1 }, timeouts: 1 }, 'counted as a timeout, and ejected');
  await waitFor(async () => !(await verdicts()).enabled, 2000, 'the flag auto-disabled');
});

t.test('a client that stops mid-upload and leaves is no verdict on the candidate', async (t) => {
  const { proxy, candidate, verdicts } = await setup(t, { timeout: '200ms' }, 30);
  const u = new URL(`${proxy}/api/orders`);
  const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'x-user-id': 'u1', 'content-length': '5' } });
  const failed = new Promise<string>((resolve) => req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message)));
  req.on('response', (res) => res.resume());
  req.write('xx');
  await waitFor(() => candidate.seen.length === 1, 2000, 'the upload reached the candidate');
  await new Promise((r) => setTimeout(r, 400)); // twice the route's timeout, still uploading
  req.destroy();
  await failed;
  await new Promise((r) => setTimeout(r, 100));
  t.match(await verdicts(), { health: { healthy: true, consecutiveFailures: 0, ejections: 0 }, enabled: true, timeouts: 0 }, 'the client left: no timeout, no blame');
});

// While undici waits on the upstream (it stopped reading the body), the upstream's own
// headersTimeout runs: a stalled upstream is still cut, and blamed, without waiting for the upload.
t.test('a candidate that stops reading the body is cut by its headersTimeout, and blamed', async (t) => {
  const stalled = await startStalledUpstream(t); // takes the headers and a little body, then no more
  const { proxy, verdicts } = await proxyTo(t, { timeout: '200ms' }, stalled.url, { headersTimeout: '400ms' });
  const u = new URL(`${proxy}/api/orders`);
  const size = 64 * 1024 * 1024;
  const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'x-user-id': 'u1', 'content-length': String(size) } });
  let ended = false;
  const outcome = new Promise<string>((resolve) => {
    req.on('response', (res) => resolve(`status ${res.statusCode}`));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  }).finally(() => (ended = true));
  const started = performance.now();
  const chunk = Buffer.alloc(64 * 1024, 'u');
  for (let written = 0; written < size && !ended && !req.destroyed; written += chunk.length) {
    if (!req.write(chunk)) await Promise.race([new Promise((r) => req.once('drain', r)), outcome]);
  }
  const got = await outcome;
  const ms = performance.now() - started;
  req.destroy();
  t.ok(/ECONNRESET|EPIPE|socket hang up|status 50[24]/.test(got), `the upload was cut (${got})`);
  t.ok(ms >= 400 && ms < 3000, `after ${Math.round(ms)} ms: the candidate's 400 ms headersTimeout, not the upload's end`);
  t.match(await verdicts(), { health: { healthy: false, ejections: 1 }, timeouts: 1 }, 'a timeout of the candidate: ejected');
});

// The timer restarts for the upload's time only: a streamed write that first queued in cutover's
// pool (the candidate's one connection busy) reached it with part of its budget spent, as any
// request does, and must not get the whole budget again once its (instant) body is sent.
t.test('a streamed write that queued in the pool still ends within the budget, without blame', async (t) => {
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    req.on('end', () => setTimeout(() => res.writeHead(200, { 'x-served-by': 'candidate' }).end(), req.method === 'GET' ? 250 : 300));
  });
  const { proxy, verdicts } = await proxyTo(t, { budget: '400ms' }, candidate.url, { connections: 1 });
  const first = http(`${proxy}/api/busy`, { headers: { 'x-user-id': 'u1' } }); // holds the one connection 250 ms
  await waitFor(() => candidate.seen.length === 1, 2000, 'the first request on the connection');
  const started = performance.now();
  const u = new URL(`${proxy}/api/orders`);
  const status = await new Promise<number>((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'x-user-id': 'u1', 'content-length': '1' } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end('x');
  });
  const ms = performance.now() - started;
  t.equal((await first).status, 200);
  t.equal(status, 504, 'the budget ran out while the candidate (answering 300 ms after it got the write) worked: 504, not a late 200');
  t.ok(ms >= 350 && ms < 520, `answered after ${Math.round(ms)} ms: the 400 ms budget, queueing included`);
  t.match(await verdicts(), { health: { healthy: true, consecutiveFailures: 0, ejections: 0 }, enabled: true }, 'queueing: not the candidate\'s timeout');
});

// With no requestTimeout on the listener (Fastify's default when embedded), nothing else would
// ever end an attempt whose client stopped sending its body: it held the attempt and one of the
// candidate's connections for good. The upstream's headersTimeout bounds such a stall; the client
// is cut, and the candidate is not blamed.
t.test('a client that stalls mid-upload is given up after the upstream headersTimeout, without blame', async (t) => {
  let upstreamClosed = false;
  const candidate = await startUpstream(t, 'candidate', (req) => {
    req.resume();
    req.on('close', () => (upstreamClosed = true));
  });
  const { proxy, verdicts } = await proxyTo(t, { timeout: '200ms' }, candidate.url, { headersTimeout: '600ms' }, { requestTimeout: 0 });
  const u = new URL(`${proxy}/api/orders`);
  const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'x-user-id': 'u1', 'content-length': '5' } });
  t.teardown(() => req.destroy());
  const ended = new Promise<string>((resolve) => {
    req.on('response', (res) => resolve(`status ${res.statusCode}`));
    req.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
  req.write('xx'); // then nothing more, without leaving
  await waitFor(() => candidate.seen.length === 1, 2000, 'the upload reached the candidate');
  const stalledAt = performance.now();
  const got = await Promise.race([ended, new Promise<string>((r) => setTimeout(r, 3000, 'still waiting after 3 s'))]);
  const ms = performance.now() - stalledAt;
  t.match(got, /ECONNRESET|EPIPE|socket hang up/, `the stalled upload was cut (${got})`);
  t.ok(ms >= 550 && ms < 1500, `after ${Math.round(ms)} ms of stall: the 600 ms headersTimeout, checked at the 200 ms timer`);
  await waitFor(() => upstreamClosed, 2000, "the candidate's connection released");
  t.match(await verdicts(), { health: { healthy: true, consecutiveFailures: 0, ejections: 0 }, enabled: true, timeouts: 0 }, "the client's stall: no verdict on the candidate");
});
