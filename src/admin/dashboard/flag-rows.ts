/* eslint-disable */
// Types only: erased at compile time, so the shipped function text still references nothing.
import type { DashboardFormat } from './format.js';
import type { FlagView } from './status-types.js';

/** What the flags table needs from the rest of the page (client.ts). */
export interface FlagRowsDeps {
  api(path: string, init?: RequestInit): Promise<Response>;
  toast(text: string, error?: boolean): void;
  refresh(): Promise<void>;
  byId(id: string): HTMLElement;
}

interface Answer {
  error?: string;
  message?: string;
  current?: { enabled: boolean; percentage: number } | null;
}

/**
 * The flags table: one row per flag, its controls, and the changes they send. Shipped as text like
 * the client (`dashboardFlagRows.toString()`), so it may use only browser globals and what it is handed.
 */
export function dashboardFlagRows(format: DashboardFormat, deps: FlagRowsDeps) {
  const { esc, fmtWhen } = format;
  const { api, toast, refresh, byId } = deps;
  // The toggle is relabelled by every refresh; a click this soon after is aimed at the old label.
  const SETTLE_MS = 1000;

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
      if (Date.now() - Number(toggle.dataset.relabelledAt ?? 0) < SETTLE_MS) {
        return toast('Ignored: the button just changed to "' + toggle.textContent + '" (' + name + ' was changed elsewhere). Look again, then click.', true);
      }
      // The state this label was drawn for: the server refuses (409) if the flag is no longer in it.
      if (row.dataset.enabled === 'true') {
        return void change(row, name, { enabled: false, expect: { enabled: true } }, name + ' disabled: everyone on legacy');
      }
      const pct = Number(row.dataset.server);
      void confirmEnable(name, pct).then((yes) => {
        if (yes) void change(row, name, { enabled: true, expect: { enabled: false, percentage: pct } }, name + ' enabled: ' + pct + ' % to the candidate');
      });
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
    const action = f.enabled ? 'disable' : 'enable';
    if (toggle.dataset.action !== undefined && toggle.dataset.action !== action) toggle.dataset.relabelledAt = String(Date.now());
    toggle.dataset.action = action;
    toggle.textContent = f.enabled ? 'Disable' : 'Enable';
    toggle.className = 'btn toggle ' + (f.enabled ? 'danger' : 'go');
    toggle.title = f.enabled ? 'Roll back: send every user to legacy now' : 'Enable: users in ' + f.percentage + ' % go to the candidate';
    (row.querySelector('.froutes') as HTMLElement).innerHTML = f.routes.length
      ? f.routes.map((r) => '<span class="chip">' + esc(r) + '</span>').join(' ')
      : '<span class="muted">no route</span>';
    (row.querySelector('.fchanged') as HTMLElement).innerHTML = f.updated_at
      ? '<div title="' + esc(f.updated_at) + '">' + esc(fmtWhen(f.updated_at)) + '</div><div class="muted small">' + esc(f.updated_by ?? '') + '</div>'
      : '<span class="muted">from file</span>';
    syncControls(row);
  }

  /**
   * While a change to the flag is in flight (up to 15 s in fleet mode) its other controls wait, but
   * a rollback never does: Disable stays clickable and is sent at once (the server runs it after
   * the change ahead of it). The button may be relabelled meanwhile, so this runs on every update.
   */
  function syncControls(row: HTMLElement): void {
    const busy = Number(row.dataset.inflight ?? 0) > 0;
    row.classList.toggle('busy', busy);
    for (const el of Array.from(row.querySelectorAll<HTMLInputElement | HTMLButtonElement>('.pct-input, .pct-range, .apply'))) el.disabled = busy;
    const toggle = row.querySelector('.toggle') as HTMLButtonElement;
    toggle.disabled = busy && toggle.dataset.action !== 'disable';
  }

  /** A re-enable sends users back to the candidate: the page asks first (Cancel has the focus). */
  function confirmEnable(name: string, pct: number): Promise<boolean> {
    const dialog = byId('confirm');
    const form = byId('confirm-form') as HTMLFormElement;
    const no = byId('confirm-no') as HTMLButtonElement;
    byId('confirm-message').textContent = 'Enable ' + name + '? Users in ' + pct + ' % go to the candidate.';
    dialog.hidden = false;
    no.focus();
    return new Promise<boolean>((resolve) => {
      const done = (yes: boolean) => {
        dialog.hidden = true;
        form.onsubmit = no.onclick = form.onkeydown = null;
        resolve(yes);
      };
      form.onsubmit = (ev) => {
        ev.preventDefault();
        done(true);
      };
      no.onclick = () => done(false);
      form.onkeydown = (ev) => {
        if (ev.key === 'Escape') done(false);
      };
    });
  }

  async function change(row: HTMLElement, name: string, patch: Record<string, unknown>, what: string): Promise<void> {
    // Numbered per row: once a later change (a Disable sent during this one) has answered, this
    // one's answer is stale news and must not toast over it; the refresh shows where things stand.
    const mine = Number(row.dataset.sent ?? 0) + 1;
    row.dataset.sent = String(mine);
    row.dataset.inflight = String(Number(row.dataset.inflight ?? 0) + 1);
    syncControls(row);
    const superseded = () => {
      const stale = Number(row.dataset.answered ?? 0) > mine;
      if (!stale) row.dataset.answered = String(mine);
      return stale;
    };
    try {
      const res = await api('api/v1/flags/' + encodeURIComponent(name), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-cutover-actor': 'dashboard' },
        body: JSON.stringify(patch),
      });
      const body = (await res.json().catch(() => ({}))) as Answer;
      if (superseded()) return void (await refresh());
      if (res.status === 409 && body.error === 'precondition_failed') {
        const now = body.current;
        // A rollback that finds the flag off already got what it wanted.
        if (patch.enabled === false && now && !now.enabled) toast(name + ' was already off: everyone on legacy');
        else toast('Not changed: ' + name + ' changed meanwhile (now ' + (now ? (now.enabled ? 'enabled, ' + now.percentage + ' %' : 'disabled, ' + now.percentage + ' %') : 'gone') + '). Look again.', true);
        await refresh();
        return;
      }
      if (!res.ok) return toast('Not changed: ' + (body.message ?? 'HTTP ' + res.status), true);
      delete row.dataset.dirty;
      toast(what);
      await refresh();
    } catch (err) {
      if (superseded()) return;
      const e = err as Error;
      // Timed out: the server may still apply it (e.g. once a stopped process resumes).
      if (e.name === 'TimeoutError') toast(name + ': ' + e.message + '; it may or may not have been applied. The table shows the state once the admin API answers again.', true);
      else toast('Not changed: ' + e.message, true);
    } finally {
      row.dataset.inflight = String(Number(row.dataset.inflight) - 1);
      syncControls(row);
    }
  }

  return { renderFlags };
}

export type DashboardFlagRows = ReturnType<typeof dashboardFlagRows>;
