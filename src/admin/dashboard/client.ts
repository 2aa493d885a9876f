/* eslint-disable */
// Types only: erased at compile time, so the shipped function text still references nothing.
import type { DashboardCards } from './cards.js';
import type { DashboardFlagRows, FlagRowsDeps } from './flag-rows.js';
import type { DashboardFormat } from './format.js';
import type { FlagSource, PlanView, RouteStatus, Status } from './status-types.js';

/**
 * The dashboard's browser code. It is type-checked here and shipped as text
 * (`dashboardClient.toString()`), so it must use nothing from module scope: only browser globals.
 */
export function dashboardClient(
  refreshMs: number,
  format: DashboardFormat,
  cardsFor: (format: DashboardFormat, history: number) => DashboardCards,
  flagRowsFor: (format: DashboardFormat, deps: FlagRowsDeps) => DashboardFlagRows,
): void {
  const { esc, fmtTime, fmtAgo, healthDot, fmtDur } = format;
  const TOKEN_KEY = 'cutover.adminToken';
  const HISTORY = 45; // samples in a trend line (90 s at the default 2 s refresh)
  const cards = cardsFor(format, HISTORY);

  const byId = (id: string) => document.getElementById(id) as HTMLElement;
  let token: string | null = sessionStorage.getItem(TOKEN_KEY);
  let tokenPrompt: Promise<void> | null = null;
  const p95History = new Map<string, Array<number | null>>();
  let timer: number | undefined;
  // Function declarations below are hoisted: the table can be handed them before they appear.
  const { renderFlags } = flagRowsFor(format, { api, toast, refresh, byId });

  // ---------------------------------------------------------------- admin API, with the token
  // An admin API that accepts connections but never answers (process stopped, event loop stuck)
  // would hang a call forever: no next poll, no banner. Reads give up after two refreshes; a change
  // gets longer (fleet mode waits on Unleash) and, timed out, may or may not have been applied.
  const READ_TIMEOUT_MS = 2 * refreshMs;
  const WRITE_TIMEOUT_MS = 15_000;
  async function api(path: string, init: RequestInit = {}): Promise<Response> {
    const ms = (init.method ?? 'GET') === 'GET' ? READ_TIMEOUT_MS : WRITE_TIMEOUT_MS;
    for (;;) {
      const headers = new Headers(init.headers);
      if (token) headers.set('authorization', 'Bearer ' + token);
      let res: Response;
      try {
        // The signal also covers reading the body (res.json() after this returns).
        res = await fetch(path, { ...init, headers, cache: 'no-store', signal: AbortSignal.timeout(ms) });
      } catch (err) {
        if ((err as Error).name !== 'TimeoutError') throw err;
        const e = new Error('no answer in ' + ms / 1000 + ' s');
        e.name = 'TimeoutError';
        throw e;
      }
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
    byId('updated').title = 'server time of this data: ' + fmtTime(s.time);
    byId('uptime').textContent = 'up ' + fmtDur(s.uptime_s * 1000);
    renderUpstreams(s);
    renderFlags(s.flags);
    renderSource(s.flag_source);
    renderRoutes(s.routes);
  }

  /** Fleet mode: routing follows Unleash, so an Unleash outage must be as visible as ours. */
  function renderSource(src: FlagSource | undefined): void {
    const b = byId('source-banner');
    b.hidden = src === undefined || src.up;
    const kind = src ? src.kind.charAt(0).toUpperCase() + src.kind.slice(1) : '';
    if (src !== undefined && !src.up) {
      const what =
        src.serving_from === 'source'
          ? 'routing keeps the flags as last fetched' + (src.last_success_at ? ' at ' + fmtTime(src.last_success_at) + (src.seconds_since_success !== null ? ' (' + fmtAgo(src.seconds_since_success * 1000) + ')' : '') : '')
          : src.serving_from === 'bootstrap'
            ? 'routing runs on the bootstrap file (never reached since this start)'
            : 'no flags at all: every route goes to legacy';
      b.textContent = kind + ' is unreachable (' + (src.last_error ?? 'no answer') + '): ' + what + '. Flag changes made in ' + kind + ' are not seen until it is back.';
    }
    byId('flags-empty').textContent = src ? 'No flags from ' + kind + '.' : 'No flags yet. Create one with POST /api/v1/flags/:name.';
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

  // ---------------------------------------------------------------- rollout plans, routes
  function renderPlans(plans: PlanView[]): void {
    byId('plans-title').hidden = plans.length === 0;
    byId('plans').innerHTML = plans.map(cards.planCard).join('');
  }

  function renderRoutes(routes: RouteStatus[]): void {
    byId('routes').innerHTML = routes.map((r) => cards.routeCard(r, p95History)).join('');
  }

  function remember(s: Status): void {
    for (const r of s.routes) {
      for (const [target, t] of [['legacy', r.legacy], ['candidate', r.candidate]] as const) {
        if (!t) continue;
        const key = r.name + '|' + target;
        const h = p95History.get(key) ?? [];
        h.push(t['1m'].p95_ms);
        if (h.length > HISTORY) h.shift();
        p95History.set(key, h);
      }
    }
  }

  // ---------------------------------------------------------------- status line, toasts, loop
  // The data's age as this browser measures it: the server's clock, or a frozen server, cannot lie about it.
  const openedAt = Date.now();
  let lastOkAt = 0;
  let failure: string | null = null;
  function setConnection(ok: boolean, message?: string): void {
    if (ok) lastOkAt = Date.now();
    failure = ok ? null : (message ?? 'error');
    showFreshness();
  }

  /** Every second: "updated 12 s ago", and stale past two refreshes without an answer. */
  function showFreshness(): void {
    const now = Date.now();
    const age = now - (lastOkAt || openedAt);
    if (lastOkAt) byId('updated').textContent = 'updated ' + fmtAgo(age);
    const stale = age > 2 * refreshMs;
    const live = byId('live');
    live.className = 'live ' + (failure === null && !stale ? 'ok' : 'down');
    live.textContent = failure !== null ? 'offline' : stale ? 'stale' : 'live';
    const banner = byId('banner');
    banner.hidden = failure === null && !stale;
    if (banner.hidden) return;
    const why = failure ?? 'no answer for ' + fmtAgo(age).replace(/ ago$/, '');
    const since = lastOkAt ? 'the numbers below are from ' + fmtTime(new Date(lastOkAt).toISOString()) + ', ' + fmtAgo(age) : 'nothing loaded yet';
    banner.textContent = 'Cannot reach the admin API (' + why + '). Retrying every ' + refreshMs / 1000 + ' s; ' + since + '.';
  }

  let toastTimer: number | undefined;
  function toast(text: string, error = false): void {
    const t = byId('toast');
    t.textContent = text;
    t.className = 'toast show' + (error ? ' error' : '');
    window.clearTimeout(toastTimer);
    toastTimer = window.setTimeout(() => (t.className = 'toast'), error ? 8000 : 3500);
  }

  // Refreshes overlap (the poll, and one after each change); one started earlier can be answered
  // later, with a state from before a change another has already shown: it must not paint over it.
  let refreshesStarted = 0;
  let newestShown = 0;
  async function refresh(): Promise<void> {
    const mine = ++refreshesStarted;
    try {
      const res = await api('api/v1/status');
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const s = (await res.json()) as Status;
      const plans = await api('api/v1/rollouts').then((r) => (r.ok ? (r.json() as Promise<{ rollouts: PlanView[] }>) : { rollouts: [] }));
      if (mine < newestShown) return;
      newestShown = mine;
      remember(s);
      render(s);
      renderPlans(plans.rollouts);
      setConnection(true);
      document.body.dataset.loaded = '1';
    } catch (err) {
      if (mine > newestShown) setConnection(false, (err as Error).message);
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
  window.setInterval(showFreshness, 1000);
  void loop(generation);
}
