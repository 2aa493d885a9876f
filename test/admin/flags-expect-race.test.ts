import t from 'tap';
import { execFileSync } from 'node:child_process';
import { constants } from 'node:fs';
import { open, readFile, rename, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { http, postJson } from '../helpers/http.js';
import { fleet } from '../helpers/fake-unleash.js';
import { startCutover, startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';

// "expect" must hold when the change is made, not when the request arrived: a change queued ahead
// of it (or a file edit the store reads in its queue) can land in between.

type Refused = { error: string; message: string; current: { enabled: boolean; percentage: number } | null };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('file mode: a flag file edited while the queue is busy is read before expect is checked', { skip: process.platform === 'win32' && 'needs mkfifo' }, async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: false, percentage: 25 } });
  const { admin } = await startCutover(t, dirs);
  const fFile = async () => JSON.parse(await readFile(join(dirs.flagsDir, 'f.json'), 'utf8')) as { enabled: boolean; percentage: number };

  // Hold the store's queue: a flag file that is a named pipe stops the next rescan on reading it
  // until the test writes it. A non-blocking open for writing succeeds only once a rescan has it open.
  const pipe = join(dirs.flagsDir, 'h.json');
  execFileSync('mkfifo', [pipe]);
  let writer: FileHandle | undefined;
  await waitFor(async () => (writer = await open(pipe, constants.O_WRONLY | constants.O_NONBLOCK).catch(() => undefined)) !== undefined, 3000, 'a rescan reading the pipe');
  t.teardown(() => writer?.close());

  // GitOps raises f to 100 %; the store can read that only in its queue, behind the stuck rescan.
  await writeFile(join(dirs.flagsDir, 'f.json'), JSON.stringify({ enabled: false, percentage: 100 }));
  // The dashboard's Enable, drawn for "off at 25 %".
  const enable = postJson(`${admin}/api/v1/flags/f`, { enabled: true, expect: { enabled: false, percentage: 25 } });
  await sleep(300); // time for the server to read the POST (checked on arrival, it would pass)
  t.match((await http(`${admin}/api/v1/flags/f`)).json(), { enabled: false, percentage: 25 }, '(the edit is not live yet)');
  // A plain file takes the pipe's place for later rescans, then the stuck one gets its text.
  await writeFile(join(dirs.flagsDir, '.h.tmp'), '{"enabled": false, "percentage": 0}');
  await rename(join(dirs.flagsDir, '.h.tmp'), pipe);
  await writer?.write('{"enabled": false, "percentage": 0}');
  await writer?.close();
  writer = undefined;

  const refused = await enable;
  t.equal(refused.status, 409, 'the edit to 100 % was read first: refused');
  t.match(refused.json<Refused>(), { error: 'precondition_failed', message: /percentage 100, not percentage 25 as expected; nothing changed/, current: { enabled: false, percentage: 100 } });
  t.match(await fFile(), { enabled: false, percentage: 100 }, 'f.json as the edit left it');
  t.match((await http(`${admin}/api/v1/flags/f`)).json(), { enabled: false, percentage: 100 }, 'f still off: nobody on the candidate');
  const lines = (await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { source: string; flag: string });
  t.same(lines.filter((l) => l.source === 'admin-api'), [], 'no admin change audited');
});

t.test('fleet mode: a rollback queued ahead (slow Unleash) is seen before expect is checked', async (t) => {
  const f = await fleet(t);
  f.u.slow.set('flag', 500); // each admin call about "flag": read, off, read back = 1.5 s
  const rollback = f.post({ enabled: false });
  await waitFor(async () => f.u.calls.length > 0, 3000, 'the rollback reaching Unleash');
  // A colleague's "on, raise to 50 %", decided while the toggle showed on at 25 %.
  const raise = f.post({ enabled: true, percentage: 50, expect: { enabled: true, percentage: 25 } });
  t.equal((await rollback).status, 200, 'the rollback went through');
  const refused = await raise;
  t.equal(refused.status, 409, 'the rollback was seen first: refused');
  t.match(refused.json<Refused>(), { error: 'precondition_failed', message: /it is enabled false, not enabled true as expected; nothing changed/, current: { enabled: false, percentage: 25 } });
  t.equal(f.u.env('flag')?.enabled, false, 'still off in Unleash');
  t.same(f.u.rollout('flag'), [25], 'rollout untouched');
  t.same((await f.adminLines()).map((l) => l.after?.enabled), [false], 'only the rollback audited');
});
