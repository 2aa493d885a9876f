import t, { type Test } from 'tap';
import { request, type IncomingMessage, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

// README, "One verdict per candidate attempt": a 5xx status counts even if its body is then cut,
// and that holds when it is the client who leaves mid-body; a client leaving a 200 gives none.

/** Starts a response with `status` and streams a body that never ends; counts closed responses. */
function endless(status: number, closed: { n: number }) {
  return (_req: unknown, res: ServerResponse) => {
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.write('partial');
    res.on('close', () => closed.n++);
  };
}

/** GETs `url`, and leaves (destroys its socket) once the status and the first body bytes are in. */
async function leaveMidBody(url: string, userId: string): Promise<number> {
  const req = request(url, { headers: { 'x-user-id': userId } });
  req.end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  await once(res, 'data');
  req.destroy();
  return res.statusCode ?? 0;
}

async function setup(t: Test, status: number) {
  const closed = { n: 0 };
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate', endless(status, closed));
  const cfg = {
    // No ejection in the way: the streak itself is read.
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url, outlier: { consecutiveFailures: 1000 } } },
    // The 5xx is not one to fall back on: it is relayed, so the client sees it and can leave.
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', timeout: '2s', fallbackOn: ['connect', 'timeout'] }],
  } as ConfigInput;
  const flags = { f: { enabled: true, percentage: 100, auto_disable_on_failure: true, auto_disable_after: 2 } };
  const { proxy, admin, running } = await startCutover(t, await writeConfig(t, cfg, flags));
  const streak = () => running.cutover.health.view().candidate?.consecutiveFailures;
  const enabled = async () => (await http(`${admin}/api/v1/flags/f`)).json<{ enabled: boolean }>().enabled;
  /** One request the client leaves mid-body; resolves once cutover has cancelled the candidate's. */
  const leave = async (userId: string) => {
    const before = closed.n;
    t.equal(await leaveMidBody(`${proxy}/api/x`, userId), status, `the client got the candidate's ${status}`);
    await waitFor(() => closed.n > before, 5000, "the candidate's response cancelled");
    await new Promise((r) => setTimeout(r, 50));
  };
  return { streak, enabled, leave, running };
}

t.test('a relayed candidate 5xx the client leaves mid-body is one 5xx verdict', async (t) => {
  const { streak, enabled, leave, running } = await setup(t, 500);
  await leave('u1');
  t.equal(streak(), 1, 'one failure toward ejection');
  t.equal(running.cutover.health.view().candidate?.lastReason, '5xx on route api');
  t.equal(await enabled(), true, 'one failure: not yet auto-disabled');
  await leave('u2');
  t.equal(streak(), 2, 'one per attempt, not two');
  await waitFor(async () => !(await enabled()), 2000, 'auto-disabled after 2 in a row');
});

t.test('a candidate 200 the client leaves mid-body gives no verdict', async (t) => {
  const { streak, enabled, leave } = await setup(t, 200);
  await leave('u1');
  await leave('u2');
  t.equal(streak(), 0, 'no failure');
  t.equal(await enabled(), true);
});
