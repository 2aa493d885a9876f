import t from 'tap';
import { mkdir, readFile, writeFile, rm, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { http, postJson, servedBy, type Reply } from '../helpers/http.js';
import { serveArgs, spawnCutover, startCutover, startUpstream, tempDir, twoSided, waitFor, writeConfig } from '../helpers/servers.js';
import { FlagStore } from '../../src/flags/store.js';
import { FilePersistence } from '../../src/flags/file-persistence.js';
import type { FlagState } from '../../src/flags/model.js';
import { createLogger, silentLogger } from '../../src/observability/logger.js';

/** A logger whose JSON lines the test can read. */
function capturedLogger() {
  const lines: Array<{ msg: string; flag?: string; [k: string]: unknown }> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: createLogger({ level: 'info', destination: stream }), lines };
}

type AuditLine = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed JSON lines

async function auditLines(flagsDir: string): Promise<AuditLine[]> {
  return (await readFile(join(flagsDir, 'audit.log'), 'utf8')).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

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
  const { logger, lines } = capturedLogger();
  const { proxy, admin } = await startCutover(t, dirs, { flagsPollMs: 0, logger }); // watch events only
  const file = join(dirs.flagsDir, 'f.json');

  await writeFile(file, JSON.stringify({ enabled: true, percentage: 100 }));
  await waitFor(async () => (await servedBy(proxy, '/api/1', 'u1')) === 'candidate', 3000, 'edit picked up');

  await writeFile(file, '{"enabled": true, "percentage": 1000}');
  const invalid = (l: { msg: string; flag?: string }) => l.msg === 'flag file is invalid; keeping the last good state' && l.flag === 'f';
  await waitFor(() => lines.some(invalid), 3000, 'the invalid file read and logged');
  t.match(lines.find(invalid), { level: 40, err: /percentage/ }, 'logged as a warning naming the bad field');
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

  // Deleting the file of a flag in use sends its routes' users to legacy.
  await writeFile(file, JSON.stringify({ enabled: true, percentage: 100 }));
  await waitFor(async () => (await servedBy(proxy, '/api/1', 'u1')) === 'candidate', 3000, 'on again');
  await rm(file);
  await waitFor(async () => (await servedBy(proxy, '/api/1', 'u1')) === 'legacy', 3000, 'flag file deleted: legacy');
  t.equal((await http(`${admin}/api/v1/flags/f`)).status, 404, 'the flag is gone');

  const audit = (await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  t.ok(audit.length >= 6, 'file changes are audited');
  t.match(audit.at(-1), { flag: 'f', source: 'file', after: null }, 'the deletion too');
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
  // Every call changes something (20 distinct percentages, and three fields set once), so the
  // audit must hold exactly one line per call, chained before -> after in the order they took effect.
  const patches: object[] = [...Array.from({ length: 20 }, (_, i) => ({ percentage: i })), { enabled: true }, { cohort: users }, { description: 'kept' }];
  const replies: Reply[] = await Promise.all(patches.map((p) => postJson(`${admin}/api/v1/flags/f`, p)));
  replies.forEach((r, i) => {
    t.equal(r.status, 200, `POST ${JSON.stringify(patches[i]).slice(0, 40)}`);
    t.match(r.json(), patches[i], 'the answer carries its own change');
  });
  const state = (await http(`${admin}/api/v1/flags/f`)).json<Record<string, unknown>>();
  t.match(state, { enabled: true, cohort: users, description: 'kept' });

  const audit = await auditLines(dirs.flagsDir);
  t.equal(audit.length, patches.length, 'one audit line per change');
  let prev: unknown = null;
  for (const [i, line] of audit.entries()) {
    t.match(line, { flag: 'f', source: 'admin-api', actor: 'admin-api:127.0.0.1' });
    t.same(line.before, prev, `line ${i}: before is the previous line's after`);
    prev = line.after;
  }
  const last = audit[audit.length - 1]!.after;
  // A new flag starts at 100 %, which no call here sets.
  const setsPercentage = audit.filter((l) => (l.before?.percentage ?? 100) !== l.after.percentage);
  t.same(setsPercentage.map((l) => l.after.percentage).sort((a, b) => a - b), [...Array(20).keys()], 'each percentage write applied once');
  t.equal(state.percentage, setsPercentage[setsPercentage.length - 1]!.after.percentage, 'the last percentage write stuck');
  // The flags API adds the routes that use the flag (not part of the stored state).
  const { name: _name, routes: _routes, ...view } = state;
  const file = JSON.parse(await readFile(join(dirs.flagsDir, 'f.json'), 'utf8'));
  t.same(file, last, "file = the last audit line's after");
  t.same(view, last, "GET = the last audit line's after");
});

t.test('a change the audit log cannot take is answered 500 and its file put back: no rescan makes it live later', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const { logger, lines } = capturedLogger();
  const { admin, proxy } = await startCutover(t, dirs, { logger }); // watch + 200 ms poll
  const flag = (n: string) => `${admin}/api/v1/flags/${n}`;
  t.equal((await postJson(flag('f'), { enabled: false, percentage: 10 }, { 'x-cutover-actor': 'alice' })).status, 200);
  const fFile = join(dirs.flagsDir, 'f.json');
  const fBefore = await readFile(fFile, 'utf8');
  const auditFile = join(dirs.flagsDir, 'audit.log');
  const auditBefore = await readFile(auditFile, 'utf8');

  // audit.log as a directory: appending fails with EISDIR, even for root (chmod would not stop root).
  await rename(auditFile, `${auditFile}.saved`);
  await mkdir(auditFile);
  const refused = await postJson(flag('f'), { enabled: true, percentage: 100 }, { 'x-cutover-actor': 'mallory' });
  t.equal(refused.status, 500, 'an unauditable change is refused');
  t.equal(await readFile(fFile, 'utf8'), fBefore, 'the previous file is back');
  t.equal((await postJson(flag('g'), { enabled: true }, { 'x-cutover-actor': 'mallory' })).status, 500, 'a new flag too');
  t.equal(await readFile(join(dirs.flagsDir, 'g.json'), 'utf8').catch((e: NodeJS.ErrnoException) => e.code), 'ENOENT', 'its file removed');
  t.ok(lines.some((l) => l.msg === 'cannot write the audit log: change refused, flag file put back' && l.flag === 'f'));

  await rm(auditFile, { recursive: true });
  await rename(`${auditFile}.saved`, auditFile);
  // A hand edit made now is picked up only by a rescan that runs after the audit log is back.
  await writeFile(join(dirs.flagsDir, 'h.json'), JSON.stringify({ enabled: false }));
  await waitFor(async () => (await http(flag('h'))).status === 200, 3000, 'a rescan after the audit log came back');
  await new Promise((r) => setTimeout(r, 300)); // past the 30 ms debounce and another 200 ms poll
  t.match((await http(flag('f'))).json(), { enabled: false, percentage: 10, updated_by: 'admin-api:alice@127.0.0.1' }, 'memory: unchanged');
  t.equal(await servedBy(proxy, '/api/x', 'u1'), 'legacy', 'routing: unchanged');
  t.equal(await readFile(fFile, 'utf8'), fBefore, 'disk: unchanged');
  t.equal((await http(flag('g'))).status, 404, 'the refused new flag does not exist');
  const audit = await readFile(auditFile, 'utf8');
  t.ok(audit.startsWith(auditBefore), 'earlier audit lines kept');
  t.match(audit.slice(auditBefore.length).trim().split('\n').map((l) => JSON.parse(l)), [{ flag: 'h', source: 'file' }], 'no audit line claims a refused change');
});

t.test('if the file cannot be put back either, the log names the file that holds the refused change', async (t) => {
  const dir = await tempDir(t);
  let writes = 0;
  // Fault injection on real files: the audit fails, and so does the second write (the put-back).
  class Failing extends FilePersistence {
    override async write(name: string, state: FlagState): Promise<void> {
      if (++writes > 1) throw new Error('ENOSPC: no space left on device');
      return super.write(name, state);
    }
    override async audit(): Promise<void> {
      throw new Error('EIO: i/o error');
    }
  }
  await writeFile(join(dir, 'f.json'), JSON.stringify({ enabled: false }));
  const { logger, lines } = capturedLogger();
  const store = new FlagStore(logger, new Failing({ dir, logger, pollMs: 0, watch: false }));
  await store.start();
  t.teardown(() => store.close());
  await t.rejects(store.set('f', { enabled: true }, { source: 'admin-api', who: 'bob' }), /EIO/);
  t.equal(store.get('f')?.enabled, false, 'not live');
  const line = lines.find((l) => l.level === 50 && l.flag === 'f');
  t.match(line, { file: join(dir, 'f.json'), refused: { enabled: true }, previous: { enabled: false }, err: /ENOSPC/, auditErr: /EIO/ });
  t.match(line?.msg, new RegExp(`nor put back ${join(dir, 'f.json')}: that file now holds a refused, unaudited change`));
});

t.test('a hand edit the audit log cannot take is logged and waits for the next rescan', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'f.json'), JSON.stringify({ enabled: false }));
  const { logger, lines } = capturedLogger();
  const store = new FlagStore(logger, new FilePersistence({ dir, logger, pollMs: 50, watch: false }));
  await store.start();
  t.teardown(() => store.close());
  await mkdir(join(dir, 'audit.log'));
  await writeFile(join(dir, 'f.json'), JSON.stringify({ enabled: true }));
  await waitFor(() => lines.some((l) => l.msg === 'flags rescan failed; keeping the current state'), 3000, 'the failed rescan logged');
  t.equal(store.get('f')?.enabled, false, 'not live while it cannot be audited');
  await rm(join(dir, 'audit.log'), { recursive: true });
  await waitFor(() => store.get('f')?.enabled === true, 3000, 'applied by a later rescan');
  t.match(await auditLines(dir), [{ flag: 'f', source: 'file', after: { enabled: true } }]);
});

t.test('an API patch takes in a hand or GitOps edit the watcher has not delivered yet', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 10 }, g: { enabled: false, percentage: 5 } });
  // No watch and no poll: an edit reaches memory only if set() reads the files itself (a slow
  // poll on a network or ConfigMap mount looks the same from here).
  const store = new FlagStore(silentLogger, new FilePersistence({ dir: dirs.flagsDir, logger: silentLogger, pollMs: 0, watch: false }));
  await store.start();
  t.teardown(() => store.close());
  const file = join(dirs.flagsDir, 'f.json');
  const bob = { source: 'admin-api', who: 'bob' };

  await writeFile(file, JSON.stringify({ enabled: false, percentage: 10, description: 'rolled back in git' }));
  t.match(await store.set('f', { percentage: 50 }, bob), { enabled: false, percentage: 50, description: 'rolled back in git' }, 'the rollback kept');
  t.match(JSON.parse(await readFile(file, 'utf8')), { enabled: false, percentage: 50, description: 'rolled back in git' });

  // Memory says off; the file turns it on; a POST {enabled:false} is a change, not "no change".
  const gFile = join(dirs.flagsDir, 'g.json');
  await writeFile(gFile, JSON.stringify({ enabled: true, percentage: 5 }));
  t.match(await store.set('g', { enabled: false }, bob), { enabled: false, percentage: 5 });
  t.match(JSON.parse(await readFile(gFile, 'utf8')), { enabled: false }, 'the file says off');
  t.equal(store.get('g')?.enabled, false, 'memory says off');

  t.match(await auditLines(dirs.flagsDir), [
    { flag: 'f', source: 'file', before: { enabled: true, percentage: 10 }, after: { enabled: false, description: 'rolled back in git' } },
    { flag: 'f', source: 'admin-api', actor: 'admin-api:bob', before: { enabled: false, percentage: 10 }, after: { enabled: false, percentage: 50 } },
    { flag: 'g', source: 'file', before: { enabled: false }, after: { enabled: true, percentage: 5 } },
    { flag: 'g', source: 'admin-api', before: { enabled: true }, after: { enabled: false, percentage: 5 } },
  ], 'each file change audited before the API change built on it');
});

t.test('a closed store writes nothing: a change after shutdown is refused, not audited over a directory being removed', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'f.json'), JSON.stringify({ enabled: true, percentage: 10 }));
  const store = new FlagStore(silentLogger, new FilePersistence({ dir, logger: silentLogger, pollMs: 0, watch: false }));
  await store.start();
  await store.close();
  // What a test's (or an operator's) cleanup does after shutdown: the files go. A late change
  // (auto-disable from a request cut by the shutdown, say) rereads the files first, and would
  // audit their removal and write its own file into a directory being deleted.
  await rm(join(dir, 'f.json'));
  await t.rejects(store.set('f', { enabled: false }, { source: 'auto-disable' }), /shutting down/, 'refused');
  const { readdir } = await import('node:fs/promises');
  t.same(await readdir(dir), [], 'nothing written: no flag file, no audit log');
});

t.test('at start, flag files that differ from the audit log get an audit line (edits while stopped, a crash before the audit line)', async (t) => {
  const dir = await tempDir(t);
  const open = async () => {
    const { logger, lines } = capturedLogger();
    const store = new FlagStore(logger, new FilePersistence({ dir, logger, pollMs: 0, watch: false }));
    await store.start();
    return { store, lines };
  };
  await writeFile(join(dir, 'shipped.json'), JSON.stringify({ enabled: false, percentage: 0 }));
  const first = await open();
  t.equal((await readFile(join(dir, 'audit.log'), 'utf8').catch(() => '')), '', 'first start: the files are the baseline, nothing audited');
  const alice = { source: 'admin-api', who: 'alice' };
  await first.store.set('a', { enabled: true, percentage: 25 }, alice);
  await first.store.set('b', { enabled: true, percentage: 50 }, alice);
  await first.store.set('c', { enabled: true, percentage: 75 }, alice);
  await first.store.close();

  // While stopped: a hand edit, a deletion, and a file a crash left without its audit line.
  await writeFile(join(dir, 'a.json'), JSON.stringify({ enabled: false, percentage: 25 }));
  await rm(join(dir, 'b.json'));
  await writeFile(join(dir, 'd.json'), JSON.stringify({ enabled: true, percentage: 10 }));
  const second = await open();
  t.teardown(() => second.store.close());
  const lines = (await auditLines(dir)).slice(3);
  t.match(lines, [
    { flag: 'a', source: 'file', reason: /^found at start: not what the audit log last recorded/, before: { enabled: true, percentage: 25 }, after: { enabled: false, percentage: 25 } },
    { flag: 'b', source: 'file', reason: /^found at start/, before: { enabled: true, percentage: 50 }, after: null },
    { flag: 'd', source: 'file', reason: /^found at start/, before: null, after: { enabled: true, percentage: 10 } },
    { flag: 'shipped', source: 'file', reason: /^found at start: not in the audit log/, before: null, after: { enabled: false } },
  ]);
  t.equal(lines.length, 4, 'c, unchanged, gets no line');
  t.equal(second.lines.filter((l) => l.msg === 'flag state at start differs from the audit log; audited now').length, 4, 'each logged');
  t.equal(second.store.get('a')?.enabled, false, 'the state found is the state served');
  await second.store.close();
  const third = await open();
  t.teardown(() => third.store.close());
  t.equal((await auditLines(dir)).length, 7, 'a start with nothing changed adds nothing');
});

t.test('a rollout step is not applied over a routing edit it had not seen; a rollback is', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'f.json'), JSON.stringify({ enabled: true, percentage: 10 }));
  const store = new FlagStore(silentLogger, new FilePersistence({ dir, logger: silentLogger, pollMs: 0, watch: false }));
  await store.start();
  t.teardown(() => store.close());
  const step = { source: 'rollout', reason: 'step 2/3 -> 25 %' };
  await writeFile(join(dir, 'f.json'), JSON.stringify({ enabled: false, percentage: 10, description: 'rolled back in git' }));
  await t.rejects(store.set('f', { enabled: true, percentage: 25 }, step), { name: 'FlagConflictError', message: /flags\/f\.json changed \(enabled\)/ });
  t.match(JSON.parse(await readFile(join(dir, 'f.json'), 'utf8')), { enabled: false, percentage: 10 }, 'the GitOps rollback stands on disk');
  t.equal(store.get('f')?.enabled, false, 'and in memory');
  // Nothing unseen now: the next step goes through.
  t.match(await store.set('f', { enabled: true, percentage: 25 }, step), { enabled: true, percentage: 25 });
  // A rollout's own rollback lowers exposure: applied even over an unseen edit.
  await writeFile(join(dir, 'f.json'), JSON.stringify({ enabled: true, percentage: 40 }));
  t.match(await store.set('f', { enabled: false }, { source: 'rollout', reason: 'maxErrorRate' }), { enabled: false, percentage: 40 });
  const sources = (await auditLines(dir)).map((l) => `${l.source}:${l.after?.enabled}:${l.after?.percentage}`);
  t.same(sources, ['file:false:10', 'rollout:true:25', 'file:true:40', 'rollout:false:40']);
});
