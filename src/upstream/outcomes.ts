import type { CompiledRoute } from '../routing/compile.js';
import type { UpstreamError } from '../proxy/errors.js';
import type { LiveFailure, UpstreamHealth } from './health.js';

export interface AutoDisable {
  success(flag: string): void;
  failure(flag: string, reason: string, route: string): void;
}

/** The candidate's verdict on one request feeds its outlier detection and the flag's auto-disable. */
export function recordCandidate(route: CompiledRoute, failure: LiveFailure | undefined, autoDisable: AutoDisable): void {
  const health = route.candidateHealth as UpstreamHealth;
  if (failure === undefined) {
    health.success();
    autoDisable.success(route.flag as string);
  } else {
    health.failure(failure, route.name);
    autoDisable.failure(route.flag as string, failure, route.name);
  }
}

/** Legacy is watched passively too, for reporting; it is never taken out of service. */
export function recordLegacy(health: UpstreamHealth | undefined, err: UpstreamError | undefined, route: string): void {
  if (health === undefined) return;
  if (err === undefined || err.kind === 'aborted' || err.kind === 'protocol') return health.success();
  health.failure(liveFailure(err.kind), route);
}

export function liveFailure(kind: string): LiveFailure {
  return kind === 'connect' || kind === 'timeout' || kind === '5xx' ? kind : 'reset';
}
