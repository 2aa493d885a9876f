import t, { type Test } from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { http, postJson } from '../helpers/http.js';
import { fleet } from '../helpers/fake-unleash.js';
import { startCutover, startUpstream, twoSided, writeConfig } from '../helpers/servers.js';

// POST /api/v1/flags/:name with "expect": the change applies only while the flag still is what the
// caller saw (the dashboard's Enable button, drawn for "off at 25 %"), else 409 and nothing changes.

async function setup(t: Test) {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 25 } });
  const cut = await startCutover(t, dirs);
  const files = async () => [await readFile(join(dirs.flagsDir, 'f.json'), 'utf8'), await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8').catch(() => '')];
  return { ...cut, files };
}

type Refused = { error: string; message: string; current: { enabled: boolean; percentage: number } | null };

t.test('a change with a matching expect applies; a stale one is refused with 409 and the current state', async (t) => {
  const { admin, files } = await setup(t);
  const url = `${admin}/api/v1/flags/f`;
  const ok = await postJson(url, { enabled: false, expect: { enabled: true } });
  t.equal(ok.status, 200, 'expect matches: applied');
  t.match(ok.json(), { enabled: false, percentage: 25 });
  t.notOk('expect' in ok.json<object>(), 'expect is not part of the flag');

  const before = await files();
  // The dashboard scenario: its Enable was drawn for "off at 25 %"; a colleague raised it to 100 % meanwhile.
  await postJson(url, { percentage: 100 });
  const changed = await files();
  const stale = await postJson(url, { enabled: true, expect: { enabled: false, percentage: 25 } });
  t.equal(stale.status, 409, 'percentage changed since: refused');
  const body = stale.json<Refused>();
  t.equal(body.error, 'precondition_failed');
  t.match(body.message, /percentage 100, not percentage 25 as expected; nothing changed/);
  t.match(body.current, { enabled: false, percentage: 100 }, 'the answer carries the state as it is');
  t.same(await files(), changed, 'flag file and audit log untouched');
  t.not(changed[1], before[1], '(the colleague\'s change was audited)');

  // A rollback that finds the flag already off: 409 says so, nothing to fight.
  const already = await postJson(url, { enabled: false, expect: { enabled: true } });
  t.equal(already.status, 409);
  t.match(already.json<Refused>(), { error: 'precondition_failed', current: { enabled: false } });
  // A rollback without expect is never refused.
  t.equal((await postJson(url, { enabled: false })).status, 200);

  const missing = await postJson(`${admin}/api/v1/flags/nope`, { enabled: true, expect: { enabled: false } });
  t.equal(missing.status, 409, 'expecting a flag that does not exist');
  t.match(missing.json<Refused>(), { error: 'precondition_failed', message: /no such flag/, current: null });
  t.equal((await http(`${admin}/api/v1/flags/nope`)).status, 404, 'not created');
});

t.test('a malformed expect is a 400 naming the problem, and changes nothing', async (t) => {
  const { admin, files } = await setup(t);
  const before = await files();
  const cases: Array<[string, unknown, RegExp]> = [
    ['not an object', { enabled: false, expect: true }, /expect: must be an object/],
    ['null', { enabled: false, expect: null }, /expect: must be an object/],
    ['array', { enabled: false, expect: [true] }, /expect: must be an object/],
    ['empty', { enabled: false, expect: {} }, /expect: name "enabled" and\/or "percentage"/],
    ['unknown field', { enabled: false, expect: { enabled: true, cohort: [] } }, /not "cohort"/],
    ['string enabled', { enabled: false, expect: { enabled: 'true' } }, /"enabled" must be true or false/],
    ['percentage out of range', { enabled: false, expect: { percentage: 101 } }, /"percentage" must be a whole number from 0 to 100/],
    ['fractional percentage', { enabled: false, expect: { percentage: 2.5 } }, /"percentage" must be a whole number/],
  ];
  for (const [what, body, msg] of cases) {
    const r = await postJson(`${admin}/api/v1/flags/f`, body);
    t.equal(r.status, 400, what);
    t.match(r.json(), { error: 'invalid_expect', message: msg }, what);
  }
  // A bad patch is a 400 even when the flag no longer matches (not a 409 that hides the typo).
  const badPatch = await postJson(`${admin}/api/v1/flags/f`, { enabeld: false, expect: { enabled: false } });
  t.equal(badPatch.status, 400);
  t.match(badPatch.json(), { error: 'invalid_flag', message: /unknown field "enabeld"/ });
  t.same(await files(), before, 'flag file and audit log untouched');
  t.match((await http(`${admin}/api/v1/flags/f`)).json(), { enabled: true, percentage: 25 });
});

t.test('fleet mode: expect is checked against the toggle as Unleash has it (test/flags/fleet-rollback.test.ts: one this replica has not polled yet)', async (t) => {
  const { post, u } = await fleet(t);
  const stale = await post({ enabled: true, expect: { enabled: false } });
  t.equal(stale.status, 409, 'the toggle is on, not off as expected');
  t.match(stale.json<Refused>(), { error: 'precondition_failed', current: { enabled: true, percentage: 25 } });
  t.same(u.calls, ['GET feature'], 'Unleash was read, nothing written');
  const ok = await post({ enabled: false, expect: { enabled: true, percentage: 25 } });
  t.equal(ok.status, 200);
  t.equal(u.env('flag')?.enabled, false, 'applied in Unleash');
});
