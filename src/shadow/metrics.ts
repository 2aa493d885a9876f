import { Counter, type Registry } from 'prom-client';
import type { Shadower } from './shadower.js';

/** cutover_shadow_total{route, result}: read from the shadower's per-route totals at scrape time. */
export function registerShadowMetrics(registry: Registry, shadow: Shadower): void {
  new Counter({
    name: 'cutover_shadow_total',
    help: 'Mirrored requests by route and result: match, mismatch, error (the candidate failed or a body was over maxBody), dropped (shadow queue full). Kept (flat) for up to 24 h after a reload stops shadowing the route, so shadowing it again continues the count.',
    labelNames: ['route', 'result'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of shadow.all()) for (const [result, n] of Object.entries(s.totals)) this.inc({ route: s.route, result }, n);
    },
  });
}
