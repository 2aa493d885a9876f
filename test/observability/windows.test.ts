import t from 'tap';
import {
  LATENCY_BOUNDS_MS,
  LATENCY_BUCKETS,
  PERCENTILE_MAX_RATIO,
  SlidingWindow,
  latencyBucket,
  quantile,
} from '../../src/observability/windows.js';

/** A clock the test moves by hand (ms). Starts at an arbitrary, non-round time. */
function fakeClock(start = 1_763_700_000_123) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms), set: (ms: number) => (now = ms) };
}

/** Exact nearest-rank percentile of raw samples. */
function exact(samples: number[], q: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil(q * s.length) - 1)] as number;
}

t.test('latency buckets: 10 per decade from 0.1 ms to 10 s, le semantics', async (t) => {
  t.equal(LATENCY_BUCKETS, 52);
  t.equal(LATENCY_BOUNDS_MS.length, 51);
  t.ok(Math.abs((LATENCY_BOUNDS_MS[0] as number) - 0.1) < 1e-12);
  t.ok(Math.abs((LATENCY_BOUNDS_MS[50] as number) - 10_000) < 1e-6);
  t.equal(latencyBucket(0), 0);
  t.equal(latencyBucket(-5), 0);
  t.equal(latencyBucket(Number.NaN), 0);
  t.equal(latencyBucket(0.1), 0, 'exactly the first bound stays in the first bucket');
  t.equal(latencyBucket(0.1001), 1);
  t.equal(latencyBucket(1), 10, '1 ms is the upper bound of bucket 10');
  t.equal(latencyBucket(1.0001), 11);
  t.equal(latencyBucket(10_000), 50);
  t.equal(latencyBucket(10_000.5), 51, 'above 10 s: overflow bucket');
  t.equal(latencyBucket(1e9), 51);
  // every value lands in the bucket whose bounds hold it
  for (let ms = 0.11; ms < 10_000; ms *= 1.07) {
    const b = latencyBucket(ms);
    t.ok((LATENCY_BOUNDS_MS[b - 1] as number) < ms && ms <= (LATENCY_BOUNDS_MS[b] as number) * (1 + 1e-9), `${ms} in bucket ${b}`);
  }
});

t.test('rate and error rate over 1 and 5 minutes', async (t) => {
  const clock = fakeClock();
  const w = new SlidingWindow({ clock: clock.now });
  // 3 minutes at 10 requests/s, every 20th an error (5 %).
  for (let s = 0; s < 180; s++) {
    for (let i = 0; i < 10; i++) {
      w.record(12, (s * 10 + i) % 20 === 0);
      clock.advance(100);
    }
  }
  const m1 = w.snapshot(60_000);
  const m5 = w.snapshot(300_000);
  t.ok(m1.requests >= 590 && m1.requests <= 600, `1m holds the last minute (${m1.requests})`);
  t.ok(Math.abs(m1.rate - 10) < 0.2, `1m rate ${m1.rate} ~ 10/s`);
  t.equal(m5.requests, 1800, '5m holds everything since start');
  t.ok(Math.abs(m5.rate - 10) < 0.01, `5m rate ${m5.rate}: divided by the 180 s observed, not 300`);
  t.ok(Math.abs((m5.error_rate as number) - 0.05) < 1e-9, `error rate ${m5.error_rate}`);
  t.ok(Math.abs((m1.error_rate as number) - 0.05) < 0.003);
  t.equal(m1.window_s, 60);
  t.equal(m5.window_s, 300);
});

t.test('old data expires: the 1m window forgets after a minute, the 5m after five', async (t) => {
  const clock = fakeClock();
  const w = new SlidingWindow({ clock: clock.now });
  for (let i = 0; i < 50; i++) w.record(3, true);
  t.equal(w.snapshot(60_000).requests, 50);
  clock.advance(30_000);
  t.equal(w.snapshot(60_000).requests, 50, 'still there after 30 s');
  clock.advance(31_000);
  const m1 = w.snapshot(60_000);
  t.equal(m1.requests, 0, 'gone from 1m after 61 s');
  t.equal(m1.error_rate, null);
  t.equal(m1.p95_ms, null);
  t.equal(m1.rate, 0);
  t.equal(w.snapshot(300_000).requests, 50, 'still in 5m');
  clock.advance(240_000);
  t.equal(w.snapshot(300_000).requests, 0, 'gone from 5m after 301 s');

  // A slot reused after a full turn of the ring starts from zero, not from what it held.
  w.record(3, false);
  clock.advance(60_000);
  w.record(3, false);
  t.equal(w.snapshot(60_000).requests, 1, '1 s ring position reused after 60 s holds only the new event');
  clock.advance(300_000);
  w.record(3, false);
  t.equal(w.snapshot(300_000).requests, 1, '5 s ring position reused after 300 s holds only the new event');
});

t.test('percentiles stay within one bucket (x1.26) of the exact sample percentiles', async (t) => {
  const clock = fakeClock();
  const w = new SlidingWindow({ clock: clock.now });
  // Deterministic pseudo-random log-uniform latencies from 0.5 ms to 3 s, plus a slow tail.
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const samples: number[] = [];
  for (let i = 0; i < 20_000; i++) {
    const ms = i % 50 === 0 ? 800 + rnd() * 2000 : 0.5 * 10 ** (rnd() * 3);
    samples.push(ms);
    w.record(ms, false);
    if (i % 100 === 0) clock.advance(250);
  }
  const snap = w.snapshot(60_000);
  t.equal(snap.requests, 20_000, 'all samples fall in the last minute (50 s of simulated time)');
  const inWindow = samples.slice(samples.length - snap.requests);
  for (const [q, got] of [
    [0.5, snap.p50_ms],
    [0.95, snap.p95_ms],
    [0.99, snap.p99_ms],
  ] as const) {
    const want = exact(inWindow, q);
    const ratio = (got as number) / want;
    t.ok(ratio <= PERCENTILE_MAX_RATIO && ratio >= 1 / PERCENTILE_MAX_RATIO, `p${q * 100}: ${got} vs exact ${want.toFixed(3)} (ratio ${ratio.toFixed(3)})`);
  }
  t.ok((snap.p50_ms as number) < (snap.p95_ms as number) && (snap.p95_ms as number) <= (snap.p99_ms as number), 'ordered');
});

t.test('a constant latency is reported within the bucket around it', async (t) => {
  const w = new SlidingWindow({ clock: fakeClock().now });
  for (let i = 0; i < 1000; i++) w.record(42, false);
  const s = w.snapshot(60_000);
  for (const v of [s.p50_ms, s.p95_ms, s.p99_ms]) {
    t.ok((v as number) > 42 / PERCENTILE_MAX_RATIO && (v as number) < 42 * PERCENTILE_MAX_RATIO, `${v} ~ 42`);
  }
  // the slow tail moves p99 but not p50
  for (let i = 0; i < 20; i++) w.record(2500, false);
  const s2 = w.snapshot(60_000);
  t.ok((s2.p99_ms as number) > 2000, `p99 ${s2.p99_ms} sees the 2 % tail`);
  t.ok((s2.p50_ms as number) < 50, `p50 ${s2.p50_ms} does not`);
});

t.test('above 10 s is reported as 10 s; below 0.1 ms as a fraction of it', async (t) => {
  const w = new SlidingWindow({ clock: fakeClock().now });
  for (let i = 0; i < 10; i++) w.record(30_000, true);
  t.equal(w.snapshot(60_000).p99_ms, 10_000);
  const w2 = new SlidingWindow({ clock: fakeClock().now });
  for (let i = 0; i < 10; i++) w2.record(0.01, false);
  t.ok((w2.snapshot(60_000).p50_ms as number) <= 0.1);
});

t.test('quantile interpolates log-linearly inside the bucket', async (t) => {
  const hist = new Array<number>(LATENCY_BUCKETS).fill(0);
  hist[20] = 100; // (1 ms .. 10^0.1 * 1 ms] ... bucket 20 is (10^0.9 .. 10] ms
  const lo = LATENCY_BOUNDS_MS[19] as number;
  const hi = LATENCY_BOUNDS_MS[20] as number;
  t.ok(Math.abs(quantile(hist, 100, 0.5) - Math.sqrt(lo * hi)) < 1e-9, 'the median of one bucket is its geometric middle');
  t.ok(Math.abs(quantile(hist, 100, 1) - hi) < 1e-9);
});

t.test('memory is fixed: hours of traffic leave the same counters, and windows stay correct', async (t) => {
  const clock = fakeClock();
  const w = new SlidingWindow({ clock: clock.now });
  const bytes = w.bytes;
  t.ok(bytes < 30 * 1024, `one window holds ${bytes} bytes`);
  // Two simulated hours at 50 req/s.
  let total = 0;
  for (let s = 0; s < 7200; s++) {
    for (let i = 0; i < 50; i++) w.record(5 + (i % 7), i === 0);
    total += 50;
    clock.advance(1000);
  }
  t.equal(w.bytes, bytes, 'no growth');
  const m1 = w.snapshot(60_000);
  const m5 = w.snapshot(300_000);
  t.ok(total > 300_000);
  t.ok(m1.requests >= 59 * 50 && m1.requests <= 60 * 50, `1m counts only the last minute (${m1.requests})`);
  t.ok(m5.requests >= 295 * 50 && m5.requests <= 300 * 50, `5m counts only the last five (${m5.requests})`);
  t.ok(Math.abs(m5.rate - 50) < 1, `5m rate ${m5.rate}`);
  t.ok(Math.abs((m5.error_rate as number) - 0.02) < 1e-3);

  // and the heap does not grow with traffic
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 1_000_000; i++) {
    w.record(i % 100, false);
    if (i % 1000 === 0) clock.advance(1000);
  }
  const grown = process.memoryUsage().heapUsed - before;
  t.ok(grown < 8 * 1024 * 1024, `heap grew ${Math.round(grown / 1024)} KiB over 1e6 records`);
});

t.test('counting-only windows (fallbacks) keep no histogram', async (t) => {
  const clock = fakeClock();
  const w = new SlidingWindow({ clock: clock.now, latency: false });
  t.ok(w.bytes < 3 * 1024, `${w.bytes} bytes`);
  for (let i = 0; i < 7; i++) w.record(0, false);
  const s = w.snapshot(60_000);
  t.equal(s.requests, 7);
  t.equal(s.p50_ms, null);
});

t.test('combined from a start time: no slot that began before it counts', async (t) => {
  const c = fakeClock(1_763_700_000_000); // on a 5 s boundary
  const w = new SlidingWindow({ clock: c.now, latency: false });
  for (let i = 0; i < 20; i++) w.record(1, true); // the traffic that rolled a plan back
  c.advance(10_400);
  const from = c.now(); // 400 ms into a 1 s slot
  w.record(1, true); // same 1 s slot as `from`, but before it: must not count
  c.advance(600); // next 1 s slot starts at `from` + 600
  for (let i = 0; i < 30; i++) w.record(1, false);
  t.match(SlidingWindow.combined([w], 60_000, c.now()), { requests: 51, errors: 21 }, 'without from: everything in the last minute');
  t.match(SlidingWindow.combined([w], 60_000, c.now(), from), { requests: 30, errors: 0 }, 'from: only whole slots at or after it');
  t.match(SlidingWindow.combined([w], 300_000, c.now(), from), { requests: 30, errors: 0 }, 'a 5-minute window reads the 1 s ring while it reaches back to from');
  t.match(SlidingWindow.combined([w], 60_000, c.now(), c.now() + 1000), { requests: 0 }, 'from in the future: nothing');

  c.advance(70_000); // the 1 s ring no longer reaches back to from: 5 s slots
  w.record(1, false);
  t.match(SlidingWindow.combined([w], 300_000, c.now()), { requests: 52, errors: 21 });
  t.match(
    SlidingWindow.combined([w], 300_000, c.now(), from),
    { requests: 1, errors: 0 },
    'past a minute, the 5 s slot holding from is left out whole: the 30 requests after from go with the error before it',
  );
});
