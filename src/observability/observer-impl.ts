import type { Target } from '../routing/decide.js';
import type { Logger } from './logger.js';
import { CutoverMetrics, type AttemptSeries, type FlagSource, type HealthProvider } from './metrics.js';
import type { AttemptRecord, FallbackReason, Observer, RequestRecord } from './observer.js';
import { RequestLog, type UserIdMode } from './request-log.js';
import { SlidingWindow, type Clock, type RingSpec, type WindowSnapshot } from './windows.js';

export interface CutoverObserverOptions {
  logger: Logger;
  /** Flag store: flag gauges and cutover_flag_changes_total. */
  flags?: FlagSource;
  /** Upstream health, read at scrape and status time. */
  health?: HealthProvider;
  /** User ids in request logs: hash (default, or CUTOVER_LOG_USER_IDS), raw, none. */
  userIds?: UserIdMode;
  /** HMAC key for hashed user ids (default CUTOVER_LOG_USER_KEY, else random per process). */
  userKey?: string | Buffer;
  /** prom-client process metrics (default true). */
  defaultMetrics?: boolean;
  /** Clock for the sliding windows (ms), for tests. */
  clock?: Clock;
  /** Window rings (default 60 x 1 s and 60 x 5 s). */
  rings?: readonly RingSpec[];
}

/** Live stats of one (route, target): Prometheus counters plus the sliding windows. */
interface TargetStats {
  readonly series: AttemptSeries;
  /** Created on the first attempt: idle targets cost no window memory. */
  window: SlidingWindow | undefined;
}

interface RouteStats {
  readonly legacy: TargetStats;
  readonly candidate: TargetStats;
  fallbackWindow: SlidingWindow | undefined;
  /** Requests meant for the candidate that skipped it as out of service (reason "unhealthy"). */
  skippedWindow: SlidingWindow | undefined;
}

/** What a rollout's gates read: the last `window` of the routes using one flag. */
export interface FlagWindow {
  /** The candidate's own attempts (failures hidden by fallback included). */
  candidate: WindowSnapshot;
  legacy: WindowSnapshot;
  /** Requests meant for the candidate that never reached it because it was ejected or probed down. */
  skipped: number;
}

export interface TargetStatus {
  requests_total: number;
  codes: Record<string, number>;
  '1m': WindowSnapshot;
  '5m': WindowSnapshot;
}

export interface FallbackStatus {
  total: number;
  by_reason: Partial<Record<FallbackReason, number>>;
  '1m': number;
  '5m': number;
}

const MAX_ROUTES = 1000;

/**
 * The proxy's Observer: every upstream attempt feeds cutover_requests_total, the duration
 * histogram and the (route, target) sliding window; every fallback feeds
 * cutover_fallbacks_total; every request ends in one log line. Each call costs one Map lookup
 * by route name plus arithmetic; nothing here throws into the proxy.
 */
export class CutoverObserver implements Observer {
  readonly metrics: CutoverMetrics;
  readonly requestLog: RequestLog;
  /** Upstream health, as given (read by the status API). */
  readonly health: HealthProvider | undefined;
  private readonly routes = new Map<string, RouteStats>();
  private readonly clock: Clock;
  private readonly since: number;
  private readonly rings: readonly RingSpec[] | undefined;
  private readonly logger: Logger;
  private failedOnce = false;

  constructor(options: CutoverObserverOptions) {
    this.logger = options.logger;
    this.health = options.health;
    this.clock = options.clock ?? Date.now;
    this.since = this.clock();
    this.rings = options.rings;
    this.metrics = new CutoverMetrics({
      ...(options.flags !== undefined && { flags: options.flags }),
      ...(options.health !== undefined && { health: options.health }),
      ...(options.defaultMetrics !== undefined && { defaultMetrics: options.defaultMetrics }),
      maxSeries: MAX_ROUTES,
    });
    this.requestLog = new RequestLog(options.logger, {
      ...(options.userIds !== undefined && { userIds: options.userIds }),
      ...(options.userKey !== undefined && { userKey: options.userKey }),
    });
  }


  attempt(r: AttemptRecord): void {
    try {
      const t = this.target(r.route, r.target);
      t.series.observe(r.status, r.failure, r.durationMs / 1000);
      // Cancelled attempts ('aborted', 'hedged') are not errors unless they had answered 5xx (a
      // held legacy 503 dropped when the candidate won); a hedged one's duration is a lower bound
      // of the candidate's latency, which the window's percentiles should see.
      const error = r.status >= 500 || (r.status === 0 && r.failure !== 'aborted' && r.failure !== 'hedged');
      (t.window ??= this.window(true)).record(r.durationMs, error);
    } catch (err) {
      this.failed(err);
    }
  }

  fallback(route: string, reason: FallbackReason): void {
    try {
      this.metrics.fallbacks(route).inc(reason);
      const rs = this.route(route);
      (rs.fallbackWindow ??= this.window(false)).record(0, false);
      if (reason === 'unhealthy') (rs.skippedWindow ??= this.window(false)).record(0, true);
    } catch (err) {
      this.failed(err);
    }
  }

  request(r: RequestRecord): void {
    try {
      this.requestLog.write(r);
    } catch (err) {
      this.failed(err);
    }
  }

  /** Counters and 1m / 5m windows of one (route, target). */
  targetStatus(route: string, target: Target, now: number = this.clock()): TargetStatus {
    const t = this.routes.get(route)?.[target];
    const w = t?.window;
    return {
      requests_total: t?.series.count ?? 0,
      codes: t?.series.codes() ?? {},
      '1m': w ? w.snapshot(60_000, now) : emptySnapshot(60),
      '5m': w ? w.snapshot(300_000, now) : emptySnapshot(300),
    };
  }

  fallbackStatus(route: string, now: number = this.clock()): FallbackStatus {
    const f = this.metrics.fallbackCounts(route);
    const w = this.routes.get(route)?.fallbackWindow;
    return {
      total: f?.total ?? 0,
      // Reasons declared at 0 from config are not shown: by_reason lists what happened.
      by_reason: f ? Object.fromEntries([...f.byReason].filter(([, n]) => n > 0)) : {},
      '1m': w ? w.snapshot(60_000, now).requests : 0,
      '5m': w ? w.snapshot(300_000, now).requests : 0,
    };
  }

  /**
   * The last `windowMs` of every route in `routes` together (rollout gates): counts add up and
   * percentiles come from the summed histograms. Windows up to 5 minutes (the longest ring).
   * `from` (ms): nothing recorded before it counts, so a plan started again after a rollback is
   * not judged on the traffic that rolled it back (whole slots: see SlidingWindow.combined).
   */
  flagWindow(routes: readonly string[], windowMs: number, from?: number, now: number = this.clock()): FlagWindow {
    const stats = routes.map((r) => this.routes.get(r)).filter((r): r is RouteStats => r !== undefined);
    const of = (ws: Array<SlidingWindow | undefined>) => SlidingWindow.combined(ws.filter((w): w is SlidingWindow => w !== undefined), windowMs, now, from);
    return {
      candidate: of(stats.map((r) => r.candidate.window)),
      legacy: of(stats.map((r) => r.legacy.window)),
      skipped: of(stats.map((r) => r.skippedWindow)).requests,
    };
  }

  /** Route names seen in traffic so far (for routes not in config, e.g. "unrouted"). */
  seenRoutes(): string[] {
    return [...this.routes.keys()];
  }

  close(): void {
    this.requestLog.flush();
    this.metrics.close();
  }

  private target(route: string, target: Target): TargetStats {
    const rs = this.routes.get(route) ?? this.addRoute(route);
    return target === 'candidate' ? rs.candidate : rs.legacy;
  }

  private route(route: string): RouteStats {
    return this.routes.get(route) ?? this.addRoute(route);
  }

  private addRoute(route: string): RouteStats {
    // Route names come from config; past MAX_ROUTES something is wrong: share one bucket.
    const name = this.routes.size >= MAX_ROUTES ? '_overflow' : route;
    let rs = this.routes.get(name);
    if (rs === undefined) {
      rs = {
        legacy: { series: this.metrics.series(name, 'legacy'), window: undefined },
        candidate: { series: this.metrics.series(name, 'candidate'), window: undefined },
        fallbackWindow: undefined,
        skippedWindow: undefined,
      };
      this.routes.set(name, rs);
    }
    return rs;
  }

  private window(latency: boolean): SlidingWindow {
    return new SlidingWindow({ clock: this.clock, since: this.since, latency, ...(this.rings !== undefined && { rings: this.rings }) });
  }

  private failed(err: unknown): void {
    if (this.failedOnce) return;
    this.failedOnce = true;
    this.logger.error({ err: (err as Error)?.message }, 'observer failed (reported once); metrics may be incomplete');
  }
}

function emptySnapshot(windowS: number): WindowSnapshot {
  return { window_s: windowS, requests: 0, rate: 0, errors: 0, error_rate: null, p50_ms: null, p95_ms: null, p99_ms: null };
}

/** Sends every call to both observers (the built-in one first); a throwing extra one is ignored. */
export function teeObserver(a: Observer, b: Observer): Observer {
  return {
    attempt(r) {
      a.attempt(r);
      try {
        b.attempt(r);
      } catch {
        /* an embedding app's observer must not break the proxy */
      }
    },
    fallback(route, reason) {
      a.fallback(route, reason);
      try {
        b.fallback(route, reason);
      } catch {
        /* ignored */
      }
    },
    request(r) {
      a.request(r);
      try {
        b.request(r);
      } catch {
        /* ignored */
      }
    },
  };
}
