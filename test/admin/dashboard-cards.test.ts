import t from 'tap';
import { dashboardCards, type DashboardCards } from '../../src/admin/dashboard/cards.js';
import { dashboardFormat, type DashboardFormat } from '../../src/admin/dashboard/format.js';
import type { PlanView, RouteStatus, Snap, TargetView } from '../../src/admin/dashboard/status-types.js';

// The page ships dashboardCards as text, so it is tested as the browser gets it: rebuilt from its
// source with nothing from this module in scope, handed the shipped formatters.
const format = new Function(`return (${dashboardFormat.toString()})();`)() as DashboardFormat;
const cards = (new Function(`return ${dashboardCards.toString()};`)() as typeof dashboardCards)(format, 45) satisfies DashboardCards;

const snap = (rate: number, over: Partial<Snap> = {}): Snap => ({
  requests: rate * 60,
  rate,
  errors: 0,
  error_rate: rate > 0 ? 0 : null,
  p50_ms: rate > 0 ? 4 : null,
  p95_ms: rate > 0 ? 12 : null,
  p99_ms: rate > 0 ? 30 : null,
  ...over,
});
const target = (upstream: string, rate: number): TargetView => ({
  upstream,
  health: { healthy: true },
  requests_total: rate * 300,
  codes: {},
  '1m': snap(rate),
  '5m': snap(rate),
});
const route = (over: Partial<RouteStatus> = {}): RouteStatus => ({
  name: 'orders-read',
  match: { path: '/api/v1/orders/', methods: ['GET', 'HEAD'] },
  flag: 'order_cutover',
  flag_state: { exists: true, enabled: true, percentage: 25 },
  legacy: target('legacy', 75),
  candidate: target('orders', 25),
  fallbacks: { total: 7, by_reason: { timeout: 2, status_5xx: 5 }, '1m': 1, '5m': 3 },
  ...over,
});

t.test('a route card: match, flag, the split of attempts, fallbacks by reason', async (t) => {
  const html = cards.routeCard(route(), new Map());
  t.match(html, '<code>GET HEAD /api/v1/orders/*</code>');
  t.match(html, 'flag <b>order_cutover</b> <span class="pill on">25 % to candidate</span>');
  t.match(html, 'style="width:25.0%"');
  t.match(html, 'candidate 25.0 % · legacy 75.0 % of attempts (1 min)');
  t.match(html, '<footer class="fallbacks active">');
  t.ok(html.indexOf('status_5xx 5') < html.indexOf('timeout 2'), 'reasons, most frequent first');
  t.match(html, 'data-target="legacy"');
  t.match(html, 'data-target="candidate"');
  t.notMatch(html, 'Shadow mismatches', 'no shadow footer without shadow figures');
});

t.test('a route without a candidate, or with its flag off or missing', async (t) => {
  const bare = cards.routeCard(route({ flag: null, flag_state: null, candidate: null, match: null }), new Map());
  t.match(bare, '<code>unmatched requests</code>');
  t.match(bare, 'no candidate');
  t.notMatch(bare, 'data-target="candidate"');
  t.notMatch(bare, 'Fallbacks to legacy', 'no fallback footer without a candidate');
  t.match(cards.routeCard(route({ flag_state: { exists: true, enabled: false, percentage: 25 } }), new Map()), 'disabled: all legacy');
  t.match(cards.routeCard(route({ flag_state: { exists: false, enabled: false, percentage: 0 } }), new Map()), 'flag missing: all legacy');
  const idle = route({ legacy: target('legacy', 0), candidate: target('orders', 0) });
  t.match(cards.routeCard(idle, new Map()), 'no traffic in the last minute');
});

t.test('shadow variance above 0.5 % is marked as a finding', async (t) => {
  const shadow = (rate: number | null): RouteStatus['shadow'] => ({
    '1m': { compared: 100, mismatched: 1, rate },
    '5m': { compared: 1000, mismatched: 6, rate },
  });
  t.match(cards.routeCard(route({ shadow: shadow(0.006) }), new Map()), '<footer class="fallbacks shadow active">Shadow mismatches: <b class="fb-total sh-rate">0.60 %</b> of <b>1000</b>');
  t.match(cards.routeCard(route({ shadow: shadow(0.005) }), new Map()), '<footer class="fallbacks shadow">');
  t.match(cards.routeCard(route({ shadow: shadow(null) }), new Map()), 'sh-rate">n/a</b>');
});

t.test("a target's trend line comes from the history it is handed", async (t) => {
  const history = new Map([['orders-read|candidate', [10, 20, 15]]]);
  const html = cards.routeCard(route(), history);
  const rows = html.split('<tr class="t-');
  t.match(rows.find((r) => r.startsWith('candidate')) ?? '', '<polyline points=');
  t.notMatch(rows.find((r) => r.startsWith('legacy')) ?? '', '<polyline', 'no history, no line');
});

t.test('names from the config are escaped', async (t) => {
  const html = cards.routeCard(route({ name: '<img src=x onerror=alert(1)>' }), new Map());
  t.notMatch(html, '<img');
  t.match(html, '&lt;img src=x onerror=alert(1)&gt;');
});

t.test('a plan card: steps done and current, gates, when the next step comes', async (t) => {
  const plan = (over: Partial<PlanView> = {}): PlanView => ({
    flag: 'order_cutover',
    state: 'running',
    step: 2,
    steps: 4,
    percentage: 25,
    nextStepAt: '2026-11-22T03:10:00.000Z',
    reason: null,
    gates: { errorRate: { value: 0.001, limit: 0.01, state: 'ok', detail: '2 of 2000' } },
    window: { seconds: 300, candidateRequests: 2000, minRequests: 100 },
    verdict: 'green',
    plan: { steps: [5, 25, 50, 100].map((percentage) => ({ percentage, hold: '10m' })) },
    time: '2026-11-22T03:05:00.000Z',
    ...over,
  });
  const html = cards.planCard(plan());
  t.match(html, '<span class="stp done" title="hold 10m">5 %</span><span class="stp cur" title="hold 10m">25 %</span><span class="stp" title="hold 10m">50 %</span>');
  t.match(html, 'step 2 of 4 · 25 %');
  t.match(html, 'next step in <b>5m 0s</b>');
  t.match(html, '<td class="num gv">0.10 %</td><td class="num gl">1.00 %</td>');
  t.match(html, '<div class="preason" hidden>');
  t.match(cards.planCard(plan({ verdict: 'red' })), '(if the gates are green then)');
  t.match(cards.planCard(plan({ step: 4, nextStepAt: '2026-11-22T03:05:00.000Z', verdict: 'green' })), 'hold over: <b>completes now</b>');
  t.match(cards.planCard(plan({ nextStepAt: '2026-11-22T03:00:00.000Z', verdict: 'waiting', window: { seconds: 300, candidateRequests: 40, minRequests: 100 } })), 'waiting for traffic</b> (40 of 100 requests in 300 s)');
  const stopped = cards.planCard(plan({ state: 'rolled_back', reason: 'errorRate 6.00 % over 1.00 %', nextStepAt: null }));
  t.match(stopped, 'rolled back</span>');
  t.match(stopped, '<span class="next"></span>');
  t.match(stopped, '<div class="preason">errorRate 6.00 % over 1.00 %</div>');
});
