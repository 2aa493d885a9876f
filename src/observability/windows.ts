/**
 * Sliding-window request statistics computed in-process with fixed memory.
 *
 * A window keeps two rings of time slots:
 *   - 60 slots of 1 s  -> the "last 1 minute" view, to the second;
 *   - 60 slots of 5 s  -> the "last 5 minutes" view, to 5 seconds.
 * Each slot holds a request count, an error count and a latency histogram with 52 fixed,
 * log-spaced buckets: 10 per decade from 0.1 ms to 10 s (bounds 0.1 ms x 10^(i/10)), plus one
 * bucket for <= 0.1 ms and one for > 10 s. Percentiles are read from the summed histogram with
 * log-linear interpolation inside the bucket that holds the rank, so an estimate and the exact
 * (nearest-rank) sample percentile always fall in the same bucket: they differ by less than the
 * bucket ratio 10^0.1 (≈ 1.26x) between 0.1 ms and 10 s. Latencies above 10 s are reported as
 * 10 s (the histogram only knows "more than 10 s").
 *
 * Memory per window: 120 slots x 54 Uint32 counters ≈ 26 KB, allocated on the first record and
 * never grown, whatever the traffic. Recording is O(1): one Math.log10, a few array writes, and
 * a slot reset (54 zeroes) when a slot is reused. A snapshot sums at most 60 slots.
 */

/** Milliseconds since some epoch; Date.now by default, injectable for tests. */
export type Clock = () => number;

/** Histogram resolution: buckets per decade and the covered range in ms. */
const PER_DECADE = 10;
const MIN_MS = 0.1;
const DECADES = 5; // 0.1 ms .. 10 s
const NB = PER_DECADE * DECADES; // 50 finite log buckets above MIN_MS
/** Bucket count: [0] <= 0.1 ms, [1..50] log buckets, [51] > 10 s. */
export const LATENCY_BUCKETS = NB + 2;
/** Upper bounds in ms of buckets 0..50 (bucket 51 has none). */
export const LATENCY_BOUNDS_MS: readonly number[] = Array.from({ length: NB + 1 }, (_, i) => MIN_MS * 10 ** (i / PER_DECADE));
/** An estimate is within this factor of the exact sample percentile (0.1 ms .. 10 s). */
export const PERCENTILE_MAX_RATIO = 10 ** (1 / PER_DECADE);

const COUNT = 0;
const ERRORS = 1;
const HIST = 2;

export function latencyBucket(ms: number): number {
  if (!(ms > MIN_MS)) return 0; // also NaN and negatives
  const i = Math.ceil(PER_DECADE * Math.log10(ms / MIN_MS) - 1e-9);
  return i > NB ? NB + 1 : i;
}

export interface RingSpec {
  slotMs: number;
  slots: number;
}

/** 1 s x 60 for the 1-minute view, 5 s x 60 for the 5-minute view. */
export const DEFAULT_RINGS: readonly RingSpec[] = [
  { slotMs: 1000, slots: 60 },
  { slotMs: 5000, slots: 60 },
];

class Ring {
  readonly span: number;
  /** Which slot number (floor(t / slotMs)) each position currently holds; -1 = never used. */
  private readonly epochs: Float64Array;
  private readonly data: Uint32Array;

  constructor(
    readonly slotMs: number,
    readonly slots: number,
    private readonly stride: number,
  ) {
    this.span = slotMs * slots;
    this.epochs = new Float64Array(slots).fill(-1);
    this.data = new Uint32Array(slots * stride);
  }

  /** The data offset of the slot for time `now`, reset if it held an older slot. */
  slot(now: number): number {
    const epoch = Math.floor(now / this.slotMs);
    const pos = epoch % this.slots;
    const off = pos * this.stride;
    if (this.epochs[pos] !== epoch) {
      this.epochs[pos] = epoch;
      this.data.fill(0, off, off + this.stride);
    }
    return off;
  }

  record(now: number, error: boolean, bucket: number): void {
    const off = this.slot(now);
    const d = this.data;
    d[off + COUNT] = (d[off + COUNT] as number) + 1;
    if (error) d[off + ERRORS] = (d[off + ERRORS] as number) + 1;
    if (this.stride > HIST) d[off + HIST + bucket] = (d[off + HIST + bucket] as number) + 1;
  }

  /**
   * The first slot number `sum` adds: the last `windowMs` (whole slots, the current one
   * partial), but no slot that began before `from`.
   */
  private oldest(now: number, windowMs: number, from: number | undefined): number {
    const n = Math.max(1, Math.ceil(windowMs / this.slotMs));
    const oldest = Math.floor(now / this.slotMs) - n + 1;
    return from === undefined ? oldest : Math.max(oldest, Math.ceil(from / this.slotMs));
  }

  /** Whether this ring still holds every slot `sum` would add. */
  covers(now: number, windowMs: number, from: number | undefined): boolean {
    return Math.floor(now / this.slotMs) - this.oldest(now, windowMs, from) < this.slots;
  }

  /**
   * Adds the last `windowMs` (whole slots, the current one partial; none that began before
   * `from`) into `into`; returns the start time of the oldest slot included.
   */
  sum(now: number, windowMs: number, into: Float64Array, from?: number): number {
    const nowEpoch = Math.floor(now / this.slotMs);
    const oldest = Math.max(this.oldest(now, windowMs, from), nowEpoch - this.slots + 1);
    const d = this.data;
    for (let pos = 0; pos < this.slots; pos++) {
      const e = this.epochs[pos] as number;
      if (e < oldest || e > nowEpoch) continue;
      const off = pos * this.stride;
      for (let k = 0; k < this.stride; k++) into[k] = (into[k] as number) + (d[off + k] as number);
    }
    return oldest * this.slotMs;
  }
}

export interface WindowSnapshot {
  /** The window asked for, in seconds (the 1 s / 5 s slot granularity applies). */
  window_s: number;
  /** Requests recorded in the window. */
  requests: number;
  /** Requests per second over the part of the window the process has been observing. */
  rate: number;
  errors: number;
  /** errors / requests, or null with no requests. */
  error_rate: number | null;
  /** Latency percentiles in ms, or null with no requests. */
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
}

export interface WindowOptions {
  clock?: Clock;
  /** When observation started (ms, same clock): rates are not diluted by time before it. */
  since?: number;
  /** Keep a latency histogram (default true). Counting-only windows are 2 counters per slot. */
  latency?: boolean;
  rings?: readonly RingSpec[];
}

/** Counts, errors and latency over the last minutes for one stream of events. */
export class SlidingWindow {
  private readonly clock: Clock;
  private readonly since: number;
  private readonly stride: number;
  private readonly rings: Ring[];
  private readonly scratch: Float64Array;

  constructor(options: WindowOptions = {}) {
    this.clock = options.clock ?? Date.now;
    this.since = options.since ?? this.clock();
    this.stride = options.latency === false ? HIST : HIST + LATENCY_BUCKETS;
    this.rings = (options.rings ?? DEFAULT_RINGS).map((r) => new Ring(r.slotMs, r.slots, this.stride)).sort((a, b) => a.span - b.span);
    this.scratch = new Float64Array(this.stride);
  }

  /** Bytes held by this window's counters (fixed at construction). */
  get bytes(): number {
    return this.rings.reduce((n, r) => n + r.slots * (this.stride * 4 + 8), 0) + this.stride * 8;
  }

  /** Hot path: one event that took `durationMs`, an error or not. */
  record(durationMs: number, error: boolean, now: number = this.clock()): void {
    const bucket = this.stride > HIST ? latencyBucket(durationMs) : 0;
    for (let i = 0; i < this.rings.length; i++) (this.rings[i] as Ring).record(now, error, bucket);
  }

  /** Stats over the last `windowMs` (read from the finest ring that spans it). */
  snapshot(windowMs: number, now: number = this.clock()): WindowSnapshot {
    const acc = this.scratch.fill(0);
    const start = this.accumulate(windowMs, now, acc);
    return summarize(acc, this.stride > HIST, windowMs, start, now);
  }

  /**
   * Stats over the last `windowMs` of several windows together (e.g. one target on every route
   * that uses a flag): counts add up, percentiles come from the summed histograms.
   *
   * With `from` (ms, same clock), only slots that began at or after it count (a rollout plan's
   * gates must not judge traffic from before the plan started): the 1 s ring is used while it
   * reaches back to `from`, so up to 1 s of traffic after `from` is left out in the first minute
   * and up to 5 s after that (a partial slot is dropped rather than mixing in older traffic).
   */
  static combined(windows: readonly SlidingWindow[], windowMs: number, now: number, from?: number): WindowSnapshot {
    const stride = Math.max(HIST, ...windows.map((w) => w.stride));
    const acc = new Float64Array(stride);
    let start = now;
    for (const w of windows) start = Math.min(start, w.accumulate(windowMs, now, acc, from));
    return summarize(acc, stride > HIST && windows.every((w) => w.stride === stride), windowMs, start, now);
  }

  /** Adds the last `windowMs` (nothing before `from`) into `acc`; returns when the time summed starts (ms). */
  private accumulate(windowMs: number, now: number, acc: Float64Array, from?: number): number {
    const ring = this.rings.find((r) => r.covers(now, windowMs, from)) ?? (this.rings[this.rings.length - 1] as Ring);
    return Math.max(ring.sum(now, windowMs, acc, from), this.since);
  }
}

function summarize(acc: Float64Array, latency: boolean, windowMs: number, start: number, now: number): WindowSnapshot {
  const requests = acc[COUNT] as number;
  const errors = acc[ERRORS] as number;
  // Seconds actually observed (at least 1, so a burst just after start isn't inflated).
  const seconds = Math.max(now - start, 1000) / 1000;
  const hist = latency ? acc.subarray(HIST) : undefined;
  return {
    window_s: Math.round(windowMs / 1000),
    requests,
    rate: round(requests / seconds, 3),
    errors,
    error_rate: requests > 0 ? round(errors / requests, 4) : null,
    p50_ms: hist && requests > 0 ? round(quantile(hist, requests, 0.5), 3) : null,
    p95_ms: hist && requests > 0 ? round(quantile(hist, requests, 0.95), 3) : null,
    p99_ms: hist && requests > 0 ? round(quantile(hist, requests, 0.99), 3) : null,
  };
}

/**
 * The q-quantile of a latency histogram holding `n` samples: find the bucket holding rank
 * q*n, then interpolate log-linearly inside it (linearly in the first bucket, which starts at 0).
 */
export function quantile(hist: ArrayLike<number>, n: number, q: number): number {
  const rank = Math.max(q * n, Number.MIN_VALUE);
  let cum = 0;
  for (let i = 0; i < LATENCY_BUCKETS; i++) {
    const c = hist[i] as number;
    if (c === 0) continue;
    if (cum + c >= rank) {
      const f = (rank - cum) / c;
      if (i === 0) return MIN_MS * f;
      if (i > NB) return LATENCY_BOUNDS_MS[NB] as number;
      const lo = LATENCY_BOUNDS_MS[i - 1] as number;
      const hi = LATENCY_BOUNDS_MS[i] as number;
      return lo * (hi / lo) ** f;
    }
    cum += c;
  }
  return LATENCY_BOUNDS_MS[NB] as number;
}

function round(v: number, digits: number): number {
  const p = 10 ** digits;
  return Math.round(v * p) / p;
}
