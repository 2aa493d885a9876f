import t from 'tap';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { ConfigError } from '../../src/config/load.js';
import { serve } from '../../src/server.js';
import { silentLogger } from '../../src/observability/logger.js';
import { servedBy } from '../helpers/http.js';
import { startCutover, startUpstream, tempDir, waitFor, writeConfig } from '../helpers/servers.js';

// Settings the schema cannot judge (a key that must parse, a secret read from the environment)
// are checked when routing is compiled: at start, on reload and by `cutover check` alike, each
// problem naming its file and key like any other config error.

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;
const NOT_PEM = '-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----';

const upstreams = `upstreams:\n  legacy: { url: http://127.0.0.1:7001 }\n`;
const routes = `routes:
  - { name: a, match: { path: /a }, legacy: legacy }
  - name: b
    match: { path: /b }
    legacy: legacy
    identity: { sources: [ { header: x-user }, { jwt: { publicKey: ${JSON.stringify(NOT_PEM)} } } ] }
`;
const settings = `identity:\n  sources:\n    - jwt: { secretEnv: CUTOVER_TEST_JWT_SECRET }\nqaOverride: { secretEnv: CUTOVER_TEST_QA_SECRET }\n`;

function check(dir: string, env: Record<string, string> = {}) {
  const clean = { ...process.env };
  delete clean.CUTOVER_TEST_JWT_SECRET;
  delete clean.CUTOVER_TEST_QA_SECRET;
  return spawnSync(process.execPath, [CLI, 'check', '--routes', dir], { encoding: 'utf8', env: { ...clean, ...env } });
}

t.test('cutover check compiles keys and reads secretEnv as serve does, naming file and key', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'a-upstreams.yaml'), upstreams);
  await writeFile(join(dir, 'b-routes.yaml'), routes);
  await writeFile(join(dir, 'c-settings.yaml'), settings);
  const bad = check(dir);
  t.equal(bad.status, 1, bad.stdout);
  const lines = bad.stderr.trim().split('\n');
  t.match(lines, [
    /c-settings\.yaml: qaOverride\.secretEnv: environment variable CUTOVER_TEST_QA_SECRET is not set/,
    /c-settings\.yaml: identity\.sources\[0\]\.jwt\.secretEnv: environment variable CUTOVER_TEST_JWT_SECRET is not set/,
    /b-routes\.yaml: routes\[1\]\.identity\.sources\[1\]\.jwt\.publicKey: not a PEM public key \(.+\)/,
  ]);
  t.equal(lines.length, 3, 'every problem, once');

  await writeFile(join(dir, 'b-routes.yaml'), routes.replace(/\{ jwt: .*\} \]/, '{ cookie: uid } ]'));
  const short = check(dir, { CUTOVER_TEST_JWT_SECRET: 's3cret', CUTOVER_TEST_QA_SECRET: 'short' });
  t.equal(short.status, 1);
  t.match(short.stderr, /c-settings\.yaml: qaOverride\.secretEnv: environment variable CUTOVER_TEST_QA_SECRET holds 5 characters: use a secret of at least 16/);
  const ok = check(dir, { CUTOVER_TEST_JWT_SECRET: 's3cret', CUTOVER_TEST_QA_SECRET: 'a-qa-secret-of-16+' });
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stdout, /ok \(3 file\(s\), 1 upstream\(s\), 2 route\(s\)\)/);
  t.match(ok.stdout, /secretEnv CUTOVER_TEST_QA_SECRET, CUTOVER_TEST_JWT_SECRET checked against this environment/);
});

t.test('serve refuses such a config at start with file and key', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'flags'));
  await writeFile(join(dir, 'r.yaml'), upstreams + routes);
  const started = serve({ routesDir: dir, flagsDir: join(dir, 'flags'), port: 0, host: '127.0.0.1', adminPort: 0, adminHost: '127.0.0.1', drainTimeoutMs: 100, logger: silentLogger });
  const err = await started.then(
    async (r) => {
      await r.shutdown();
      return undefined;
    },
    (e: unknown) => e,
  );
  t.ok(err instanceof ConfigError, `a ConfigError, not ${String(err)}`);
  t.match((err as ConfigError).problems, [{ file: join(dir, 'r.yaml'), key: 'routes[1].identity.sources[1].jwt.publicKey', message: /not a PEM public key/ }]);
});

t.test('a reload refused for a bad key logs file and key; the running config keeps serving', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const cfg = { upstreams: { legacy: { url: legacy.url } }, routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy' }] };
  const dirs = await writeConfig(t, cfg);
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(c.toString()), cb()) }));
  const { proxy } = await startCutover(t, dirs, { watchRoutes: true, logger });
  const file = join(dirs.routesDir, 'routes.yaml');
  await writeFile(file, stringify({ ...cfg, identity: { sources: [{ jwt: { publicKey: NOT_PEM } }] } }));
  const refused = () => lines.map((l) => JSON.parse(l) as { msg: string; problems?: unknown }).find((l) => l.msg.startsWith('config reload refused'));
  await waitFor(async () => refused() !== undefined, 3000, 'the reload to be refused');
  t.match(refused()?.problems, [{ file, key: 'identity.sources[0].jwt.publicKey', message: /^not a PEM public key/ }]);
  t.equal(await servedBy(proxy, '/api/x', 'u1'), 'legacy', 'the old config still serves');
});
