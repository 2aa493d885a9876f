import t, { type Test } from 'tap';
import { request, type ClientRequest } from 'node:http';
import { http } from '../helpers/http.js';
import { deadUrl, startCutover, startStalledUpstream, startUpstream, twoSided, waitFor, writeConfig, type InProcess } from '../helpers/servers.js';

// README claims about uploads (request bodies) that had no test of their own.

const MB = 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 'u');

/** How a client's upload ended: a response (with its status), or its connection failing. */
type Outcome = { response: number } | { error: string };

function openUpload(proxy: string, headers: Record<string, string>): { req: ClientRequest; outcome: Promise<Outcome> } {
  const u = new URL(proxy);
  const req = request({ host: u.hostname, port: u.port, method: 'PUT', path: '/api/upload', headers: { 'content-type': 'application/octet-stream', ...headers } });
  const outcome = new Promise<Outcome>((resolve) => {
    req.on('response', (res) => {
      res.resume();
      resolve({ response: res.statusCode ?? 0 });
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }));
  });
  return { req, outcome };
}

/** Resolves true on 'drain', false after `ms` or once the request failed (events.once would throw). */
function drained(req: ClientRequest, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (v: boolean) => {
      clearTimeout(timer);
      req.off('drain', onDrain).off('close', onClose);
      resolve(v);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    const timer = setTimeout(done, ms, false);
    req.on('drain', onDrain).on('close', onClose);
  });
}

/** Writes up to `size` bytes honouring backpressure, until no 'drain' comes for `stallMs`. */
async function writeUntilStalled(req: ClientRequest, size: number, stallMs: number): Promise<{ written: number; stalled: boolean }> {
  let written = 0;
  while (written < size && !req.destroyed) {
    written += CHUNK.length;
    if (req.write(CHUNK)) continue;
    if (!(await drained(req, stallMs))) return { written, stalled: !req.destroyed };
  }
  return { written, stalled: false };
}

async function proxyFor(t: Test, handler: Parameters<typeof startUpstream>[2]): Promise<InProcess> {
  const legacy = await startUpstream(t, 'legacy', handler);
  const candidate = await startUpstream(t, 'candidate');
  return startCutover(t, await writeConfig(t, twoSided(legacy, candidate)));
}

// "If an upstream fails while an upload is still streaming, the client's connection is reset (the
// body has been partly consumed and cannot be answered cleanly)."
t.test('an upstream failing mid-upload resets the client connection: no answer, no hang', async (t) => {
  let received = 0;
  let broken = 0;
  const { proxy } = await proxyFor(t, (req, res) => {
    if (req.method === 'GET') return void res.end('ok');
    req.on('data', (c: Buffer) => {
      received += c.length;
      // Fails after taking part of the body, as a crashing upstream would.
      if (received >= MB && !req.socket.destroyed) {
        broken++;
        req.socket.destroy();
      }
    });
  });

  for (const [framing, headers] of [
    ['content-length', { 'content-length': String(64 * MB) }],
    ['chunked', {}],
  ] as const) {
    received = 0;
    const before = broken;
    const { req, outcome } = openUpload(proxy, headers);
    // The client keeps streaming, slowly, well past the failure: only cutover can end this request.
    let stop = false;
    const writer = (async () => {
      while (!stop && !req.destroyed) {
        if (!req.write(CHUNK)) await drained(req, 50);
        else if (received >= MB) await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const started = Date.now();
    const timeout = new Promise<Outcome>((r) => setTimeout(r, 5000, { error: 'still hanging after 5 s' }));
    const got = await Promise.race([outcome, timeout]);
    stop = true;
    await writer;
    req.destroy();
    t.equal(broken, before + 1, `${framing}: the upstream broke off the upload`);
    t.ok('error' in got && /ECONNRESET|EPIPE|socket hang up/.test(got.error), `${framing}: the client's connection is reset (got ${JSON.stringify(got)})`);
    t.ok(Date.now() - started < 5000, `${framing}: within ${Date.now() - started} ms`);
  }
  t.equal((await http(`${proxy}/api/after`)).status, 200, 'the proxy serves the next request');
});

t.test('an upload the upstream never started reading (connection refused) still gets its 502', async (t) => {
  const candidate = await startUpstream(t, 'candidate');
  const cfg = {
    upstreams: { legacy: { url: await deadUrl() }, candidate: { url: candidate.url } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f' }],
  };
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  for (const headers of [{ 'content-length': String(4 * MB) }, {}] as Record<string, string>[]) {
    const { req, outcome } = openUpload(proxy, headers);
    req.write(CHUNK);
    t.same(await outcome, { response: 502 }, `${JSON.stringify(headers)}: nothing was consumed, so the client is answered`);
    req.destroy();
  }
});

// "bodies stream both ways with backpressure and are never buffered whole": the upload side.
t.test('an upstream that stops reading pauses the uploading client: cutover does not soak up the body', async (t) => {
  // Takes the headers and the first bytes of the body, then stops reading for good.
  const stalled = await startStalledUpstream(t);
  const legacy = { url: stalled.url };
  const candidate = await startUpstream(t, 'candidate');
  const cfg = {
    upstreams: { legacy, candidate: { url: candidate.url } },
    routes: [{ name: 'api', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f' }],
    limits: { maxBody: 0 }, // the body is larger than the default limit, and only streams
  };
  const { proxy } = await startCutover(t, await writeConfig(t, cfg));
  const SIZE = 512 * MB;
  const { req, outcome } = openUpload(proxy, { 'content-length': String(SIZE) });
  await waitFor(async () => {
    req.write(CHUNK);
    return stalled.received() > 0;
  }, 3000, 'upload reached the upstream');
  const { written, stalled: paused } = await writeUntilStalled(req, SIZE, 1000);
  t.comment(`client wrote ${(written / MB).toFixed(1)} MB of ${SIZE / MB} MB before stalling; upstream read ${(stalled.received() / MB).toFixed(2)} MB`);
  t.ok(paused, 'the client is paused by TCP backpressure (no drain for 1 s)');
  // What sits between a stalled upstream and the client is socket buffers on loopback (a few MB
  // each, autotuned) plus one stream's highWaterMark per hop, nowhere near the body's size.
  t.ok(written < 64 * MB, `the client could not push the body into the proxy (${(written / MB).toFixed(1)} MB accepted)`);
  req.destroy();
  t.ok('error' in (await outcome), 'no answer was made up for the client');
});
