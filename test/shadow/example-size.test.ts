import t from 'tap';
import { Writable } from 'node:stream';
import type { ServerResponse } from 'node:http';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';
import { previewValue } from '../../src/shadow/preview.js';

// A route's examples are kept for the process's life and served whole by the admin API: a
// difference whose sides are a whole sub-document (a field that changes type, a subtree only one
// side has) must keep a bounded preview of each value, not the value.

interface Report {
  totals: { mismatch: number };
  examples: Array<{ differences: Array<{ path: string; legacy?: unknown; candidate?: unknown }> }>;
}

function send(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

// ~300 KB each: two per body stay under the default 1mb maxBody, so they are compared.
const bigObject = Object.fromEntries(Array.from({ length: 6000 }, (_, i) => [`sku${i}`, { price: i, name: `product number ${i}` }]));
const bigString = 'x'.repeat(300_000);

t.test('examples keep a bounded preview of large differing values, in memory, in the admin answer and in the log', async (t) => {
  // $.items changes type (object -> string) and $.extra is a subtree only the candidate has.
  const legacy = await startUpstream(t, 'legacy', (_req, res) => send(res, { id: 1, items: bigObject }));
  const candidate = await startUpstream(t, 'candidate', (_req, res) => send(res, { id: 2, items: bigString, extra: bigObject }));
  const config = {
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
    routes: [{ name: 'catalog', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', shadow: { percentage: 100 } }],
  } as unknown as ConfigInput;
  const dirs = await writeConfig(t, config, { f: { enabled: false } });
  const logged: number[] = [];
  const logger = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (c.includes('"shadow mismatch"') && logged.push(c.length), cb()) }));
  const { proxy, admin, running } = await startCutover(t, dirs, { logger });
  const report = async () => (await http(`${admin}/api/v1/shadow/catalog`)).json<Report>();

  const n = 12; // more than the 10 examples kept, so every slot is filled
  for (let i = 0; i < n; i++) {
    await http(`${proxy}/api/p/${i}`, { headers: { 'x-user-id': `u${i}` } });
    await waitFor(async () => (await report()).totals.mismatch === i + 1, 5000, `mismatch ${i + 1}`);
  }

  const answer = await http(`${admin}/api/v1/shadow/catalog`);
  const r = answer.json<Report>();
  t.equal(r.examples.length, 10);
  t.ok(answer.text.length < 20_000, `the admin answer stays small (${answer.text.length} chars)`);
  const held = JSON.stringify(running.cutover.shadow.all()[0]?.recentExamples()).length;
  t.ok(held < 20_000, `what the stats keep is small (${held} chars)`);
  t.ok(logged.length === n && logged.every((len) => len < 5_000), `every "shadow mismatch" log line is small (${Math.max(...logged)} bytes)`);

  const d = r.examples[0]?.differences ?? [];
  t.match(d.find((x) => x.path === '$.id'), { legacy: 1, candidate: 2 }, 'a small value is kept as is');
  const items = d.find((x) => x.path === '$.items');
  t.match(items, { legacy: /^\{"sku0":\{"price":0,"name":"product number 0"\},.*… \[truncated: \d+ chars of JSON\]$/, candidate: /^"xxxx.*… \[truncated: 300002 chars of JSON\]$/ });
  t.equal(String(items?.legacy).match(/truncated: (\d+)/)?.[1], String(JSON.stringify(bigObject).length), 'the original length is given');
  const extra = d.find((x) => x.path === '$.extra');
  t.ok(extra !== undefined && !('legacy' in extra), 'a side without the field still shows none');
  t.match(extra, { candidate: /… \[truncated: \d+ chars of JSON\]$/ });
});

t.test('a preview does not keep the value it was cut from alive', async (t) => {
  // V8 may represent a slice of a string as a view into it: a 256-character preview would then
  // hold the whole multi-MB JSON text, and the bound above would be on paper only.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  const before = process.memoryUsage().heapUsed;
  const kept = Array.from({ length: 40 }, (_, i) => previewValue({ blob: 'y'.repeat(1_000_000), i }));
  gc();
  const grew = process.memoryUsage().heapUsed - before;
  t.equal(kept.length, 40);
  t.ok(grew < 10_000_000, `40 previews of 1 MB values hold ${Math.round(grew / 1e6)} MB (views into the values would hold 40)`);
});
