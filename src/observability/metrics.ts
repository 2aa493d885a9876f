import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { FlagChange } from '../flags/store.js';
import type { FlagView } from '../flags/model.js';
import type { Target } from '../routing/decide.js';
import { AttemptSeries, DurationHistogram, FallbackSeries } from './attempt-series.js';
import { FALLBACK_REASONS } from './observer.js';

import { registerRolloutGauges, type RolloutMetricsSource } from './rollout-gauges.js';

export { AttemptSeries, DURATION_BUCKETS_S, FallbackSeries } from './attempt-series.js';
export { ROLLOUT_STATE_NAMES, type RolloutMetricsSource } from './rollout-gauges.js';

/** What the metrics need from the flag store: its list and its change events. */
export interface FlagSource {
  list(): FlagView[];
  /** An external source (Unleash) owning routing flags, if any. */
  readonly external?: { status(): { kind: string; up: boolean; lastSuccessAt?: number | undefined } } | undefined;
  on(event: 'change', listener: (change: FlagChange) => void): unknown;
  off(event: 'change', listener: (change: FlagChange) => void): unknown;
}

/** One upstream's health as the health checker reports it (extra fields are shown in /api/v1/status). */
export interface UpstreamHealthInfo {
  healthy: boolean;
  probe?: boolean;
  ejectedUntil?: number;
  ejections?: number;
  consecutiveFailures?: number;
  lastReason?: string | undefined;
}

/** Upstream name -> health, read at scrape / status time (never on the hot path). */
export type HealthProvider = () => Record<string, UpstreamHealthInfo>;

export interface MetricsOptions {
  flags?: FlagSource;
  health?: HealthProvider;
  /** prom-client's process metrics (CPU, memory, event loop lag, GC, handles). Default true. */
  defaultMetrics?: boolean;
  /**
   * Most distinct (route, target) and (route, reason) series kept; anything past it is counted
   * under route="_overflow". Route names come from config, so this is only a guard. Default 1000.
   */
  maxSeries?: number;
}

const OVERFLOW = '_overflow';

/**
 * cutover_requests_total cells created at 0 for every configured (route, target): the failure
 * codes the error-ratio queries select that upstreams commonly produce. Not every status: 7 cells
 * per target keeps cardinality modest; any other code still appears on its first attempt.
 */
export const DECLARED_CODES: readonly string[] = ['500', '502', '503', '504', 'connect', 'reset', 'timeout'];

/** cutover_flag_changes_total sources created at 0 per flag (plus the external source's kind, in fleet mode). */
export const DECLARED_FLAG_SOURCES: readonly string[] = ['admin-api', 'file', 'auto-disable', 'rollout'];

/** What declareConfig needs of a route from config. */
export interface DeclaredRoute {
  name: string;
  flag?: string | undefined;
  candidate?: string | undefined;
}

/**
 * cutover's Prometheus metrics in a registry of their own (so several instances in one process
 * do not collide). The per-request series are plain counters in AttemptSeries, looked up once
 * per call by route and target; prom-client formats them at scrape time. (prom-client's own
 * label children hash their labels on every inc/observe: 1.3 µs a request vs 0.11 µs here, in
 * bench/observer.mjs.)
 */
export class CutoverMetrics {
  readonly registry = new Registry();
  private readonly routes = new Map<string, { legacy: AttemptSeries; candidate: AttemptSeries }>();
  private readonly fallbackSeries = new Map<string, FallbackSeries>();
  private readonly flagChanges: Counter<'flag' | 'source'>;
  /** Flags whose cutover_flag_changes_total series were created at 0. */
  private readonly declaredFlags = new Set<string>();
  private readonly onFlagChange: ((c: FlagChange) => void) | undefined;
  private readonly maxSeries: number;
  private rollouts: RolloutMetricsSource | undefined;

  constructor(private readonly options: MetricsOptions = {}) {
    this.maxSeries = options.maxSeries ?? 1000;
    const registers = [this.registry];
    const self = this;

    new Counter({
      name: 'cutover_requests_total',
      help: 'Upstream attempts by route, target (legacy|candidate) and code (HTTP status, or the failure kind when no response arrived: connect, reset, timeout, protocol; aborted = the client left first; hedged = cancelled because the other attempt of a hedged request answered first; 0 = no answer and no known failure kind). A request that fell back counts twice: candidate, then legacy.',
      labelNames: ['route', 'target', 'code'] as const,
      registers,
      collect() {
        this.reset();
        for (const s of self.allSeries(false)) for (const c of s.cells()) this.inc({ route: s.route, target: s.target, code: c.code }, c.n);
      },
    });

    this.registry.registerMetric(new DurationHistogram(() => self.allSeries(true)));

    new Counter({
      name: 'cutover_fallbacks_total',
      help: 'Requests meant for the candidate that legacy served instead, by route and reason (connect, reset, timeout, 5xx, unhealthy, hedge).',
      labelNames: ['route', 'reason'] as const,
      registers,
      collect() {
        this.reset();
        // A set: routes past maxSeries share the _overflow object, which must be counted once.
        for (const f of new Set(self.fallbackSeries.values())) for (const [reason, n] of f.byReason) this.inc({ route: f.route, reason }, n);
      },
    });

    new Gauge({
      name: 'cutover_upstream_healthy',
      help: '1 if the upstream is healthy (active probes and outlier detection), 0 if not. Absent until health checking reports the upstream.',
      labelNames: ['upstream'] as const,
      registers,
      collect() {
        this.reset();
        const h = self.options.health?.();
        if (h) for (const [upstream, v] of Object.entries(h)) this.set({ upstream }, v.healthy ? 1 : 0);
      },
    });

    new Gauge({
      name: 'cutover_flag_enabled',
      help: '1 if the flag is enabled, 0 if not (a disabled flag sends every user to legacy).',
      labelNames: ['flag'] as const,
      registers,
      collect() {
        this.reset();
        for (const f of self.options.flags?.list() ?? []) this.set({ flag: f.name }, f.enabled ? 1 : 0);
      },
    });

    new Gauge({
      name: 'cutover_flag_percentage',
      help: "The flag's rollout percentage (0..100): users whose bucket is <= it go to the candidate while the flag is enabled.",
      labelNames: ['flag'] as const,
      registers,
      collect() {
        this.reset();
        for (const f of self.options.flags?.list() ?? []) this.set({ flag: f.name }, f.percentage);
      },
    });

    new Gauge({
      name: 'cutover_flags_source_up',
      help: '1 while the last fetch from the external flag source (Unleash) succeeded, else 0. Absent without one.',
      labelNames: ['source'] as const,
      registers,
      collect() {
        this.reset();
        const st = self.options.flags?.external?.status();
        if (st) this.set({ source: st.kind }, st.up ? 1 : 0);
      },
    });

    new Gauge({
      name: 'cutover_flags_source_last_success_seconds',
      help: 'Seconds since the last successful fetch from the external flag source. Absent until the first.',
      labelNames: ['source'] as const,
      registers,
      collect() {
        this.reset();
        const st = self.options.flags?.external?.status();
        if (st?.lastSuccessAt !== undefined) this.set({ source: st.kind }, (Date.now() - st.lastSuccessAt) / 1000);
      },
    });

    registerRolloutGauges(registers, () => self.rollouts);

    this.flagChanges = new Counter({
      name: 'cutover_flag_changes_total',
      help: 'Flag changes by flag and source (admin-api, file, auto-disable, library, ...), including removals.',
      labelNames: ['flag', 'source'] as const,
      registers,
    });

    if (options.flags) {
      this.onFlagChange = (c: FlagChange) => {
        // A flag created at run time: its other sources start at 0 from here on.
        this.declareFlag(c.name);
        this.flagChanges.inc({ flag: c.name, source: c.actor.source });
      };
      options.flags.on('change', this.onFlagChange);
    }
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Where the cutover_rollout_* gauges read from (the rollout driver), or undefined. */
  setRollouts(source: RolloutMetricsSource | undefined): void {
    this.rollouts = source;
  }

  /**
   * At config load and reload: creates at 0 the series whose label values config tells, so the
   * first fallback, failure or flag change is a step rate()/increase() can see (Prometheus does
   * not count a series' first sample as an increase). Not per request: this builds labels.
   */
  declareConfig(routes: readonly DeclaredRoute[], defaultUpstream: string | undefined): void {
    for (const r of routes) {
      this.series(r.name, 'legacy').declare(DECLARED_CODES);
      if (r.candidate !== undefined) {
        this.series(r.name, 'candidate').declare(DECLARED_CODES);
        this.fallbacks(r.name).declare(FALLBACK_REASONS);
      }
      if (r.flag !== undefined) this.declareFlag(r.flag);
    }
    if (defaultUpstream !== undefined) this.series('default', 'legacy').declare(DECLARED_CODES);
    for (const f of this.options.flags?.list() ?? []) this.declareFlag(f.name);
  }

  private declareFlag(flag: string): void {
    if (this.declaredFlags.has(flag) || this.declaredFlags.size >= this.maxSeries) return;
    this.declaredFlags.add(flag);
    const external = this.options.flags?.external?.status().kind;
    for (const source of external === undefined ? DECLARED_FLAG_SOURCES : [...DECLARED_FLAG_SOURCES, external]) this.flagChanges.inc({ flag, source }, 0);
  }

  /** Hot path: the cached series for (route, target). */
  series(route: string, target: Target): AttemptSeries {
    let r = this.routes.get(route);
    if (r === undefined) r = this.addRoute(route);
    return target === 'candidate' ? r.candidate : r.legacy;
  }

  /** Cached fallback counters of a route. */
  fallbacks(route: string): FallbackSeries {
    let f = this.fallbackSeries.get(route);
    if (f === undefined) {
      const name = this.fallbackSeries.size >= this.maxSeries ? OVERFLOW : route;
      f = this.fallbackSeries.get(name) ?? new FallbackSeries(name);
      this.fallbackSeries.set(name, f);
      if (name !== route) this.fallbackSeries.set(route, f);
    }
    return f;
  }

  /** Fallback counters by route (no entry: no fallback yet). */
  fallbackCounts(route: string): FallbackSeries | undefined {
    return this.fallbackSeries.get(route);
  }

  /** Prometheus text exposition format. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Stops listening to flag changes. */
  close(): void {
    if (this.onFlagChange) this.options.flags?.off('change', this.onFlagChange);
  }

  private addRoute(route: string): { legacy: AttemptSeries; candidate: AttemptSeries } {
    const name = this.routes.size >= this.maxSeries ? OVERFLOW : route;
    let r = this.routes.get(name);
    if (r === undefined) {
      r = { legacy: new AttemptSeries(name, 'legacy'), candidate: new AttemptSeries(name, 'candidate') };
      this.routes.set(name, r);
    }
    if (name !== route) this.routes.set(route, r);
    return r;
  }

  /**
   * Every (route, target) with something to show: attempts, or (for the counters, not the
   * histogram) cells declared at 0 from config.
   */
  private *allSeries(observedOnly: boolean): Iterable<AttemptSeries> {
    const seen = new Set<object>();
    for (const r of this.routes.values()) {
      if (seen.has(r)) continue;
      seen.add(r);
      for (const s of [r.legacy, r.candidate]) if (s.count > 0 || (!observedOnly && s.declared)) yield s;
    }
  }
}
