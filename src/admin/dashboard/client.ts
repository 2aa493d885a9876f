/* eslint-disable */
// Types only: erased at compile time, so the shipped function text still references nothing.
import type { DashboardFormat } from './format.js';
import type { FlagView, PlanView, RouteStatus, Status, TargetView } from './status-types.js';

/**
 * The dashboard's browser code. It is type-checked here and shipped as text
 * (`dashboardClient.toString()`), so it must use nothing from module scope: only browser globals.
 */
export function dashboardClient(refreshMs: number, format: DashboardFormat): void {
  const { esc, fmtRate, fmtMs, fmtErr, errClass, fmtTime, healthDot, sparkline, fmtDur, fmtGate } = format;
  const TOKEN_KEY = 'cutover.adminToken';
  const HISTORY = 45; // samples in a trend line (90 s at the default 2 s refresh)

  const byId = (id: string) => document.getElementById(id) as HTMLElement;
  let token: string | null = sessionStorage.getItem(TOKEN_KEY);
  let tokenPrompt: Promise<void> | null = null;
  const p95History = new Map<string, number[]>();
  let timer: number | undefined;

  // ---------------------------------------------------------------- admin API, with the token
  async function api(path: string, init: RequestInit = {}): Promise<Response> {
    for (;;) {
      const headers = new Headers(init.headers);
      if (token) headers.set('authorization', 'Bearer ' + token);
      const res = await fetch(path, { ...init, headers, cache: 'no-store' });
      if (res.status !== 401) return res;
      const rejected = token !== null;
      token = null;
      sessionStorage.removeItem(TOKEN_KEY);
      updateAuthBadge();
      await askToken(rejected ? 'That token was not accepted. Try again.' : 'This cutover needs its admin token (CUTOVER_ADMIN_TOKEN).');
    }
  }

  function askToken(message: string): Promise<void> {
    if (tokenPrompt) return tokenPrompt;
    const dialog = byId('auth');
    const form = byId('auth-form') as HTMLFormElement;
    const input = byId('auth-token') as HTMLInputElement;
    byId('auth-message').textContent = message;
    dialog.hidden = false;
    input.value = '';
    input.focus();
    tokenPrompt = new Promise<void>((resolve) => {
      form.onsubmit = (ev) => {
        ev.preventDefault();
        const v = input.value.trim();
        if (!v) return;
        token = v;
        sessionStorage.setItem(TOKEN_KEY, v);
        dialog.hidden = true;
        tokenPrompt = null;
        updateAuthBadge();
        resolve();
      };
    });
    return tokenPrompt;
  }

  function updateAuthBadge(): void {
    const b = byId('auth-badge');
    b.hidden = token === null;
  }

  // ---------------------------------------------------------------- rendering
  function render(s: Status): void {
    byId('updated').textContent = 'updated ' + fmtTime(s.time);
    byId('uptime').textContent = 'up ' + fmtDur(s.uptime_s * 1000);
    renderUpstreams(s);
    renderFlags(s.flags);
    renderRoutes(s.routes);
  }

  function renderUpstreams(s: Status): void {
    byId('upstreams').innerHTML = s.upstreams
      .map((u) => {
        const state = u.health === null ? 'unknown' : u.health.healthy ? 'healthy' : 'unhealthy';
        const why = u.health && !u.health.healthy && u.health.lastReason ? '<span class="why">' + esc(u.health.lastReason) + '</span>' : '';
        return (
          '<div class="upstream ' + state + '" data-upstream="' + esc(u.name) + '">' + healthDot(u.health) +
          '<span class="uname">' + esc(u.name) + '</span><span class="ustate">' + state + '</span>' + why + '</div>'
        );
      })
      .join('');
  }

  function renderFlags(flags: FlagView[]): void {
    const body = byId('flags-body');
    const seen = new Set<string>();
    for (const f of flags) {
      seen.add(f.name);
      let row = body.querySelector<HTMLTableRowElement>('tr[data-flag="' + CSS.escape(f.name) + '"]');
      if (!row) row = addFlagRow(body, f.name);
      updateFlagRow(row, f);
    }
    for (const row of Array.from(body.querySelectorAll<HTMLTableRowElement>('tr[data-flag]'))) {
      if (!seen.has(row.dataset.flag as string)) row.remove();
    }
    byId('flags-empty').hidden = flags.length > 0;
  }

  function addFlagRow(body: HTMLElement, name: string): HTMLTableRowElement {
    const row = document.createElement('tr');
    row.dataset.flag = name;
    row.innerHTML =
      '<td class="fname"><div class="flag-name">' + esc(name) + '</div><div class="desc"></div></td>' +
      '<td class="fstate"><span class="pill"></span></td>' +
      '<td class="fpct"><div class="rollout"><div class="rollout-fill"></div></div><span class="pct-val"></span></td>' +
      '<td class="fctl"><form class="pct-form">' +
      '<input class="pct-range" type="range" min="0" max="100" step="1" aria-label="' + esc(name) + ' percentage slider">' +
      '<input class="pct-input" type="number" min="0" max="100" step="1" required aria-label="' + esc(name) + ' percentage">' +
      '<button class="btn primary apply" type="submit">Set %</button>' +
      '<button class="btn toggle" type="button"></button></form></td>' +
      '<td class="froutes"></td><td class="fchanged"></td>';
    body.appendChild(row);
    const form = row.querySelector('form') as HTMLFormElement;
    const input = row.querySelector('.pct-input') as HTMLInputElement;
    const range = row.querySelector('.pct-range') as HTMLInputElement;
    const toggle = row.querySelector('.toggle') as HTMLButtonElement;
    input.addEventListener('input', () => {
      row.dataset.dirty = '1';
      range.value = input.value;
    });
    range.addEventListener('input', () => {
      row.dataset.dirty = '1';
      input.value = range.value;
    });
    input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') {
        delete row.dataset.dirty;
        input.value = range.value = row.dataset.server ?? '';
      }
    });
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const n = Number(input.value);
      if (!Number.isInteger(n) || n < 0 || n > 100) return toast('Percentage must be a whole number from 0 to 100', true);
      void change(row, name, { percentage: n }, name + ' → ' + n + ' %');
    });
    toggle.addEventListener('click', () => {
      const enable = toggle.dataset.action === 'enable';
      void change(row, name, { enabled: enable }, name + (enable ? ' enabled' : ' disabled: everyone on legacy'));
    });
    return row;
  }

  function updateFlagRow(row: HTMLTableRowElement, f: FlagView): void {
    (row.querySelector('.desc') as HTMLElement).textContent = f.description ?? '';
    const pill = row.querySelector('.pill') as HTMLElement;
    pill.className = 'pill ' + (f.enabled ? 'on' : 'off');
    pill.textContent = f.enabled ? 'enabled' : 'disabled';
    const fill = row.querySelector('.rollout-fill') as HTMLElement;
    fill.style.width = f.percentage + '%';
    fill.classList.toggle('inactive', !f.enabled);
    (row.querySelector('.pct-val') as HTMLElement).textContent = f.percentage + ' %';
    row.dataset.server = String(f.percentage);
    row.dataset.enabled = String(f.enabled);
    const input = row.querySelector('.pct-input') as HTMLInputElement;
    const range = row.querySelector('.pct-range') as HTMLInputElement;
    if (!row.dataset.dirty && document.activeElement !== input && document.activeElement !== range) {
      input.value = String(f.percentage);
      range.value = String(f.percentage);
    }
    const toggle = row.querySelector('.toggle') as HTMLButtonElement;
    toggle.dataset.action = f.enabled ? 'disable' : 'enable';
    toggle.textContent = f.enabled ? 'Disable' : 'Enable';
    toggle.className = 'btn toggle ' + (f.enabled ? 'danger' : 'go');
    toggle.title = f.enabled ? 'Roll back: send every user to legacy now' : 'Enable: users in ' + f.percentage + ' % go to the candidate';
    (row.querySelector('.froutes') as HTMLElement).innerHTML = f.routes.length
      ? f.routes.map((r) => '<span class="chip">' + esc(r) + '</span>').join(' ')
      : '<span class="muted">no route</span>';
    (row.querySelector('.fchanged') as HTMLElement).innerHTML = f.updated_at
      ? '<div>' + esc(fmtTime(f.updated_at)) + '</div><div class="muted small">' + esc(f.updated_by ?? '') + '</div>'
      : '<span class="muted">from file</span>';
  }

  async function change(row: HTMLElement, name: string, patch: Record<string, unknown>, what: string): Promise<void> {
    row.classList.add('busy');
    try {
      const res = await api('api/v1/flags/' + encodeURIComponent(name), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-cutover-actor': 'dashboard' },
        body: JSON.stringify(patch),
      });
      const body = (await res.json().catch(() => ({}))) as { message?: string };
      if (!res.ok) return toast('Not changed: ' + (body.message ?? 'HTTP ' + res.status), true);
      delete row.dataset.dirty;
      toast(what);
      await refresh();
    } catch (err) {
      toast('Not changed: ' + (err as Error).message, true);
    } finally {
      row.classList.remove('busy');
    }
  }

  // ---------------------------------------------------------------- rollout plans
  function nextStep(p: PlanView): string {
    if (p.state !== 'running' || p.nextStepAt === null) return '';
    const left = Date.parse(p.nextStepAt) - Date.parse(p.time);
    const what = p.step === p.steps ? 'completes' : 'next step';
    if (left > 0) return what + ' in <b>' + esc(fmtDur(left)) + '</b>' + (p.verdict === 'green' ? '' : ' <span class="small">(if the gates are green then)</span>');
    if (p.verdict === 'waiting') return 'hold over: <b>waiting for traffic</b> (' + p.window.candidateRequests + ' of ' + p.window.minRequests + ' requests in ' + p.window.seconds + ' s)';
    return 'hold over: <b>' + what + ' now</b>';
  }
  function renderPlans(plans: PlanView[]): void {
    byId('plans-title').hidden = plans.length === 0;
    byId('plans').innerHTML = plans
      .map((p) => {
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
      })
      .join('');
  }

  function renderRoutes(routes: RouteStatus[]): void {
    byId('routes').innerHTML = routes.map(routeCard).join('');
  }

  function routeCard(r: RouteStatus): string {
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
    const rows = [targetRow(r, 'legacy', r.legacy)];
    if (r.candidate) rows.push(targetRow(r, 'candidate', r.candidate));
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

  function targetRow(r: RouteStatus, target: string, t: TargetView): string {
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
      '<td class="trend ' + target + '">' + sparkline(hist, HISTORY) + '</td></tr>'
    );
  }

  function remember(s: Status): void {
    for (const r of s.routes) {
      for (const [target, t] of [['legacy', r.legacy], ['candidate', r.candidate]] as const) {
        if (!t) continue;
        const key = r.name + '|' + target;
        const h = p95History.get(key) ?? [];
        h.push(t['1m'].p95_ms ?? 0);
        if (h.length > HISTORY) h.shift();
        p95History.set(key, h);
      }
    }
  }

  // ---------------------------------------------------------------- status line, toasts, loop
  function setConnection(ok: boolean, message?: string): void {
    const live = byId('live');
    live.className = 'live ' + (ok ? 'ok' : 'down');
    live.textContent = ok ? 'live' : 'offline';
    const banner = byId('banner');
    banner.hidden = ok;
    if (!ok) banner.textContent = 'Cannot reach the admin API (' + (message ?? 'error') + '). Retrying every ' + refreshMs / 1000 + ' s; the numbers below are stale.';
  }

  let toastTimer: number | undefined;
  function toast(text: string, error = false): void {
    const t = byId('toast');
    t.textContent = text;
    t.className = 'toast show' + (error ? ' error' : '');
    window.clearTimeout(toastTimer);
    toastTimer = window.setTimeout(() => (t.className = 'toast'), error ? 8000 : 3500);
  }

  async function refresh(): Promise<void> {
    try {
      const res = await api('api/v1/status');
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const s = (await res.json()) as Status;
      const plans = await api('api/v1/rollouts').then((r) => (r.ok ? (r.json() as Promise<{ rollouts: PlanView[] }>) : { rollouts: [] }));
      remember(s);
      render(s);
      renderPlans(plans.rollouts);
      setConnection(true);
      document.body.dataset.loaded = '1';
    } catch (err) {
      setConnection(false, (err as Error).message);
    }
  }

  let generation = 0;
  async function loop(g: number): Promise<void> {
    await refresh();
    if (g === generation) timer = window.setTimeout(() => void loop(g), refreshMs);
  }

  byId('auth-badge').addEventListener('click', () => {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    updateAuthBadge();
    window.clearTimeout(timer);
    void loop(++generation);
  });
  byId('refresh-every').textContent = 'every ' + refreshMs / 1000 + ' s';
  updateAuthBadge();
  void loop(generation);
}
