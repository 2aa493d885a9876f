import t from 'tap';
import type { ServerResponse } from 'node:http';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

// README, Shadow traffic: "What is mirrored. Requests the flag sent to legacy (not fallbacks, not
// while the candidate is ejected)."

const json = (res: ServerResponse, body: unknown, status = 200) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

const USERS = ['u0', 'u1', 'u2', 'u3', 'u4'];

t.test('no shadowing while the candidate is taken out by health checks; it resumes once it is back', async (t) => {
  let healthy = true;
  const mirrored: string[] = [];
  const legacy = await startUpstream(t, 'legacy', (_req, res) => json(res, { ok: true }));
  const candidate = await startUpstream(t, 'candidate', (req, res) => {
    if (req.url === '/health') {
      res.writeHead(healthy ? 200 : 503);
      return res.end();
    }
    mirrored.push(`${req.url} ${req.headers['x-cutover-shadow'] ?? 'live'}`);
    json(res, { ok: true });
  });
  const health = { path: '/health', interval: '50ms', timeout: '1s', unhealthyAfter: 2, healthyAfter: 2 };
  const cfg = {
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url, health } },
    routes: [{ name: 'catalog', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', shadow: { percentage: 100 } }],
  } as unknown as ConfigInput;
  // The flag sends everyone to legacy, and every read is shadowed.
  const dirs = await writeConfig(t, cfg, { f: { enabled: false } });
  const { proxy, running } = await startCutover(t, dirs);
  const candidateHealthy = () => running.cutover.health.view().candidate?.healthy === true;
  const burst = async (tag: string) => {
    for (const u of USERS) t.equal((await http(`${proxy}/api/${tag}/${u}`, { headers: { 'x-user-id': u } })).status, 200, `${tag} ${u}: legacy answers`);
  };

  await waitFor(candidateHealthy, 2000, 'candidate healthy at start');
  await burst('before');
  await waitFor(() => mirrored.length === USERS.length, 3000, 'every read mirrored while healthy');
  t.ok(mirrored.every((m) => m.endsWith(' 1')), 'they are shadow requests');

  healthy = false;
  await waitFor(() => !candidateHealthy(), 3000, 'probes take the candidate out');
  const seenBefore = mirrored.length;
  await burst('ejected');
  // Shadow jobs start after the client's answer: give any that were (wrongly) queued time to land.
  await new Promise((r) => setTimeout(r, 500));
  t.same(mirrored.slice(seenBefore), [], 'nothing mirrored to the candidate while it is out');

  healthy = true;
  await waitFor(candidateHealthy, 3000, 'probes bring the candidate back');
  const seenOut = mirrored.length;
  await burst('after');
  await waitFor(() => mirrored.length === seenOut + USERS.length, 3000, 'mirroring resumes once the candidate is back');
  t.ok(mirrored.slice(seenOut).every((m) => m.startsWith('/api/after/') && m.endsWith(' 1')), 'the new reads are the ones mirrored');
});
