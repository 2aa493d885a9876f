import t, { type Test } from 'tap';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

// The route's budget is the whole request (Envoy's route timeout): no attempt outlives it, the
// candidate's included. (A timeout longer than the budget is refused at load: config tests.)
// The upstreams' headersTimeout of 2 s stands in for "much later than the budget".
const ALL_IN = { f: { enabled: true, percentage: 100 } };

function config(legacyUrl: string, candidateUrl: string, route: Record<string, unknown>): ConfigInput {
  return {
    upstreams: { legacy: { url: legacyUrl, headersTimeout: '2s' }, candidate: { url: candidateUrl, headersTimeout: '2s' } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', ...route }],
  } as ConfigInput;
}

async function timed(t: Test, route: Record<string, unknown>, legacyHangs: boolean) {
  const legacy = await startUpstream(t, 'legacy', legacyHangs ? () => undefined : undefined);
  const candidate = await startUpstream(t, 'candidate', () => undefined); // never answers
  const { proxy } = await startCutover(t, await writeConfig(t, config(legacy.url, candidate.url, route), ALL_IN));
  const started = Date.now();
  const r = await http(`${proxy}/api/b`, { headers: { 'x-user-id': 'u1' } });
  return { r, ms: Date.now() - started, legacy, candidate };
}

t.test('a budget without a timeout bounds a hanging candidate: 504 at the budget', async (t) => {
  const { r, ms } = await timed(t, { budget: '300ms' }, false);
  t.equal(r.status, 504);
  t.ok(ms >= 290 && ms < 1000, `answered at the budget (${ms} ms), not the candidate's 2 s headersTimeout`);
});

t.test('hedged, both hanging: the request ends at the budget', async (t) => {
  const { r, ms, legacy } = await timed(t, { budget: '300ms', hedge: '50ms' }, true);
  t.equal(legacy.seen.length, 1, 'the hedge asked legacy too');
  t.equal(r.status, 504);
  t.ok(ms >= 290 && ms < 1000, `answered at the budget (${ms} ms)`);
});
