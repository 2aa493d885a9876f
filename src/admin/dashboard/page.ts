import { createHash } from 'node:crypto';
import { dashboardCards } from './cards.js';
import { dashboardClient } from './client.js';
import { dashboardFlagRows } from './flag-rows.js';
import { dashboardFormat } from './format.js';

/** How often the page polls /api/v1/status. */
export const REFRESH_MS = 2000;

const STYLE = `
:root {
  --bg: #0b1020; --panel: #121a2f; --panel2: #17203a; --border: #25304d; --text: #e5eaf5; --muted: #8c97b2;
  --green: #22c55e; --red: #f05252; --amber: #f5a524; --legacy: #a5b4cc; --cand: #38bdf8; --accent: #6d8cff;
  color-scheme: dark;
}
* { box-sizing: border-box; }
html, body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12.5px; }
.muted { color: var(--muted); } .small { font-size: 12px; }
header.top { position: sticky; top: 0; z-index: 5; display: flex; align-items: center; gap: 16px; padding: 12px 24px;
  background: rgba(11,16,32,.92); backdrop-filter: blur(6px); border-bottom: 1px solid var(--border); }
.brand { font-weight: 700; font-size: 17px; letter-spacing: .2px; display: flex; align-items: center; gap: 10px; }
.brand .logo { width: 22px; height: 22px; border-radius: 6px; background: linear-gradient(135deg, var(--legacy) 0 50%, var(--cand) 50% 100%); }
.brand .sub { font-weight: 400; color: var(--muted); font-size: 13px; }
.spacer { flex: 1; }
.meta { color: var(--muted); font-size: 12.5px; display: flex; gap: 14px; align-items: center; }
.live { display: inline-flex; align-items: center; gap: 6px; font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .6px; }
.live::before { content: ""; width: 8px; height: 8px; border-radius: 50%; background: var(--muted); }
.live.ok { color: var(--green); } .live.ok::before { background: var(--green); box-shadow: 0 0 0 0 rgba(34,197,94,.6); animation: pulse 2s infinite; }
.live.down { color: var(--red); } .live.down::before { background: var(--red); }
@keyframes pulse { 0% { box-shadow: 0 0 0 0 rgba(34,197,94,.55); } 70% { box-shadow: 0 0 0 7px rgba(34,197,94,0); } 100% { box-shadow: 0 0 0 0 rgba(34,197,94,0); } }
main { padding: 20px 24px 60px; max-width: 1480px; margin: 0 auto; }
h2 { font-size: 12px; text-transform: uppercase; letter-spacing: 1px; color: var(--muted); margin: 26px 0 10px; font-weight: 600; }
h3 { margin: 0; font-size: 16px; }
.banner { background: rgba(240,82,82,.12); border: 1px solid rgba(240,82,82,.5); color: #ffc9c9; padding: 10px 14px; border-radius: 8px; margin-top: 14px; }
.card { background: var(--panel); border: 1px solid var(--border); border-radius: 10px; }
.upstreams { display: flex; flex-wrap: wrap; gap: 10px; }
.upstream { display: flex; align-items: center; gap: 8px; padding: 8px 12px; border-radius: 8px; background: var(--panel); border: 1px solid var(--border); }
.upstream .uname { font-weight: 600; } .upstream .ustate { color: var(--muted); font-size: 12px; }
.upstream.unhealthy { border-color: rgba(240,82,82,.6); background: rgba(240,82,82,.08); }
.upstream .why { color: #ffb4b4; font-size: 12px; }
.dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 7px; vertical-align: 1px; flex: none; }
.dot.ok { background: var(--green); box-shadow: 0 0 6px rgba(34,197,94,.6); } .dot.down { background: var(--red); box-shadow: 0 0 6px rgba(240,82,82,.7); }
.dot.unknown { background: transparent; border: 1.5px solid var(--muted); }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 11.5px; text-transform: uppercase; letter-spacing: .5px; padding: 8px 10px; }
td { padding: 9px 10px; border-top: 1px solid var(--border); vertical-align: middle; }
.flags th { border-bottom: 1px solid var(--border); }
.flags td { border-top: none; border-bottom: 1px solid var(--border); }
.flags tr:last-child td { border-bottom: none; }
.flag-name { font-weight: 600; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
.desc { color: var(--muted); font-size: 12px; max-width: 340px; }
.pill { display: inline-block; padding: 2px 9px; border-radius: 999px; font-size: 11.5px; font-weight: 600; letter-spacing: .3px; white-space: nowrap; }
.pill.on { background: rgba(56,189,248,.15); color: var(--cand); border: 1px solid rgba(56,189,248,.35); }
.pill.off { background: rgba(165,180,204,.1); color: var(--legacy); border: 1px solid rgba(165,180,204,.3); }
.pill.missing { background: rgba(245,165,36,.12); color: var(--amber); border: 1px solid rgba(245,165,36,.4); }
.fpct { white-space: nowrap; }
.rollout { display: inline-block; width: 130px; height: 8px; border-radius: 4px; background: rgba(165,180,204,.22); overflow: hidden; vertical-align: middle; }
.rollout-fill { height: 100%; background: var(--cand); transition: width .4s; } .rollout-fill.inactive { background: #53607d; }
.pct-val { display: inline-block; min-width: 48px; margin-left: 10px; font-weight: 700; font-variant-numeric: tabular-nums; font-size: 15px; }
.pct-form { display: flex; align-items: center; gap: 8px; margin: 0; }
.pct-range { width: 140px; accent-color: var(--cand); }
.pct-input { width: 64px; padding: 6px 8px; border-radius: 6px; border: 1px solid var(--border); background: var(--bg); color: var(--text); font: inherit; font-variant-numeric: tabular-nums; }
.pct-input:focus { outline: 2px solid var(--accent); outline-offset: 0; }
.btn { padding: 6px 12px; border-radius: 6px; border: 1px solid var(--border); background: var(--panel2); color: var(--text); font: inherit; font-weight: 600; font-size: 13px; cursor: pointer; white-space: nowrap; }
.btn:hover { filter: brightness(1.2); }
.btn.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
.btn.danger { background: rgba(240,82,82,.14); border-color: rgba(240,82,82,.6); color: #ffb4b4; }
.btn.go { background: rgba(34,197,94,.12); border-color: rgba(34,197,94,.5); color: #9ff0bd; }
tr.busy td:not(.fctl) { opacity: .55; }
.btn:disabled, .pct-input:disabled, .pct-range:disabled { opacity: .45; cursor: progress; filter: none; }
tr[data-dirty] .pct-input { border-color: var(--amber); }
.chip { display: inline-block; padding: 1px 8px; border-radius: 5px; background: var(--panel2); border: 1px solid var(--border); font-size: 12px; margin: 1px 0; }
.routes { display: grid; gap: 16px; }
.route > header { display: flex; flex-wrap: wrap; align-items: center; gap: 14px; padding: 14px 16px 6px; }
.route > header code { color: var(--muted); }
.flagref { margin-left: auto; color: var(--muted); } .flagref b { color: var(--text); font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-weight: 600; }
.split { display: flex; align-items: center; gap: 12px; padding: 4px 16px 8px; }
.split-bar { width: 220px; height: 6px; border-radius: 3px; background: var(--legacy); opacity: .85; overflow: hidden; }
.split-cand { height: 100%; background: var(--cand); transition: width .4s; }
.split-label { color: var(--muted); font-size: 12px; font-variant-numeric: tabular-nums; }
.stats { table-layout: fixed; } .stats col.c-target { width: 120px; } .stats col.c-up { width: 200px; } .stats col.c-trend { width: 150px; }
.stats td.up { overflow: hidden; text-overflow: ellipsis; }
.stats th { padding-top: 4px; } .stats th.grp { text-align: center; border-bottom: 1px solid var(--border); }
.stats th:nth-child(n+3), .stats td.num { text-align: right; }
.stats .g2 { border-left: 1px solid var(--border); }
.stats td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.stats td.strong { font-weight: 700; }
.stats tr.idle td { color: var(--muted); }
.stats td.up { white-space: nowrap; }
.tag { display: inline-block; padding: 1px 8px; border-radius: 5px; font-size: 12px; font-weight: 600; }
.tag.legacy { color: #0b1020; background: var(--legacy); } .tag.candidate { color: #04263a; background: var(--cand); }
.err.meh { color: #f3e2a9; } .err.warn { color: var(--amber); font-weight: 700; } .err.bad { color: var(--red); font-weight: 700; }
.trend { width: 132px; }
.spark { width: 120px; height: 28px; display: block; margin-left: auto; }
.spark polyline { fill: none; stroke-width: 1.6; vector-effect: non-scaling-stroke; }
.trend.legacy polyline { stroke: var(--legacy); } .trend.candidate polyline { stroke: var(--cand); }
footer.fallbacks { padding: 10px 16px 12px; border-top: 1px solid var(--border); color: var(--muted); font-size: 13px; display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
footer.fallbacks b { color: var(--text); font-variant-numeric: tabular-nums; }
footer.fallbacks.active b.fb-total { color: var(--amber); }
.auth-badge { cursor: pointer; background: none; border: 1px solid var(--border); color: var(--muted); border-radius: 6px; padding: 3px 8px; font: inherit; font-size: 12px; }
.modal { position: fixed; inset: 0; background: rgba(3,6,15,.72); display: flex; align-items: center; justify-content: center; z-index: 20; }
.modal[hidden] { display: none; }
.modal .card { width: 420px; padding: 22px; }
.modal h3 { margin-bottom: 6px; } .modal p { color: var(--muted); margin: 0 0 14px; }
.modal input { width: 100%; padding: 9px 10px; border-radius: 6px; border: 1px solid var(--border); background: var(--bg); color: var(--text); font: inherit; margin-bottom: 12px; }
.toast { position: fixed; right: 20px; bottom: 20px; max-width: 440px; padding: 11px 16px; border-radius: 8px; background: #1d2a4a; border: 1px solid var(--accent); color: var(--text);
  opacity: 0; transform: translateY(8px); transition: opacity .2s, transform .2s; pointer-events: none; z-index: 30; }
.toast.show { opacity: 1; transform: none; } .toast.error { border-color: var(--red); background: #3a1820; }
.empty { padding: 16px; color: var(--muted); }
.plans { display: grid; gap: 12px; }
.plan > header { display: flex; flex-wrap: wrap; align-items: center; gap: 12px; padding: 12px 16px 4px; }
.plan .steps { display: flex; gap: 4px; } .plan .stp { padding: 1px 8px; border-radius: 5px; font-size: 12px; border: 1px solid var(--border); color: var(--muted); font-variant-numeric: tabular-nums; }
.plan .stp.done { color: var(--cand); border-color: rgba(56,189,248,.35); } .plan .stp.cur { color: #04263a; background: var(--cand); border-color: var(--cand); font-weight: 700; }
.plan .next { margin-left: auto; color: var(--muted); font-variant-numeric: tabular-nums; } .plan .next b { color: var(--text); }
.plan .preason { padding: 2px 16px 6px; font-size: 13px; color: #ffc9c9; } .plan .preason[hidden] { display: none; }
.plan table td, .plan table th { padding: 6px 16px; } .plan td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pill.running { background: rgba(56,189,248,.15); color: var(--cand); border: 1px solid rgba(56,189,248,.35); }
.pill.completed, .gs.ok { color: var(--green); } .pill.completed { border: 1px solid rgba(34,197,94,.5); }
.pill.paused, .pill.aborted, .gs.waiting { color: var(--amber); } .pill.paused, .pill.aborted { border: 1px solid rgba(245,165,36,.4); }
.pill.rolled_back, .gs.failing { color: var(--red); } .pill.rolled_back { border: 1px solid rgba(240,82,82,.5); }
.gs { font-weight: 600; } .gs.no-data { color: var(--muted); }
`;

const BODY = `
<header class="top">
  <div class="brand"><span class="logo"></span>cutover <span class="sub">rollout dashboard</span></div>
  <span id="live" class="live">connecting</span>
  <div class="spacer"></div>
  <div class="meta"><span id="updated"></span><span id="refresh-every"></span><span id="uptime"></span>
  <button id="auth-badge" class="auth-badge" type="button" title="Forget the admin token" hidden>forget token</button></div>
</header>
<main>
  <div id="banner" class="banner" hidden></div>
  <div id="source-banner" class="banner" hidden></div>
  <h2>Upstreams</h2>
  <div id="upstreams" class="upstreams"></div>
  <h2>Flags</h2>
  <div class="card">
    <table class="flags">
      <thead><tr><th>Flag</th><th>State</th><th>Rollout</th><th>Change</th><th>Routes</th><th>Last change</th></tr></thead>
      <tbody id="flags-body"></tbody>
    </table>
    <div id="flags-empty" class="empty" hidden>No flags yet. Create one with POST /api/v1/flags/:name.</div>
  </div>
  <h2 id="plans-title" hidden>Rollout plans</h2>
  <div id="plans" class="plans"></div>
  <h2>Routes — live, per target (upstream attempts; a fallback counts on both sides)</h2>
  <div id="routes" class="routes"></div>
</main>
<div id="auth" class="modal" hidden>
  <form id="auth-form" class="card">
    <h3>Admin token</h3>
    <p id="auth-message"></p>
    <input id="auth-token" type="password" autocomplete="off" placeholder="CUTOVER_ADMIN_TOKEN" aria-label="admin token">
    <button class="btn primary" type="submit">Unlock</button>
    <span class="muted small">&nbsp;kept in this tab only (sessionStorage)</span>
  </form>
</div>
<div id="confirm" class="modal" hidden>
  <form id="confirm-form" class="card">
    <h3>Re-enable?</h3>
    <p id="confirm-message"></p>
    <button id="confirm-yes" class="btn go" type="submit">Enable</button>
    <button id="confirm-no" class="btn" type="button">Cancel</button>
  </form>
</div>
<div id="toast" class="toast" role="status" aria-live="polite"></div>
`;

const SCRIPT = `(${dashboardClient.toString()})(${REFRESH_MS}, (${dashboardFormat.toString()})(), ${dashboardCards.toString()}, ${dashboardFlagRows.toString()});`;

/** The whole page: inline CSS and JS, nothing fetched from anywhere but /api/v1. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>cutover · rollout dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style></head>
<body>${BODY}
<script>${SCRIPT}</script>
</body></html>
`;

const scriptHash = createHash('sha256').update(SCRIPT).digest('base64');

/** Headers for the page: only our own inline script runs, nothing may frame it. */
export const DASHBOARD_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': `default-src 'none'; script-src 'sha256-${scriptHash}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
});
