// Load generation. autocannon's own latency histogram has 1 ms resolution, too coarse for a
// proxy that adds tens of microseconds, so every response time is also recorded here as a float.
import autocannon from 'autocannon';
import http from 'node:http';
import { Pool } from 'undici';

let current; // the running load, so Ctrl-C can stop it
export function stopCurrentLoad() {
  current?.stop();
}

export class Latencies {
  constructor() {
    this.v = new Float64Array(1 << 16);
    this.n = 0;
  }
  add(ms) {
    if (this.n === this.v.length) {
      const next = new Float64Array(this.v.length * 2);
      next.set(this.v);
      this.v = next;
    }
    this.v[this.n++] = ms;
  }
  summary() {
    const s = this.v.slice(0, this.n).sort();
    const pct = (p) => (this.n ? s[Math.min(this.n - 1, Math.ceil((p / 100) * this.n) - 1)] : NaN);
    let sum = 0;
    let over1 = 0;
    for (let i = 0; i < this.n; i++) {
      sum += s[i];
      if (s[i] > 1) over1++;
    }
    const n = this.n;
    return { count: n, mean: n ? sum / n : NaN, p50: pct(50), p90: pct(90), p99: pct(99), max: n ? s[n - 1] : NaN, over1msShare: n ? over1 / n : NaN };
  }
}

/** Several users, so a 50% flag really splits traffic; one prebuilt buffer each, no per-request work. */
export function userRequests(path = '/api/items/42', users = 256) {
  return Array.from({ length: users }, (_, i) => ({ method: 'GET', path, headers: { 'x-user-id': `user-${i + 1}` } }));
}

/**
 * Connection k of C sends requests k, k+C, k+2C, ... (one of them when C exceeds the list), so all
 * users are still sent but each connection builds only its own. autocannon deep-clones its
 * options and builds a buffer for every request of `requests` per connection: with 256 users and
 * 1,000 connections that was 256,000 buffers and ~3 s of the load generator's CPU at the start,
 * while the first requests' latency clocks ran. Those 1,000 requests were the connections
 * scenario's "multi-second tail" in every contender, direct included (2026-11-21).
 */
function perConnection(requests, connections) {
  let next = 0;
  return (client) => {
    const k = next++ % connections;
    const mine = connections >= requests.length ? [requests[k % requests.length]] : requests.filter((_, i) => i % connections === k);
    client.setRequests(mine.map((r) => ({ ...r, headers: { ...r.headers } })));
  };
}

/** Exactly `requests` requests to contender `c`, every one a 2xx, or an error saying what went wrong. */
export async function runExactly(c, requests, connections) {
  const r = await runAutocannon({ url: c.url, connections, amount: requests, timeout: 60 });
  if (r.requests !== requests || r.non2xx || r.errors) throw new Error(`${c.name}: ${r.requests}/${requests} requests, ${r.non2xx} non-2xx, ${r.errors} errors`);
}

/** One autocannon run; resolves with throughput, µs-resolution latency and every error count. */
export function runAutocannon({ url, connections, duration, amount, overallRate, requests = userRequests(), timeout = 10 }) {
  return new Promise((resolve, reject) => {
    const lat = new Latencies();
    const opts = { url, connections, requests: requests.slice(0, 1), setupClient: perConnection(requests, connections), timeout };
    if (duration) opts.duration = duration;
    if (overallRate) opts.overallRate = overallRate;
    if (amount) opts.amount = amount; // a fixed number of requests instead of a duration
    const inst = autocannon(opts, (err, r) => {
      current = undefined;
      if (err) return reject(err);
      const total = r.requests.total;
      resolve({
        rps: total / r.duration,
        requests: total,
        duration: r.duration,
        latency: lat.summary(),
        autocannonLatencyMs: { p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max },
        non2xx: r.non2xx,
        errors: r.errors,
        timeouts: r.timeouts,
        resets: r.resets,
        statusCodes: Object.fromEntries(Object.entries(r.statusCodeStats).map(([k, v]) => [k, v.count])),
      });
    });
    inst.on('response', (_client, _status, _bytes, ms) => lat.add(ms));
    current = inst;
  });
}

/**
 * Open-loop load at a steady rate: one request due every 1/rate s, sent on time whether or not
 * earlier ones have answered. autocannon's `overallRate` instead fires each second's quota as a
 * burst, which measures latency under bursts of concurrency rather than at a steady 1k req/s.
 *
 * Requests go through undici's `dispatch` with a plain handler object: no promise or body stream
 * per request. The first version (Pool.request + for-await over the body) cost the load
 * generator ~160 us of CPU per request and its own scavenges landed in the measured times: with
 * it, direct's p99 was 0.80 ms and a bare undici forwarder's 1.56 ms; with this one, in the same
 * sitting, 0.71 ms and 1.39 ms (2026-11-21, 3 alternating rounds each).
 *
 * `pool` (from pacedPool) keeps connections open across short runs, so a run does not start by
 * connecting; `into` also receives every sample.
 */
export function runPaced({ url, rate, duration, path = '/api/items/42', users = 256, pool: shared, into }) {
  const pool = shared ?? pacedPool(url);
  const lat = new Latencies();
  const statusCodes = {};
  const headers = Array.from({ length: users }, (_, i) => ({ 'x-user-id': `user-${i + 1}` }));
  let sent = 0;
  let done = 0;
  let errors = 0;
  class Timed {
    constructor() {
      this.t0 = performance.now();
      this.status = 0;
    }
    onConnect() {}
    onHeaders(status) {
      this.status = status;
      return true;
    }
    onData() {
      return true;
    }
    onComplete() {
      const ms = performance.now() - this.t0;
      lat.add(ms);
      into?.add(ms);
      statusCodes[this.status] = (statusCodes[this.status] ?? 0) + 1;
      done++;
    }
    onError() {
      errors++;
    }
  }
  return new Promise((resolve) => {
    const start = performance.now();
    const end = start + duration * 1000;
    let stopped = false;
    const finish = async () => {
      if (stopped) return;
      stopped = true;
      current = undefined;
      // Let stragglers finish (bounded) so the tail is not cut off.
      const until = Date.now() + 2000;
      while (done + errors < sent && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      if (!shared) await pool.destroy().catch(() => {});
      const secs = (performance.now() - start) / 1000;
      const non2xx = Object.entries(statusCodes).reduce((a, [k, v]) => a + (k[0] === '2' ? 0 : v), 0);
      resolve({ rps: done / secs, requests: done, sent, latency: lat.summary(), non2xx, errors: sent - done, statusCodes });
    };
    current = { stop: () => finish() };
    const tick = () => {
      if (stopped) return;
      const now = performance.now();
      if (now >= end) return finish();
      const due = Math.floor(((now - start) / 1000) * rate);
      while (sent < due) {
        pool.dispatch({ method: 'GET', path, headers: headers[sent % users] }, new Timed());
        sent++;
      }
      setTimeout(tick, 1);
    };
    tick();
  });
}

export function pacedPool(url) {
  return new Pool(url, { connections: 64, pipelining: 1, keepAliveTimeout: 60_000 });
}

/** POSTs a body of `size` bytes in 64 KiB chunks, honouring backpressure; resolves with the reply. */
export function postBody(url, size, user, agent) {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.request(
      `${url}/api/upload`,
      { method: 'POST', agent, headers: { 'content-type': 'application/octet-stream', 'content-length': size, 'x-user-id': user } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode, body: text, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.setTimeout(60_000, () => req.destroy(new Error('body upload timed out after 60 s')));
    let left = size;
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        left -= n;
        if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}
