import type { Logger } from '../observability/logger.js';
import type { FlagWindow } from '../observability/observer-impl.js';
import type { RolloutMetricsSource } from '../observability/metrics.js';
import { emptySample, evaluateGates, type Evaluation, type ShadowCounts } from './gates.js';
import type { Rollout } from './model.js';
import { windowMs } from './plan.js';

/**
 * Shadow comparison counts over a recent window for the routes whose flag is `flag`, counting
 * no comparison made before `from` (ms; the plan's start or last resume), or
 * undefined when there are none (no shadow configured): the maxShadowMismatch gate then reports
 * "no-data" and does not block.
 */
export type ShadowProvider = (flag: string, from?: number) => ShadowCounts | undefined;

/** What the driver reads the live windows from (CutoverObserver). */
export interface RolloutStats {
  /** `from` (ms): count nothing recorded before it (the plan's start or last resume). */
  flagWindow(routes: readonly string[], windowMs: number, from?: number): FlagWindow;
  /** When given, the driver registers its gauges there (cutover_rollout_*). */
  readonly metrics?: { setRollouts(source: RolloutMetricsSource | undefined): void };
}

/** A plan's gates over the live windows of its flag's routes, as they are now. */
export class LiveGates {
  private shadowFailed = false;

  constructor(
    private readonly logger: Logger,
    /** The routes whose flag is `flag` (read on every evaluation, so a reload is followed). */
    private readonly routesOf: (flag: string) => string[],
    /** Without it every gate waits. */
    private readonly observer: RolloutStats | undefined,
    public shadow: ShadowProvider | undefined,
    private readonly clock: () => number = Date.now,
  ) {}

  evaluate(r: Rollout): Evaluation {
    const gates = r.plan.gates;
    const sample = emptySample(gates);
    sample.since = { seconds: Math.max(1, Math.floor((this.clock() - r.gatesFrom) / 1000)), event: r.gatesFrom === r.startedAt ? 'started' : 'resumed' };
    const routes = this.routesOf(r.flag);
    if (this.observer && routes.length > 0) {
      const w = this.observer.flagWindow(routes, windowMs(gates), r.gatesFrom);
      sample.candidate = { requests: w.candidate.requests, errors: w.candidate.errors, p95_ms: w.candidate.p95_ms, p99_ms: w.candidate.p99_ms };
      sample.skipped = w.skipped;
      sample.legacy = { requests: w.legacy.requests, errors: w.legacy.errors };
    }
    if (gates.maxShadowMismatch !== undefined && this.shadow) {
      try {
        sample.shadow = this.shadow(r.flag, r.gatesFrom);
      } catch (err) {
        if (!this.shadowFailed) this.logger.error({ err: (err as Error).message }, 'shadow results provider failed (reported once): maxShadowMismatch reads no-data');
        this.shadowFailed = true;
      }
    }
    return evaluateGates(gates, sample);
  }
}
