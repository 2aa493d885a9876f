import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Shadower } from '../shadow/shadower.js';
import type { RouteShadowStats } from '../shadow/results.js';
import { RETIRED_TTL_MS } from '../shadow/route-stats.js';
import { actorOf } from './flags-api.js';
import { HttpError, sendJson } from './http.js';

/**
 * One route's shadow findings as the API shows them: `totals` for the process's life (the
 * /metrics counters), the 1- and 5-minute windows, and the rest since `since` (start or reset).
 * `shadowed: false` for a route a reload stopped shadowing, shown until forgotten (`forget_at`,
 * or sooner if MAX_RETIRED routes were unshadowed after it).
 */
export function shadowReport(s: RouteShadowStats) {
  const w1 = s.window(60);
  const w5 = s.window(300);
  const sinceReset = s.sinceReset();
  const retired = s.retiredAt;
  return {
    route: s.route,
    flag: s.flag ?? null,
    shadowed: retired === undefined,
    unshadowed_at: retired === undefined ? null : new Date(retired).toISOString(),
    forget_at: retired === undefined ? null : new Date(retired + RETIRED_TTL_MS).toISOString(),
    totals: s.totals,
    since: new Date(s.since).toISOString(),
    compared: sinceReset.compared,
    mismatched: sinceReset.mismatched,
    mismatch_rate: {
      '1m': { compared: w1.compared, mismatched: w1.mismatched, rate: w1.rate },
      '5m': { compared: w5.compared, mismatched: w5.mismatched, rate: w5.rate },
    },
    top_fields: s.topFields(),
    noisy_fields: s.noisyFields(),
    examples: s.recentExamples(),
  };
}

/** GET /api/v1/shadow */
export function listShadow(shadow: Shadower, res: ServerResponse): void {
  sendJson(res, 200, { routes: shadow.all().map(shadowReport) });
}

/** GET /api/v1/shadow/:route */
export function getShadow(shadow: Shadower, route: string, res: ServerResponse): void {
  sendJson(res, 200, shadowReport(find(shadow, route)));
}

/** DELETE /api/v1/shadow[/:route]: starts the since-view afresh; answers what is shown now. */
export function resetShadow(shadow: Shadower, route: string | undefined, req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  if (route !== undefined) find(shadow, route);
  shadow.reset(route, actorOf(req));
  if (route === undefined) return listShadow(shadow, res);
  getShadow(shadow, route, res);
}

function find(shadow: Shadower, route: string): RouteShadowStats {
  const s = shadow.all().find((x) => x.route === route);
  if (!s) throw new HttpError(404, 'unknown_route', `no shadow results for route ${JSON.stringify(route)} (not shadowed, nothing mirrored yet, or unshadowed long enough ago to be forgotten)`);
  return s;
}
