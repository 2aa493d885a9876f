import t from 'tap';
import type { Test } from 'tap';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { ConfigError, loadConfigDir } from '../../src/config/load.js';
import { tempDir } from '../helpers/servers.js';

// A bad value inside an identity source used to be reported as `identity.sources[0]: Invalid
// input` (a union whose branches all failed), leaving the operator to guess which key was wrong.
// Each problem must name the key inside the source and the reason, top-level and per route alike.

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;
const upstreams = `upstreams:\n  legacy: { url: http://127.0.0.1:7001 }\n`;

async function problemsOf(t: Test, yaml: string): Promise<{ dir: string; got: string[] }> {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'routes.yaml'), yaml);
  const err = await loadConfigDir(dir).then(() => undefined, (e: unknown) => e);
  t.type(err, ConfigError, 'refused at load');
  const got = err instanceof ConfigError ? err.problems.map((p) => `${p.key}: ${p.message}`) : [];
  return { dir, got };
}

t.test('a bad value inside a top-level jwt source names its key and the reason', async (t) => {
  const { got } = await problemsOf(
    t,
    `${upstreams}identity:
  sources:
    - jwt: { secret: s3cret, issuer: 5 }
    - jwt: { jwksUrl: notaurl }
    - jwt: { jwksUrl: https://idp.example/jwks.json, jwksTimeout: soon }
    - header: 5
    - jwt: { secret: s3cret, algorithms: [hs256] }
`,
  );
  t.same(got, [
    'identity.sources[0].jwt.issuer: Invalid input: expected string, received number',
    'identity.sources[1].jwt.jwksUrl: not a URL: "notaurl"',
    'identity.sources[2].jwt.jwksTimeout: not a duration: "soon" (use e.g. 300ms, 5s, 2m)',
    'identity.sources[3].header: Invalid input: expected string, received number',
    'identity.sources[4].jwt.algorithms[0]: not a JWS algorithm: "hs256" (names are case-sensitive: HS256); use one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, Ed25519',
  ]);
});

t.test('a per-route identity override names the key inside the source too', async (t) => {
  const { got } = await problemsOf(
    t,
    `${upstreams}routes:
  - name: r
    match: { path: /r }
    legacy: legacy
    identity: { sources: [ { cookie: uid }, { jwt: { jwksUrl: notaurl } } ] }
`,
  );
  t.same(got, ['routes[0].identity.sources[1].jwt.jwksUrl: not a URL: "notaurl"']);
});

t.test('a source with none, or more than one, of header/cookie/jwt says what a source is', async (t) => {
  const { got } = await problemsOf(
    t,
    `${upstreams}identity:
  sources:
    - { header: x-user, cookie: uid }
    - { claim: sub }
    - {}
    - x-user
    - { header: x-user, bogus: 1 }
`,
  );
  const oneOf = 'an identity source is one of { header: <name> }, { cookie: <name> } or { jwt: { ... } }';
  t.same(got, [
    `identity.sources[0]: ${oneOf}, got header and cookie together; list them as separate sources, tried in order`,
    `identity.sources[1]: ${oneOf}, got only "claim"`,
    `identity.sources[2]: ${oneOf}, got an empty object`,
    `identity.sources[3]: ${oneOf}, got "x-user"`,
    'identity.sources[4]: Unrecognized key: "bogus"',
  ]);
});

t.test('valid sources still load, header names lower-cased', async (t) => {
  const dir = await tempDir(t);
  await writeFile(
    join(dir, 'routes.yaml'),
    `${upstreams}identity:\n  sources:\n    - header: X-User\n    - cookie: uid\n    - jwt: { jwksUrl: https://idp.example/jwks.json, jwksTimeout: 2s }\n`,
  );
  const cfg = await loadConfigDir(dir);
  t.same(cfg.identity.sources[0], { header: 'x-user' });
  t.same(cfg.identity.sources[1], { cookie: 'uid' });
  const jwt = cfg.identity.sources[2];
  t.ok(jwt && 'jwt' in jwt && jwt.jwt.jwksUrl?.href === 'https://idp.example/jwks.json' && jwt.jwt.jwksTimeout === 2000, 'jwt source parsed');
});

t.test('cutover check prints the key and reason', async (t) => {
  const { dir } = await problemsOf(t, `${upstreams}identity:\n  sources:\n    - jwt: { jwksUrl: notaurl }\n`);
  const check = spawnSync(process.execPath, [CLI, 'check', '--routes', dir], { encoding: 'utf8' });
  t.equal(check.status, 1, 'cutover check fails');
  t.match(check.stderr, 'routes.yaml: identity.sources[0].jwt.jwksUrl: not a URL: "notaurl"');
});
