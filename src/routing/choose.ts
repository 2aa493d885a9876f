import type { IncomingMessage } from 'node:http';
import type { CompiledFlag } from '../flags/model.js';
import { qaDecision } from '../proxy/qa-override.js';
import type { CompiledRoute, RoutingState } from './compile.js';
import { decide, type Decision, type Target } from './decide.js';
import { NO, TRIAL, type UpstreamHealth } from '../upstream/health.js';

export const UNROUTED: Decision = Object.freeze({ target: 'legacy', why: 'no-candidate' });

/** Receives the routing choice for one request (an object, so the hot path makes no closures). */
export interface Chooser {
  /**
   * `route` undefined: no route matched (use the default upstream, if any). `unhealthy`: the
   * decision said candidate but the candidate is ejected or failing probes, so `target` is legacy.
   * `trial`: this request is the candidate's half-open trial after an ejection; the chooser must
   * end it (success, failure or released) whatever happens to the request.
   */
  chosen(route: CompiledRoute | undefined, decision: Decision, target: Target, userId: string | undefined, unhealthy: boolean, trial: boolean): void;
}

/**
 * Match route -> QA override -> identify user -> decide -> health gate. Calls `out.chosen`
 * synchronously unless a JWT has to be verified first. Shared by HTTP requests and WebSocket
 * upgrades, so both route a user the same way.
 */
export function choose(
  state: RoutingState,
  flags: { get(name: string): CompiledFlag | undefined },
  req: IncomingMessage,
  path: string,
  out: Chooser,
): void {
  const route = state.table.match(req.method as string, path);
  if (route === undefined) return out.chosen(undefined, UNROUTED, 'legacy', undefined, false, false);
  if (route.candidate === undefined || route.flag === undefined) return out.chosen(route, UNROUTED, 'legacy', undefined, false, false);
  if (state.qa !== undefined) {
    const forced = qaDecision(req, state.qa);
    // QA wants this side even if it is ejected.
    if (forced !== undefined) return out.chosen(route, forced, forced.target, undefined, false, false);
  }
  const id = route.identify(req);
  if (typeof id === 'object') {
    id.then(
      (uid) => decideFor(route, flags, uid, out),
      () => decideFor(route, flags, undefined, out),
    );
    return;
  }
  decideFor(route, flags, id, out);
}

function decideFor(
  route: CompiledRoute,
  flags: { get(name: string): CompiledFlag | undefined },
  userId: string | undefined,
  out: Chooser,
): void {
  const decision = decide(flags.get(route.flag as string), userId);
  if (decision.target !== 'candidate') return out.chosen(route, decision, 'legacy', userId, false, false);
  const admission = (route.candidateHealth as UpstreamHealth).admit();
  if (admission === NO) return out.chosen(route, decision, 'legacy', userId, true, false);
  out.chosen(route, decision, 'candidate', userId, false, admission === TRIAL);
}
