import type { ServerResponse } from 'node:http';
import type { Shadower } from '../shadow/shadower.js';
import type { RouteShadowStats } from '../shadow/results.js';
import { HttpError, sendJson } from './http.js';

/** One route's shadow findings as the API shows them. */
export function shadowReport(s: RouteShadowStats) {
  const w1 = s.window(60);
  const w5 = s.window(300);
  return {
    route: s.route,
    flag: s.flag ?? null,
    totals: s.totals,
    compared: s.totals.match + s.totals.mismatch,
    mismatched: s.totals.mismatch,
    mismatch_rate: {
      '1m': { compared: w1.compared, mismatched: w1.mismatched, rate: w1.rate },
      '5m': { compared: w5.compared, mismatched: w5.mismatched, rate: w5.rate },
    },
    top_fields: s.topFields(),
    noisy_fields: [...s.noisy.keys()],
    examples: s.recentExamples(),
  };
}

/** GET /api/v1/shadow */
export function listShadow(shadow: Shadower, res: ServerResponse): void {
  sendJson(res, 200, { routes: shadow.all().map(shadowReport) });
}

/** GET /api/v1/shadow/:route */
export function getShadow(shadow: Shadower, route: string, res: ServerResponse): void {
  const s = shadow.all().find((x) => x.route === route);
  if (!s) throw new HttpError(404, 'unknown_route', `no shadow results for route ${JSON.stringify(route)} (not shadowed, or nothing mirrored yet)`);
  sendJson(res, 200, shadowReport(s));
}
