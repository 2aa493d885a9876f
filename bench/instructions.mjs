// Instructions per request, counted by valgrind (callgrind): a measure of a proxy's own work that,
// unlike req/s or CPU time, does not move when the shared machine is busy. Use it to A/B a change
// to the hot path; use `npm run bench` for the throughput the targets are stated in.
//   npm run build && node bench/instructions.mjs [--requests N] [--windows K] [--warmup W] [--idle S] [--connections C] [--cli PATH] CONTENDER...
// CONTENDER: undici | http-proxy | reply-from | cutover-0 | cutover-50 | cutover-100
// Each contender runs once under callgrind: after a warm-up (JIT, pools, caches),
// callgrind_control reads the instruction counters before and after each of several windows of N
// requests; the difference divided by N is one request's cost, and the lowest window is reported. Node runs --single-threaded (V8's
// compiler and GC on the main thread); libuv's threads are counted too.
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { startUpstreams, cutoverContender, forwarderContender, useCli } from './contenders.mjs';
import { runAutocannon } from './load.mjs';
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
  },
});
if (values.cli) useCli(values.cli);
const N = Number(values.requests);
const names = positionals.length ? positionals : ['undici', 'cutover-50'];

try {
  execFileSync('valgrind', ['--version'], { stdio: 'ignore' });
} catch {
  console.error('valgrind is not installed (apt-get install valgrind)');
  process.exit(2);
}

/** Instructions so far, all threads, from callgrind_control. */
function counters(pid) {
  const text = execFileSync('callgrind_control', ['-e', 'Ir', String(pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const threads = [...text.matchAll(/^\s*Th\s+(\d+)\s+([\d,]+)/gm)].map((m) => [Number(m[1]), Number(m[2].replaceAll(',', ''))]);
  if (!threads.length) throw new Error(`no counters from callgrind_control for ${pid}: ${text}`);
  return { all: threads.reduce((a, [, n]) => a + n, 0) };
}

async function load(c, requests) {
  const r = await runAutocannon({ url: c.url, connections: Number(values.connections), amount: requests, timeout: 60 });
  if (r.requests !== requests || r.non2xx || r.errors) throw new Error(`${c.name}: ${r.requests}/${requests} requests, ${r.non2xx} non-2xx, ${r.errors} errors`);
}

async function count(name, legacy, candidate) {
  const dir = tempDir(`callgrind-${name}`);
  // valgrind runs one thread at a time, so V8's background compiler and GC threads would get
  // CPU at the whim of its scheduler and optimized code would arrive late and at random: do that
  // work on the main thread instead, where it is counted the same way every run. V8's memory
  // reducer starts full GCs when allocation looks slow, which under valgrind it always does.
  const nodeArgs = ['--single-threaded', '--no-memory-reducer'];
  const wrap = ['valgrind', '--tool=callgrind', `--callgrind-out-file=${join(dir, 'callgrind.out.%p')}`, '--smc-check=all-non-file'];
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
    idlePerSec = (counters(pid).all - i0.all) / ((performance.now() - t0) / 1000);
    for (let w = 0; w < Number(values.windows); w++) {
      const a = counters(pid);
      const t = performance.now();
      await load(c, N);
      const b = counters(pid);
      const secs = (performance.now() - t) / 1000;
      windows.push({ raw: (b.all - a.all) / N, net: (b.all - a.all - idlePerSec * secs) / N, secs });
    }
  } finally {
    await c.child.stop(120_000);
    await c.stop();
    removeTempDir(dir);
  }
  return { windows, idlePerSec };
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
    const row = { name, perReq: best.net, raw: best.raw, idlePerSec, windows: w };
    rows.push(row);
    console.log(
      `${name.padEnd(12)} ${k(row.perReq).padStart(7)} instructions/request; windows ${w.map((x) => k(x.net)).join(' ')}; ` +
        `idle ${k(idlePerSec / 1000)}/ms, counted in the raw figure ${k(row.raw)}`,
    );
  }
  const base = rows.find((r) => r.name === 'undici');
  if (base) for (const r of rows) console.log(`${r.name.padEnd(12)} ${(r.perReq / base.perReq).toFixed(2)}x undici`);
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => stopAll());
