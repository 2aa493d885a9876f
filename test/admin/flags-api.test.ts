import t, { type Test } from 'tap';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'node:http';
import { http, postJson, rawPath } from '../helpers/http.js';
import { startCutover, startUpstream, twoSided, writeConfig } from '../helpers/servers.js';
import { serve } from '../../src/server.js';
import { silentLogger } from '../../src/observability/logger.js';

async function setup(t: Test, token?: string) {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: false, percentage: 0 } });
  const cut = await startCutover(t, dirs, token !== undefined ? { adminToken: token } : {});
  return { ...cut, dirs };
}

t.test('the runbook payloads work verbatim', async (t) => {
  const { admin } = await setup(t);
  const payloads = [
    { enabled: true, percentage: 100 },
    { enabled: false },
    { enabled: true, auto_disable_on_failure: true, health_check_interval: 30 },
    { enabled: true, auto_disable_on_failure: true, health_check_interval: 10, strict_validation: true },
  ];
  for (const p of payloads) {
    const r = await postJson(`${admin}/api/v1/flags/order_cutover`, p);
    t.equal(r.status, 200, JSON.stringify(p));
    t.match(r.json(), { name: 'order_cutover', ...p });
  }
  const full = (await http(`${admin}/api/v1/flags/order_cutover`)).json();
  t.match(full, { name: 'order_cutover', enabled: true, percentage: 100, auto_disable_on_failure: true, health_check_interval: 10, strict_validation: true });
  const list = (await http(`${admin}/api/v1/flags`)).json<{ flags: Array<{ name: string }> }>();
  t.same(list.flags.map((f) => f.name), ['f', 'order_cutover']);
});

t.test('partial updates keep the other fields; new flags start disabled at 100%', async (t) => {
  const { admin } = await setup(t);
  t.match((await postJson(`${admin}/api/v1/flags/new_one`, { description: 'x' })).json(), { enabled: false, percentage: 100 });
  await postJson(`${admin}/api/v1/flags/f`, { enabled: true, percentage: 25, cohort: ['pilot-1'] });
  const r = (await postJson(`${admin}/api/v1/flags/f`, { percentage: 50 })).json();
  t.match(r, { enabled: true, percentage: 50, cohort: ['pilot-1'] });
});

t.test('malformed input gets 400 with a reason and changes nothing', async (t) => {
  const { admin, dirs } = await setup(t);
  await postJson(`${admin}/api/v1/flags/f`, { enabled: true, percentage: 30 });
  const before = await readFile(join(dirs.flagsDir, 'f.json'), 'utf8');
  const auditBefore = await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8');
  const cases: Array<[string, unknown, RegExp]> = [
    ['bad json', '{"enabled": tru', /not valid JSON/],
    ['empty body', '', /must be a JSON object/],
    ['array', [1, 2], /must be a JSON object/],
    ['null', 'null', /must be a JSON object/],
    ['string enabled', { enabled: 'true' }, /enabled: .*expected boolean/],
    ['percentage too big', { percentage: 101 }, /percentage: Too big/],
    ['negative percentage', { percentage: -1 }, /percentage: Too small/],
    ['fractional percentage', { percentage: 12.5 }, /percentage: must be a whole number/],
    ['percentage as string', { percentage: '50' }, /percentage: .*expected number/],
    ['unknown field', { enabled: true, percent: 50 }, /unknown field "percent"/],
    ['__proto__', '{"__proto__": {"enabled": true}}', /unknown field "__proto__"/],
    ['bad interval', { health_check_interval: 0 }, /health_check_interval/],
    ['cohort not strings', { cohort: [1] }, /cohort\[0\]/],
  ];
  for (const [what, body, msg] of cases) {
    const r = await postJson(`${admin}/api/v1/flags/f`, body);
    t.equal(r.status, 400, what);
    t.match(r.json<{ message: string }>().message, msg, what);
  }
  for (const name of ['..', '%2e%2e', '..%2F..%2Fetc', 'a%20b', 'x'.repeat(129), '-leading', 'semi;colon', '%ZZ']) {
    const r = await rawPath(admin, 'POST', `/api/v1/flags/${name}`, '{"enabled": true}');
    t.equal(r.status, 400, `flag name ${name}`);
  }
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
    const r = await http(`${admin}/api/v1/flags/f`, { method: 'POST', body: '{"enabled": false}', headers: { 'content-type': type } });
    t.equal(r.status, 415, `${type}: refused (a browser could send it cross-site)`);
  }
  const noType = await http(`${admin}/api/v1/flags/f`, { method: 'POST', body: '{"enabled": false}' });
  t.equal(noType.status, 415, 'no content type: refused');
  const big = await postJson(`${admin}/api/v1/flags/f`, { description: 'x'.repeat(70_000) });
  t.equal(big.status, 413, 'oversized body');
  // The same without a Content-Length: a chunked body is cut off at the limit as it streams.
  const chunked = await new Promise<number>((resolve, reject) => {
    const u = new URL(admin);
    const req = request({ host: u.hostname, port: u.port, method: 'POST', path: '/api/v1/flags/f', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.write('{"description": "');
    for (let i = 0; i < 70; i++) req.write('x'.repeat(1000));
    req.end('"}');
  });
  t.equal(chunked, 413, 'oversized chunked body');
  t.equal(await readFile(join(dirs.flagsDir, 'f.json'), 'utf8'), before, 'flag file unchanged');
  t.equal(await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8'), auditBefore, 'nothing audited');
  t.match((await http(`${admin}/api/v1/flags/f`)).json(), { enabled: true, percentage: 30 });
  t.equal((await http(`${admin}/api/v1/flags/nope`)).status, 404);
  t.equal((await http(`${admin}/api/v1/flags/f`, { method: 'DELETE' })).status, 405);
  t.equal((await http(`${admin}/api/v1/nothing`)).status, 404);
});

t.test('every change is audited with time, actor, before and after', async (t) => {
  const { admin, dirs } = await setup(t);
  await postJson(`${admin}/api/v1/flags/f`, { enabled: true, percentage: 25 }, { 'x-cutover-actor': 'alice' });
  await postJson(`${admin}/api/v1/flags/f`, { enabled: false });
  const lines = (await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  t.equal(lines.length, 2);
  t.match(lines[0], { actor: 'admin-api:alice@127.0.0.1', source: 'admin-api', flag: 'f', before: { enabled: false, percentage: 0 }, after: { enabled: true, percentage: 25 } });
  t.match(lines[1], { source: 'admin-api', flag: 'f', before: { enabled: true }, after: { enabled: false, percentage: 25 } });
  t.equal(lines[1].actor, 'admin-api:127.0.0.1', 'without X-Cutover-Actor: the peer address alone');
  t.ok(!Number.isNaN(Date.parse(lines[1].time)));
});

t.test('CUTOVER_ADMIN_TOKEN: 401 without it and nothing changes', async (t) => {
  const { admin } = await setup(t, 's3cret-token');
  const auth = { authorization: 'Bearer s3cret-token' };
  t.equal((await http(`${admin}/api/v1/flags`)).status, 401);
  t.equal((await http(`${admin}/api/v1/flags`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  t.equal((await http(`${admin}/api/v1/flags`, { headers: { authorization: 's3cret-token' } })).status, 401, 'scheme required');
  t.equal((await postJson(`${admin}/api/v1/flags/f`, { enabled: true })).status, 401);
  t.match((await http(`${admin}/api/v1/flags/f`, { headers: auth })).json(), { enabled: false });
  t.equal((await postJson(`${admin}/api/v1/flags/f`, { enabled: true }, auth)).status, 200);
  t.equal((await http(`${admin}/healthz`)).status, 200, 'probes need no token');
});

t.test('admin on a non-loopback address without a token is refused at start', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  await t.rejects(
    serve({ ...dirs, port: 0, host: '127.0.0.1', adminPort: 0, adminHost: '0.0.0.0', drainTimeoutMs: 100, logger: silentLogger }),
    /refusing to bind the admin API to 0\.0\.0\.0 without CUTOVER_ADMIN_TOKEN/,
  );
});

t.test('the proxy port never serves admin paths', async (t) => {
  const { proxy } = await setup(t);
  // /api is routed, so /api/v1/flags is forwarded to legacy like any other path, never answered by cutover.
  const routed = await http(`${proxy}/api/v1/flags`);
  t.equal(routed.json<{ served_by: string }>().served_by, 'legacy');
  t.equal((await http(`${proxy}/api/v1/flags/f`, { method: 'POST', body: '{"enabled":true}' })).json<{ served_by: string }>().served_by, 'legacy');
  for (const path of ['/healthz', '/readyz', '/metrics', '/']) {
    const r = await http(proxy + path);
    t.equal(r.status, 404, path);
    t.equal(r.json<{ error: string }>().error, 'no_route', path);
  }
});

t.test('without a token the admin listener answers only loopback Host names (DNS rebinding)', async (t) => {
  const { admin } = await setup(t);
  t.equal((await rawPath(admin, 'GET', '/api/v1/flags', undefined, { host: 'evil.example' })).status, 403);
  t.equal((await rawPath(admin, 'POST', '/api/v1/flags/f', '{"enabled": true}', { host: 'evil.example:9090' })).status, 403, 'a rebinding page cannot flip flags');
  t.equal((await http(`${admin}/api/v1/flags/f`)).json<{ enabled: boolean }>().enabled, false, 'nothing changed');
  for (const host of ['localhost:9090', '127.0.0.1', '[::1]:9090']) t.equal((await rawPath(admin, 'GET', '/api/v1/flags', undefined, { host })).status, 200, host);
  t.equal((await rawPath(admin, 'GET', '/healthz', undefined, { host: 'pod-10-1-2-3' })).status, 200, 'probes pass');
  const withToken = await setup(t, 'tok-0123456789abcdef');
  t.equal((await rawPath(withToken.admin, 'GET', '/api/v1/flags', undefined, { host: 'cutover-admin.svc', authorization: 'Bearer tok-0123456789abcdef' })).status, 200, 'with a token any Host is fine');
  t.equal((await rawPath(withToken.admin, 'GET', '/api/v1/shadow/%E0', undefined, { authorization: 'Bearer tok-0123456789abcdef' })).status, 400, 'malformed escape in a shadow route name: 400');
});
