import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { http } from '../helpers/http.js';
import { bucketOf } from '../../src/routing/bucket.js';

const root = new URL('../../', import.meta.url).pathname;

/** Runs an example the way its header says (node examples/X.mjs), on a free port. */
async function runExample(t: Test, file: string): Promise<string> {
  const child = spawn(process.execPath, [`examples/${file}`], { cwd: root, env: { ...process.env, PORT: '0', LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((r) => child.on('exit', r));
  t.teardown(async () => {
    child.kill('SIGTERM');
    await exited;
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} did not start: ${stderr}`)), 10_000);
    child.on('exit', (code) => reject(new Error(`${file} exited ${code}: ${stderr}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /gateway on (http:\/\/\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
  });
}

const side = (r: { json: <T>() => T }) => r.json<{ served_by: string }>().served_by;

t.test('node:http gateway: cutover routes its paths, the gateway keeps the rest, admin mounted', async (t) => {
  const base = await runExample(t, 'node-http-gateway.mjs');
  const users = Array.from({ length: 40 }, (_, i) => `user-${i}`);
  for (const u of users) {
    const r = await http(`${base}/api/v1/customers/1`, { headers: { 'x-user-id': u } });
    t.equal(side(r), bucketOf('customer_read', u) <= 50 ? 'new' : 'legacy', u);
  }
  t.equal(side(await http(`${base}/other`)), 'gateway');
  t.match((await http(`${base}/admin/api/v1/flags/customer_read`)).json(), { enabled: true, percentage: 50 });
});

t.test('Express gateway: auth first, then cutover routes by the authenticated user', async (t) => {
  const base = await runExample(t, 'express-gateway.mjs');
  t.equal((await http(`${base}/api/v1/customers/1`)).status, 401, 'the host auth runs before cutover');
  let both = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const u = `user-${i}`;
    const r = await http(`${base}/api/v1/customers/1`, { headers: { authorization: `Bearer ${u}`, 'x-user-id': 'ignored' } });
    t.equal(side(r), bucketOf('customer_read', u) <= 50 ? 'new' : 'legacy', `${u}: the host's user id decides`);
    both = both.add(side(r));
  }
  t.same([...both].sort(), ['legacy', 'new']);
  const whoami = await http(`${base}/gateway/whoami`, { headers: { authorization: 'Bearer bob' } });
  t.same(whoami.json(), { served_by: 'gateway', user: 'bob' }, 'unmatched requests reach the host routes');
  const post = await http(`${base}/api/v1/customers`, { method: 'POST', body: 'x'.repeat(10_000), headers: { authorization: 'Bearer bob' } });
  t.equal(post.json<{ body_bytes: number }>().body_bytes, 10_000, 'bodies stream through the middleware untouched');
});

t.test('Fastify gateway: matched requests hijacked before body parsing, the rest to Fastify', async (t) => {
  const base = await runExample(t, 'fastify-gateway.mjs');
  const u = 'user-7';
  t.equal(side(await http(`${base}/api/v1/customers/9`, { headers: { 'x-user-id': u } })), bucketOf('customer_read', u) <= 50 ? 'new' : 'legacy');
  const posted = await http(`${base}/api/v1/customers`, { method: 'POST', body: '{"a":1}', headers: { 'content-type': 'application/json', 'x-user-id': u } });
  t.equal(posted.json<{ body_bytes: number }>().body_bytes, 7, 'the JSON body reached the backend unparsed');
  t.same((await http(`${base}/gateway/info`)).json(), { served_by: 'gateway' });
  t.same((await http(`${base}/gateway/echo`, { method: 'POST', body: '{"x":2}', headers: { 'content-type': 'application/json' } })).json(), { served_by: 'gateway', body: { x: 2 } });
  t.equal((await http(`${base}/nowhere`)).status, 404, "Fastify's own 404 for the rest");
});
