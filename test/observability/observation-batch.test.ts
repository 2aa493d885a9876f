import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, silentLogger } from '../../src/observability/logger.js';
import { waitFor } from '../helpers/servers.js';
import { ObservationBatch, BATCH_MS } from '../../src/observability/observation-batch.js';
import { CutoverObserver } from '../../src/observability/observer-impl.js';
import type { AttemptRecord, RequestRecord } from '../../src/observability/observer.js';

const attempt = (status = 200): AttemptRecord => ({ route: 'r', target: 'candidate', upstream: 'c', status, durationMs: 4, failure: undefined });
const request = (requestId: string): RequestRecord => ({
  requestId,
  method: 'GET',
  path: '/x',
  route: 'r',
  flag: 'f',
  target: 'candidate',
  why: 'rollout',
  fallback: undefined,
  bucket: 7,
  userId: undefined,
  status: 200,
  durationMs: 1.5,
});

function recorder() {
  const seen: string[] = [];
  const sink = {
    attemptAt: (r: AttemptRecord, now: number) => void seen.push(`a${r.status}@${now}`),
    requestAt: (r: RequestRecord) => void seen.push(`q${r.requestId}`),
    batchDone: () => void seen.push('done'),
  };
  return { seen, sink };
}

t.test('observations wait for the batch, keep the time they were made, and are handled within 25 ms', async (t) => {
  let now = 1000;
  const { seen, sink } = recorder();
  const b = new ObservationBatch(sink, () => now);
  b.attempt(attempt(200));
  now = 2000;
  b.attempt(attempt(503));
  b.request(request('one'));
  t.same(seen, [], 'nothing handled at the call');
  await waitFor(() => seen.length > 0, 2000, 'the batch timer'); // nothing read it
  t.same(seen, ['a200@1000', 'a503@2000', 'qone', 'done'], 'handled in order, each with its own time, then one batchDone');
  b.drain();
  t.same(seen.length, 4, 'an empty drain does nothing');
});

t.test('a full batch is handled at once', async (t) => {
  const { seen, sink } = recorder();
  const b = new ObservationBatch(sink, () => 0);
  for (let i = 0; i < 511; i++) b.attempt(attempt());
  t.equal(seen.length, 0);
  b.attempt(attempt());
  t.equal(seen.filter((s) => s.startsWith('a')).length, 512, '512 held: handled synchronously');
  t.equal(seen.at(-1), 'done');
});

t.test('the observer records what it holds before anything reads it', async (t) => {
  let now = 1_000_000;
  const obs = new CutoverObserver({ logger: silentLogger, clock: () => now, defaultMetrics: false });
  t.teardown(() => obs.close());
  obs.attempt(attempt(200));
  obs.attempt(attempt(503));
  const metrics = await obs.metrics.text();
  t.match(metrics, /cutover_requests_total\{route="r",target="candidate",code="503"\} 1/, 'a scrape sees the attempt made just before it');
  obs.attempt(attempt(200));
  t.equal(obs.targetStatus('r', 'candidate').requests_total, 3, 'the status API too');
  t.equal(obs.flagWindow(['r'], 60_000).candidate.requests, 3, 'and the rollout gates');
  // Made at 1,000,000, read 90 s later: outside the 1-minute window, because an attempt keeps
  // the time it was made, not the time its batch was recorded.
  obs.attempt(attempt(200));
  now += 90_000;
  const later = obs.targetStatus('r', 'candidate');
  t.equal(later.requests_total, 4);
  t.equal(later['1m'].requests, 0, 'no attempt in the last minute');
  t.equal(later['5m'].requests, 4);
});

t.test("request lines keep the time the request ended and are written out with the batch", async (t) => {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(l);
      cb();
    },
  });
  const obs = new CutoverObserver({ logger: createLogger({ destination: stream }), defaultMetrics: false, userIds: 'none' });
  t.teardown(() => obs.close());
  const before = Date.now();
  obs.request(request('r1'));
  obs.request(request('r2'));
  t.equal(lines.length, 0, 'held');
  await sleep(BATCH_MS + 10);
  await waitFor(() => lines.length === 2, 2000, 'the batch timer');
  const recs = lines.map((l) => JSON.parse(l) as { requestId: string; time: number });
  t.same(
    recs.map((r) => r.requestId),
    ['r1', 'r2'],
  );
  // Stamped when written, each would be at least BATCH_MS late.
  for (const r of recs) t.ok(r.time >= before && r.time - before < 10, `time ${r.time - before} ms after the request ended, not when written`);
});

t.test('lines still held when the process exits are written', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cutover-batch-exit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'log.jsonl');
  // The built modules (npm test builds first), in a process of their own that exits at once.
  const dist = (m: string) => JSON.stringify(new URL(`../../dist/observability/${m}`, import.meta.url).href);
  const script = join(dir, 'exit.mjs');
  writeFileSync(
    script,
    `import { appendFileSync } from 'node:fs';
import { createLogger } from ${dist('logger.js')};
import { CutoverObserver } from ${dist('observer-impl.js')};
const destination = { write: (s) => appendFileSync(${JSON.stringify(out)}, s) };
const obs = new CutoverObserver({ logger: createLogger({ destination }), defaultMetrics: false, userIds: 'none' });
obs.request({ requestId: 'last-words', method: 'GET', path: '/', route: 'r', target: 'legacy', why: 'default', status: 200, durationMs: 1 });
process.exit(0);
`,
  );
  execFileSync(process.execPath, [script]);
  t.match(readFileSync(out, 'utf8'), /"requestId":"last-words"/);
});
