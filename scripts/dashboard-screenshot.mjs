#!/usr/bin/env node
// Renders docs/dashboard.png: a cutover with three routes, a candidate that is a little flaky,
// ~25 s of live traffic, then a headless-Chromium screenshot of the admin dashboard.
// Usage: npm run build && node scripts/dashboard-screenshot.mjs [out.png]
// Needs /usr/bin/chromium (scripts/ensure-chromium.sh). Loopback traffic only, bounded in time.
import { createServer } from 'node:http';
import { once } from 'node:events';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { chromium } from 'playwright-core';
import { serve } from '../dist/server.js';
import { silentLogger } from '../dist/observability/logger.js';

const out = process.argv[2] ?? new URL('../docs/dashboard.png', import.meta.url).pathname;
const TRAFFIC_MS = Number(process.env.TRAFFIC_MS ?? 25_000);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Log-normal-ish latency around `median` ms.
const lat = (median) => median * Math.exp(0.45 * (Math.random() + Math.random() + Math.random() - 1.5) * 2);

async function backend(name, { median, errorRate = 0, slowRate = 0 }) {
  const s = createServer((req, res) => {
    if (req.url === '/health') return res.end('{"status":"ok"}');
    req.resume();
    const slow = Math.random() < slowRate;
    setTimeout(() => {
      if (Math.random() < errorRate) {
        res.writeHead(503, { 'content-type': 'application/json' });
        return res.end('{"error":"unavailable"}');
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ served_by: name }));
    }, slow ? 400 + Math.random() * 300 : lat(median));
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

const magento = await backend('magento', { median: 38 });
const customers = await backend('customers', { median: 14 });
const orders = await backend('orders', { median: 22, errorRate: 0.012, slowRate: 0.01 });
const url = (s) => `http://127.0.0.1:${s.address().port}`;

const root = await mkdtemp(join(tmpdir(), 'cutover-shot-'));
await mkdir(join(root, 'routes'));
await mkdir(join(root, 'flags'));
await writeFile(
  join(root, 'routes', 'shop.yaml'),
  `upstreams:
  magento: { url: ${url(magento)}, health: { path: /health, interval: 2s } }
  customer-service: { url: ${url(customers)}, health: { path: /health, interval: 2s } }
  order-service: { url: ${url(orders)}, health: { path: /health, interval: 2s } }
default: magento
routes:
  - name: customers-read
    match: { path: /api/v1/customers, methods: [GET, HEAD] }
    legacy: magento
    candidate: customer-service
    flag: customer_read
    timeout: 300ms
  - name: customers-write
    match: { path: /api/v1/customers, methods: [POST, PUT, PATCH, DELETE] }
    legacy: magento
    candidate: customer-service
    flag: customer_write
  - name: orders
    match: { path: /api/v1/orders }
    legacy: magento
    candidate: order-service
    flag: order_cutover
    timeout: 250ms
`,
);
const flags = {
  customer_read: { enabled: true, percentage: 75, description: 'GET /api/v1/customers from the new customer service' },
  customer_write: { enabled: false, percentage: 0, description: 'Writes to /api/v1/customers: stays on Magento until phase 2' },
  order_cutover: { enabled: true, percentage: 10, description: 'All /api/v1/orders traffic: 25 → 50 → 75 → 100 in phase 3' },
};
for (const [n, f] of Object.entries(flags)) await writeFile(join(root, 'flags', `${n}.json`), JSON.stringify(f));

const running = await serve({
  routesDir: join(root, 'routes'),
  flagsDir: join(root, 'flags'),
  port: 0,
  host: '127.0.0.1',
  adminPort: 0,
  adminHost: '127.0.0.1',
  drainTimeoutMs: 1000,
  logger: silentLogger,
});
const proxy = `http://127.0.0.1:${running.proxyPort}`;
const admin = `http://127.0.0.1:${running.adminPort}`;
const agent = new Agent({ connections: 16 });

// Step the orders rollout 10 -> 25 % the way an operator would, so "Last change" shows it.
const step = await request(`${admin}/api/v1/flags/order_cutover`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', 'x-cutover-actor': 'alice' },
  body: JSON.stringify({ percentage: 25 }),
});
await step.body.dump();

const ops = [
  [0.55, 'GET', '/api/v1/customers/'],
  [0.1, 'POST', '/api/v1/customers'],
  [0.3, 'GET', '/api/v1/orders/'],
  [0.05, 'GET', '/static/logo.png'],
];
async function worker(until) {
  while (Date.now() < until) {
    let x = Math.random();
    const [, method, path] = ops.find(([p]) => (x -= p) < 0) ?? ops[0];
    const user = 'user-' + Math.floor(Math.random() * 5000);
    try {
      const r = await request(proxy + path + (path.endsWith('/') ? Math.floor(Math.random() * 1000) : ''), {
        method,
        headers: { 'x-user-id': user, ...(method === 'POST' && { 'content-type': 'application/json' }) },
        body: method === 'POST' ? '{"name":"x"}' : null,
        dispatcher: agent,
      });
      await r.body.dump();
    } catch {
      /* counted by the proxy */
    }
    await sleep(4 + Math.random() * 6);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CUTOVER_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const until = Date.now() + TRAFFIC_MS;
  const traffic = Promise.all(Array.from({ length: 12 }, () => worker(until)));
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, deviceScaleFactor: 1 });
  await page.goto(admin + '/');
  await traffic;
  await sleep(2500);
  await page.waitForSelector('body[data-loaded="1"]');
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  await running.shutdown();
  await agent.close();
  for (const s of [magento, customers, orders]) s.close();
  await rm(root, { recursive: true, force: true });
}
