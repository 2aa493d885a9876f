// Instructions per request, counted by valgrind (callgrind): a measure of a proxy's own work that,
// unlike req/s or CPU time, does not move when the shared machine is busy. Use it to A/B a change
// to the hot path; use `npm run bench` for the throughput the issue's targets are stated in.
//   npm run build && node bench/instructions.mjs [--requests N] [--windows K] [--warmup W] [--idle S] [--connections C] [--cli PATH] [--cache LL_BYTES] [--keep DIR] CONTENDER...
// CONTENDER: undici | http-proxy | reply-from | cutover-0 | cutover-50 | cutover-100
// Each contender runs once under callgrind: after a warm-up (JIT, pools, caches),
// callgrind_control reads the instruction counters before and after each of several windows of N
// requests; the difference divided by N is one request's cost, and the lowest window is reported. Node runs --single-threaded (V8's
// compiler and GC on the main thread); libuv's threads are counted too.
// --cache LL_BYTES also simulates the caches (callgrind --cache-sim, a last-level cache of that
// size) and reports misses per request in the same lowest window: a small LL stands for the
// share of a shared cache a proxy keeps on a crowded host, where a bigger working set costs time
// that instruction counts do not show. --keep DIR: after the windows, one more window of N
// requests with the counters zeroed first is dumped to DIR/CONTENDER.callgrind.out, for
// callgrind_annotate --inclusive=no --threshold=100 (per-function counts; V8's compiled JavaScript
// shows as bare addresses; a first line charging nearly everything to __libc_start_main is an
// artefact of V8's unusual calls: skip it, and don't let the default threshold stop there).
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { startUpstreams, cutoverContender, forwarderContender, useCli } from './contenders.mjs';
import { runExactly } from './load.mjs';
import { stopAll, tempDir, removeTempDir } from './proc.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    requests: { type: 'string', default: '4000' },
    windows: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '8000' },
    idle: { type: 'string', default: '20' },
    connections: { type: 'string', default: '10' },
    cli: { type: 'string' },
    cache: { type: 'string' },
    keep: { type: 'string' },
  },
});
if (values.cli) useCli(values.cli);
const N = Number(values.requests);
const names = positionals.length ? positionals : ['undici', 'cutover-50'];
const llBytes = values.cache === undefined ? undefined : Number(values.cache);
if (llBytes !== undefined && !(Number.isInteger(llBytes) && llBytes > 0 && (llBytes & (llBytes - 1)) === 0)) {
  console.error(`--cache must be the last-level cache's size in bytes, a power of two (e.g. 1048576), got ${values.cache}`);
  process.exit(2);
}
/** Cache events reported, summed over the misses callgrind records at each level. */
const MISSES = { L1i: ['I1mr'], L1d: ['D1mr', 'D1mw'], LL: ['ILmr', 'DLmr', 'DLmw'] };

try {
  execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
} catch {
  console.error('valgrind is not installed (apt-get install valgrind)');
  process.exit(2);
}

/** Events so far (Ir, and the cache events when simulated), summed over threads, from callgrind_control. */
function counters(pid) {
  const text = execFileSync('callgrind_control', ['-e', String(pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const events = (text.match(/Totals:\s*(.*)/)?.[1] ?? '').trim().split(/\s+/);
  const sums = Object.fromEntries(events.map((e) => [e, 0]));
  for (const m of text.matchAll(/^\s*Th\s*\d+\s+(.*)$/gm)) {
    m[1].trim().split(/\s+/).forEach((n, i) => {
      if (i < events.length) sums[events[i]] += Number(n.replaceAll(',', ''));
    });
  }
  if (!(sums.Ir > 0)) throw new Error(`no counters from callgrind_control for ${pid}: ${text}`);
  return sums;
}

const load = (c, requests) => runExactly(c, requests, Number(values.connections));

async function count(name, legacy, candidate) {
  const dir = tempDir(`callgrind-${name}`);
  // valgrind runs one thread at a time, so V8's background compiler and GC threads would get
  // CPU at the whim of its scheduler and optimized code would arrive late and at random: do that
  // work on the main thread instead, where it is counted the same way every run. V8's memory
  // reducer starts full GCs when allocation looks slow, which under valgrind it always does.
  const nodeArgs = ['--single-threaded', '--no-memory-reducer'];
  const wrap = ['valgrind', '--tool=callgrind', `--callgrind-out-file=${join(dir, 'callgrind.out.%p')}`, '--smc-check=all-non-file'];
  if (llBytes !== undefined) wrap.push('--cache-sim=yes', `--LL=${llBytes},16,64`);
  const c = name.startsWith('cutover-')
    ? await cutoverContender(name, legacy, candidate, Number(name.slice('cutover-'.length)), { wrap, nodeArgs })
    : await forwarderContender(name, legacy, nodeArgs, wrap);
  // The pid we hold may be valgrind's launcher; callgrind_control wants the process it instruments.
  const pid = c.pid;
  const windows = [];
  let idlePerSec = NaN;
  try {
    // Under valgrind V8's optimizing compiler threads run slowly: warm up long enough that the
    // hot path is optimized before the first window, or early windows count unoptimized code.
    await load(c, Number(values.warmup));
    // What the process does with no requests (timers, file polls, log flushes), per second. A
    // window lasts ~50x longer under valgrind than at full speed, so this share is taken out.
    const i0 = counters(pid);
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, Number(values.idle) * 1000));
    idlePerSec = (counters(pid).Ir - i0.Ir) / ((performance.now() - t0) / 1000);
    for (let w = 0; w < Number(values.windows); w++) {
      const a = counters(pid);
      const t = performance.now();
      await load(c, N);
      const b = counters(pid);
      const secs = (performance.now() - t) / 1000;
      const misses = Object.fromEntries(Object.entries(MISSES).map(([level, evs]) => [level, evs.reduce((n, e) => n + (b[e] ?? 0) - (a[e] ?? 0), 0) / N]));
      windows.push({ raw: (b.Ir - a.Ir) / N, net: (b.Ir - a.Ir - idlePerSec * secs) / N, secs, misses });
    }
    if (values.keep) await keep(name, pid, c, dir);
  } finally {
    await c.child.stop(120_000);
    await c.stop();
    removeTempDir(dir);
  }
  return { windows, idlePerSec };
}

/** One more window, counted alone and dumped where callgrind_annotate can read it. */
async function keep(name, pid, c, dir) {
  execFileSync('callgrind_control', ['--zero', String(pid)], { stdio: 'ignore' });
  await load(c, N);
  execFileSync('callgrind_control', ['--dump', String(pid)], { stdio: 'ignore' });
  const dump = readdirSync(dir).find((f) => /^callgrind\.out\.\d+\.\d+$/.test(f));
  if (dump === undefined) throw new Error(`${name}: callgrind wrote no dump in ${dir}`);
  const out = resolve(values.keep);
  mkdirSync(out, { recursive: true });
  copyFileSync(join(dir, dump), join(out, `${name}.callgrind.out`));
  console.log(`${name}: ${N} requests' counts in ${join(out, `${name}.callgrind.out`)} (callgrind_annotate --inclusive=no --threshold=100)`);
}

const k = (n) => `${(n / 1000).toFixed(1)}k`;

async function main() {
  const [legacy, candidate] = await startUpstreams(['legacy', 'candidate']);
  const rows = [];
  for (const name of names) {
    const { windows: w, idlePerSec } = await count(name, legacy, candidate);
    // The lowest window: V8 keeps optimizing for a while under valgrind, so windows fall and
    // then level off; the level is the steady-state cost.
    const best = w.reduce((a, x) => (x.net < a.net ? x : a));
    const row = { name, perReq: best.net, raw: best.raw, idlePerSec, windows: w, best };
    rows.push(row);
    console.log(
      `${name.padEnd(12)} ${k(row.perReq).padStart(7)} instructions/request; windows ${w.map((x) => k(x.net)).join(' ')}; ` +
        `idle ${k(idlePerSec / 1000)}/ms, counted in the raw figure ${k(row.raw)}`,
    );
    if (llBytes !== undefined) {
      const m = best.misses;
      console.log(`${''.padEnd(12)} cache misses/request in that window: L1i ${m.L1i.toFixed(0)}, L1d ${m.L1d.toFixed(0)}, LL (${llBytes / 1024} KiB) ${m.LL.toFixed(0)}`);
    }
  }
  const base = rows.find((r) => r.name === 'undici');
  if (base) {
    for (const r of rows) {
      const ratio = (level) => (base.best.misses[level] >= 1 ? `, ${level} misses ${(r.best.misses[level] / base.best.misses[level]).toFixed(2)}x` : '');
      console.log(`${r.name.padEnd(12)} ${(r.perReq / base.perReq).toFixed(2)}x undici${llBytes === undefined ? '' : ratio('L1i') + ratio('L1d') + ratio('LL')}`);
    }
  }
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => stopAll());
