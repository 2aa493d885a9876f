import t from 'tap';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createSecretKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { ConfigError, loadConfigDir, parseConfigSources } from '../../src/config/load.js';
import { tempDir } from '../helpers/servers.js';
import { JWS_ALGORITHMS } from '../../src/config/schema.js';

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

const base = `
upstreams:
  magento: { url: http://127.0.0.1:7001 }
  customer-service: { url: http://127.0.0.1:7002 }
`;

function problems(files: Record<string, string>): string[] {
  try {
    parseConfigSources(Object.entries(files).map(([file, text]) => ({ file, text })));
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => `${p.file}: ${p.key}: ${p.message}`);
    throw err;
  }
  return [];
}

t.test('the issue example loads, with durations parsed', async (t) => {
  const cfg = parseConfigSources([
    {
      file: 'a.yaml',
      text: `${base}
default: magento
routes:
  - name: customers-read
    match: { path: /api/v1/customers, methods: [get, HEAD] }
    legacy: magento
    candidate: customer-service
    flag: customer_read
    timeout: 300ms
`,
    },
  ]);
  t.equal(cfg.routes[0]?.timeout, 300);
  t.same(cfg.routes[0]?.match.methods, ['GET', 'HEAD'], 'methods are upper-cased');
  t.equal(cfg.default, 'magento');
  t.same(cfg.identity, { sources: [{ header: 'x-user-id' }] }, 'x-user-id header by default');
});

t.test('every problem is reported with file, key path and reason', async (t) => {
  const out = problems({
    'routes/a.yaml': `${base}
default: nowhere
surprise: 1
routes:
  - name: r1
    match: { path: api/v1 }
    legacy: magento
  - name: r2
    match: { path: /x }
    legacy: ghost
    candidate: customer-service
    timeout: soon
`,
  });
  t.match(out.join('\n'), /routes\/a\.yaml: \(top level\): Unrecognized key: "surprise"/);
  t.match(out.join('\n'), /routes\/a\.yaml: routes\[0\]\.match\.path: must start with "\/"/);
  t.match(out.join('\n'), /routes\/a\.yaml: routes\[1\]\.timeout: not a duration: "soon"/);
});

t.test('cross-reference problems after merging files', async (t) => {
  const out = problems({
    'a.yaml': `${base}
default: nowhere
routes:
  - name: r1
    match: { path: /api/v1/customers, methods: [GET] }
    legacy: magento
    candidate: ghost
    flag: f1
  - name: r2
    match: { path: /api/v1/orders }
    legacy: magento
    candidate: customer-service
`,
    'b.yaml': `
upstreams:
  magento: { url: http://127.0.0.1:9999 }
routes:
  - name: r1
    match: { path: /api/v1/customers/, methods: [GET, POST] }
    legacy: magento
  - name: r3
    match: { path: /z }
    legacy: magento
    candidate: magento
    flag: f3
`,
  }).join('\n');
  t.match(out, /b\.yaml: upstreams\.magento: already defined in a\.yaml/);
  t.match(out, /a\.yaml: default: unknown upstream "nowhere"/);
  t.match(out, /a\.yaml: routes\[0\]\.candidate: unknown upstream "ghost"/);
  t.match(out, /a\.yaml: routes\[1\]\.flag: a route with a candidate needs a flag/);
  t.match(out, /b\.yaml: routes\[0\]\.name: duplicate route name "r1"/);
  t.match(out, /b\.yaml: routes\[0\]\.match: \/api\/v1\/customers overlaps route "r1"/);
  t.match(out, /b\.yaml: routes\[1\]\.candidate: candidate and legacy are the same upstream/);
});

t.test('top-level keys one file only may set', async (t) => {
  const out = problems({
    'a.yaml': `${base}\ndefault: magento\nlimits: { maxBody: 1mb }\n`,
    'b.yaml': 'default: magento\nlimits: { maxBody: 2mb }\nshadowing: { concurrency: 4 }\n',
  }).join('\n');
  t.match(out, /b\.yaml: default: already set in a\.yaml/);
  t.match(out, /b\.yaml: limits: already set in a\.yaml/);
  t.notMatch(out, /shadowing/, 'set once: fine');
});

t.test('reserved route names', async (t) => {
  const out = problems({ 'r.yaml': `${base}\nroutes:\n  - { name: default, match: { path: /a }, legacy: magento }\n` }).join('\n');
  t.match(out, /routes\[0\]\.name: "default" is reserved/);
});

t.test('a route timeout longer than its budget is refused: the budget bounds the whole request', async (t) => {
  const route = (extra: string) =>
    `${base}\nroutes:\n  - { name: r, match: { path: /a }, legacy: magento, candidate: customer-service, flag: f, ${extra} }\n`;
  t.same(
    problems({ 'routes/r.yaml': route('timeout: 2s, budget: 300ms') }),
    ["routes/r.yaml: routes[0].timeout: 2000 ms is longer than the route's budget (300 ms), which bounds the whole request, fallback included: use a timeout of at most the budget"],
  );
  for (const ok of ['timeout: 300ms, budget: 300ms', 'timeout: 300ms, budget: 2s', 'timeout: 2s', 'budget: 300ms']) {
    t.same(problems({ 'r.yaml': route(ok) }), [], `${ok}: loads`);
  }
  t.same(
    problems({ 'routes/r.yaml': route('hedge: 300ms, budget: 300ms') }),
    ["routes/r.yaml: routes[0].hedge: 300 ms is not shorter than the route's budget (300 ms): legacy would be asked only when the request has no time left; use a hedge well below the budget"],
    'a hedge at or past the budget is refused too',
  );
  for (const ok of ['hedge: 50ms, budget: 300ms', 'hedge: 500ms']) t.same(problems({ 'r.yaml': route(ok) }), [], `${ok}: loads`);
});

t.test('bad URLs, names and YAML', async (t) => {
  const out = problems({
    'u.yaml': `
upstreams:
  a: { url: "ftp://x" }
  b: { url: "not a url" }
  c: { url: "http://h/?q=1" }
  "bad name!": { url: "http://h" }
trustedProxies: [10.0.0.0/8, 300.1.1.1, "::1/129"]
`,
    'dup.yaml': 'upstreams:\n  a: { url: http://h }\n  a: { url: http://i }\n',
  }).join('\n');
  t.match(out, /upstreams\.a\.url: only http and https/);
  t.match(out, /upstreams\.b\.url: not a URL/);
  t.match(out, /upstreams\.c\.url: upstream URL must not carry a query/);
  t.match(out, /upstreams\.bad name!/);
  t.match(out, /dup\.yaml: \(yaml\): Map keys must be unique/);
});

t.test('identity sources', async (t) => {
  t.same(
    problems({
      'i.yaml': `${base}
identity:
  sources:
    - header: X-Customer
    - cookie: uid
    - jwt: { secret: s3cret, claim: sub }
`,
    }),
    [],
  );
  const out = problems({ 'i.yaml': `${base}\nidentity:\n  sources:\n    - jwt: { claim: sub }\n` }).join('\n');
  t.match(out, /exactly one of secret, secretEnv, publicKey, jwksUrl, or unverified: true/);
});

t.test('jwksTimeout: a duration for jwksUrl only, 100ms to 10s', async (t) => {
  const jwt = (extra: string) => problems({ 'i.yaml': `${base}\nidentity:\n  sources:\n    - jwt: { ${extra} }\n` });
  t.same(jwt('jwksUrl: http://idp/jwks.json, jwksTimeout: 2s'), []);
  t.match(jwt('secret: s, jwksTimeout: 2s'), [/identity\.sources\[0\]\.jwt\.jwksTimeout: jwksTimeout applies to jwksUrl only/]);
  t.match(jwt('jwksUrl: http://idp/jwks.json, jwksTimeout: 30s'), [/jwksTimeout must be between 100ms and 10s/]);
});

t.test('cutover check exits non-zero with clear messages, zero when valid', async (t) => {
  const dir = await tempDir(t);
  const good = join(dir, 'good');
  const bad = join(dir, 'bad');
  await mkdir(good);
  await mkdir(bad);
  await writeFile(join(good, 'r.yaml'), `${base}\nroutes:\n  - { name: r, match: { path: /a }, legacy: magento }\n`);
  await writeFile(join(bad, 'r.yaml'), `${base}\nroutes:\n  - { name: r, match: { path: /a }, legacy: nope }\n`);
  const ok = spawnSync(process.execPath, [CLI, 'check', '--routes', good], { encoding: 'utf8' });
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stdout, /ok \(1 file\(s\), 2 upstream\(s\), 1 route\(s\)\)/);
  const no = spawnSync(process.execPath, [CLI, 'check', '--routes', bad], { encoding: 'utf8' });
  t.equal(no.status, 1);
  t.match(no.stderr, /r\.yaml: routes\[0\]\.legacy: unknown upstream "nope"/);
  const empty = spawnSync(process.execPath, [CLI, 'check', '--routes', join(dir, 'missing')], { encoding: 'utf8' });
  t.equal(empty.status, 1);
  const help = spawnSync(process.execPath, [CLI, 'serve', '--help'], { encoding: 'utf8' });
  t.equal(help.status, 0);
  t.match(help.stdout, /--admin-host ADDR/);
  const unknown = spawnSync(process.execPath, [CLI, 'serve', '--bogus'], { encoding: 'utf8' });
  t.equal(unknown.status, 2);
  t.match(unknown.stderr, /Unknown option '--bogus'/);
});

t.test('route paths that could never match are refused at load, naming file and key', async (t) => {
  const dir = await tempDir(t);
  const bad = ['/api//v2', '/api/v3?x=1', '/api/./v4', '/api/%2e%2e/v5', '/api/%7Euser', '/api/a%2fb', '/api/caf\u00e9', '/api/v6#top'];
  const good = ['/api/v1/customers/', '/', '/api/a%2Fb', '/api/~user', '/api/caf%C3%A9'];
  const route = (p: string, i: number) => `  - { name: r${i}, match: { path: ${JSON.stringify(p)} }, legacy: magento }`;
  await writeFile(join(dir, 'routes.yaml'), `${base}\nroutes:\n${[...bad, ...good].map(route).join('\n')}\n`);
  const file = join(dir, 'routes.yaml');
  const err = await loadConfigDir(dir).then(() => undefined, (e: unknown) => e);
  t.type(err, ConfigError);
  const got = (err as ConfigError).problems.map((p) => `${p.file}: ${p.key}: ${p.message}`);
  t.same(got, [
    `${file}: routes[0].match.path: requests are normalized before matching, so this path would never match: write /api/v2`,
    `${file}: routes[1].match.path: routes match the path only: a query or fragment here would never match`,
    `${file}: routes[2].match.path: requests are normalized before matching, so this path would never match: write /api/v4`,
    `${file}: routes[3].match.path: requests are normalized before matching, so this path would never match: write /v5`,
    `${file}: routes[4].match.path: requests are normalized before matching, so this path would never match: write /api/~user`,
    `${file}: routes[5].match.path: requests are normalized before matching, so this path would never match: write /api/a%2Fb`,
    `${file}: routes[6].match.path: spaces, control and non-ASCII characters must be percent-encoded (UTF-8), e.g. /caf%C3%A9`,
    `${file}: routes[7].match.path: routes match the path only: a query or fragment here would never match`,
  ], 'every bad path, and only those');
  const check = spawnSync(process.execPath, [CLI, 'check', '--routes', dir], { encoding: 'utf8' });
  t.equal(check.status, 1, 'cutover check fails');
  t.match(check.stderr, 'routes.yaml: routes[0].match.path: requests are normalized before matching');
});

t.test('template-style route paths are refused with the prefix to write', async (t) => {
  const paths = ['/api/v1/customers/*', '/api/v1/customers/{id}', '/api/v1/customers/{id}/orders', '/*', '/api/v1/cust*'];
  const route = (p: string, i: number) => `  - { name: r${i}, match: { path: ${JSON.stringify(p)} }, legacy: magento }`;
  t.same(problems({ 'r.yaml': `${base}\nroutes:\n${paths.map(route).join('\n')}\n` }), [
    'r.yaml: routes[0].match.path: paths are prefixes, not patterns ("*", "{", "}" match only themselves): write /api/v1/customers, it matches /api/v1/customers and everything under it',
    'r.yaml: routes[1].match.path: paths are prefixes, not patterns ("*", "{", "}" match only themselves): write /api/v1/customers, it matches /api/v1/customers and everything under it',
    'r.yaml: routes[2].match.path: paths are prefixes, not patterns ("*", "{", "}" match only themselves): write /api/v1/customers, it matches /api/v1/customers and everything under it',
    'r.yaml: routes[3].match.path: paths are prefixes, not patterns ("*", "{", "}" match only themselves): write /, it matches / and everything under it',
    'r.yaml: routes[4].match.path: paths are prefixes, not patterns ("*", "{", "}" match only themselves): write /api/v1, it matches /api/v1 and everything under it',
  ]);
  // Characters real paths use stay legal: sub-delims, ':' (Google-style /v1/x:run), '@', '~', escapes.
  const legal = ['/v1/projects/p:run', "/api/a,b;c=d!$&'()+", '/users/@me', '/api/~user', '/api/%7Bid%7D'];
  t.same(problems({ 'r.yaml': `${base}\nroutes:\n${legal.map(route).join('\n')}\n` }), []);
});

t.test('jwt algorithms: JWS names jose verifies, and ones the configured key can verify', async (t) => {
  const jwt = (j: string) => problems({ 'i.yaml': `${base}\nidentity:\n  sources:\n    - jwt: ${j}\n` }).join('\n');
  t.match(jwt('{ secret: s3cret, algorithms: [hs256] }'), /i\.yaml: identity\.sources\[0\]\.jwt\.algorithms\[0\]: not a JWS algorithm: "hs256" \(names are case-sensitive: HS256\)/);
  t.match(jwt('{ jwksUrl: "http://127.0.0.1:1/jwks", algorithms: [RSA256] }'), /algorithms\[0\]: not a JWS algorithm: "RSA256"; use one of HS256, /);
  t.match(jwt('{ secret: s3cret, algorithms: [HS256, RS256] }'), /jwt\.algorithms: RS256 cannot be verified with a shared secret/);
  t.match(jwt('{ publicKey: PEM, algorithms: [HS384] }'), /jwt\.algorithms: HS384 needs a shared secret, not a public key/);
  t.match(jwt('{ secret: s3cret, algorithms: [] }'), /jwt\.algorithms: list at least one algorithm/);
  t.equal(jwt('{ secret: s3cret, algorithms: [HS256, HS512] }'), '');
  t.equal(jwt('{ jwksUrl: "http://127.0.0.1:1/jwks", algorithms: [RS256, PS256, ES256, EdDSA, Ed25519] }'), '');
});

t.test('every accepted jwt algorithm is one jose verifies on this runtime', async (t) => {
  const { SignJWT, jwtVerify } = await import('jose');
  // KeyObjects are not bound to one algorithm, so one RSA key serves RS* and PS* (keygen is slow).
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = (namedCurve: string) => generateKeyPairSync('ec', { namedCurve });
  const keys: Record<string, { privateKey: KeyObject; publicKey: KeyObject }> = {
    RS: rsa, PS: rsa, ES256: ec('P-256'), ES384: ec('P-384'), ES512: ec('P-521'),
    EdDSA: generateKeyPairSync('ed25519'), Ed25519: generateKeyPairSync('ed25519'),
  };
  for (const alg of JWS_ALGORITHMS) {
    const pair = keys[alg] ?? keys[alg.slice(0, 2)];
    const secret = createSecretKey(randomBytes(64));
    const token = await new SignJWT({}).setProtectedHeader({ alg }).setSubject('alice').sign(pair?.privateKey ?? secret);
    const { payload } = await jwtVerify(token, pair?.publicKey ?? secret, { algorithms: [alg] });
    t.equal(payload.sub, 'alice', alg);
  }
});

t.test('the shipped example config is valid', async (t) => {
  const cfg = await loadConfigDir(new URL('../../routes', import.meta.url).pathname);
  t.ok(cfg.routes.length >= 2);
});

t.test('a directory: every .yaml/.yml file merged in name order; dotfiles and other files ignored', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, '20-routes.yaml'), 'routes:\n  - { name: orders, match: { path: /api/v1/orders }, legacy: legacy }\n');
  await writeFile(join(dir, '10-upstreams.yml'), 'upstreams:\n  legacy: { url: "http://127.0.0.1:1" }\nroutes:\n  - { name: customers, match: { path: /api/v1/customers }, legacy: legacy }\n');
  await writeFile(join(dir, '.draft.yaml'), 'routes: [ this is not valid');
  await writeFile(join(dir, 'notes.txt'), 'not config');
  await writeFile(join(dir, 'routes.yaml.bak'), 'routes: [ nor this');
  const cfg = await loadConfigDir(dir);
  t.same(cfg.routes.map((r) => r.name), ['customers', 'orders'], 'routes of both files, in file-name order');
  t.same(cfg.files.map((f) => f.slice(dir.length + 1)), ['10-upstreams.yml', '20-routes.yaml'], 'only the YAML files were read');
  await writeFile(join(dir, '30-bad.yaml'), 'routes:\n  - { name: broken, match: { path: /x }, legacy: nowhere }\n');
  await t.rejects(loadConfigDir(dir), ConfigError, 'one bad file fails the whole directory');
  const empty = await tempDir(t);
  await writeFile(join(empty, 'README.md'), '# no config here');
  await t.rejects(loadConfigDir(empty), /no \.yaml or \.yml files found/);
});
