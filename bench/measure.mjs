// One measured run and what is read around it: CPU, scheduler counters and memory of the
// processes involved. Shared by the scenarios.
import { cpuSeconds, memoryMB, schedStats, systemCpu } from './proc.mjs';
import { runAutocannon, runPaced } from './load.mjs';

export function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function upstreamCounts(upstreams) {
  const out = {};
  for (const u of upstreams) {
    const st = await u.child.ask('stats');
    out[u.name] = st.byName?.[u.name]?.requests ?? st.requests;
  }
  return out;
}

/**
 * One measured run against one contender, with the proxy's CPU (and the upstreams' and the load
 * generator's, to see who was the bottleneck) divided by completed requests.
 */
export async function measure(c, upstreams, load) {
  const before = await upstreamCounts(upstreams);
  const cpu0 = cpuSeconds(c.pid);
  const sched0 = schedStats(c.pid);
  const upPids = [...new Set(upstreams.map((u) => u.pid))]; // shared upstream processes count once
  const up0 = upPids.reduce((a, pid) => a + cpuSeconds(pid), 0);
  const gen0 = process.cpuUsage();
  const sys0 = systemCpu();
  const r = load.rate ? await runPaced({ url: c.url, ...load }) : await runAutocannon({ url: c.url, ...load });
  const gen = process.cpuUsage(gen0);
  const sys1 = systemCpu();
  const up1 = upPids.reduce((a, pid) => a + cpuSeconds(pid), 0);
  const cpu1 = cpuSeconds(c.pid);
  const sched1 = schedStats(c.pid);
  const after = await upstreamCounts(upstreams);
  const n = r.requests || NaN;
  const served = Object.fromEntries(Object.keys(after).map((k) => [k, after[k] - before[k]]));
  const total = Object.values(served).reduce((a, b) => a + b, 0);
  const secs = r.duration ?? load.duration;
  const ours = (Number.isFinite(cpu1 - cpu0) ? cpu1 - cpu0 : 0) + (up1 - up0) + (gen.user + gen.system) / 1e6;
  return {
    ...r,
    proxyCpuUsPerReq: ((cpu1 - cpu0) * 1e6) / n,
    proxyCpuPct: ((cpu1 - cpu0) / secs) * 100,
    proxyRunQueueWaitUsPerReq: ((sched1.waitSeconds - sched0.waitSeconds) * 1e6) / n,
    proxyWakeupsPerReq: (sched1.slices - sched0.slices) / n,
    // % of one core used by processes outside the bench during the run, and hypervisor steal.
    otherCpuPct: Math.max(0, ((sys1.busy - sys0.busy - ours) / secs) * 100),
    stealPct: ((sys1.steal - sys0.steal) / secs) * 100,
    upstreamCpuUsPerReq: ((up1 - up0) * 1e6) / n,
    loadgenCpuUsPerReq: (gen.user + gen.system) / n,
    candidateShare: total ? served.candidate / total : NaN,
    servedByUpstream: served,
  };
}

export const fmt = (r) =>
  `${Math.round(r.rps)} req/s, p50 ${r.latency.p50.toFixed(2)} ms, p99 ${r.latency.p99.toFixed(2)} ms` +
  `${Number.isFinite(r.proxyCpuUsPerReq) ? `, proxy ${r.proxyCpuUsPerReq.toFixed(1)} us/req` : ''}` +
  `${Number.isFinite(r.proxyRunQueueWaitUsPerReq) ? ` (waited for a core ${r.proxyRunQueueWaitUsPerReq.toFixed(0)} us)` : ''}` +
  `${r.non2xx || r.errors ? `, NON-2XX ${r.non2xx} ERRORS ${r.errors}` : ''}` +
  `${r.otherCpuPct > 10 || r.stealPct > 10 ? ` [noisy: other processes ${r.otherCpuPct.toFixed(0)}% of a core, steal ${r.stealPct.toFixed(0)}%]` : ''}`;

function sampler(pid, everyMs) {
  let peak = 0;
  const t = setInterval(() => {
    const m = memoryMB(pid);
    if (m.rss > peak) peak = m.rss;
  }, everyMs);
  return () => {
    clearInterval(t);
    return peak;
  };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Runs `work` against a fresh proxy process and reads its memory: idle before, peak, at the end. */
export async function withMemory(c, everyMs, work) {
  await sleep(500); // let startup garbage settle before calling anything "idle"
  const idle = memoryMB(c.pid);
  const stop = sampler(c.pid, everyMs);
  const r = await work();
  const sampledPeak = stop();
  const after = memoryMB(c.pid);
  const peak = Math.max(sampledPeak, after.hwm);
  return { ...r, rssIdleMB: idle.rss, rssPeakMB: peak, rssEndMB: after.rss, peakMinusIdleMB: peak - idle.rss };
}

const mb = (x) => (Number.isFinite(x) ? x.toFixed(1) : '-');

/** withMemory's figures as one line, for the progress log and the printed report alike. */
export const memLine = (m) => `RSS idle ${mb(m.rssIdleMB)} MB, peak ${mb(m.rssPeakMB)} MB (peak - idle ${mb(m.peakMinusIdleMB)} MB), at end ${mb(m.rssEndMB)} MB`;
