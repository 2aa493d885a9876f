// The measurements. Each scenario returns a plain object that goes into the JSON as is.
import http from 'node:http';
import { listenOverflows } from './proc.mjs';
import { Latencies, pacedPool, runAutocannon, runPaced, postBody } from './load.mjs';
import { fmt, measure, median, memLine, withMemory } from './measure.mjs';
import { startUpstream, cutoverContender, directContender, forwarderContender } from './contenders.mjs';

export const THROUGHPUT_CONTENDERS = ['direct', 'undici', 'http-proxy', 'reply-from', 'nginx', 'cutover-0', 'cutover-50', 'cutover-100'];
export const LATENCY_CONTENDERS = ['direct', 'cutover-50', 'undici', 'http-proxy', 'reply-from', 'nginx'];

/** Alternates contenders over rounds (rotating the order) so drift on a noisy box hits all alike. */
export async function throughput(ctx, contenders) {
  const { opts, log, upstreams } = ctx;
  const load = { connections: opts.connections, duration: opts.duration };
  if (opts.warmup > 0) {
    log(`warming up each contender for ${opts.warmup} s`);
    for (const c of contenders) await runAutocannon({ url: c.url, connections: opts.connections, duration: opts.warmup });
  }
  const rounds = Object.fromEntries(contenders.map((c) => [c.name, []]));
  for (let r = 0; r < opts.rounds; r++) {
    const order = contenders.map((_, i) => contenders[(i + r) % contenders.length]);
    for (const c of order) {
      ctx.checkAborted();
      const res = await measure(c, upstreams, load);
      rounds[c.name].push(res);
      log(`round ${r + 1}/${opts.rounds} ${c.name.padEnd(12)} ${fmt(res)}`);
    }
  }
  const results = {};
  for (const c of contenders) {
    const rs = rounds[c.name];
    const pick = (f) => median(rs.map(f));
    results[c.name] = {
      median: {
        rps: pick((x) => x.rps),
        p50: pick((x) => x.latency.p50),
        p99: pick((x) => x.latency.p99),
        proxyCpuUsPerReq: pick((x) => x.proxyCpuUsPerReq),
        upstreamCpuUsPerReq: pick((x) => x.upstreamCpuUsPerReq),
        loadgenCpuUsPerReq: pick((x) => x.loadgenCpuUsPerReq),
        candidateShare: pick((x) => x.candidateShare),
        otherCpuPct: pick((x) => x.otherCpuPct),
      },
      rpsRange: [Math.min(...rs.map((x) => x.rps)), Math.max(...rs.map((x) => x.rps))],
      // Warnings a proxy logged during warmup and rounds: under plain load there should be none.
      warnings: c.logs ? { ...c.logs.warnings } : undefined,
      non2xx: rs.reduce((a, x) => a + x.non2xx, 0),
      errors: rs.reduce((a, x) => a + x.errors, 0), // autocannon counts timeouts as errors too
      timeouts: rs.reduce((a, x) => a + (x.timeouts ?? 0), 0),
      rounds: rs,
    };
  }
  return { params: load, results, ratios: ratios(results) };
}

function ratios(results) {
  const direct = results.direct?.median.rps;
  const c50 = results['cutover-50']?.median.rps;
  const out = { vsDirect: {}, cutover50Vs: {} };
  for (const [name, r] of Object.entries(results)) {
    out.vsDirect[name] = direct ? r.median.rps / direct : NaN;
    if (name !== 'cutover-50') out.cutover50Vs[name] = c50 ? c50 / r.median.rps : NaN;
  }
  return out;
}

/** Unmeasured requests at the start of each latency round (see the lead-in below). */
const LEAD_IN_S = 0.2;

/**
 * Added latency at a fixed 1,000 req/s. The steady pacer runs many short rounds (1 s), contenders
 * alternating every round, and each percentile is taken over all of a contender's requests
 * together. A noisy stretch of this shared machine lasts seconds, so short alternating rounds
 * spread it over every contender alike: with 4 rounds of 5 s, one contender's p99 ranged from
 * 1.39 to 6.88 ms between rounds of one run (2026-11-21). Connections stay open between rounds.
 * autocannon's overallRate runs once per contender.
 */
export async function latency(ctx, contenders) {
  const { opts, log, upstreams } = ctx;
  const state = new Map(contenders.map((c) => [c.name, { pool: pacedPool(c.url), all: new Latencies(), rounds: [] }]));
  try {
    // Unmeasured: the pacer's client code and each contender's connections warm up first.
    for (const c of contenders) await runPaced({ url: c.url, rate: opts.rate, duration: Math.max(opts.warmup, 0.5), pool: state.get(c.name).pool });
    for (let r = 0; r < opts.latencyRounds; r++) {
      const line = [];
      for (const c of contenders.map((_, i) => contenders[(i + r) % contenders.length])) {
        ctx.checkAborted();
        const st = state.get(c.name);
        // Unmeasured lead-in: after idling while the others ran, a Node proxy's first ~200
        // requests were slower (>1 ms: 4.0% of them against 2.4% later, for cutover-50); at a
        // steady 1k req/s in production there is no such idle gap.
        await runPaced({ url: c.url, rate: opts.rate, duration: LEAD_IN_S, pool: st.pool });
        const res = await measure(c, upstreams, { rate: opts.rate, duration: opts.latencySlice, pool: st.pool, into: st.all });
        st.rounds.push(res);
        line.push(`${c.name} ${res.latency.p99.toFixed(2)}${res.non2xx || res.errors ? ` (NON-2XX ${res.non2xx} ERRORS ${res.errors})` : ''}`);
      }
      log(`latency round ${r + 1}/${opts.latencyRounds} steady ${opts.rate}/s, p99 ms: ${line.join(', ')}`);
    }
  } finally {
    await Promise.all([...state.values()].map((st) => st.pool.destroy().catch(() => {})));
  }
  const results = {};
  for (const c of contenders) {
    ctx.checkAborted();
    const ac = await measure(c, upstreams, { connections: 10, duration: opts.latencyDuration, overallRate: opts.rate });
    log(`latency ${c.name.padEnd(12)} autocannon overallRate ${opts.rate}: ${fmt(ac)}`);
    const { all, rounds: rs } = state.get(c.name);
    const sum = (f) => rs.reduce((a, x) => a + f(x), 0);
    const requests = sum((x) => x.requests);
    const paced = {
      rps: requests / sum((x) => x.duration ?? opts.latencySlice),
      requests,
      latency: all.summary(),
      // Per request over all rounds: each round's figure weighted by its requests.
      proxyCpuUsPerReq: sum((x) => x.proxyCpuUsPerReq * x.requests) / requests,
      proxyRunQueueWaitUsPerReq: sum((x) => x.proxyRunQueueWaitUsPerReq * x.requests) / requests,
      proxyWakeupsPerReq: sum((x) => x.proxyWakeupsPerReq * x.requests) / requests,
      // The host's noise while this contender was measured: % of a core the hypervisor gave to
      // other guests, and used by processes outside the bench (averaged over its rounds).
      stealPct: sum((x) => x.stealPct) / rs.length,
      otherCpuPct: sum((x) => x.otherCpuPct) / rs.length,
      non2xx: sum((x) => x.non2xx),
      errors: sum((x) => x.errors),
      p99Range: [Math.min(...rs.map((x) => x.latency.p99)), Math.max(...rs.map((x) => x.latency.p99))],
    };
    results[c.name] = { autocannon: ac, paced, pacedRounds: rs.map((x) => ({ requests: x.requests, latency: x.latency, proxyCpuUsPerReq: x.proxyCpuUsPerReq, proxyRunQueueWaitUsPerReq: x.proxyRunQueueWaitUsPerReq, stealPct: x.stealPct, otherCpuPct: x.otherCpuPct })) };
  }
  const d = results.direct;
  for (const r of Object.values(results)) {
    r.addedP50Ms = d ? { autocannon: r.autocannon.latency.p50 - d.autocannon.latency.p50, paced: r.paced.latency.p50 - d.paced.latency.p50 } : undefined;
    r.addedP99Ms = d ? { autocannon: r.autocannon.latency.p99 - d.autocannon.latency.p99, paced: r.paced.latency.p99 - d.paced.latency.p99 } : undefined;
  }
  return {
    params: { rate: opts.rate, roundSeconds: opts.latencySlice, leadInSeconds: LEAD_IN_S, rounds: opts.latencyRounds, duration: opts.latencyDuration, autocannonConnections: 10, pacerConnections: 64 },
    results,
  };
}

/** A candidate that accepts requests and never answers; flag at 100%, route timeout 300ms. */
export async function hang(ctx) {
  const { opts, log, upstreams } = ctx;
  const hung = await startUpstream('candidate', 'hang');
  const legacy = upstreams.find((u) => u.name === 'legacy');
  let c;
  try {
    c = await cutoverContender('cutover-hang', legacy, hung, 100, { candidateHeadersTimeout: '300ms' });
    ctx.checkAborted();
    const r = await measure(c, [legacy, hung], { connections: opts.connections, duration: opts.scenarioDuration });
    log(`hang   cutover-100 -> hanging candidate: ${fmt(r)} statuses ${JSON.stringify(r.statusCodes)}`);
    const ok = r.statusCodes['200'] ?? 0;
    const note =
      r.non2xx > 0 && ok === 0
        ? 'No request was answered: this build has no per-request fallback to legacy (issue 3), so requests fail ' +
          'once a timeout fires (route timeout and candidate headersTimeout are both 300ms).'
        : `${ok} of ${r.requests} requests answered 200; legacy served ${r.servedByUpstream.legacy}, the hanging candidate ` +
          `received ${r.servedByUpstream.candidate} (requests it got that still ended 200 were fallbacks to legacy after the timeout; ` +
          'the rest skipped the candidate, e.g. after it was ejected).';
    log(`hang   ${note}`);
    return {
      note,
      params: { connections: opts.connections, duration: opts.scenarioDuration, candidateHeadersTimeout: '300ms', routeTimeout: '300ms', percentage: 100 },
      result: r,
      cutoverLogLines: { ...c.logs.byLevel },
      warnings: { ...c.logs.warnings },
      lastWarnings: c.logs.tail,
    };
  } finally {
    await c?.stop();
    await hung.stop();
  }
}

/**
 * The cost of shadow mode: cutover-50 with and without mirroring 10% of users' legacy-served
 * reads to the candidate (compared, `served_by` ignored so they match), same load, one run each.
 */
export async function shadow(ctx) {
  const { opts, log, upstreams } = ctx;
  const [legacy, candidate] = upstreams;
  const out = {};
  for (const [key, shadowPercentage] of [['cutover-50', undefined], ['cutover-50-shadow10', 10]]) {
    const c = await cutoverContender(key, legacy, candidate, 50, { shadowPercentage });
    try {
      ctx.checkAborted();
      const r = await measure(c, upstreams, { connections: opts.connections, duration: opts.scenarioDuration });
      let totals;
      if (shadowPercentage) totals = await fetch(`${c.admin}/api/v1/shadow/bench`).then((x) => x.json()).then((j) => j.totals, () => undefined);
      log(`shadow ${key.padEnd(20)} ${fmt(r)}${totals ? ` shadow ${JSON.stringify(totals)}` : ''}`);
      out[key] = { result: r, shadowTotals: totals };
    } finally {
      await c.stop();
    }
  }
  const a = out['cutover-50'].result;
  const b = out['cutover-50-shadow10'].result;
  return { params: { connections: opts.connections, duration: opts.scenarioDuration, shadowPercentage: 10 }, results: out, rpsRatio: b.rps / a.rps, cpuRatio: b.proxyCpuUsPerReq / a.proxyCpuUsPerReq };
}

/**
 * 1,000 concurrent keep-alive connections: cutover's memory, against a fresh bare undici
 * forwarder for scale, both warmed first. Direct runs first to show what the load generator and
 * kernel allow.
 */
export async function connections(ctx) {
  const { opts, log, upstreams } = ctx;
  const [legacy, candidate] = upstreams;
  const load = { connections: opts.bigConnections, duration: opts.scenarioDuration };
  const run = async (c) => {
    const o0 = listenOverflows();
    const r = await measure(c, upstreams, load);
    const o1 = listenOverflows();
    return { ...r, listenOverflows: o1.overflows - o0.overflows, listenDrops: o1.drops - o0.drops };
  };
  const out = { params: { ...load, percentage: 50 } };
  out.direct = await run(directContender(legacy));
  log(`conns  direct     ${fmt(out.direct)}, listen queue overflows ${out.direct.listenOverflows}`);
  for (const [key, start] of [
    ['undici', () => forwarderContender('undici', legacy)],
    ['cutover', () => cutoverContender('cutover-conn', legacy, candidate, 50)],
  ]) {
    ctx.checkAborted();
    const c = await start();
    try {
      // Warm, as in the throughput scenario. Cold, cutover spent its first second at 1,000
      // connections compiling, its 300 ms route timeout fired on the candidate and ejected it.
      if (opts.warmup > 0) await runAutocannon({ url: c.url, connections: opts.connections, duration: opts.warmup });
      out[key] = await withMemory(c, 100, () => run(c));
      if (c.logs) Object.assign(out[key], { cutoverLogLines: { ...c.logs.byLevel }, warnings: { ...c.logs.warnings }, lastWarnings: c.logs.tail });
      log(`conns  ${c.name.padEnd(10)} ${fmt(out[key])}, listen queue overflows ${out[key].listenOverflows}; ${memLine(out[key])}`);
    } finally {
      await c.stop();
    }
  }
  return out;
}

/**
 * 10 MB bodies streamed through a fresh proxy, several at once: memory must stay flat. A fresh
 * bare undici forwarder runs the same uploads first, for scale.
 */
export async function body(ctx) {
  const { opts, log, upstreams } = ctx;
  const [legacy, candidate] = upstreams;
  const size = opts.bodyMB * 1024 * 1024;
  const uploadAll = async (c) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: opts.bodyConcurrency });
    try {
      const t0 = Date.now();
      const uploads = [];
      for (let it = 0; it < opts.bodyRepeats; it++) {
        ctx.checkAborted();
        const batch = Array.from({ length: opts.bodyConcurrency }, (_, i) => postBody(c.url, size, `user-${it * 16 + i + 1}`, agent));
        uploads.push(...(await Promise.all(batch)));
      }
      const secs = (Date.now() - t0) / 1000;
      return {
        uploads: uploads.length,
        intact: uploads.filter((u) => u.status === 200 && JSON.parse(u.body).received === size).length,
        statusCodes: uploads.reduce((a, u) => ((a[u.status] = (a[u.status] ?? 0) + 1), a), {}),
        MBps: (uploads.length * opts.bodyMB) / secs,
        uploadMs: uploads.map((u) => Math.round(u.ms)),
      };
    } finally {
      agent.destroy();
    }
  };
  const out = { params: { bodyMB: opts.bodyMB, concurrency: opts.bodyConcurrency, repeats: opts.bodyRepeats, percentage: 50, routeTimeout: '30s' } };
  for (const [key, start] of [
    ['undici', () => forwarderContender('undici', legacy)],
    // A generous route timeout: at 300ms a 10 MB upload to the candidate would be cut (and can't
    // fall back, its body is gone), which is the timeout working, not what this scenario measures.
    ['cutover', () => cutoverContender('cutover-body', legacy, candidate, 50, { routeTimeout: '30s' })],
  ]) {
    ctx.checkAborted();
    const c = await start();
    try {
      out[key] = await withMemory(c, 20, () => uploadAll(c));
      if (c.logs) out[key].warnings = { ...c.logs.warnings };
      const r = out[key];
      log(`body   ${c.name.padEnd(12)} ${r.uploads} x ${opts.bodyMB} MB (${opts.bodyConcurrency} at once): ${r.intact} intact, ${r.MBps.toFixed(0)} MB/s, ${memLine(r)}`);
    } finally {
      await c.stop();
    }
  }
  return out;
}
