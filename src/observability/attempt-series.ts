import { Histogram } from 'prom-client';
import type { Target } from '../routing/decide.js';
import type { AttemptFailure, FallbackReason } from './observer.js';

// The per-request side of cutover's metrics: plain counters updated on the hot path, and the
// histogram that hands them to prom-client at scrape time (metrics.ts owns the registry).

/**
 * Histogram buckets of cutover_request_duration_seconds: 1 ms .. 10 s. The migration runbooks'
 * targets (p95 < 50 ms, < 100 ms, p99 < 200 ms, < 1 s, fallback < 5 s) are bounds, so the share of
 * attempts under each is exact in PromQL rather than interpolated inside a wider bucket.
 */
export const DURATION_BUCKETS_S: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2.5, 5, 10];

export interface CodeCell {
  readonly code: string;
  n: number;
}

/**
 * The counters of one (route, target): attempts by code and the duration histogram. Updated on
 * the hot path with plain arithmetic; prom-client reads them at scrape time.
 */
export class AttemptSeries {
  /** status (100..999) -> cell; failure kinds (no status) live in `failures`. */
  private readonly statuses = new Map<number, CodeCell>();
  private readonly failures = new Map<string, CodeCell>();
  /** Non-cumulative counts per DURATION_BUCKETS_S bucket, then +Inf. */
  readonly buckets = new Float64Array(DURATION_BUCKETS_S.length + 1);
  sum = 0;
  count = 0;
  /** Cells were created at 0 from config (declare), so the counters show even before any attempt. */
  declared = false;

  constructor(
    readonly route: string,
    readonly target: Target,
  ) {}

  /**
   * One upstream attempt. `code` label: the HTTP status as a string ("200", "503") when a
   * response arrived; otherwise the failure kind ("connect", "reset", "timeout", "protocol",
   * "aborted" = the client left first, "hedged" = the other attempt of a hedged request answered
   * first, "5xx"), or "0" when none was given.
   */
  observe(status: number, failure: AttemptFailure | undefined, seconds: number): void {
    let cell: CodeCell | undefined;
    if (status > 0) {
      cell = this.statuses.get(status);
      if (cell === undefined) this.statuses.set(status, (cell = { code: String(status), n: 0 }));
    } else {
      const code = failure ?? '0';
      cell = this.failures.get(code);
      if (cell === undefined) this.failures.set(code, (cell = { code, n: 0 }));
    }
    cell.n++;
    const b = DURATION_BUCKETS_S;
    let i = 0;
    while (i < b.length && seconds > (b[i] as number)) i++;
    this.buckets[i] = (this.buckets[i] as number) + 1;
    this.sum += seconds;
    this.count++;
  }

  /**
   * Creates the cells of `codes` at 0 (at config load, never per request), so Prometheus sees
   * their first increment as a step from 0 rather than a new series (which rate() ignores).
   */
  declare(codes: readonly string[]): void {
    this.declared = true;
    for (const code of codes) {
      const status = /^[1-9]\d\d$/.test(code) ? Number(code) : 0;
      if (status > 0) {
        if (!this.statuses.has(status)) this.statuses.set(status, { code, n: 0 });
      } else if (!this.failures.has(code)) this.failures.set(code, { code, n: 0 });
    }
  }

  /** code -> attempts (codes seen at least once), for the status API and tests. */
  codes(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const c of this.cells()) if (c.n > 0) out[c.code] = c.n;
    return out;
  }

  cells(): Iterable<CodeCell> {
    return [...this.statuses.values(), ...this.failures.values()];
  }
}

/** Fallback counts of one route, by reason. */
export class FallbackSeries {
  readonly byReason = new Map<FallbackReason, number>();
  total = 0;
  constructor(readonly route: string) {}
  /** Creates the counters of `reasons` at 0 (config load; see AttemptSeries.declare). */
  declare(reasons: readonly FallbackReason[]): void {
    for (const r of reasons) if (!this.byReason.has(r)) this.byReason.set(r, 0);
  }
  inc(reason: FallbackReason): void {
    this.byReason.set(reason, (this.byReason.get(reason) ?? 0) + 1);
    this.total++;
  }
}

interface HistValue {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

/**
 * cutover_request_duration_seconds, formatted by prom-client from AttemptSeries at scrape time.
 * prom-client's Histogram has no way to hand it pre-counted buckets, so this subclass only
 * borrows its name/help/type plumbing and supplies the values itself.
 */
const DURATION_NAME = 'cutover_request_duration_seconds';
const DURATION_HELP = 'Upstream attempt duration in seconds, by route and target (one observation per attempt, like cutover_requests_total).';

export class DurationHistogram extends Histogram<'route' | 'target'> {
  constructor(private readonly source: () => Iterable<AttemptSeries>) {
    super({
      name: DURATION_NAME,
      help: DURATION_HELP,
      labelNames: ['route', 'target'],
      buckets: [...DURATION_BUCKETS_S],
      registers: [],
    });
  }

  private values(): HistValue[] {
    const out: HistValue[] = [];
    const bucketName = `${DURATION_NAME}_bucket`;
    for (const s of this.source()) {
      let acc = 0;
      for (let i = 0; i < DURATION_BUCKETS_S.length; i++) {
        acc += s.buckets[i] as number;
        out.push({ metricName: bucketName, labels: { route: s.route, target: s.target, le: DURATION_BUCKETS_S[i] as number }, value: acc });
      }
      out.push({ metricName: bucketName, labels: { route: s.route, target: s.target, le: '+Inf' }, value: s.count });
      out.push({ metricName: `${DURATION_NAME}_sum`, labels: { route: s.route, target: s.target }, value: s.sum });
      out.push({ metricName: `${DURATION_NAME}_count`, labels: { route: s.route, target: s.target }, value: s.count });
    }
    return out;
  }

  // What Registry.metrics() reads (untyped in prom-client's .d.ts).
  async getForPromString() {
    return { name: DURATION_NAME, help: DURATION_HELP, type: 'histogram' as const, values: this.values(), aggregator: 'sum' as const };
  }

  override async get() {
    return (await this.getForPromString()) as unknown as Awaited<ReturnType<Histogram<'route' | 'target'>['get']>>;
  }
}
