import t, { type Test } from 'tap';
import { createHmac } from 'node:crypto';
import { Writable } from 'node:stream';
import { http } from '../helpers/http.js';
import { startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';
import { serve } from '../../src/server.js';
import { pino } from 'pino';
import { createLogger } from '../../src/observability/logger.js';
import { RequestLog, millis, parseUserIdMode, type UserIdMode } from '../../src/observability/request-log.js';
import type { RequestRecord } from '../../src/observability/observer.js';
import { bucketOf } from '../../src/routing/bucket.js';

/** A pino destination that keeps every line. */
function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(l);
      cb();
    },
  });
  return { stream, lines, text: () => lines.join('\n'), json: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

const ALICE = 'alice@example.com';

async function proxyWithLog(t: Test, opts: { userIds?: UserIdMode; level?: string } = {}) {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    res.writeHead(req.url?.includes('/fail') ? 502 : 200, { 'content-type': 'application/json' });
    res.end('{"served_by":"candidate"}');
  });
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 100 } });
  const cap = capture();
  const running = await serve({
    ...dirs,
    port: 0,
    host: '127.0.0.1',
    adminPort: 0,
    adminHost: '127.0.0.1',
    drainTimeoutMs: 1000,
    flagsPollMs: 200,
    logger: createLogger({ level: opts.level ?? 'info', destination: cap.stream }),
    ...(opts.userIds !== undefined && { logUserIds: opts.userIds }),
  });
  t.teardown(() => running.shutdown());
  const requests = () => cap.json().filter((l) => l.log === 'request');
  return { proxy: `http://127.0.0.1:${running.proxyPort}`, cap, requests };
}

t.test('one line per request with the routing decision; the user id is a keyed hash, never raw', async (t) => {
  const { proxy, cap, requests } = await proxyWithLog(t);
  const r = await http(`${proxy}/api/things/1?q=2`, { headers: { 'x-user-id': ALICE, 'x-request-id': 'req-ok-1' } });
  t.equal(r.status, 200);
  const f = await http(`${proxy}/api/fail`, { headers: { 'x-user-id': ALICE, 'x-request-id': 'req-fb-1' } });
  t.equal(f.status, 200);
  await http(`${proxy}/api/anon`, { headers: { 'x-request-id': 'req-anon' } });

  await waitFor(() => requests().length >= 3, 2000, 'three request lines');
  const lines = requests();
  t.equal(lines.length, 3, 'exactly one line per request');
  const ok = lines.find((l) => l.requestId === 'req-ok-1') as Record<string, unknown>;
  t.match(ok, {
    level: 30,
    msg: 'request',
    method: 'GET',
    path: '/api/things/1',
    route: 'api',
    flag: 'f',
    target: 'candidate',
    why: 'percentage',
    bucket: bucketOf('f', ALICE),
    status: 200,
  });
  t.type(ok.ms, 'number');
  t.ok((ok.ms as number) >= 0 && (ok.ms as number) < 5000);
  t.match(ok.userHash, /^[0-9a-f]{16}$/, 'a 64-bit keyed hash');
  t.notOk('user' in ok, 'no raw user field');
  t.notOk('decided' in ok, 'no "decided" without a fallback');

  const fb = lines.find((l) => l.requestId === 'req-fb-1') as Record<string, unknown>;
  t.match(fb, { route: 'api', target: 'legacy', why: 'fallback:5xx', decided: 'percentage', status: 200 });
  t.equal(fb.userHash, ok.userHash, 'the same user hashes the same within a process: one can follow them');

  const anon = lines.find((l) => l.requestId === 'req-anon') as Record<string, unknown>;
  t.match(anon, { target: 'legacy', why: 'no-user' });
  t.notOk('userHash' in anon);

  t.notOk(cap.text().includes(ALICE), 'the raw id appears nowhere in the log output');
  t.notOk(cap.text().includes('alice'), 'not even partly');
});

t.test('raw mode logs the id; none mode logs no user field at all', async (t) => {
  const raw = await proxyWithLog(t, { userIds: 'raw' });
  await http(`${raw.proxy}/api/x`, { headers: { 'x-user-id': ALICE } });
  await waitFor(() => raw.requests().length === 1, 2000, 'a request line');
  const [lr] = raw.requests();
  t.equal(lr?.user, ALICE);
  t.notOk(lr && 'userHash' in lr);

  const none = await proxyWithLog(t, { userIds: 'none' });
  await http(`${none.proxy}/api/x`, { headers: { 'x-user-id': ALICE } });
  await waitFor(() => none.requests().length === 1, 2000, 'a request line');
  const [ln] = none.requests();
  t.ok(ln);
  t.notOk(ln && ('user' in ln || 'userHash' in ln));
  t.equal(ln?.bucket, bucketOf('f', ALICE), 'the bucket is still there');
  t.notOk(none.cap.text().includes(ALICE));
});

t.test('above info, request lines are not built at all', async (t) => {
  const { proxy, cap, requests } = await proxyWithLog(t, { level: 'warn' });
  for (let i = 0; i < 5; i++) await http(`${proxy}/api/x`, { headers: { 'x-user-id': ALICE } });
  await new Promise((r) => setTimeout(r, 50));
  t.equal(requests().length, 0);
  t.notOk(cap.text().includes('"msg":"request"'));

  const log = new RequestLog(createLogger({ level: 'warn', destination: capture().stream }), { userKey: 'k' });
  t.equal(log.enabled, false);
  let hashed = 0;
  const orig = log.hash.bind(log);
  log.hash = (id: string) => {
    hashed++;
    return orig(id);
  };
  log.write(record({ userId: 'u1' }));
  t.equal(hashed, 0, 'no hashing work when the line would be dropped');
});

function record(over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    requestId: 'r1',
    method: 'GET',
    path: '/p',
    route: 'api',
    flag: 'f',
    target: 'candidate',
    why: 'percentage',
    fallback: undefined,
    bucket: 7,
    userId: 'u1',
    status: 200,
    durationMs: 1.23456,
    ...over,
  };
}

t.test('the hash is HMAC-SHA256 under the configured key, truncated to 64 bits', async (t) => {
  const a = capture();
  const b = capture();
  const k1 = new RequestLog(createLogger({ destination: a.stream }), { userKey: 'key-one', userIds: 'hash' });
  const k1again = new RequestLog(createLogger({ destination: capture().stream }), { userKey: 'key-one', userIds: 'hash' });
  const k2 = new RequestLog(createLogger({ destination: b.stream }), { userKey: 'key-two', userIds: 'hash' });
  const want = createHmac('sha256', 'key-one').update('user-42').digest('hex').slice(0, 16);
  t.equal(k1.hash('user-42'), want);
  t.equal(k1.hash('user-42'), want, 'cached answer is the same');
  t.equal(k1again.hash('user-42'), want, 'same key, same hash: replicas sharing CUTOVER_LOG_USER_KEY agree');
  t.not(k2.hash('user-42'), want, 'another key, another hash');
  const r1 = new RequestLog(createLogger({ destination: capture().stream }));
  const r2 = new RequestLog(createLogger({ destination: capture().stream }));
  t.not(r1.hash('user-42'), r2.hash('user-42'), 'without a key, each process draws its own');

  k1.write(record({ userId: 'user-42', fallback: 'timeout', target: 'legacy', durationMs: 12.3456789 }));
  k1.flush();
  const [line] = a.json();
  t.match(line, { userHash: want, why: 'fallback:timeout', decided: 'percentage', ms: 12.346, bucket: 7, log: 'request' });
});

t.test('CUTOVER_LOG_USER_IDS is validated', async (t) => {
  t.equal(parseUserIdMode(undefined), undefined);
  t.equal(parseUserIdMode(''), undefined);
  t.equal(parseUserIdMode('raw'), 'raw');
  t.throws(() => parseUserIdMode('plain'), /CUTOVER_LOG_USER_IDS must be one of hash, raw, none/);
});

t.test('pretty logs for humans (cutover demo)', async (t) => {
  const cap = capture();
  const logger = createLogger({ pretty: true, destination: cap.stream });
  const log = new RequestLog(logger, { userKey: 'k' });
  log.write(record());
  log.flush();
  await waitFor(() => cap.lines.length > 0, 2000, 'a pretty line');
  const text = cap.text();
  t.match(text, /INFO/);
  t.match(text, /GET \/p → candidate 200 in 1\.235 ms/, 'request lines read as a sentence');
  t.match(text, /route: "api"|"route":"api"|route=api/);
  t.notOk(text.trimStart().startsWith('{'), 'not JSON');
});

t.test('the fast writer produces exactly what pino.info() would, escaping included', async (t) => {
  const fast = capture();
  const slow = capture();
  const fastLog = new RequestLog(createLogger({ destination: fast.stream }), { userIds: 'raw' });
  // Not from createLogger: goes through pino.info().
  const slowLog = new RequestLog(pino({ name: 'cutover', level: 'info', base: { pid: process.pid } }, slow.stream), { userIds: 'raw' });
  const nasty = [
    record(),
    record({ requestId: 'quote" backslash\\ newline\n tab\t bell\u0007', path: '/p/ünïcødé/😀', userId: 'josé "the" user\u2028' }),
    record({ flag: undefined, bucket: undefined, userId: undefined, fallback: '5xx', target: 'legacy', status: 0, durationMs: 0 }),
    record({ durationMs: 1e-7 }),
    record({ durationMs: 12.0456 }),
    record({ durationMs: 30_000.5 }),
  ];
  for (const r of nasty) {
    fastLog.write(r);
    slowLog.write(r);
  }
  fastLog.flush();
  t.equal(fast.lines.length, nasty.length, 'one line each, batched into one write');
  const strip = (o: Record<string, unknown>) => {
    const { time, ...rest } = o;
    t.type(time, 'number');
    return rest;
  };
  t.same(fast.json().map(strip), slow.json().map(strip), 'same fields, same values');
  t.same(
    fast.lines.map((l) => Object.keys(JSON.parse(l) as object)),
    slow.lines.map((l) => Object.keys(JSON.parse(l) as object)),
    'same field order',
  );
  t.equal((fast.json()[1] as { requestId: string }).requestId, nasty[1]!.requestId, 'escapes round-trip');
  // pino writes a lone surrogate raw (it comes out as U+FFFD); the fast writer escapes it.
  fastLog.write(record({ requestId: 'lone \ud800 surrogate' }));
  fastLog.flush();
  t.equal((fast.json()[nasty.length] as { requestId: string }).requestId, 'lone \ud800 surrogate', 'even a lone surrogate round-trips');
});

t.test('batched lines are written within 25 ms, and on close', async (t) => {
  const cap = capture();
  const log = new RequestLog(createLogger({ destination: cap.stream }), { userIds: 'none' });
  for (let i = 0; i < 3; i++) log.write(record({ requestId: `b${i}` }));
  t.equal(cap.lines.length, 0, 'nothing written synchronously');
  await new Promise((r) => setImmediate(r));
  t.equal(cap.lines.length, 0, 'still batched after a loop turn');
  await new Promise((r) => setTimeout(r, 40));
  t.same(cap.json().map((l) => l.requestId), ['b0', 'b1', 'b2'], 'written by the 25 ms flush');
  // a large burst is written as it fills, without waiting for the loop
  for (let i = 0; i < 2000; i++) log.write(record({ requestId: `burst-${i}` }));
  t.ok(cap.lines.length > 3, `written while the burst was still running (${cap.lines.length} lines)`);
  log.flush();
  t.equal(cap.lines.length, 2003);
});

t.test('lines keep their order and bytes across batch boundaries, a line longer than a batch included', async (t) => {
  const cap = capture();
  const log = new RequestLog(createLogger({ destination: cap.stream }), { userIds: 'none' });
  const long = '/long/' + 'ü😀x'.repeat(12_000); // ~100k UTF-8 bytes: more than a whole batch
  const ids: string[] = [];
  for (let i = 0; i < 600; i++) {
    ids.push(`r${i}`);
    log.write(record({ requestId: `r${i}`, path: i === 300 ? long : `/p/ünï/${i}` }));
  }
  log.flush();
  const got = cap.json();
  t.same(got.map((l) => l.requestId), ids, 'every line, in order');
  t.equal(got[300]!.path, long, 'the long line whole');
  t.equal(got[599]!.path, '/p/ünï/599', 'multi-byte text intact');
});

t.test('durations are written as String(Math.round(ms * 1000) / 1000) would write them', async (t) => {
  const expected = (ms: number) => String(Math.round(ms * 1000) / 1000);
  const cases = [0, 1e-7, 0.0004, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.12, 0.123, 1, 1.2, 1.02, 1.002, 1.5, 10.25, 99.999, 999.9995, 1234.5678, 65_000, 2_147_483.647, 3e6, 1e12];
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  for (let i = 0; i < 20_000; i++) cases.push(rnd() * 10 ** Math.floor(rnd() * 7 - 2));
  const wrong = cases.filter((ms) => millis(ms) !== expected(ms)).map((ms) => `${ms}: ${millis(ms)} vs ${expected(ms)}`);
  t.same(wrong, [], `${cases.length} durations`);
  t.equal(millis(Number.NaN), 'null', 'not a number: null, as in JSON');
});
