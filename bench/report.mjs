// The printed tables and the JSON file. Numbers are printed as measured; targets from issue 8
// are checked against ratios only, because absolute numbers on a shared 2-core box drift.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { memLine } from './measure.mjs';

const num = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
const ratio = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '-');
const signed = (x, d = 2) => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(d)}` : '-');
const pct = (x) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : '-');

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function formatThroughput(t) {
  const names = Object.keys(t.results);
  const rows = names.map((n) => {
    const r = t.results[n];
    const m = r.median;
    return [
      n,
      num(m.rps),
      `${num(r.rpsRange[0])}-${num(r.rpsRange[1])}`,
      num(m.p50, 2),
      num(m.p99, 2),
      r.non2xx,
      r.errors,
      num(m.proxyCpuUsPerReq, 1),
      num(m.upstreamCpuUsPerReq, 1),
      ratio(t.ratios.vsDirect[n]),
      n === 'cutover-50' ? '1.00x' : ratio(t.ratios.cutover50Vs[n]),
      n.startsWith('cutover') ? `${num(m.candidateShare * 100)}%` : '',
      `${num(m.otherCpuPct)}%`,
    ];
  });
  return (
    `Throughput: -c ${t.params.connections}, ${t.params.duration} s per contender per round, median of rounds\n` +
    `  proxy/upstr us/req: CPU time of the proxy / upstream process(es) per completed request; other CPU: % of a core used by processes outside the bench (noise)\n` +
    table(['contender', 'req/s', 'rounds min-max', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'proxy us/req', 'upstr us/req', 'vs direct', 'cutover-50 vs it', 'to candidate', 'other CPU'], rows) +
    throughputWarnings(t)
  );
}

const warned = (w) => (w && Object.keys(w).length ? JSON.stringify(w) : 'none');

function throughputWarnings(t) {
  const lines = Object.entries(t.results)
    .filter(([, r]) => r.warnings && Object.keys(r.warnings).length)
    .map(([n, r]) => `  ${n} logged warnings: ${warned(r.warnings)}`);
  return lines.length ? `\n${lines.join('\n')}` : '';
}

export function formatLatency(l) {
  const rows = Object.entries(l.results).map(([n, r]) => [
    n,
    num(r.paced.latency.p50, 3),
    num(r.paced.latency.p99, 3),
    r.paced.p99Range ? `${num(r.paced.p99Range[0], 2)}-${num(r.paced.p99Range[1], 2)}` : '',
    signed(r.addedP99Ms?.paced, 3),
    pct(r.paced.latency.over1msShare),
    num(r.paced.rps),
    num(r.paced.proxyCpuUsPerReq, 0),
    num(r.paced.proxyRunQueueWaitUsPerReq, 0),
    num(r.paced.proxyWakeupsPerReq, 2),
    r.paced.stealPct === undefined ? '' : `${num(r.paced.stealPct, 1)}%`,
    num(r.autocannon.latency.p50, 3),
    num(r.autocannon.latency.p99, 3),
    signed(r.addedP99Ms?.autocannon, 3),
    r.paced.non2xx + r.paced.errors + r.autocannon.non2xx + r.autocannon.errors,
  ]);
  return (
    `Latency at a fixed ${l.params.rate} req/s (ms; "+p99" = added over direct)\n` +
    `  steady: open-loop pacer, one request every ${(1000 / l.params.rate).toFixed(1)} ms, ${l.params.rounds} rounds of ${l.params.roundSeconds} s (after ${l.params.leadInSeconds ?? 0} s unmeasured), contenders alternating; percentiles over all rounds' requests, "p99 rounds" the lowest and highest round\n` +
    `  autocannon: overallRate for ${l.params.duration} s, which sends each second's quota as a burst over ${l.params.autocannonConnections} connections\n` +
    `  proxy CPU, run-queue wait (runnable, waiting for a core) and wakeups (times put on a core) are per request, under the steady pacer;\n` +
    `  steal: % of a core the hypervisor gave to other guests during that contender's rounds (a busy host; every target's absolute figure moves with it)\n` +
    table(['contender', 'steady p50', 'steady p99', 'p99 rounds', '+p99', '> 1 ms', 'req/s', 'proxy CPU us', 'run-queue wait us', 'wakeups', 'steal', 'autoc p50', 'autoc p99', '+p99', 'non-2xx+err'], rows)
  );
}

export function formatHang(h) {
  const r = h.result;
  return [
    `Hanging candidate (flag 100%, route timeout 300ms, candidate headersTimeout 300ms), -c ${h.params.connections}, ${h.params.duration} s`,
    `  ${num(r.rps)} req/s; latency p50 ${num(r.latency.p50, 1)} ms, p99 ${num(r.latency.p99, 1)} ms, max ${num(r.latency.max, 1)} ms`,
    `  status codes ${JSON.stringify(r.statusCodes)}, client errors ${r.errors}, proxy ${num(r.proxyCpuUsPerReq, 1)} us/req`,
    `  cutover log lines by pino level ${JSON.stringify(h.cutoverLogLines)}; warnings ${warned(h.warnings)}`,
    `  note: ${h.note}`,
  ].join('\n');
}

export function formatConnections(c) {
  const line = (name, r) =>
    `  ${name.padEnd(10)} ${num(r.rps)} req/s, p50 ${num(r.latency.p50, 2)} ms, p99 ${num(r.latency.p99, 2)} ms, max ${num(r.latency.max, 0)} ms, ` +
    `non-2xx ${r.non2xx}, errors ${r.errors}, proxy ${num(r.proxyCpuUsPerReq, 1)} us/req, listen queue overflows ${r.listenOverflows}`;
  const out = [`${c.params.connections} concurrent keep-alive connections, ${c.params.duration} s`, line('direct', c.direct)];
  if (c.undici) out.push(line('undici', c.undici), `             ${memLine(c.undici)}`);
  if (c.cutover) out.push(line('cutover-50', c.cutover), `             ${memLine(c.cutover)}`, `             cutover warnings: ${warned(c.cutover.warnings)}`);
  return out.join('\n');
}

export function formatBody(b) {
  const line = (name, r) =>
    `  ${name.padEnd(10)} ${r.intact}/${r.uploads} arrived intact, statuses ${JSON.stringify(r.statusCodes)}, ${num(r.MBps)} MB/s; ${memLine(r)}`;
  const out = [`${b.params.bodyMB} MB POST bodies streamed, ${b.params.repeats} batches of ${b.params.concurrency} at once (cutover route timeout ${b.params.routeTimeout})`];
  if (b.undici) out.push(line('undici', b.undici));
  if (b.cutover) out.push(line('cutover-50', b.cutover), `             cutover warnings: ${warned(b.cutover.warnings)}`);
  return out.join('\n');
}

/** Issue 8's targets, as ratios within this run. */
export function targets(res) {
  const out = [];
  const t = res.throughput;
  const c50 = t?.results['cutover-50'];
  const check = (name, value, ok, shown) => out.push({ name, value, pass: Number.isFinite(value) ? ok(value) : undefined, shown });
  for (const [name, min, label] of [['http-proxy', 1.25, 'http-proxy'], ['reply-from', 1.25, 'reply-from'], ['undici', 0.85, 'bare undici']]) {
    if (c50 && t.results[name]) check(`cutover-50 req/s >= ${min}x ${label}`, t.ratios.cutover50Vs[name], (v) => v >= min, ratio);
  }
  const lc = res.latency?.results['cutover-50'];
  if (lc?.addedP99Ms) {
    // The same run's floor and host noise beside the figure: a busy host moves every contender's tail.
    const others = ['undici', 'nginx'].filter((n) => res.latency.results[n]?.addedP99Ms).map((n) => `${n} ${signed(res.latency.results[n].addedP99Ms.paced, 3)}`);
    const steal = Number.isFinite(lc.paced.stealPct) ? [`steal ${num(lc.paced.stealPct, 1)}%`] : [];
    const paired = roundsAbove(lc, res.latency.results.undici);
    const context = [...others, ...steal, ...(paired ? [paired] : [])];
    check('added p99 at 1k req/s <= 1 ms (steady pacer)', lc.addedP99Ms.paced, (v) => v <= 1, (v) => `${num(v, 3)} ms${context.length ? ` (${context.join(', ')})` : ''}`);
  }
  if (res.connections?.cutover) check(`RSS < 150 MB at ${res.connections.params.connections.toLocaleString('en-US')} connections${res.connections.params.connections === 1000 ? '' : ' (the target is at 1,000)'}`, res.connections.cutover.rssPeakMB, (v) => v < 150, (v) => `${num(v, 1)} MB`);
  if (c50) check('stretch: proxy CPU < 30 us/req', c50.median.proxyCpuUsPerReq, (v) => v < 30, (v) => `${num(v, 1)} us`);
  return out;
}

/**
 * Paired rounds: in how many the first contender's figure was above the second's (gaps = a - b,
 * one per round), and the median gap. The contenders of one latency round run seconds apart, so
 * a slow stretch of the host moves both sides of a pair.
 */
export function pairedGaps(gaps) {
  const sorted = [...gaps].sort((x, y) => x - y);
  const median = (sorted[(sorted.length - 1) >> 1] + sorted[sorted.length >> 1]) / 2;
  return `higher in ${gaps.filter((g) => g > 0).length} of ${gaps.length} rounds, median gap ${signed(median, 2)} ms`;
}

/** cutover-50's p99 against the bare forwarder's, round by round (on a quiet host, well above half: cutover's own tail). */
function roundsAbove(c, u) {
  const a = c?.pacedRounds;
  const b = u?.pacedRounds;
  if (!a?.length || a.length !== b?.length) return undefined;
  return `p99 vs undici's round by round: ${pairedGaps(a.map((r, i) => r.latency.p99 - b[i].latency.p99))}`;
}

export function formatTargets(list) {
  if (!list.length) return '';
  return `Targets (issue 8)\n${list.map((t) => `  ${t.pass === undefined ? 'n/a ' : t.pass ? 'PASS' : 'MISS'}  ${t.name}: ${t.shown(t.value)}`).join('\n')}`;
}

export function formatAll(res) {
  const parts = [
    `cutover bench ${res.startedAt}  (${res.machine.cpus} x ${res.machine.cpuModel}, node ${res.machine.node}, cutover ${res.cutover.commit}${res.cutover.dirtySrc ? ' + uncommitted src changes' : ''})`,
  ];
  if (res.skipped.length) parts.push(res.skipped.map((s) => `skipped: ${s}`).join('\n'));
  if (res.throughput) parts.push(formatThroughput(res.throughput));
  if (res.latency) parts.push(formatLatency(res.latency));
  if (res.hang) parts.push(formatHang(res.hang));
  if (res.shadow?.results) {
    const a = res.shadow.results['cutover-50'].result;
    const b = res.shadow.results['cutover-50-shadow10'].result;
    parts.push(
      `Shadow at 10% of users (cutover-50, -c ${res.shadow.params.connections}, ${res.shadow.params.duration} s each)\n` +
        `  without shadow  ${Math.round(a.rps)} req/s, p50 ${a.latency.p50.toFixed(2)} ms, p99 ${a.latency.p99.toFixed(2)} ms, proxy ${a.proxyCpuUsPerReq.toFixed(1)} us/req\n` +
        `  with shadow     ${Math.round(b.rps)} req/s, p50 ${b.latency.p50.toFixed(2)} ms, p99 ${b.latency.p99.toFixed(2)} ms, proxy ${b.proxyCpuUsPerReq.toFixed(1)} us/req` +
        ` (${res.shadow.rpsRatio.toFixed(2)}x req/s, ${res.shadow.cpuRatio.toFixed(2)}x CPU per client request); shadow results ${JSON.stringify(res.shadow.results['cutover-50-shadow10'].shadowTotals)}`,
    );
  } else if (res.shadow?.skipped) parts.push(`Shadow: ${res.shadow.skipped}`);
  if (res.connections) parts.push(formatConnections(res.connections));
  if (res.body) parts.push(formatBody(res.body));
  const tg = formatTargets(targets(res));
  if (tg) parts.push(tg);
  parts.push('Only ratios within one run mean anything: load generator, proxies and upstreams share the same cores.');
  return parts.join('\n\n');
}

export function writeJson(dir, res) {
  mkdirSync(dir, { recursive: true });
  // ISO 8601 with ':' swapped for '-' so the name is valid on every file system.
  const file = join(dir, `${res.startedAt.replace(/:/g, '-')}.json`);
  const { targets: _t, ...rest } = res;
  writeFileSync(file, `${JSON.stringify({ ...rest, targets: targets(res).map(({ shown: _s, ...t }) => t) }, null, 2)}\n`);
  return file;
}
