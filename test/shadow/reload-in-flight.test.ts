import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ServerResponse } from 'node:http';
import { stringify } from 'yaml';
import { http } from '../helpers/http.js';
import { parseProm } from '../helpers/prom.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

// A shadow probe still in flight when a reload retires or changes its route's shadowing used to
// record its outcome anyway: into a retired route's counters (which must stay flat), or, judged by
// the old comparison rules, into results the new rules now produce (two configs mixed). Such a
// probe is now discarded; one whose route kept the same shadowing still counts.

type Search = 'shadowed' | 'plain' | 'ignored' | 'moved';

function send(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

/**
 * catalog always shadowed; search shadowed, kept without shadow (`plain`), shadowed with
 * `$.price` ignored, or shadowed as before behind another flag (`moved`). One shadow job at a
 * time: a catalog comparison recorded after search's probe means that probe is over.
 */
function cfg(legacy: string, candidate: string, search: Search): ConfigInput {
  const catalog = { name: 'catalog', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', shadow: { percentage: 100 } };
  const shadow = search === 'plain' ? {} : { shadow: { percentage: 100, ...(search === 'ignored' && { ignore: ['$.price'] }) } };
  const s = { name: 'search', match: { path: '/search' }, legacy: 'legacy', candidate: 'candidate', flag: search === 'moved' ? 'h' : 'g', ...shadow };
  return { upstreams: { legacy: { url: legacy }, candidate: { url: candidate } }, routes: [catalog, s], shadowing: { concurrency: 1, queue: 10 } } as unknown as ConfigInput;
}

const cases: Array<{ held: 'candidate' | 'legacy'; to: Exclude<Search, 'shadowed'>; counts: boolean; what: string }> = [
  { held: 'candidate', to: 'plain', counts: false, what: "a probe in flight when a reload unshadows its route leaves the retired route's counters flat" },
  { held: 'legacy', to: 'plain', counts: false, what: 'a request in flight when a reload unshadows its route is not mirrored into it afterwards' },
  { held: 'candidate', to: 'ignored', counts: false, what: 'a probe in flight when a reload changes its route\'s shadow section is not counted under the new one' },
  { held: 'candidate', to: 'moved', counts: true, what: 'a probe in flight when a reload only moves its route to another flag still counts, for the new flag' },
];

for (const c of cases) {
  t.test(c.what, async (t) => {
    // The candidate's price differs: every search comparison that counts is a mismatch.
    const held: ServerResponse[] = [];
    let holding: 'candidate' | 'legacy' | 'none' = 'none';
    const answer = (side: 'legacy' | 'candidate', price: number) => (req: { url?: string }, res: ServerResponse) => {
      if (holding === side && req.url?.startsWith('/search') === true) return void held.push(res);
      send(res, { price });
    };
    const legacy = await startUpstream(t, 'legacy', answer('legacy', 10));
    const candidate = await startUpstream(t, 'candidate', answer('candidate', 11));
    const dirs = await writeConfig(t, cfg(legacy.url, candidate.url, 'shadowed'), { f: { enabled: false }, g: { enabled: false }, h: { enabled: false } });
    const { proxy, admin, running } = await startCutover(t, dirs);
    const totals = async (route: string) => (await http(`${admin}/api/v1/shadow/${route}`)).json<{ totals: Record<string, number> }>().totals;
    const counter = async () => parseProm((await http(`${admin}/metrics`)).text).find('cutover_shadow_total', { route: 'search', result: 'mismatch' });

    // One comparison under the first config, so the route has results to keep.
    await http(`${proxy}/search/0`, { headers: { 'x-user-id': 'u0' } });
    await waitFor(async () => (await totals('search')).mismatch === 1, 3000, 'the first comparison');

    holding = c.held;
    const client = http(`${proxy}/search/1`, { headers: { 'x-user-id': 'u1' } });
    await waitFor(() => held.length === 1, 3000, `search/1 held at ${c.held}`);
    await writeFile(join(dirs.routesDir, 'routes.yaml'), stringify(cfg(legacy.url, candidate.url, c.to)));
    await running.cutover.reload();
    holding = 'none';
    send(held[0] as ServerResponse, { price: c.held === 'legacy' ? 10 : 11 });
    await client;
    // Queued behind search/1's probe (if it has one): once catalog is compared, that probe is over.
    await http(`${proxy}/api/1`, { headers: { 'x-user-id': 'u1' } });
    await waitFor(async () => (await totals('catalog')).mismatch === 1, 3000, 'the catalog comparison');

    const after = await totals('search');
    t.same(after, { match: 0, mismatch: c.counts ? 2 : 1, error: 0, dropped: 0 }, c.counts ? 'counted' : 'not counted, not even as dropped or an error');
    t.match(await counter(), [{ value: c.counts ? 2 : 1 }], '/metrics agrees');
    if (c.to === 'moved') t.match(running.cutover.shadow.forFlag('h'), { compared: 2, mismatched: 2 }, "the new flag's gate reads it");
    if (c.to === 'ignored') {
      // Comparisons started under the new rules count as usual: price ignored, they match.
      await http(`${proxy}/search/2`, { headers: { 'x-user-id': 'u2' } });
      await waitFor(async () => (await totals('search')).match === 1, 3000, 'a comparison under the new rules');
      t.match(await totals('search'), { match: 1, mismatch: 1 });
    }
  });
}
