import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { applyHeapGrowth, DEFAULT_HEAP_GROWING_PERCENT } from '../../src/util/heap-growth.js';
import { serveArgs, spawnCutover, startUpstream, twoSided, waitFor, writeConfig, type Spawned } from '../helpers/servers.js';

const run = promisify(execFile);
const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

t.test('CUTOVER_HEAP_GROWING_PERCENT: default, explicit, off, and a node flag that wins', async (t) => {
  t.equal(DEFAULT_HEAP_GROWING_PERCENT, 10);
  t.equal(applyHeapGrowth(undefined, []), 10, 'unset: the default');
  t.equal(applyHeapGrowth('  ', []), 10, 'blank: the default');
  t.equal(applyHeapGrowth('25', []), 25);
  t.equal(applyHeapGrowth('0', []), 0, "0: V8's own heuristics, nothing applied");
  t.equal(applyHeapGrowth('25', ['--heap-growing-percent=40']), 'node flag', "node's own flag wins");
  t.equal(applyHeapGrowth(undefined, ['--heap_growing_percent=40']), 'node flag', 'in either spelling');
  t.equal(applyHeapGrowth(undefined, ['--max-old-space-size=512']), 10, 'other node flags do not count');
});

t.test('a malformed value is refused with the variable named, before anything is applied', async (t) => {
  for (const bad of ['abc', '-1', '1.5', '301', '10%', '0x10']) {
    t.throws(() => applyHeapGrowth(bad, []), /CUTOVER_HEAP_GROWING_PERCENT must be a whole number from 0 to 300/, bad);
  }
});

t.test('serve applies it and says so in its startup line; a bad value stops it at once', async (t) => {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate));
  const listening = async (s: Spawned) => {
    const find = () => s.stdout.map((l) => JSON.parse(l) as Record<string, unknown>).find((r) => r.msg === 'cutover listening');
    await waitFor(() => find() !== undefined, 5000, 'the startup line');
    return find();
  };

  const dflt = await spawnCutover(t, serveArgs(dirs));
  t.equal((await listening(dflt))?.heapGrowingPercent, 10);
  dflt.child.kill('SIGTERM');
  await dflt.exited;

  const off = await spawnCutover(t, serveArgs(dirs), { CUTOVER_HEAP_GROWING_PERCENT: '0' });
  t.equal((await listening(off))?.heapGrowingPercent, 0);
  off.child.kill('SIGTERM');
  await off.exited;

  const err = await run(process.execPath, [CLI, ...serveArgs(dirs).map((a) => (a === '0' ? '1' : a))], {
    env: { ...process.env, CUTOVER_HEAP_GROWING_PERCENT: 'lots' },
  }).then(
    () => undefined,
    (e: { code: number; stderr: string }) => e,
  );
  t.equal(err?.code, 2, 'exit code 2, as for other bad options');
  t.match(err?.stderr, /CUTOVER_HEAP_GROWING_PERCENT must be a whole number from 0 to 300 .*got "lots"/);
});
