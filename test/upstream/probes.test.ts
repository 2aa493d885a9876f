import t, { type Test } from 'tap';
import { createServer, type RequestListener } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { UpstreamHealth } from '../../src/upstream/health.js';
import { createUpstream, type Upstream } from '../../src/upstream/pools.js';
import { silentLogger } from '../../src/observability/logger.js';
import type { HealthConfig } from '../../src/config/schema.js';
import { waitFor } from '../helpers/servers.js';

const OUTLIER = { consecutiveFailures: 3, baseEjection: 1000, maxEjection: 5000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Target {
  up: Upstream;
  /** Probes (GET /health) that reached the server. */
  probes: () => number;
  /** Most probes the server ever held at once. */
  maxConcurrent: () => number;
}

/** A real upstream on loopback; `/health` answers with `status(n)` (n = probe number, from 1) after `delayMs`. */
async function target(
  t: Test,
  opts: { connections?: number; delayMs?: number; status?: (n: number) => number; onProbe?: (n: number) => void; live?: RequestListener },
): Promise<Target> {
  let probes = 0;
  let open = 0;
  let maxOpen = 0;
  const server = createServer((req, res) => {
    if (req.url !== '/health') return opts.live ? opts.live(req, res) : res.end('ok');
    const n = ++probes;
    maxOpen = Math.max(maxOpen, ++open);
    opts.onProbe?.(n);
    res.on('close', () => open--); // answered, or abandoned by the prober
    setTimeout(() => {
      if (res.destroyed) return;
      res.writeHead(opts.status?.(n) ?? 200);
      res.end();
    }, opts.delayMs ?? 0);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  const up = createUpstream('c', { url, connections: opts.connections ?? 4, connectTimeout: 1000, headersTimeout: 5000, bodyTimeout: 5000, keepAliveTimeout: 4000, preserveHost: false, outlier: OUTLIER });
  t.teardown(async () => {
    await up.pool.close();
    server.closeAllConnections();
    server.close();
  });
  return { up, probes: () => probes, maxConcurrent: () => maxOpen };
}

function health(t: Test, up: Upstream, probe: HealthConfig | undefined, logger = silentLogger): UpstreamHealth {
  const h = new UpstreamHealth(up, OUTLIER, probe, logger);
  t.teardown(() => h.close());
  return h;
}

t.test('changing the interval while a probe is in flight leaves exactly one probe chain', async (t) => {
  const c = await target(t, { delayMs: 100, status: () => 503 });
  const h = health(t, c.up, { path: '/health', interval: 50, timeout: 1000, unhealthyAfter: 1000, healthyAfter: 2 });
  h.start();
  await sleep(30); // the first probe is in flight
  for (const ms of [150, 175, 200]) {
    h.setInterval(ms);
    await sleep(120);
  }
  const before = c.probes();
  await sleep(1200);
  const n = c.probes() - before;
  // One chain: a probe every 200 ms + 100 ms answer, 4 in 1.2 s. Each extra chain adds as many.
  t.ok(n >= 2 && n <= 5, `one chain's worth of probes in 1.2 s: ${n}`);
  t.equal(c.maxConcurrent(), 1, 'never two probes at once (a superseded probe is abandoned)');
});

t.test('turning probing off while a failing probe is in flight leaves the upstream healthy and unprobed', async (t) => {
  let h: UpstreamHealth | undefined;
  const verdicts: boolean[] = []; // the probe verdict as each probe arrives
  const c = await target(t, {
    delayMs: 100,
    status: () => 503,
    onProbe: (n) => {
      verdicts.push((h as UpstreamHealth).view().probe);
      if (n === 3) h?.setInterval(undefined); // the flag's health_check_interval is removed while probe 3 is in flight
    },
  });
  h = health(t, c.up, undefined); // probed only because of a flag's interval (default unhealthyAfter 3)
  h.setInterval(30);
  await waitFor(() => c.probes() === 3, 3000, 'third probe sent');
  await sleep(400);
  t.equal(h.view().probe, true, 'the in-flight failure does not count once probing is off');
  t.equal(h.view().healthy, true, 'the candidate gets traffic');
  t.equal(c.probes(), 3, 'no more probes');
  // Probing again starts a fresh streak: two new failures are not three.
  h.setInterval(30);
  await waitFor(() => c.probes() === 6, 3000, 'three more probes sent');
  t.same(verdicts, [true, true, true, true, true, true], 'healthy as each probe went out');
});

t.test('a probe does not queue behind live traffic in the request pool', async (t) => {
  // Every answer takes 100 ms; one pooled connection and five callers keep the pool ~500 ms deep.
  const c = await target(t, { connections: 1, delayMs: 100, live: (_req, res) => setTimeout(() => res.end('ok'), 100) });
  const h = health(t, c.up, { path: '/health', interval: 100, timeout: 300, unhealthyAfter: 3, healthyAfter: 2 });
  let stop = false;
  const statuses: number[] = [];
  const caller = async () => {
    while (!stop) {
      const r = await c.up.pool.request({ method: 'GET', path: '/live' });
      await r.body.dump();
      statuses.push(r.statusCode);
    }
  };
  const callers = Array.from({ length: 5 }, caller);
  h.start();
  await sleep(1500);
  stop = true;
  await Promise.all(callers);
  t.ok(statuses.length >= 8 && statuses.every((s) => s === 200), `live traffic all 200 (${statuses.length})`);
  t.ok(c.probes() >= 4, `probes ran (${c.probes()})`);
  t.equal(h.view().probe, true, 'a candidate answering in 100 ms passes a 300 ms probe');
  t.equal(h.view().lastReason, undefined);
});

t.test('2xx and 3xx are up, anything else down; exact streaks; every change logged with its reason', async (t) => {
  // Probe n answers script[n - 1], then 200.
  const script = [200, 302, 500, 404, 301, 500, 502, 503, 204, 503, 200, 304, 200];
  const c = await target(t, { status: (n) => script[n - 1] ?? 200 });
  const lines: Array<{ msg: string; reason?: string; at: number }> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push({ ...(JSON.parse(s) as { msg: string; reason?: string }), at: c.probes() }) });
  const h = health(t, c.up, { path: '/health', interval: 20, timeout: 1000, unhealthyAfter: 3, healthyAfter: 2 }, logger);
  h.start();
  await waitFor(() => c.probes() >= script.length + 2, 5000, 'script played');
  t.same(
    lines.map((l) => [l.at, l.msg, l.reason]),
    [
      // 500, 404 then 301 (up: resets the streak); 500, 502, 503 is three in a row.
      [8, 'upstream unhealthy (active probe)', 'probe /health: status 503'],
      // 204 then 503 (resets the good streak); 200, 304 is two in a row.
      [12, 'upstream healthy again (active probe)', 'probe /health: status 304, 2 in a row'],
    ],
  );
  t.equal(h.view().probe, true);
  t.equal(h.view().lastReason, 'probe /health: status 503', 'the status keeps the last failure');
});
