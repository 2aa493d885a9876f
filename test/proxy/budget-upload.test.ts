import t, { type Test } from 'tap';
import { Writable } from 'node:stream';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { http, slowPost as slowUpload } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import { createLogger } from '../../src/observability/logger.js';
import type { ConfigInput } from '../../src/config/schema.js';

// A route's budget is the upstreams' time: a body cutover buffers (here for replayWrites) is
// the client's time until it is in, as Envoy starts its route timeout once the whole request
// is received. The request's own duration (its log line) still counts from arrival.
const ALL_IN = { f: { enabled: true, percentage: 100 } };
const PIECES = 5;
const GAP_MS = 120; // the upload takes about 480 ms

function config(legacyUrl: string, candidateUrl: string, route: Record<string, unknown>, limits: ConfigInput['limits'] = {}): ConfigInput {
  return {
    upstreams: { legacy: { url: legacyUrl, headersTimeout: '3s' }, candidate: { url: candidateUrl, headersTimeout: '3s' } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', replayWrites: { maxBody: '1mb' }, ...route }],
    limits,
  } as ConfigInput;
}

/** An upstream (`name`) that reads the whole body, then answers `status` after `delayMs`. */
function after(name: string, delayMs: number, status = 200) {
  return (req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => setTimeout(() => res.writeHead(status, { 'x-served-by': name }).end(), delayMs));
  };
}

/** A POST with an Idempotency-Key (buffered, to replay it) uploaded one byte every `gapMs`. */
function slowPost(proxy: string, pieces = PIECES, gapMs = GAP_MS) {
  return slowUpload(`${proxy}/api/orders`, { 'x-user-id': 'u1', 'idempotency-key': 'k1' }, pieces, gapMs);
}

/** A logger keeping the request log lines. */
function requestLines() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createLogger({ level: 'info', destination: stream }), requests: () => lines.filter((l) => l.msg === 'request') };
}

async function setup(t: Test, route: Record<string, unknown>, candidate: ReturnType<typeof after> | undefined, legacy?: ReturnType<typeof after>) {
  const up = { legacy: await startUpstream(t, 'legacy', legacy), candidate: await startUpstream(t, 'candidate', candidate ?? (() => undefined)) };
  const log = requestLines();
  const cut = await startCutover(t, await writeConfig(t, config(up.legacy.url, up.candidate.url, route), ALL_IN), { logger: log.logger });
  return { ...cut, ...up, ...log };
}

t.test('an upload slower than the budget leaves the candidate the whole budget; the log counts from arrival', async (t) => {
  const { proxy, admin, requests } = await setup(t, { budget: '400ms' }, after('candidate', 250));
  const r = await slowPost(proxy);
  t.ok(r.uploadMs >= (PIECES - 1) * GAP_MS - 20, `the upload took ${Math.round(r.uploadMs)} ms, longer than the 400 ms budget`);
  t.equal(r.status, 200, 'not a 504 no upstream caused');
  t.equal(r.servedBy, 'candidate');
  const upstreamMs = r.answeredMs - r.uploadMs;
  t.ok(upstreamMs >= 230 && upstreamMs < 400, `answered ${Math.round(upstreamMs)} ms after the upload ended (the candidate takes 250 ms)`);

  await waitFor(() => requests().length === 1, 2000, 'the request log line');
  const ms = requests()[0]?.ms as number;
  t.ok(ms >= r.uploadMs - 20 && ms <= r.answeredMs + 50, `the logged duration (${ms} ms) counts from arrival, upload included (answered at ${Math.round(r.answeredMs)} ms)`);
  // The attempt histogram times each attempt from its dispatch, which follows the buffered upload.
  const prom = parseProm((await http(`${admin}/metrics`)).text);
  const attemptS = prom.value('cutover_request_duration_seconds_sum', { route: 'api', target: 'candidate' });
  t.ok(attemptS >= 0.23 && attemptS < 0.4, `the candidate attempt took ${attemptS} s, from its dispatch`);
});

t.test('after a slow upload, candidate and fallback share the whole budget', async (t) => {
  // 200 + 200 ms of upstream time fits a 600 ms budget; the 480 ms upload would not leave room.
  const { proxy, legacy, candidate } = await setup(t, { budget: '600ms' }, after('candidate', 200, 503), after('legacy', 200));
  const r = await slowPost(proxy);
  t.equal(candidate.seen.length, 1, 'the candidate was asked');
  t.equal(legacy.seen.length, 1, 'the replayable write fell back to legacy');
  t.equal(r.status, 200, 'legacy answered within the budget');
  t.equal(r.servedBy, 'legacy');
});

t.test('the budget still bounds the upstreams, counted from the end of the upload', async (t) => {
  const { proxy, legacy } = await setup(t, { budget: '300ms' }, undefined); // the candidate never answers
  const r = await slowPost(proxy);
  t.equal(r.status, 504);
  t.equal(legacy.seen.length, 0, 'no time was left for legacy after the candidate timed out');
  const upstreamMs = r.answeredMs - r.uploadMs;
  t.ok(upstreamMs >= 280 && upstreamMs < 1000, `504 ${Math.round(upstreamMs)} ms after the upload ended: the 300 ms budget, not spent by the upload`);
});

// What bounds a slow upload instead: the listener's requestTimeout, buffered body or not.
t.test('requestTimeout cuts a buffered upload that dribbles on, before any upstream sees it', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = config(legacy.url, candidate.url, { budget: '300ms' }, { headersTimeout: '400ms', requestTimeout: '800ms' });
  const { proxy } = await startCutover(t, await writeConfig(t, cfg, ALL_IN));
  const started = performance.now();
  const r = await slowPost(proxy, 100, 100);
  const outcome = r.error ?? `status ${r.status}`;
  const ms = performance.now() - started;
  t.ok(outcome === 'status 408' || outcome === 'ECONNRESET' || outcome === 'EPIPE', `408 or a cut connection (${outcome})`);
  t.ok(ms >= 750 && ms < 2000, `after ${Math.round(ms)} ms: requestTimeout is 800 ms, the upload would take 10 s`);
  t.equal(candidate.seen.length + legacy.seen.length, 0, 'the body was still being buffered: no upstream was asked');
});
