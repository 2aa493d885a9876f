// CUTOVER_ADMIN_TOKEN as the CLI reads it: Kubernetes Secrets made with --from-file keep the file's
// trailing newline, which used to lock every admin call out (401) with nothing logged.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { http } from '../helpers/http.js';
import { serveArgs, spawnCutover, startUpstream, twoSided, writeConfig } from '../helpers/servers.js';

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

t.test('a token with a trailing newline works as the token without it', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: false } });
  const { admin } = await spawnCutover(t, serveArgs(dirs), { CUTOVER_ADMIN_TOKEN: 's3cret-token\n', LOG_LEVEL: 'warn' });
  t.equal((await http(`${admin}/api/v1/flags`, { headers: { authorization: 'Bearer s3cret-token' } })).status, 200);
  t.equal((await http(`${admin}/api/v1/flags`)).status, 401, 'and is still required');
});

t.test('a token that is blank or has inner whitespace stops serve with a clear error, before listening', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  for (const [bad, why] of [[' \n', 'is empty or only whitespace'], ['line-one\nline-two\n', 'contains whitespace']] as const) {
    const r = spawnSync(process.execPath, [CLI, ...serveArgs(dirs)], { env: { ...process.env, CUTOVER_ADMIN_TOKEN: bad }, encoding: 'utf8', timeout: 10_000 });
    t.equal(r.error, undefined, `${JSON.stringify(bad)}: exited by itself (not killed at the timeout)`);
    t.equal(r.status, 1, JSON.stringify(bad));
    t.notMatch(r.stdout, 'cutover listening', 'never listened');
    t.match(r.stderr, `cutover: the admin token (CUTOVER_ADMIN_TOKEN, or the adminToken option) ${why}`);
    t.notMatch(r.stderr, 'line-one', 'the secret is not echoed');
  }
});
