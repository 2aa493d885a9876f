import type { RouteConfig } from '../config/schema.js';
import type { AttemptFailure } from '../observability/observer.js';

/** A route's fallback policy, compiled once at config load. */
export interface FallbackPolicy {
  /** Time to response headers for the candidate attempt (0 = upstream idle timers only). */
  readonly timeoutMs: number;
  /** Time to response headers for the whole request, fallback included (0 = unbounded). */
  readonly budgetMs: number;
  /** Safe methods: start legacy too after this long without candidate headers (0 = off). */
  readonly hedgeMs: number;
  /** Max body buffered for replaying an Idempotency-Key write (0 = writes never replayed). */
  readonly replayMaxBody: number;
  readonly onConnect: boolean;
  readonly onReset: boolean;
  readonly onTimeout: boolean;
  /** statuses[code - 500]: does this 5xx send the request to legacy? */
  readonly statuses: readonly boolean[];
}

export function compilePolicy(route: RouteConfig): FallbackPolicy {
  const on = new Set(route.fallbackOn);
  const statuses = Array.from({ length: 100 }, (_, i) => on.has('5xx') || on.has(500 + i));
  return {
    timeoutMs: route.timeout ?? 0,
    budgetMs: route.budget ?? 0,
    hedgeMs: route.hedge ?? 0,
    replayMaxBody: route.replayWrites?.maxBody ?? 0,
    onConnect: on.has('connect'),
    onReset: on.has('reset'),
    onTimeout: on.has('timeout'),
    statuses,
  };
}

/**
 * The candidate attempt's timer: its own `timeout`, cut to what is left of the route's budget,
 * which bounds the whole request as Envoy's route timeout bounds every try. `budgetLeft`: ms,
 * 0 = no budget. Returns 0 when neither is set (the upstream's idle timers only).
 */
export function candidateTimeout(p: FallbackPolicy, budgetLeft: number): number {
  if (budgetLeft <= 0) return p.timeoutMs;
  return p.timeoutMs > 0 && p.timeoutMs < budgetLeft ? p.timeoutMs : budgetLeft;
}

/** What the route gives a candidate attempt before the budget is counted: its timeout, else the budget. */
export function candidateAllowance(p: FallbackPolicy): number {
  return p.timeoutMs > 0 ? p.timeoutMs : p.budgetMs;
}

/** Is this response status one the route falls back on? */
export function fallsBackOnStatus(p: FallbackPolicy, status: number): boolean {
  return status >= 500 && status <= 599 && (p.statuses[status - 500] as boolean);
}

/** Is this failure kind one the route falls back on? */
export function fallsBackOn(p: FallbackPolicy, failure: AttemptFailure, status: number): boolean {
  switch (failure) {
    case 'connect':
      return p.onConnect;
    case 'reset':
      return p.onReset;
    case 'timeout':
      return p.onTimeout;
    case '5xx':
      return fallsBackOnStatus(p, status);
    default:
      return false;
  }
}
