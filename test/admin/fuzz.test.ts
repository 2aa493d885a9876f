import t from 'tap';
import { request, Agent } from 'node:http';
import { readdir, readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { serveArgs, spawnCutover, startUpstream, twoSided, writeConfig } from '../helpers/servers.js';
import { parseFlagFile } from '../../src/flags/model.js';
import { NAME_RE } from '../../src/config/schema.js';

/** Deterministic pseudo-random numbers (mulberry32), so a failure can be replayed. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const agent = new Agent({ keepAlive: true, maxSockets: 8 });

function send(base: string, method: string, path: string, body: Buffer | undefined, headers: Record<string, string>): Promise<number> {
  const u = new URL(base);
  return new Promise((resolve) => {
    const req = request({ host: u.hostname, port: u.port, method, path, agent, headers: { ...(body && { 'content-length': String(body.length) }), ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(-1));
    req.end(body);
  });
}

t.test('a few thousand malformed admin calls: never a 5xx, never a crash, state stays valid', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 10 } });
  const token = 'fuzz-token-0123456789';
  const cut = await spawnCutover(t, serveArgs(dirs), { CUTOVER_ADMIN_TOKEN: token, LOG_LEVEL: 'warn' });
  const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const r = rng(20261121);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;

  const values: unknown[] = [null, true, false, 0, -1, 101, 50.5, 1e308, -0, '', 'x', '50', 'true', [], [1], ['a'], {}, { a: 1 }, 'é'.repeat(3000), 'a'.repeat(60_000)];
  const keys = ['enabled', 'percentage', 'cohort', 'exclude', 'anonymous', 'auto_disable_on_failure', 'auto_disable_after', 'health_check_interval', 'strict_validation', 'description', '__proto__', 'constructor', 'prototype', 'toString', 'name', 'updated_at', '', 'x'.repeat(300)];
  const names = ['f', 'ok_name', 'a'.repeat(128), 'a'.repeat(129), '..', '%2e%2e', '..%2F..%2Fetc%2Fpasswd', '%2F', 'a%00b', '%ff%fe', '__proto__', 'constructor', 'CON', 'name.json', '.hidden', '-x', 'x%20y', '%C3%A9', '%E2%82%AC', '%', 'a/b', ''];

  const statuses = new Map<number, number>();
  const bad: string[] = [];
  const N = 3000;
  for (let i = 0; i < N; i += 8) {
    const batch = Array.from({ length: Math.min(8, N - i) }, () => {
      const name = pick(names);
      const kind = r();
      let body: Buffer;
      if (kind < 0.55) {
        const obj: Record<string, unknown> = {};
        const n = Math.floor(r() * 4);
        for (let k = 0; k < n; k++) obj[pick(keys)] = pick(values);
        body = Buffer.from(r() < 0.1 ? `{"__proto__": ${JSON.stringify(pick(values))}}` : JSON.stringify(obj));
      } else if (kind < 0.7) body = Buffer.from(JSON.stringify(pick(values)) ?? 'null');
      else if (kind < 0.85) body = Buffer.from(Array.from({ length: Math.floor(r() * 200) }, () => Math.floor(r() * 256))); // raw bytes, invalid UTF-8
      else if (kind < 0.9) body = Buffer.concat([Buffer.from('{"description":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}')]);
      else if (kind < 0.95) body = Buffer.alloc(70_000, 0x7b); // over the body limit
      else body = Buffer.from('{"enabled": true, "percentage": ' + '9'.repeat(400) + '}');
      const method = r() < 0.85 ? 'POST' : pick(['GET', 'PUT', 'DELETE', 'PATCH']);
      return send(cut.admin, method, `/api/v1/flags/${name}`, method === 'GET' ? undefined : body, auth).then((s) => {
        statuses.set(s, (statuses.get(s) ?? 0) + 1);
        if (s >= 500 || s < 0) bad.push(`${method} ${name} ${body.subarray(0, 80).toString('latin1')} -> ${s}`);
      });
    });
    await Promise.all(batch);
  }
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
  t.same(bad.slice(0, 5), [], 'no 5xx and no dropped connection');
  t.equal(await send(cut.admin, 'GET', '/healthz', undefined, {}), 200, 'still alive');

  // Every flag the fuzzing created or changed is valid on disk and through the API.
  const files = (await readdir(dirs.flagsDir)).filter((f) => f.endsWith('.json') && !f.startsWith('.'));
  for (const f of files) {
    t.doesNotThrow(() => parseFlagFile(JSON.parse(readFileSync(join(dirs.flagsDir, f), 'utf8')), f.slice(0, -5)), `${f} is valid`);
  }
  t.ok(files.every((f) => /^[A-Za-z0-9][A-Za-z0-9_.-]*\.json$/.test(f)), 'no file escaped the naming rules');
  // Nothing written beside or above flags/ (a traversal name such as ..%2F..%2Fetc%2Fpasswd).
  t.same((await readdir(dirs.root)).sort(), ['flags', 'routes'], 'nothing written beside flags/');
  t.same(await readdir(dirs.routesDir), ['routes.yaml'], 'nothing written into routes/');
  const allowed = new Set(names.filter((n) => NAME_RE.test(n)).map((n) => `${n}.json`));
  t.same(files.filter((f) => !allowed.has(f)), [], `only valid names became flags (${files.join(', ')})`);
  const list = await fetch(`${cut.admin}/api/v1/flags`, { headers: auth });
  t.equal(list.status, 200);

  // Without the token: 401 and nothing changes.
  const before = await readFile(join(dirs.flagsDir, 'f.json'), 'utf8');
  for (const h of [{}, { authorization: 'Bearer nope' }, { authorization: `bearer${token}` }, { authorization: `Basic ${token}` }] as Array<Record<string, string>>) {
    t.equal(await send(cut.admin, 'POST', '/api/v1/flags/f', Buffer.from('{"enabled": false}'), { 'content-type': 'application/json', ...h }), 401);
  }
  t.equal(await readFile(join(dirs.flagsDir, 'f.json'), 'utf8'), before, 'flag untouched');
});
