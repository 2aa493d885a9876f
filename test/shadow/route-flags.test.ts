import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import { Shadower } from '../../src/shadow/shadower.js';
import { silentLogger } from '../../src/observability/logger.js';
import type { ConfigInput } from '../../src/config/schema.js';

// The maxShadowMismatch gate finds shadow results by flag: they must follow the live config's
// route -> flag mapping, not the flag a route had when it was first mirrored.

function routes(legacy: string, candidate: string, flag: string, extra: object[] = []): ConfigInput {
  return {
    upstreams: { legacy: { url: legacy }, candidate: { url: candidate } },
    routes: [{ name: 'catalog', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag, shadow: { percentage: 100 } }, ...extra],
  } as unknown as ConfigInput;
}

t.test('after a reload moves a route to another flag, its shadow results count for the new flag', async (t) => {
  const same = (_req: unknown, res: import('node:http').ServerResponse) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
  const legacy = await startUpstream(t, 'legacy', same);
  const candidate = await startUpstream(t, 'candidate', same);
  const dirs = await writeConfig(t, routes(legacy.url, candidate.url, 'catalog_read'), { catalog_read: { enabled: false }, catalog_v2: { enabled: false } });
  const { proxy, admin, running } = await startCutover(t, dirs);
  const shadow = running.cutover.shadow;
  const compared = () => (shadow.all()[0]?.totals.match ?? 0) + (shadow.all()[0]?.totals.mismatch ?? 0);

  await http(`${proxy}/api/p/1`, { headers: { 'x-user-id': 'u1' } });
  await waitFor(() => compared() === 1, 3000, 'first comparison');
  t.match(shadow.forFlag('catalog_read'), { compared: 1 });

  await writeFile(join(dirs.routesDir, 'routes.yaml'), stringify(routes(legacy.url, candidate.url, 'catalog_v2')));
  await running.cutover.reload();
  await http(`${proxy}/api/p/2`, { headers: { 'x-user-id': 'u2' } });
  await waitFor(() => compared() === 2, 3000, 'second comparison');
  t.match(shadow.forFlag('catalog_v2'), { compared: 2, mismatched: 0 }, 'the gate of the new flag has data');
  t.equal(shadow.forFlag('catalog_read'), undefined, 'the old flag no longer claims the route');
  t.match((await http(`${admin}/api/v1/shadow/catalog`)).json(), { flag: 'catalog_v2' });
});

t.test('setRouteFlags: the live mapping applies at once and retires removed routes', async (t) => {
  const shadow = new Shadower({ concurrency: 1, queue: 1 }, silentLogger, [
    { name: 'catalog', flag: 'catalog_read', legacy: 'legacy', shadow: {} },
    { name: 'search', flag: 'search_v2', legacy: 'legacy', shadow: {} },
  ]);
  t.teardown(() => shadow.close());
  shadow.statsFor('catalog').record('match');
  shadow.statsFor('search').record('mismatch');
  t.match(shadow.forFlag('catalog_read'), { compared: 1 });

  // As after a reload that moved catalog and dropped search: no request needed.
  shadow.setRouteFlags([{ name: 'catalog', flag: 'catalog_v2', legacy: 'legacy', shadow: {} }]);
  t.match(shadow.forFlag('catalog_v2'), { compared: 1, mismatched: 0 });
  t.equal(shadow.forFlag('catalog_read'), undefined);
  t.equal(shadow.forFlag('search_v2'), undefined, 'a route no longer configured feeds no gate');
  t.same(shadow.all().map((s) => [s.route, s.flag, s.retiredAt === undefined]), [['catalog', 'catalog_v2', true], ['search', 'search_v2', false]], 'the removed route is listed as retired');

  // A job queued before the reload counts for the route's live flag.
  shadow.statsFor('catalog').record('match');
  t.match(shadow.forFlag('catalog_v2'), { compared: 2 });
  t.equal(shadow.forFlag('catalog_read'), undefined);
  // ...but the removed route's counters stay as they were (reload-in-flight.test.ts: such jobs are
  // discarded), nor does asking for its stats make it live again.
  shadow.statsFor('search').record('mismatch');
  t.same(shadow.all().map((s) => [s.route, s.retiredAt === undefined]), [['catalog', true], ['search', false]]);
  t.equal(shadow.all()[1]?.totals.mismatch, 1);
  t.equal(shadow.forFlag('search_v2'), undefined, 'and feeds no gate');
});
