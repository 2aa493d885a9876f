import t from 'tap';
import { readFile, writeFile, rm, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { http, postJson, servedBy } from '../helpers/http.js';
import { serveArgs, spawnCutover, startCutover, startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';
import { FlagStore } from '../../src/flags/store.js';
import { FilePersistence } from '../../src/flags/file-persistence.js';
import { silentLogger } from '../../src/observability/logger.js';

t.test('a change survives a restart of the process', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const first = await spawnCutover(t, serveArgs(dirs));
  t.equal(await servedBy(first.proxy, '/api/x', 'u1'), 'legacy', 'no flag yet: legacy');
  t.equal((await postJson(`${first.admin}/api/v1/flags/f`, { enabled: true, percentage: 100 })).status, 200);
  t.equal(await servedBy(first.proxy, '/api/x', 'u1'), 'candidate', 'takes effect at once');
  first.child.kill('SIGTERM');
  t.equal(await first.exited, 0, 'SIGTERM exits 0');

  const second = await spawnCutover(t, serveArgs(dirs));
  t.match((await http(`${second.admin}/api/v1/flags/f`)).json(), { enabled: true, percentage: 100 });
  t.equal(await servedBy(second.proxy, '/api/x', 'u1'), 'candidate');
  await postJson(`${second.admin}/api/v1/flags/f`, { enabled: false });
  second.child.kill('SIGKILL'); // no graceful anything: the rollback must already be on disk
  await second.exited;
  const third = await spawnCutover(t, serveArgs(dirs));
  t.equal(await servedBy(third.proxy, '/api/x', 'u1'), 'legacy', 'rollback survived kill -9');
});

t.test('hand-edited flag files are picked up live; invalid ones keep the last good state', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: false } });
  const { proxy, admin } = await startCutover(t, dirs, { flagsPollMs: 0 }); // watch events only
  const file = join(dirs.flagsDir, 'f.json');

  await writeFile(file, JSON.stringify({ enabled: true, percentage: 100 }));
  await waitFor(async () => (await servedBy(proxy, '/api/1', 'u1')) === 'candidate', 3000, 'edit picked up');

  await writeFile(file, '{"enabled": true, "percentage": 1000}');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await servedBy(proxy, '/api/1', 'u1'), 'candidate', 'invalid edit ignored');
  t.match((await http(`${admin}/api/v1/flags/f`)).json(), { enabled: true, percentage: 100 });

  // GitOps-style atomic replace of the file
  await writeFile(join(dirs.flagsDir, 'tmp-f'), JSON.stringify({ enabled: false }));
  await rename(join(dirs.flagsDir, 'tmp-f'), file);
  await waitFor(async () => (await servedBy(proxy, '/api/1', 'u1')) === 'legacy', 3000, 'atomic replace picked up');

  await writeFile(join(dirs.flagsDir, 'g.json'), JSON.stringify({ enabled: true, percentage: 5 }));
  await waitFor(async () => (await http(`${admin}/api/v1/flags/g`)).status === 200, 3000, 'new file picked up');
  await rm(join(dirs.flagsDir, 'g.json'));
  await waitFor(async () => (await http(`${admin}/api/v1/flags/g`)).status === 404, 3000, 'deleted file removes the flag');

  const audit = (await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  t.ok(audit.length >= 4, 'file changes are audited');
  t.ok(audit.every((a: { source: string }) => a.source === 'file'));
});

t.test('the poll catches changes when watch events are lost', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: false } });
  const pollMs = 100;
  // No fs.watch at all: only the poll can notice the edit.
  const store = new FlagStore(silentLogger, new FilePersistence({ dir: dirs.flagsDir, logger: silentLogger, pollMs, watch: false }));
  await store.start();
  t.teardown(() => store.close());
  const start = Date.now();
  await writeFile(join(dirs.flagsDir, 'f.json'), JSON.stringify({ enabled: true, percentage: 42 }));
  await waitFor(() => store.get('f')?.percentage === 42, 3000, 'poll');
  const took = Date.now() - start;
  // One poll period plus the 30 ms debounce, with room for a loaded machine.
  t.ok(took < pollMs * 4, `picked up by the poll in ${took} ms (poll every ${pollMs} ms)`);
});

t.test('concurrent partial updates are serialized: none is lost', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const { admin } = await startCutover(t, dirs);
  const users = Array.from({ length: 40 }, (_, i) => `pilot-${i}`);
  // Each call sets a different field combination; the last percentage write and every description must stick.
  await Promise.all([
    ...users.slice(0, 20).map((_, i) => postJson(`${admin}/api/v1/flags/f`, { percentage: i })),
    postJson(`${admin}/api/v1/flags/f`, { enabled: true }),
    postJson(`${admin}/api/v1/flags/f`, { cohort: users }),
    postJson(`${admin}/api/v1/flags/f`, { description: 'kept' }),
  ]);
  const state = (await http(`${admin}/api/v1/flags/f`)).json<{ enabled: boolean; cohort: string[]; description: string }>();
  t.equal(state.enabled, true);
  t.same(state.cohort, users);
  t.equal(state.description, 'kept');
  const audit = (await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8')).trim().split('\n');
  t.ok(audit.length >= 22, `audit has every change (${audit.length})`);
  const file = JSON.parse(await readFile(join(dirs.flagsDir, 'f.json'), 'utf8'));
  t.same(file.cohort, users, 'file matches memory');
});
