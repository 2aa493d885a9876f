// Types only: erased at compile time, so the shipped function text still references nothing.
import type { DashboardFormat } from './format.js';
import type { PlanView, RouteStatus, TargetView } from './status-types.js';

/**
 * The dashboard's cards as HTML text: one per rollout plan, one per route with its targets' rows.
 * Shipped as text like the client and the formatters (`dashboardCards.toString()`), so it may use
 * only browser globals and what it is handed; `history` is the trend line's length in samples.
 */
export function dashboardCards(format: DashboardFormat, history: number) {
  const { esc, fmtRate, fmtMs, fmtErr, errClass, healthDot, sparkline, fmtDur, fmtGate } = format;

  function nextStep(p: PlanView): string {
    if (p.state !== 'running' || p.nextStepAt === null) return '';
    const left = Date.parse(p.nextStepAt) - Date.parse(p.time);
    const what = p.step === p.steps ? 'completes' : 'next step';
    if (left > 0) return what + ' in <b>' + esc(fmtDur(left)) + '</b>' + (p.verdict === 'green' ? '' : ' <span class="small">(if the gates are green then)</span>');
    if (p.verdict === 'waiting') return 'hold over: <b>waiting for traffic</b> (' + p.window.candidateRequests + ' of ' + p.window.minRequests + ' requests in ' + p.window.seconds + ' s)';
    return 'hold over: <b>' + what + ' now</b>';
  }
  function planCard(p: PlanView): string {
    const steps = p.plan.steps
      .map((s, i) => '<span class="stp' + (i + 1 < p.step ? ' done' : i + 1 === p.step ? ' cur' : '') + '" title="hold ' + esc(s.hold) + '">' + s.percentage + ' %</span>')
      .join('');
    const gates = Object.entries(p.gates)
      .map(([name, g]) =>
        '<tr data-gate="' + esc(name) + '"><td class="mono">' + esc(name) + '</td><td class="num gv">' + esc(fmtGate(name, g.value)) + '</td><td class="num gl">' + esc(fmtGate(name, g.limit)) +
        '</td><td class="gs ' + esc(g.state) + '">' + esc(g.state) + '</td><td class="muted small">' + esc(g.detail) + '</td></tr>',
      )
      .join('');
    return (
      '<section class="card plan" data-plan="' + esc(p.flag) + '"><header><h3 class="mono">' + esc(p.flag) + '</h3><span class="pill pstate ' + esc(p.state) + '">' + esc(p.state.replace('_', ' ')) + '</span>' +
      '<span class="steps">' + steps + '</span><span class="pstep">step ' + p.step + ' of ' + p.steps + ' · ' + p.percentage + ' %</span><span class="next">' + nextStep(p) + '</span></header>' +
      '<div class="preason"' + (p.reason ? '' : ' hidden') + '>' + esc(p.reason ?? '') + '</div>' +
      '<table class="pgates"><thead><tr><th>Gate</th><th>Live value</th><th>Limit</th><th>State</th><th>Over the last ' + p.window.seconds + ' s</th></tr></thead><tbody>' + gates + '</tbody></table></section>'
    );
  }

  function routeCard(r: RouteStatus, p95History: Map<string, Array<number | null>>): string {
    const methods = r.match?.methods?.join(' ') ?? 'any';
    const match = r.match ? '<code>' + esc(methods) + ' ' + esc(r.match.path) + '*</code>' : '<code>unmatched requests</code>';
    let flag = '<span class="muted">no candidate</span>';
    if (r.flag !== null) {
      const st = r.flag_state;
      const pill =
        !st || !st.exists
          ? '<span class="pill missing">flag missing: all legacy</span>'
          : st.enabled
            ? '<span class="pill on">' + st.percentage + ' % to candidate</span>'
            : '<span class="pill off">disabled: all legacy</span>';
      flag = 'flag <b>' + esc(r.flag) + '</b> ' + pill;
    }
    const rows = [targetRow(r, 'legacy', r.legacy, p95History)];
    if (r.candidate) rows.push(targetRow(r, 'candidate', r.candidate, p95History));
    const l = r.legacy['1m'].rate;
    const c = r.candidate ? r.candidate['1m'].rate : 0;
    const share = l + c > 0 ? c / (l + c) : null;
    const split = r.candidate
      ? '<div class="split" title="share of upstream attempts in the last minute">' +
        '<div class="split-bar"><div class="split-cand" style="width:' + (share === null ? 0 : (share * 100).toFixed(1)) + '%"></div></div>' +
        '<span class="split-label">' + (share === null ? 'no traffic in the last minute' : 'candidate ' + (share * 100).toFixed(1) + ' % · legacy ' + ((1 - share) * 100).toFixed(1) + ' % of attempts (1 min)') + '</span></div>'
      : '';
    const fb = r.fallbacks;
    const reasons = Object.entries(fb.by_reason)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => '<span class="chip">' + esc(k) + ' ' + v + '</span>')
      .join(' ');
    const fallbacks = r.candidate
      ? '<footer class="fallbacks' + (fb['1m'] > 0 ? ' active' : '') + '">Fallbacks to legacy: <b class="fb-total">' + fb.total + '</b> total · <b>' + fb['1m'] + '</b> last 1 min · <b>' + fb['5m'] + '</b> last 5 min ' + reasons + '</footer>'
      : '';
    // The runbooks' bar: a shadow variance above 0.5 % is a finding.
    const sh = r.shadow?.['5m'];
    const shadow = sh
      ? '<footer class="fallbacks shadow' + (sh.rate !== null && sh.rate > 0.005 ? ' active' : '') + '">Shadow mismatches: <b class="fb-total sh-rate">' +
        (sh.rate === null ? 'n/a' : (sh.rate * 100).toFixed(2) + ' %') + '</b> of <b>' + sh.compared + '</b> compared (5 min) · <b>' + (r.shadow?.['1m'].mismatched ?? 0) + '</b> mismatched last 1 min</footer>'
      : '';
    return (
      '<section class="card route" data-route="' + esc(r.name) + '"><header><h3>' + esc(r.name) + '</h3>' + match +
      '<span class="flagref">' + flag + '</span></header>' + split +
      '<table class="stats"><colgroup><col class="c-target"><col class="c-up"><col span="9"><col class="c-trend"></colgroup><thead><tr><th rowspan="2">Target</th><th rowspan="2">Upstream</th>' +
      '<th colspan="5" class="grp">Last 1 minute</th><th colspan="4" class="grp">Last 5 minutes</th><th rowspan="2">p95 trend</th></tr>' +
      '<tr><th>req/s</th><th>errors</th><th>p50</th><th>p95</th><th>p99</th><th class="g2">req/s</th><th>errors</th><th>p95</th><th>p99</th></tr></thead><tbody>' +
      rows.join('') + '</tbody></table>' + fallbacks + shadow + '</section>'
    );
  }

  function targetRow(r: RouteStatus, target: string, t: TargetView, p95History: Map<string, Array<number | null>>): string {
    const key = r.name + '|' + target;
    const hist = p95History.get(key) ?? [];
    const m1 = t['1m'];
    const m5 = t['5m'];
    const idle = m1.requests === 0;
    return (
      '<tr class="t-' + target + (idle ? ' idle' : '') + '" data-target="' + target + '">' +
      '<td><span class="tag ' + target + '">' + target + '</span></td>' +
      '<td class="up">' + healthDot(t.health) + esc(t.upstream) + '</td>' +
      '<td class="num">' + fmtRate(m1.rate) + '</td>' +
      '<td class="num err ' + errClass(m1.error_rate) + '">' + fmtErr(m1.error_rate) + '</td>' +
      '<td class="num">' + fmtMs(m1.p50_ms) + '</td>' +
      '<td class="num strong">' + fmtMs(m1.p95_ms) + '</td>' +
      '<td class="num">' + fmtMs(m1.p99_ms) + '</td>' +
      '<td class="num g2">' + fmtRate(m5.rate) + '</td>' +
      '<td class="num err ' + errClass(m5.error_rate) + '">' + fmtErr(m5.error_rate) + '</td>' +
      '<td class="num">' + fmtMs(m5.p95_ms) + '</td>' +
      '<td class="num">' + fmtMs(m5.p99_ms) + '</td>' +
      '<td class="trend ' + target + '">' + sparkline(hist, history) + '</td></tr>'
    );
  }

  return { planCard, routeCard };
}

export type DashboardCards = ReturnType<typeof dashboardCards>;
