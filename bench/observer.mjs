#!/usr/bin/env node
// Hot-path cost of the observer: N x (attempt() + request()) as the proxy calls them per request.
//   npm run build && node bench/observer.mjs [N]
// Scenarios: the no-op observer (baseline); metrics + sliding windows with request logging off
// (level warn); the same plus one info line per request written to /dev/null (user id hashed /
// not logged); and, for reference, prom-client's own label children doing the metric part.
import { pino } from 'pino';
import { Counter, Histogram, Registry } from 'prom-client';
import { CutoverObserver } from '../dist/observability/observer-impl.js';
import { noopObserver } from '../dist/observability/observer.js';
import { createLogger } from '../dist/observability/logger.js';

const N = Number(process.argv[2] ?? 1_000_000);
const ROUNDS = 3;

// 1024 realistic records: 3 routes, both targets, 1 % 503s, 5000 distinct users.
const routes = ['customers-read', 'customers-write', 'orders'];
const attempts = [];
const requests = [];
for (let i = 0; i < 1024; i++) {
  const route = routes[i % 3];
  const target = i % 4 === 0 ? 'candidate' : 'legacy';
  const status = i % 100 === 7 ? 503 : 200;
  const durationMs = 2 + ((i * 7919) % 300) / 10;
  attempts.push({ route, target, upstream: target === 'candidate' ? 'svc' : 'magento', status, durationMs, failure: status === 503 ? '5xx' : undefined });
  requests.push({
    requestId: `6f1c2a0e-9b1d-4c55-a0a4-${String(i).padStart(12, '0')}`,
    method: 'GET',
    path: `/api/v1/customers/${i}`,
    route,
    flag: 'customer_read',
    target,
    why: 'percentage',
    fallback: undefined,
    bucket: (i % 100) + 1,
    userId: `user-${(i * 31) % 5000}`,
    status,
    durationMs: durationMs + 0.4,
  });
}

// cutover's own logger (createLogger: what `cutover serve` uses), to /dev/null with pino's
// default synchronous destination; `pino.info()` through the same destination for reference.
function logger(level) {
  return createLogger({ level, destination: pino.destination({ dest: '/dev/null', sync: true }) });
}
function plainPino(level) {
  return pino({ level, name: 'cutover', base: { pid: process.pid } }, pino.destination({ dest: '/dev/null', sync: true }));
}

function run(name, obs) {
  const once = (n) => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      const k = i & 1023;
      obs.attempt(attempts[k]);
      obs.request(requests[k]);
    }
    return Number(process.hrtime.bigint() - t0) / n;
  };
  once(Math.min(N, 100_000)); // warm up (JIT, caches)
  const rounds = Array.from({ length: ROUNDS }, () => once(N)).sort((a, b) => a - b);
  const median = rounds[Math.floor(ROUNDS / 2)];
  console.log(`${name.padEnd(58)} ${median.toFixed(0).padStart(6)} ns/request   (rounds: ${rounds.map((r) => r.toFixed(0)).join(', ')})`);
  return median;
}

function promClientChildren() {
  const registry = new Registry();
  const c = new Counter({ name: 'c', help: 'c', labelNames: ['route', 'target', 'code'], registers: [registry] });
  const h = new Histogram({ name: 'h', help: 'h', labelNames: ['route', 'target'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] });
  const cache = new Map();
  return {
    attempt(r) {
      const key = r.route + '\0' + r.target + '\0' + r.status;
      let ch = cache.get(key);
      if (!ch) cache.set(key, (ch = { c: c.labels(r.route, r.target, String(r.status)), h: h.labels(r.route, r.target) }));
      ch.c.inc();
      ch.h.observe(r.durationMs / 1000);
    },
    fallback() {},
    request() {},
  };
}

console.log(`node ${process.version}, ${N.toLocaleString('en-US')} x (attempt + request), median of ${ROUNDS} rounds\n`);
const base = run('noop observer (baseline)', noopObserver);
const quiet = run('CutoverObserver, LOG_LEVEL=warn (metrics + windows only)', new CutoverObserver({ logger: logger('warn'), defaultMetrics: false }));
const hashed = run('CutoverObserver, info line to /dev/null, user id hashed', new CutoverObserver({ logger: logger('info'), defaultMetrics: false, userIds: 'hash', userKey: 'bench' }));
const none = run('CutoverObserver, info line to /dev/null, no user id', new CutoverObserver({ logger: logger('info'), defaultMetrics: false, userIds: 'none' }));
const viaPino = run('reference: same, but each line through pino.info()', new CutoverObserver({ logger: plainPino('info'), defaultMetrics: false, userIds: 'hash', userKey: 'bench' }));
const prom = run('reference: prom-client label children (metrics only)', promClientChildren());
console.log(`
metrics + windows:            ${(quiet - base).toFixed(0)} ns/request over the no-op
+ one JSON log line (hashed): ${(hashed - base).toFixed(0)} ns/request over the no-op
+ one JSON log line (no id):  ${(none - base).toFixed(0)} ns/request over the no-op
(pino.info() per line instead: ${(viaPino - base).toFixed(0)} ns/request)
prom-client children alone:   ${(prom - base).toFixed(0)} ns/request (what caching children would have cost)`);
