/* eslint-disable */
// Types only: erased at compile time, so the shipped function text still references nothing.
import type { DashboardCards } from './cards.js';
import type { DashboardFormat } from './format.js';
import type { FlagView, PlanView, RouteStatus, Status } from './status-types.js';

/**
 * The dashboard's browser code. It is type-checked here and shipped as text
 * (`dashboardClient.toString()`), so it must use nothing from module scope: only browser globals.
 */
export function dashboardClient(
  refreshMs: number,
  format: DashboardFormat,
  cardsFor: (format: DashboardFormat, history: number) => DashboardCards,
): void {
  const { esc, fmtTime, healthDot, fmtDur } = format;
  const TOKEN_KEY = 'cutover.adminToken';
  const HISTORY = 45; // samples in a trend line (90 s at the default 2 s refresh)
  const cards = cardsFor(format, HISTORY);

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
