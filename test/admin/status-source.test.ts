import t from 'tap';
import { http } from '../helpers/http.js';
import { fleet } from '../helpers/fake-unleash.js';
import { startCutover, startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';

// Fleet mode routes by Unleash: GET /api/v1/status (what the dashboard polls) must say when Unleash
// cannot be reached, as GET /api/v1/flags does.

interface Source {
  kind: string;
  up: boolean;
  serving_from: string;
  last_error: string | null;
  seconds_since_success: number | null;
}

t.test('fleet mode: the status carries the flag source, down while Unleash fails', async (t) => {
  const { u, adminPort } = await fleet(t);
  const admin = `http://127.0.0.1:${adminPort}`;
  const status = async () => (await http(`${admin}/api/v1/status`)).json<{ flag_source?: Source }>();
  t.match((await status()).flag_source, { kind: 'unleash', up: true, serving_from: 'source', last_error: null }, 'up');
  const keys = Object.keys((await http(`${admin}/api/v1/flags`)).json<{ source: object }>().source).sort();
  t.same(Object.keys((await status()).flag_source ?? {}).sort(), keys, 'the same fields as GET /api/v1/flags source');

  u.state.clientStatus = 500;
  await waitFor(async () => (await status()).flag_source?.up === false, 5000, 'status reports Unleash down');
  const down = (await status()).flag_source;
  t.match(down, { up: false, serving_from: 'source', last_error: /500/ }, 'down, still routing on the last state fetched');
  t.type(down?.seconds_since_success, 'number');

  u.state.clientStatus = 200;
  await waitFor(async () => (await status()).flag_source?.up === true, 5000, 'up again');
});

t.test('flags from files: no flag_source', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const { admin } = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: false } }));
  t.notOk('flag_source' in (await http(`${admin}/api/v1/status`)).json<object>());
});
