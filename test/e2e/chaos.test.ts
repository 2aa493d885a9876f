import t from 'tap';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { postJson } from '../helpers/http.js';
import { rssOf, serveArgs, spawnCutover, startCutover, startUpstream, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

interface Sample {
  start: number;
  end: number;
  status: number;
  servedBy: string | undefined;
  error: string | undefined;
}

/** `connections` keep-alive workers hammering GETs until stopped; every response is recorded. */
function load(url: string, connections: number) {
  const agent = new Agent({ connections, keepAliveTimeout: 10_000 });
  let stop = false;
  const samples: Sample[] = [];
  const workers = Array.from({ length: connections }, async (_, i) => {
    let n = 0;
    while (!stop) {
      const start = performance.now();
      try {
        const r = await request(`${url}/api/item/${n++}`, { dispatcher: agent, headers: { 'x-user-id': `user-${i}` } });
        const text = await r.body.text();
        let servedBy: string | undefined;
        try {
          servedBy = (JSON.parse(text) as { served_by?: string }).served_by;
        } catch {
          servedBy = undefined;
        }
        samples.push({ start, end: performance.now(), status: r.statusCode, servedBy, error: undefined });
      } catch (err) {
        samples.push({ start, end: performance.now(), status: 0, servedBy: undefined, error: (err as Error).message });
      }
    }
  });
  return {
    samples,
    async stop() {
      stop = true;
      await Promise.all(workers);
      await agent.close();
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Load tests: about a minute alone, more when the suite runs files in parallel.
t.setTimeout(240_000);

function config(legacyUrl: string, candidateUrl: string): ConfigInput {
  return {
    upstreams: {
      legacy: { url: legacyUrl, connections: 256 },
      candidate: { url: candidateUrl, connections: 256, outlier: { consecutiveFailures: 3, baseEjection: '300ms', maxEjection: '1s' } },
    },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', timeout: '500ms' }],
  } as ConfigInput;
}

t.test('the candidate is killed, then restarted on the same port: zero failed GETs, traffic returns', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const handler = (_req: unknown, res: import('node:http').ServerResponse) => {
    res.setHeader('content-type', 'application/json');
    res.end('{"served_by":"candidate"}');
  };
  let candidate: Server = createServer(handler);
  candidate.listen(0, '127.0.0.1');
  await once(candidate, 'listening');
  const port = (candidate.address() as import('node:net').AddressInfo).port;
  t.teardown(() => candidate.close());
  const cfg = config(legacy.url, `http://127.0.0.1:${port}`);
  cfg.routes![0]!.timeout = '5s'; // a dead candidate refuses at once; machine load must not cause fallbacks here
  const { proxy } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: true, percentage: 100 } }));

  const l = load(proxy, 200);
  await sleep(800);
  candidate.closeAllConnections();
  await new Promise<void>((r) => candidate.close(() => r()));
  const killedAt = performance.now();
  await sleep(1500);
  candidate = createServer(handler);
  candidate.listen(port, '127.0.0.1');
  await once(candidate, 'listening');
  const restartedAt = performance.now();
  await sleep(2500);
  await l.stop();

  const failed = l.samples.filter((s) => s.status !== 200);
  t.equal(failed.length, 0, `zero failed GETs out of ${l.samples.length} ${failed.slice(0, 3).map((f) => f.error ?? f.status).join(', ')}`);
  const whileDown = l.samples.filter((s) => s.start > killedAt + 200 && s.end < restartedAt);
  t.ok(whileDown.length > 50, `requests ran while the candidate was down (${whileDown.length})`);
  t.ok(whileDown.every((s) => s.servedBy === 'legacy'), 'legacy served while it was down');
  const tail = l.samples.filter((s) => s.start > restartedAt + 1500);
  const bySide = new Map<string, number>();
  for (const s of tail) bySide.set(String(s.servedBy), (bySide.get(String(s.servedBy)) ?? 0) + 1);
  t.comment(`after recovery: ${JSON.stringify([...bySide])}`);
  // Under load a slow answer may still legitimately fall back (timeout); the candidate must carry the traffic again.
  const onCandidate = bySide.get('candidate') ?? 0;
  t.ok(tail.length > 100 && onCandidate / tail.length > 0.9, `traffic returned to the candidate (${onCandidate}/${tail.length} after recovery)`);
});

t.test('the flag flipped 0 <-> 100 forty times under load: no failures, every answer from the side the flag said', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = config(legacy.url, candidate.url);
  cfg.routes![0]!.timeout = '10s'; // only the flag may decide the side here, never a slow-answer fallback
  const { proxy, admin } = await startCutover(t, await writeConfig(t, cfg, { f: { enabled: true, percentage: 0 } }));
  const l = load(proxy, 100);
  // flips[i] = [time the change was live, side from then on]
  const flips: Array<[number, string]> = [[0, 'legacy']];
  await sleep(200);
  for (let i = 1; i <= 40; i++) {
    const pct = i % 2 === 1 ? 100 : 0;
    const before = performance.now();
    const r = await postJson(`${admin}/api/v1/flags/f`, { percentage: pct });
    t.equal(r.status, 200) || t.bailout('flag write failed');
    // The change goes live somewhere between sending the POST and its 200.
    flips.push([before, 'either'], [performance.now(), pct === 100 ? 'candidate' : 'legacy']);
    await sleep(40);
  }
  await sleep(200);
  await l.stop();
  const sideAt = (time: number) => {
    let side = 'legacy';
    for (const [at, s] of flips) if (at <= time) side = s;
    return side;
  };
  let checked = 0;
  let wrong = 0;
  const flipTimes = flips.map(([at]) => at);
  for (const s of l.samples) {
    const a = sideAt(s.start);
    // Routed while a flip was in flight (or one landed during the request): either side is right.
    if (a === 'either' || flipTimes.some((at) => at > s.start && at <= s.end)) continue;
    checked++;
    if (s.servedBy !== a) {
      wrong++;
      if (wrong <= 5) t.comment(`wrong: expected ${a}, got ${s.servedBy} (${(s.end - s.start).toFixed(0)} ms)`);
    }
  }
  t.equal(l.samples.filter((s) => s.status !== 200).length, 0, `no failed requests (${l.samples.length})`);
  t.ok(checked > 500, `${checked} responses checked against the flag timeline`);
  t.equal(wrong, 0, 'every response came from the side the flag said');
});

t.test('kill -9 during a burst of flag writes: no torn flag file, no torn audit line', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, config(legacy.url, candidate.url));
  const cut = await spawnCutover(t, serveArgs(dirs));
  let acknowledged = 0;
  const refused: number[] = [];
  const acked = new Set<string>();
  // Each write's state is unique (parity, percentage and description length never repeat together
  // for one flag within 400 writes), so every acknowledged one must have its own audit line.
  const ackedWrites: string[] = [];
  const writes: Array<Promise<unknown>> = [];
  for (let i = 0; i < 400; i++) {
    const flag = `flag_${i % 7}`;
    const key = `${flag} ${i % 2 === 0} ${i % 101} ${(i * 10) % 2000}`;
    // Every write valid (descriptions up to the 2,000-character limit, of varied sizes): a refusal
    // comes back fast without touching the disk and must not count as an acknowledged write.
    writes.push(
      postJson(`${cut.admin}/api/v1/flags/${flag}`, { enabled: i % 2 === 0, percentage: i % 101, description: 'd'.repeat((i * 10) % 2000) }).then(
        (r) => {
          if (r.status !== 200) return void refused.push(r.status);
          acked.add(flag);
          ackedWrites.push(key);
          if (++acknowledged === 60) cut.child.kill('SIGKILL'); // mid-burst: many writes still in flight
        },
        () => undefined, // in flight when the process died
      ),
    );
  }
  await Promise.all(writes);
  t.same(refused, [], 'no write was refused');
  t.ok(acknowledged >= 60 && acknowledged < 400, `killed after ${acknowledged} of 400 writes were acknowledged`);
  await cut.exited;
  const files = (await readdir(dirs.flagsDir)).filter((f) => f.endsWith('.json') && !f.startsWith('.'));
  t.same(files.map((f) => f.slice(0, -'.json'.length)).filter((f) => acked.has(f)).sort(), [...acked].sort(), `every flag with an acknowledged write has its file (${files.length})`);
  for (const f of files) {
    const state = JSON.parse(await readFile(join(dirs.flagsDir, f), 'utf8')) as { enabled: unknown; percentage: unknown };
    t.type(state.enabled, 'boolean', `${f} is whole`);
  }
  const audit = (await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8')).split('\n').filter(Boolean);
  const audited = new Set(
    audit.flatMap((line) => {
      try {
        const a = JSON.parse(line) as { flag: string; after: { enabled: boolean; percentage: number; description?: string } | null };
        return a.after ? [`${a.flag} ${a.after.enabled} ${a.after.percentage} ${a.after.description?.length ?? 0}`] : [];
      } catch {
        return [];
      }
    }),
  );
  const unaudited = ackedWrites.filter((k) => !audited.has(k));
  t.same(unaudited, [], `every acknowledged write has its audit line (${audit.length} lines for ${acknowledged})`);
  let torn = 0;
  for (const line of audit) {
    try {
      JSON.parse(line);
    } catch {
      torn++;
    }
  }
  t.equal(torn, 0, `${audit.length} audit lines, none torn`);
  // And the survivor state loads: a restart serves with it, every flag file included.
  const again = await spawnCutover(t, serveArgs(dirs));
  const listed = (await (await fetch(`${again.admin}/api/v1/flags`)).json()) as { flags: Array<{ name: string }> };
  t.equal(listed.flags.length, files.length, 'the restarted proxy loaded every surviving flag');
  t.equal((await fetch(`${again.proxy}/api/x`, { headers: { 'x-user-id': 'u1' } })).status, 200, 'and serves');
});

t.test('memory stays flat over a sustained load', { timeout: 120_000 }, async (t) => {
  const seconds = Number(process.env.SOAK_SECONDS ?? 20);
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, config(legacy.url, candidate.url), { f: { enabled: true, percentage: 50 } });
  const cut = await spawnCutover(t, serveArgs(dirs), { LOG_LEVEL: 'warn' });
  const pid = cut.child.pid as number;
  const l = load(cut.proxy, 100);
  await sleep(5000); // warm-up: pools, JIT, buffers
  const warm = (await rssOf(pid)).rss;
  let peak = warm;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    await sleep(1000);
    peak = Math.max(peak, (await rssOf(pid)).rss);
  }
  await l.stop();
  const MB = 1024 * 1024;
  const growth = (peak - warm) / MB;
  t.comment(`${l.samples.length} requests in ${seconds + 5} s; RSS after warm-up ${(warm / MB).toFixed(1)} MB, peak ${(peak / MB).toFixed(1)} MB`);
  t.ok(growth < 40, `RSS grew ${growth.toFixed(1)} MB after warm-up (bound: 40 MB)`);
  t.equal(l.samples.filter((s) => s.status !== 200).length, 0);
});
