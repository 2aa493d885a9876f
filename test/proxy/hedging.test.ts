import t from 'tap';
import type { ServerResponse } from 'node:http';
import { http } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { startCutover, startUpstream, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

const ALL_IN = { f: { enabled: true, percentage: 100 } };

function config(legacyUrl: string, candidateUrl: string, route: Record<string, unknown>): ConfigInput {
  return {
    // Legacy is never taken out of service; a high threshold keeps its streak readable.
    upstreams: { legacy: { url: legacyUrl, outlier: { consecutiveFailures: 1000 } }, candidate: { url: candidateUrl } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', ...route }],
  } as ConfigInput;
}

interface TargetView {
  codes: Record<string, number>;
  '1m': { requests: number; errors: number };
}
type StatusView = { routes: Array<{ name: string; legacy: TargetView }> };

function json200(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ served_by: 'candidate' }));
}

t.test('hedged: a held legacy 503 dropped when the candidate wins still counts as one legacy 5xx', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (_req, res) => {
    res.writeHead(503);
    res.end('legacy down');
  });
  const candidate = await startUpstream(t, 'candidate', (_req, res) => setTimeout(() => json200(res), 150));
  const cfg = config(legacy.url, candidate.url, { hedge: '30ms', timeout: '2s' });
  const { proxy, admin, running } = await startCutover(t, await writeConfig(t, cfg, ALL_IN));
  const n = 3;
  for (let i = 0; i < n; i++) {
    const r = await http(`${proxy}/api/h/${i}`, { headers: { 'x-user-id': `u${i}` } });
    t.equal(r.json<{ served_by: string }>().served_by, 'candidate', `request ${i}: the candidate won over the held 503`);
  }
  t.equal(legacy.seen.length, n, 'legacy was asked every time (the hedge fired)');

  const prom = parseProm((await http(`${admin}/metrics`)).text);
  t.equal(prom.value('cutover_requests_total', { route: 'api', target: 'legacy', code: '503' }), n, "legacy's attempts counted by their status");
  const api = (await http(`${admin}/api/v1/status`)).json<StatusView>().routes.find((r) => r.name === 'api');
  t.same(api?.legacy.codes, { '503': n });
  t.equal(api?.legacy['1m'].errors, n, "each is an error in legacy's window");

  const health = running.cutover.health.view().legacy;
  t.equal(health?.consecutiveFailures, n, "passive health: one 5xx per dropped answer");
  t.equal(health?.lastReason, '5xx on route api');
});

t.test('hedged: a held legacy 503 relayed because the candidate failed too counts as one legacy 5xx', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (_req, res) => {
    res.writeHead(503);
    res.end('legacy down');
  });
  const candidate = await startUpstream(t, 'candidate', (_req, res) =>
    setTimeout(() => {
      res.writeHead(500);
      res.end();
    }, 150),
  );
  const cfg = config(legacy.url, candidate.url, { hedge: '30ms', timeout: '2s' });
  const { proxy, running } = await startCutover(t, await writeConfig(t, cfg, ALL_IN));
  const r = await http(`${proxy}/api/h`, { headers: { 'x-user-id': 'u1' } });
  t.equal(r.status, 503, "legacy's held answer, sent on");
  t.equal(r.text, 'legacy down');
  const health = running.cutover.health.view().legacy;
  t.equal(health?.consecutiveFailures, 1, 'judged as the 5xx it was, once, like the dropped one');
  t.equal(health?.lastReason, '5xx on route api');
});
