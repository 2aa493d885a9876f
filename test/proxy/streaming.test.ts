import t from 'tap';
import { request } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createHash } from 'node:crypto';
import { rssOf, serveArgs, spawnCutover, startCutover, startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';

const MB = 1024 * 1024;
const SIZE = 50 * MB;

/** 50 MB of deterministic bytes produced on demand, never held whole in memory. */
function bigBody(size: number): Readable {
  let sent = 0;
  const chunk = Buffer.alloc(64 * 1024, 'x');
  return new Readable({
    read() {
      if (sent >= size) return this.push(null);
      const n = Math.min(chunk.length, size - sent);
      sent += n;
      this.push(n === chunk.length ? chunk : chunk.subarray(0, n));
    },
  });
}

t.test('50 MB and 200 MB bodies stream through both ways with flat memory', async (t) => {
  let received = 0;
  let downloadSize = SIZE;
  const legacy = await startUpstream(t, 'legacy', (req, res) => {
    if (req.method === 'POST') {
      const hash = createHash('sha256');
      req.on('data', (c: Buffer) => {
        received += c.length;
        hash.update(c);
      });
      req.on('end', () => res.end(JSON.stringify({ bytes: received, sha: hash.digest('hex') })));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    bigBody(downloadSize).pipe(res);
  });
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const cut = await spawnCutover(t, serveArgs(dirs));
  const pid = cut.child.pid!;
  const port = Number(new URL(cut.proxy).port);
  const before = await rssOf(pid);
  let peak = before.rss;
  const sampler = setInterval(() => {
    rssOf(pid).then((r) => (peak = Math.max(peak, r.rss)), () => undefined);
  }, 25);
  t.teardown(() => clearInterval(sampler));

  // Upload
  const upload = await new Promise<{ bytes: number; sha: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/api/upload', headers: { 'content-type': 'application/octet-stream' } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(JSON.parse(text)));
    });
    req.on('error', reject);
    pipeline(bigBody(SIZE), req).catch(reject);
  });
  const expected = createHash('sha256');
  await pipeline(bigBody(SIZE), async function* (src) {
    for await (const c of src) expected.update(c as Buffer);
  });
  t.equal(upload.bytes, SIZE, 'upstream got every byte (chunked upload)');
  t.equal(upload.sha, expected.digest('hex'), 'bytes intact');

  // Download. The client stops reading for a second mid-body: a proxy that ignored backpressure
  // would pull the rest of the body into memory then. And the growth must not scale with size.
  const download = (path: string) =>
    new Promise<{ bytes: number; pauseGrowth: number }>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path }, (res) => {
        let n = 0;
        let pauseGrowth = 0;
        let paused = false;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (!paused && n > 5 * MB) {
            paused = true;
            res.pause();
            rssOf(pid).then(async (r0) => {
              await new Promise((w) => setTimeout(w, 1000));
              pauseGrowth = (await rssOf(pid)).rss - r0.rss;
              res.resume();
            }, reject);
          }
        });
        res.on('end', () => resolve({ bytes: n, pauseGrowth }));
        res.on('error', reject);
      })
        .on('error', reject)
        .end();
    });
  const small = await download('/api/download?size=50');
  t.equal(small.bytes, SIZE, 'client got every byte');
  const peakSmall = peak - before.rss;
  downloadSize = 4 * SIZE;
  const large = await download('/api/download?size=200');
  t.equal(large.bytes, 4 * SIZE, 'client got every byte of 200 MB');
  clearInterval(sampler);
  const peakLarge = peak - before.rss;
  const fmt = (n: number) => `${(n / MB).toFixed(1)} MB`;
  t.comment(`proxy RSS ${fmt(before.rss)} at start; growth: 50 MB ${fmt(peakSmall)}, 200 MB ${fmt(peakLarge)}; during client pause ${fmt(small.pauseGrowth)} / ${fmt(large.pauseGrowth)}`);
  t.ok(small.pauseGrowth < 16 * MB && large.pauseGrowth < 16 * MB, 'backpressure: a stalled client does not fill the proxy');
  t.ok(peakLarge < peakSmall + 24 * MB, 'memory does not grow with body size');
  t.ok(peakLarge < 100 * MB, 'a 200 MB body never sits in memory');
});

t.test('a client abort reaches the upstream', async (t) => {
  let upstreamSawClose = false;
  let requestArrived = false;
  const legacy = await startUpstream(t, 'legacy', (_req, res) => {
    requestArrived = true;
    res.on('close', () => (upstreamSawClose = true)); // never answers: only an abort ends this
  });
  const candidate = await startUpstream(t, 'candidate');
  const { proxy } = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate)));
  const u = new URL(proxy);
  const req = request({ host: u.hostname, port: u.port, path: '/api/slow' });
  req.on('error', () => undefined);
  req.end();
  await waitFor(() => requestArrived, 3000, 'request at upstream');
  req.destroy();
  await waitFor(() => upstreamSawClose, 3000, 'upstream connection closed');
  t.pass('upstream request was cancelled');
});

t.test('an aborted upload is cancelled upstream too', async (t) => {
  let upstreamSawClose = false;
  let bytes = 0;
  const legacy = await startUpstream(t, 'legacy', (req, res) => {
    req.on('data', (c: Buffer) => (bytes += c.length));
    res.on('close', () => (upstreamSawClose = true));
  });
  const candidate = await startUpstream(t, 'candidate');
  const { proxy } = await startCutover(t, await writeConfig(t, twoSided(legacy, candidate)));
  const u = new URL(proxy);
  const req = request({ host: u.hostname, port: u.port, method: 'PUT', path: '/api/up', headers: { 'content-length': String(10 * MB) } });
  req.on('error', () => undefined);
  req.write(Buffer.alloc(MB));
  await waitFor(() => bytes > 0, 3000, 'upload started');
  req.destroy();
  await waitFor(() => upstreamSawClose, 3000, 'upstream saw the abort');
  t.ok(bytes < 10 * MB);
});
