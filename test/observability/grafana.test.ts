import t from 'tap';
import { readFile } from 'node:fs/promises';
import { http, postJson } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { startCutover, startUpstream, twoSided, writeConfig } from '../helpers/servers.js';

// The Grafana dashboard must only query what /metrics really exposes, with the labels it has.

interface Panel {
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { uid: string };
  targets?: Array<{ expr: string }>;
}

const dash = JSON.parse(await readFile(new URL('../../grafana/cutover-dashboard.json', import.meta.url), 'utf8')) as {
  title: string;
  uid: string;
  panels: Panel[];
  annotations: { list: Array<{ expr?: string }> };
  templating: { list: Array<{ name: string; type: string }> };
};

t.test('every query uses metric and label names that /metrics exposes', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    res.writeHead(req.url?.includes('fail') ? 503 : 200);
    res.end('{}');
  });
  const { proxy, admin } = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 100 } }));
  await http(`${proxy}/api/ok`, { headers: { 'x-user-id': 'u1' } });
  await http(`${proxy}/api/fail`, { headers: { 'x-user-id': 'u1' } });
  await postJson(`${admin}/api/v1/flags/f`, { percentage: 90 });
  const prom = parseProm((await http(`${admin}/metrics`)).text);

  const labelsOf = new Map<string, Set<string>>();
  for (const s of prom.samples) {
    const set = labelsOf.get(s.name) ?? new Set<string>();
    for (const k of Object.keys(s.labels)) set.add(k);
    labelsOf.set(s.name, set);
  }

  const exprs = [...dash.panels.flatMap((p) => (p.targets ?? []).map((x) => x.expr)), ...dash.annotations.list.flatMap((a) => (a.expr ? [a.expr] : []))];
  t.ok(exprs.length >= 10, `${exprs.length} queries`);
  const used = new Set<string>();
  for (const expr of exprs) {
    for (const m of expr.matchAll(/\b(cutover_[a-z_]+)(\{([^}]*)\})?/g)) {
      const name = m[1] as string;
      used.add(name);
      t.ok(labelsOf.has(name), `${name} is exposed (in: ${expr})`);
      for (const l of (m[3] ?? '').matchAll(/([a-z_]+)\s*(=~|!~|!=|=)/g)) {
        t.ok(labelsOf.get(name)?.has(l[1] as string), `${name} has label ${l[1]}`);
      }
    }
    for (const by of expr.matchAll(/by \(([^)]*)\)/g)) {
      const metric = /\b(cutover_[a-z_]+)/.exec(expr)?.[1] as string;
      for (const l of (by[1] as string).split(',').map((x) => x.trim())) {
        t.ok(labelsOf.get(metric)?.has(l), `${metric}: grouped by existing label ${l}`);
      }
    }
  }
  for (const family of ['cutover_requests_total', 'cutover_request_duration_seconds_bucket', 'cutover_fallbacks_total', 'cutover_upstream_healthy', 'cutover_flag_percentage', 'cutover_flag_enabled', 'cutover_flag_changes_total']) {
    t.ok(used.has(family), `the dashboard shows ${family}`);
  }
});

t.test('the dashboard imports cleanly: a data source variable, panels placed on the grid', async (t) => {
  t.equal(dash.uid, 'cutover-rollout');
  t.ok(dash.templating.list.some((v) => v.type === 'datasource' && v.name === 'datasource'));
  for (const p of dash.panels) {
    t.ok(p.gridPos.w > 0 && p.gridPos.x + p.gridPos.w <= 24, `${p.title}: fits the 24-column grid`);
    if (p.type !== 'row') t.equal(p.datasource?.uid, '${datasource}', `${p.title}: uses the chosen data source`);
  }
});
