import t from 'tap';
import { createServer } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import { configFromObject } from '../../src/config/load.js';
import { checkRouting, compileRouting } from '../../src/routing/compile.js';
import { http } from '../helpers/http.js';

// compileRouting's options.env is where secretEnv is read (library users, tests, a check against
// another environment); it must be the only place, not process.env behind its back.
const NAME = 'CUTOVER_TEST_ENV_ONLY_SECRET';

t.test('jwt secretEnv is read from options.env', async (t) => {
  t.equal(process.env[NAME], undefined, 'the variable is not in process.env');
  const env = { [NAME]: 'a-secret-only-in-options-env' };
  const config = configFromObject({
    upstreams: { legacy: { url: 'http://127.0.0.1:7001' } },
    identity: { sources: [{ jwt: { secretEnv: NAME } }] },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy' }],
  });
  t.doesNotThrow(() => checkRouting(config, { env }), 'checked against options.env');
  const state = compileRouting(config, new Map(), new Map(), { env });
  // The compiled identity answers a real request.
  const server = createServer((req, res) => {
    void Promise.resolve(state.routes[0]?.identify(req)).then((id) => res.end(String(id)));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`;
  const token = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('alice').setExpirationTime('1h').sign(new TextEncoder().encode(env[NAME]));
  t.equal((await http(url, { headers: { authorization: `Bearer ${token}` } })).text, 'alice', "verified with options.env's secret");
  const refused = (() => {
    try {
      checkRouting(config, { env: {} });
    } catch (err) {
      return err;
    }
    return undefined;
  })();
  t.match(refused, { problems: [{ key: 'identity.sources[0].jwt.secretEnv' }] }, 'an env without it is refused');
});
