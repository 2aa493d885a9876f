import type { CompiledRoute } from '../routing/compile.js';
import type { UpstreamError } from '../proxy/errors.js';
import type { LiveFailure, UpstreamHealth } from './health.js';

export interface AutoDisable {
  success(flag: string): void;
  failure(flag: string, reason: string, route: string): void;
}

/**
 * The candidate's verdict on one request feeds its outlier detection and the flag's auto-disable.
 * `trial`: the request was the half-open trial after an ejection (only its verdict ends one).
 */
export function recordCandidate(route: CompiledRoute, failure: LiveFailure | undefined, autoDisable: AutoDisable, trial: boolean): void {
  const health = route.candidateHealth as UpstreamHealth;
  if (failure === undefined) {
    health.success(trial ? 'trial' : 'admitted');
    autoDisable.success(route.flag as string);
  } else {
    health.failure(failure, route.name, trial ? 'trial' : 'admitted');
    autoDisable.failure(route.flag as string, failure, route.name);
  }
}

/**
 * Legacy is watched passively too, for reporting; it is never taken out of service, so its
 * traffic is never gated: every answer is a verdict.
 */
export function recordLegacy(health: UpstreamHealth | undefined, err: UpstreamError | undefined, route: string): void {
  if (health === undefined) return;
  if (err === undefined || err.kind === 'aborted' || err.kind === 'protocol') return health.success('ungated');
  health.failure(liveFailure(err.kind), route, 'ungated');
}

export function liveFailure(kind: string): LiveFailure {
  return kind === 'connect' || kind === 'timeout' || kind === '5xx' ? kind : 'reset';
}
