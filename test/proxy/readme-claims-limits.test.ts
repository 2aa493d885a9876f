import t from 'tap';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig, type Upstream } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

// README claims from "Operations" about the proxy listener: its accept backlog and
// `limits.requestTimeout`, which had no test of their own.

const run = promisify(execFile);

function legacyOnly(legacy: Upstream, limits: ConfigInput['limits'] = {}): ConfigInput {
  return { upstreams: { legacy: { url: legacy.url } }, routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy' }], limits };
}

// "cutover listens with an accept backlog of 4,096 (Node's default is 511)". For a LISTEN socket,
// ss's Send-Q is the backlog the kernel applied: the one asked for, capped at net.core.somaxconn.
const somaxconn = Number((await readFile('/proc/sys/net/core/somaxconn', 'utf8').catch(() => '')).trim());
const hasSs = await run('ss', ['-V']).then(() => true, () => false);
// At or below Node's 511 the kernel would report the same value either way: nothing to tell apart.
const cannotSee = !hasSs || !(somaxconn > 511) ? `SKIPPED: cannot observe the backlog here (ss: ${hasSs}, somaxconn: ${somaxconn || 'unknown'})` : false;

t.test('the proxy listener has an accept backlog of 4,096 (capped by the kernel at somaxconn)', { skip: cannotSee }, async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const { running } = await startCutover(t, await writeConfig(t, legacyOnly(legacy)));
  const { stdout } = await run('ss', ['-Hltn', `sport = :${running.proxyPort}`]);
  const rows = stdout.trim().split('\n').filter((l) => l.startsWith('LISTEN'));
  t.equal(rows.length, 1, `one listening socket on the proxy port (${stdout.trim()})`);
  const sendQ = Number(rows[0]?.trim().split(/\s+/)[2]);
  const expected = Math.min(4096, somaxconn);
  t.equal(sendQ, expected, `backlog ${sendQ}: 4096 asked, kernel cap ${somaxconn}`);
  if (somaxconn < 4096) t.comment(`somaxconn is ${somaxconn}: this kernel only shows that the backlog exceeds Node's 511`);
});

/** Sends `head`, then `count` more body bytes, one every `gapMs`; resolves with what came back and when. */
function slowUpload(base: string, head: string, dribble: { count: number; gapMs: number }, holdMs: number) {
  const u = new URL(base);
  const started = Date.now();
  return new Promise<{ answer: string; ms: number }>((resolve) => {
    let answer = '';
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      clearInterval(timer);
      clearTimeout(hold);
      sock.destroy();
      resolve({ answer, ms: Date.now() - started });
    };
    const sock = connect(Number(u.port), u.hostname, () => {
      sock.write(head);
      if (dribble.count > 0) {
        timer = setInterval(() => {
          if (sent++ < dribble.count && sock.writable) sock.write('x');
        }, dribble.gapMs);
      }
    });
    sock.on('data', (d) => (answer += d.toString('latin1')));
    sock.on('error', () => undefined);
    sock.on('close', finish);
    const hold = setTimeout(finish, holdMs);
  });
}

// "requestTimeout: 300s  # time to send the whole request" (and for headersTimeout: "then 408/close").
// A client that sent its headers but not its body is cut off after requestTimeout, whether it
// stops or keeps dribbling (the timeout is for the whole request, not an idle timer).
for (const [name, dribble] of [
  ['stops sending its body', { count: 0, gapMs: 0 }],
  ['dribbles its body (one byte every 100 ms)', { count: 1000, gapMs: 100 }],
] as const) {
  t.test(`requestTimeout: a client that ${name} gets 408 or a close after about requestTimeout`, async (t) => {
    const closed: string[] = [];
    const legacy = await startUpstream(t, 'legacy', (req) => {
      req.resume();
      req.on('close', () => closed.push(req.url ?? ''));
    });
    // headersTimeout sets how often Node checks its timers (half of it here, 200 ms).
    const cfg = legacyOnly(legacy, { headersTimeout: '400ms', requestTimeout: '800ms' });
    const { proxy } = await startCutover(t, await writeConfig(t, cfg));
    const head = 'POST /api/upload HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\nfirst bytes';
    const { answer, ms } = await slowUpload(proxy, head, dribble, 5000);
    t.ok(answer === '' || answer.startsWith('HTTP/1.1 408'), `answered 408 or just closed (got ${JSON.stringify(answer.slice(0, 40))})`);
    t.ok(ms >= 750 && ms < 2000, `cut off after ${ms} ms: requestTimeout is 800 ms, the client would have waited 5 s`);
    t.equal(legacy.seen.length, 1, 'the request had been forwarded (headers were complete)');
    await waitFor(() => closed.length === 1, 3000, 'the upstream request cancelled');
    t.pass('the upstream request was cancelled');
  });
}

// The other half of "time to send the whole request": once the request is in, a response that
// streams for longer than requestTimeout is not cut.
t.test('requestTimeout does not cut a response that streams longer than it', async (t) => {
  const legacy = await startUpstream(t, 'legacy', (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain' });
    let n = 0;
    const timer = setInterval(() => {
      res.write(`chunk ${n}\n`);
      if (++n === 20) {
        clearInterval(timer);
        res.end('done\n');
      }
    }, 100);
    res.on('close', () => clearInterval(timer));
  });
  const cfg = legacyOnly(legacy, { headersTimeout: '400ms', requestTimeout: '800ms' });
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  const started = Date.now();
  const r = await http(`${proxy}/api/stream`);
  t.equal(r.status, 200);
  t.ok(r.text.endsWith('chunk 19\ndone\n'), 'the whole body arrived');
  t.ok(Date.now() - started >= 1600, `the response outlived requestTimeout (${Date.now() - started} ms)`);
});
