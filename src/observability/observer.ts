import type { Target, Why } from '../routing/decide.js';

/** Why a request meant for the candidate was served by legacy instead. */
export type FallbackReason = 'connect' | 'reset' | 'timeout' | '5xx' | 'unhealthy' | 'hedge';

/** Every FallbackReason (cutover_fallbacks_total is created at 0 for each, per route with a candidate). */
export const FALLBACK_REASONS: readonly FallbackReason[] = ['connect', 'reset', 'timeout', '5xx', 'unhealthy', 'hedge'];

/**
 * How an upstream attempt failed ('5xx' = answered with a status in the fallback list).
 * 'aborted': cancelled because the client left (or its upload passed the limit). 'hedged':
 * cancelled because the other attempt of a hedged request answered first. Neither is an
 * upstream error.
 */
export type AttemptFailure = 'connect' | 'reset' | 'timeout' | 'aborted' | 'hedged' | 'protocol' | '5xx';

/** One upstream attempt (a request served after fallback has two: candidate, then legacy). */
export interface AttemptRecord {
  /** Route name from config, or "default" / "unrouted". Bounded: safe as a metric label. */
  route: string;
  target: Target;
  /** Upstream name from config. */
  upstream: string;
  /** Response status, or 0 when none arrived. */
  status: number;
  durationMs: number;
  failure: AttemptFailure | undefined;
}

/** One client request, logged once when it ends. */
export interface RequestRecord {
  requestId: string;
  method: string;
  /** The normalized path (for logs only; never a metric label). */
  path: string;
  route: string;
  flag: string | undefined;
  /** Who served the client in the end. */
  target: Target;
  why: Why;
  fallback: FallbackReason | undefined;
  bucket: number | undefined;
  /** Raw user id; observers must not log it raw unless configured to. */
  userId: string | undefined;
  /** Status sent to the client (0 if the client went away first). */
  status: number;
  durationMs: number;
}

/**
 * What the proxy reports as it works. Called on the hot path: implementations must be cheap
 * (cached metric children, no per-call label building) and must never throw.
 */
export interface Observer {
  attempt(record: AttemptRecord): void;
  fallback(route: string, reason: FallbackReason): void;
  request(record: RequestRecord): void;
}

export const noopObserver: Observer = {
  attempt() {},
  fallback() {},
  request() {},
};
