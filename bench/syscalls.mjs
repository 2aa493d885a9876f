// System calls per request, counted by strace: the kernel side of a proxy's work, which
// instructions.mjs (user space only) does not see.
//   npm run build && node bench/syscalls.mjs [--requests N] [--connections C] [--cli PATH] CONTENDER...
// CONTENDER: undici | http-proxy | reply-from | cutover-0 | cutover-50 | cutover-100
// Each contender is warmed up, then strace -c -f attaches to it (all threads) for N requests.
// strace slows every call it sees, so read counts, not the times it reports.
import { spawn, execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { startUpstreams, cutoverContender, forwarderContender, useCli } from './contenders.mjs';
import { runExactly } from './load.mjs';
import { stopAll } from './proc.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    requests: { type: 'string', default: '40000' },
    connections: { type: 'string', default: '50' },
    cli: { type: 'string' },
  },
});
if (values.cli) useCli(values.cli);
const N = Number(values.requests);
const names = positionals.length ? positionals : ['undici', 'cutover-50'];

try {
  execFileSync('strace', ['-V'], { stdio: 'ignore' });
} catch {
  console.error('strace is not installed (apt-get install strace)');
  process.exit(2);
}

const load = (c, requests) => runExactly(c, requests, Number(values.connections));

/** strace -c's summary table: calls per syscall name. */
function parseSummary(text) {
  const calls = new Map();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    // % time, seconds, usecs/call, calls, [errors,] syscall
    if (f.length < 5 || !/^\d/.test(f[0] ?? '') || f.at(-1) === 'total') continue;
    calls.set(f.at(-1), Number(f[3]));
  }
  return calls;
}

async function count(name, legacy, candidate) {
  const c = name.startsWith('cutover-')
    ? await cutoverContender(name, legacy, candidate, Number(name.slice('cutover-'.length)))
    : await forwarderContender(name, legacy);
  try {
    await load(c, 20_000); // JIT, pools, caches
    const st = spawn('strace', ['-c', '-f', '-p', String(c.pid)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let summary = '';
    st.stderr.on('data', (d) => (summary += d));
    await new Promise((r) => setTimeout(r, 1000)); // attached to every thread
    await load(c, N);
    const exited = new Promise((r) => st.on('exit', r));
    st.kill('SIGINT');
    await exited;
    return parseSummary(summary);
  } finally {
    await c.child.stop(10_000);
    await c.stop();
  }
}

async function main() {
  const [legacy, candidate] = await startUpstreams(['legacy', 'candidate']);
  for (const name of names) {
    const calls = await count(name, legacy, candidate);
    const total = [...calls.values()].reduce((a, n) => a + n, 0);
    const shown = [...calls].filter(([, n]) => n / N >= 0.01).sort((a, b) => b[1] - a[1]);
    console.log(`${name.padEnd(12)} ${(total / N).toFixed(2)} syscalls/request: ${shown.map(([s, n]) => `${s} ${(n / N).toFixed(2)}`).join(', ')}`);
  }
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => stopAll());
