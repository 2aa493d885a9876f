import t from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { http, servedBy } from '../helpers/http.js';
import { startCutover, startUpstream, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';
import type { HealthView } from '../../src/upstream/health.js';

// README, "Reloading routes/": "upstreams whose settings did not change keep their warm
// connection pools and their health/ejection state". The reload test checks the pool; this
// checks the ejection, as an operator sees it in /api/v1/status.

interface Status {
  upstreams: Array<{ name: string; health: HealthView | null }>;
}

t.test('a reload that does not touch the candidate leaves it ejected', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    req.resume();
    res.writeHead(500);
    res.end();
  });
  const config = (extraRoute: boolean): ConfigInput => ({
    upstreams: {
      legacy: { url: legacy.url },
      // One failure ejects, for far longer than the test: only a reset of the state ends it.
      candidate: { url: candidate.url, outlier: { consecutiveFailures: 1, baseEjection: '5m' } },
    },
    routes: [
      { name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f' },
      ...(extraRoute ? [{ name: 'other', match: { path: '/other' }, legacy: 'legacy' }] : []),
    ],
  });
  const dirs = await writeConfig(t, config(false), { f: { enabled: true, percentage: 100 } });
  const { proxy, admin, running } = await startCutover(t, dirs);
  const health = async () => (await http(`${admin}/api/v1/status`)).json<Status>().upstreams.find((u) => u.name === 'candidate')?.health;

  t.equal(await servedBy(proxy, '/api/x', 'u1'), 'legacy', "the candidate's 500 fell back to legacy");
  const before = await health();
  t.match(before, { healthy: false, ejections: 1 }, 'the candidate is ejected');
  t.ok((before?.ejectedUntil ?? 0) > Date.now() + 60_000, 'for minutes');

  await writeFile(join(dirs.routesDir, 'routes.yaml'), stringify(config(true)));
  await running.cutover.reload();
  t.same(running.cutover.config.routes.map((r) => r.name), ['api', 'other'], 'the reload applied');
  const after = await health();
  t.same(after, before, 'same health after the reload: still ejected, same deadline, same count');

  t.equal(await servedBy(proxy, '/api/y', 'u1'), 'legacy', "the flag's user still goes to legacy");
  t.equal(candidate.seen.length, 1, 'and the ejected candidate got nothing after the reload');
});
