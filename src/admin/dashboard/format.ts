// Types only: erased at compile time, so the shipped function text still references nothing.
import type { Health } from './status-types.js';

/**
 * The dashboard's pure formatters (numbers, durations, health dots, trend lines as HTML text).
 * Shipped as text like the client (`dashboardFormat.toString()`), so it may use only browser
 * globals; the page calls it once and hands the result to dashboardClient.
 */
export function dashboardFormat() {
  function esc(v: unknown): string {
    return String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
  }
  function fmtRate(v: number): string {
    if (v === 0) return '0';
    if (v < 10) return v.toFixed(2);
    if (v < 100) return v.toFixed(1);
    return Math.round(v).toLocaleString('en-US');
  }
  function fmtMs(v: number | null): string {
    if (v === null) return '—';
    if (v < 1) return v.toFixed(2) + ' ms';
    if (v < 100) return v.toFixed(1) + ' ms';
    if (v < 1000) return Math.round(v) + ' ms';
    return (v / 1000).toFixed(2) + ' s';
  }
  function fmtErr(v: number | null): string {
    if (v === null) return '—';
    if (v === 0) return '0 %';
    const p = v * 100;
    return (p < 0.1 ? p.toFixed(3) : p < 10 ? p.toFixed(2) : p.toFixed(1)) + ' %';
  }
  function errClass(v: number | null): string {
    if (v === null || v === 0) return '';
    if (v >= 0.05) return 'bad';
    if (v >= 0.01) return 'warn';
    return 'meh';
  }
  function fmtTime(iso: string | undefined): string {
    if (!iso) return '';
    const d = new Date(iso);
    return isNaN(d.getTime()) ? '' : d.toLocaleTimeString('en-GB', { hour12: false });
  }
  function healthDot(h: Health | null): string {
    if (h === null) return '<span class="dot unknown" title="no health data yet"></span>';
    if (h.healthy) return '<span class="dot ok" title="healthy"></span>';
    return '<span class="dot down" title="' + esc('unhealthy' + (h.lastReason ? ': ' + h.lastReason : '')) + '"></span>';
  }
  /** null: no traffic in that sample, a gap in the line (drawn as 0 it would read "0 ms"). */
  function sparkline(values: Array<number | null>, slots: number): string {
    const step = 120 / (slots - 1);
    const x0 = 120 - (values.length - 1) * step;
    const max = Math.max(...values.filter((v): v is number => v !== null), 1e-9);
    const runs: string[][] = [[]];
    values.forEach((v, i) => {
      if (v === null) runs.push([]);
      else (runs[runs.length - 1] as string[]).push((x0 + i * step).toFixed(1) + ',' + (26 - (v / max) * 24).toFixed(1));
    });
    const lines = runs.filter((r) => r.length >= 2).map((r) => '<polyline points="' + r.join(' ') + '"/>');
    if (lines.length === 0) return '<svg class="spark" viewBox="0 0 120 28"></svg>';
    return '<svg class="spark" viewBox="0 0 120 28" preserveAspectRatio="none">' + lines.join('') + '</svg>';
  }
  /** When something changed: the time and its age today, the date and time on another day. */
  function fmtWhen(iso: string | undefined, now: number = Date.now()): string {
    if (!iso) return '';
    const d = new Date(iso);
    if (isNaN(d.getTime())) return '';
    if (d.toDateString() !== new Date(now).toDateString()) {
      const p = (n: number) => String(n).padStart(2, '0');
      return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + ' ' + p(d.getHours()) + ':' + p(d.getMinutes());
    }
    return fmtTime(iso) + ' · ' + fmtAgo(now - d.getTime());
  }
  /** 2d 3h, 4h 5m, 6m 7s or 8s. */
  function fmtDur(ms: number): string {
    const s = Math.max(0, Math.round(ms / 1000));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    return d ? d + 'd ' + h + 'h' : h ? h + 'h ' + m + 'm' : m ? m + 'm ' + (s % 60) + 's' : s + 's';
  }
  /** An age: "12 s ago", "4 min ago", "2h 5m ago". */
  function fmtAgo(ms: number): string {
    const s = Math.max(0, Math.round(ms / 1000));
    return (s < 60 ? s + ' s' : s < 3600 ? Math.floor(s / 60) + ' min' : fmtDur(ms)) + ' ago';
  }
  function fmtGate(name: string, v: number | null): string {
    if (v === null) return '—';
    if (/Ms$/.test(name)) return fmtMs(v);
    if (/VsLegacy$/.test(name)) return (v < 10 ? v.toFixed(2) : v.toFixed(0)) + '×';
    return fmtErr(v);
  }

  return { esc, fmtRate, fmtMs, fmtErr, errClass, fmtTime, fmtAgo, fmtWhen, healthDot, sparkline, fmtDur, fmtGate };
}

export type DashboardFormat = ReturnType<typeof dashboardFormat>;
