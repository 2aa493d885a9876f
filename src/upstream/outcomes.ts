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
 * traffic is never gated: every answer is a verdict, judged like the candidate's by its status
 * (a 5xx it answered is one, whether relayed, or held back and dropped when a hedge's candidate
 * won), else by how the attempt failed. `status`: the status legacy answered, 0 if none.
 */
export function recordLegacy(health: UpstreamHealth | undefined, status: number, err: UpstreamError | undefined, route: string): void {
  if (health === undefined) return;
  if (status >= 500) return health.failure('5xx', route, 'ungated');
  // '5xx' with a status below 500: an answer discarded because the request was already over.
  if (err === undefined || err.kind === 'aborted' || err.kind === 'protocol' || err.kind === '5xx') return health.success('ungated');
  health.failure(liveFailure(err.kind), route, 'ungated');
}

export function liveFailure(kind: string): LiveFailure {
  return kind === 'connect' || kind === 'timeout' || kind === '5xx' ? kind : 'reset';
}
