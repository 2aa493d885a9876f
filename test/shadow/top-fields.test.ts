import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerResponse } from 'node:http';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from '../helpers/servers.js';
import type { ConfigInput } from '../../src/config/schema.js';

// top_fields counts alone cannot tell a difference the candidate's last deploy fixed from one
// still happening: each field says when it last differed.

interface Field {
  path: string;
  count: number;
  last_seen: string;
}
interface Report {
  since: string;
  totals: { mismatch: number };
  top_fields: Field[];
}

function send(res: ServerResponse, body: unknown): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

t.test('top_fields tell when each field last differed; DELETE starts them afresh', async (t) => {
  let fixedPrice = false;
  const legacy = await startUpstream(t, 'legacy', (_req, res) => send(res, { price: 10, tax: 1 }));
  const candidate = await startUpstream(t, 'candidate', (_req, res) => send(res, { price: fixedPrice ? 10 : 11, tax: 2 }));
  const routes = {
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
    routes: [{ name: 'catalog', match: { path: '/api' }, legacy: 'legacy', candidate: 'candidate', flag: 'f', shadow: { percentage: 100 } }],
  } as unknown as ConfigInput;
  const dirs = await writeConfig(t, routes, { f: { enabled: false } });
  const { proxy, admin } = await startCutover(t, dirs);
  const report = async () => (await http(`${admin}/api/v1/shadow/catalog`)).json<Report>();
  const field = (r: Report, path: string) => r.top_fields.find((f) => f.path === path) as Field;
  let sent = 0;
  /** Mirrors one request; the time range its comparison was recorded in (ms). */
  const mismatch = async (): Promise<[number, number]> => {
    const from = Date.now();
    await http(`${proxy}/api/p/${sent}`, { headers: { 'x-user-id': `u${sent}` } });
    const n = ++sent;
    await waitFor(async () => (await report()).totals.mismatch === n, 3000, `mismatch ${n}`);
    return [from, Date.now()];
  };
  const within = (iso: string, [from, to]: [number, number]) => Date.parse(iso) >= from && Date.parse(iso) <= to;

  await mismatch();
  const lastPrice = await mismatch();
  await sleep(50);
  fixedPrice = true; // the candidate's deploy fixes the price, not the tax
  const lastTax = await mismatch();

  let r = await report();
  t.match(field(r, '$.tax'), { count: 3 });
  t.match(field(r, '$.price'), { count: 2 });
  t.ok(within(field(r, '$.tax').last_seen, lastTax), 'the tax still differs: seen in the latest comparison');
  t.ok(within(field(r, '$.price').last_seen, lastPrice), 'the price last differed before the fix');

  const reset = (await http(`${admin}/api/v1/shadow/catalog`, { method: 'DELETE' })).json<Report>();
  t.same(reset.top_fields, [], 'the reset empties top_fields, times included');
  const after = await mismatch();
  r = await report();
  t.same(r.top_fields.map((f) => [f.path, f.count]), [['$.tax', 1]], 'counted afresh; the fixed price does not come back');
  t.ok(within(field(r, '$.tax').last_seen, after) && field(r, '$.tax').last_seen >= r.since, 'its time is the new one');
});
