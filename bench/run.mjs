#!/usr/bin/env node
// cutover's benchmark: `node bench/run.mjs [options]` (see --help and bench/README.md).
// Needs dist/ (npm run build). Everything listens on 127.0.0.1 and every run is time-bounded.
import { parseArgs } from 'node:util';
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { stopAll, killAllSync, systemCpu } from './proc.mjs';
import { stopCurrentLoad } from './load.mjs';
import * as contenders from './contenders.mjs';
import { startUpstream, startUpstreams, directContender, forwarderContender, nginxContender, cutoverContender, repoRoot } from './contenders.mjs';
import * as scenarios from './scenarios.mjs';
import { formatAll, writeJson } from './report.mjs';

const HELP = `Usage: node bench/run.mjs [options]

  --scenario LIST        all (default), or any of: throughput, latency, hang, shadow, connections, body
  --only LIST            contenders for throughput/latency: ${scenarios.THROUGHPUT_CONTENDERS.join(', ')}
                         (without it, latency runs ${scenarios.LATENCY_CONTENDERS.join(', ')})
  --rounds N             throughput rounds, contenders alternating                 [6]
  --duration S           seconds per contender per throughput round                [5]
  --scenario-duration S  seconds of load in the hang, shadow and connections runs  [10]
  --connections C        autocannon connections for throughput and hang             [50]
  --warmup S             seconds of unmeasured load per contender before round 1   [2]
  --rate R               fixed rate for the latency scenario (req/s)               [1000]
  --latency-rounds N     steady-pacer rounds in the latency scenario, alternating   [20]
  --latency-slice S      seconds per contender per steady-pacer round              [1]
  --latency-duration S   seconds per contender of autocannon overallRate           [5]
  --big-connections N    connections in the connections scenario                   [1000]
  --body-mb N            body size in the body scenario                           [10]
  --body-concurrency N   bodies in flight at once                                  [4]
  --body-repeats N       batches of bodies                                         [3]
  --rev REV              build this git revision into a temp dir and bench that (default: ./dist as is)
  --snapshot             copy the working tree's src/ into a temp dir, build and bench that
  --cli PATH             bench this cutover CLI instead of ./dist/cli.js
  --smoke                ~3 s check: 1 round of 1 s, direct + cutover-50 + undici, throughput only;
                         exits 1 if any response was non-2xx or failed; writes no JSON
  -h, --help
`;

function options(argv) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      scenario: { type: 'string', default: 'all' },
      only: { type: 'string' },
      rounds: { type: 'string', default: '6' },
      duration: { type: 'string', default: '5' },
      'scenario-duration': { type: 'string', default: '10' },
      connections: { type: 'string', default: '50' },
      warmup: { type: 'string', default: '2' },
      rate: { type: 'string', default: '1000' },
      'latency-duration': { type: 'string', default: '5' },
      'latency-rounds': { type: 'string', default: '20' },
      'latency-slice': { type: 'string', default: '1' },
      'big-connections': { type: 'string', default: '1000' },
      'body-mb': { type: 'string', default: '10' },
      'body-concurrency': { type: 'string', default: '4' },
      'body-repeats': { type: 'string', default: '3' },
      rev: { type: 'string' },
      snapshot: { type: 'boolean', default: false },
      cli: { type: 'string' },
      smoke: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const pos = (k, { int = true, min = int ? 1 : 0.1 } = {}) => {
    const n = Number(values[k]);
    if (!Number.isFinite(n) || n < min || (int && !Number.isInteger(n))) throw new Error(`--${k} must be a number >= ${min}, got ${values[k]}`);
    return n;
  };
  const allScenarios = ['throughput', 'latency', 'hang', 'shadow', 'connections', 'body'];
  let picked = values.scenario === 'all' ? allScenarios : values.scenario.split(',').map((s) => s.trim());
  for (const s of picked) if (!allScenarios.includes(s)) throw new Error(`unknown scenario "${s}" (one of: all, ${allScenarios.join(', ')})`);
  let only = values.only?.split(',').map((s) => s.trim());
  for (const n of only ?? []) if (!scenarios.THROUGHPUT_CONTENDERS.includes(n)) throw new Error(`unknown contender "${n}" (one of: ${scenarios.THROUGHPUT_CONTENDERS.join(', ')})`);
  const o = {
    smoke: values.smoke,
    rev: values.rev,
    snapshot: values.snapshot,
    cli: values.cli,
    rounds: pos('rounds'),
    duration: pos('duration', { int: false }),
    scenarioDuration: pos('scenario-duration', { int: false }),
    connections: pos('connections'),
    warmup: values.warmup === '0' ? 0 : pos('warmup', { int: false }),
    rate: pos('rate'),
    latencyDuration: pos('latency-duration', { int: false }),
    latencyRounds: pos('latency-rounds'),
    latencySlice: pos('latency-slice', { int: false }),
    bigConnections: pos('big-connections'),
    bodyMB: pos('body-mb'),
    bodyConcurrency: pos('body-concurrency'),
    bodyRepeats: pos('body-repeats'),
  };
  if (o.smoke) {
    Object.assign(o, { rounds: 1, duration: 1, warmup: 0 });
    picked = ['throughput'];
    only = ['direct', 'cutover-50', 'undici'];
  }
  return { ...o, scenarios: picked, only };
}

const log = (msg) => process.stdout.write(`[bench] ${msg}\n`);

function cutoverInfo(opts, builtCommit) {
  const cliPath = contenders.cliPath;
  if (builtCommit) return { commit: builtCommit, dirtySrc: false, cli: cliPath, builtFrom: opts.rev ? `git revision ${opts.rev}` : 'working tree snapshot' };
  if (opts.cli) return { commit: 'external build', dirtySrc: false, cli: cliPath };
  const git = (...a) => {
    try {
      return execFileSync('git', a, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      return undefined;
    }
  };
  let distBuiltAt;
  try {
    distBuiltAt = statSync(cliPath).mtime.toISOString();
  } catch {}
  return { commit: git('rev-parse', '--short', 'HEAD') ?? 'unknown', dirtySrc: Boolean(git('status', '--porcelain', '--', 'src')), cli: cliPath, distBuiltAt };
}

function machineInfo() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    totalMemMB: Math.round(os.totalmem() / 2 ** 20),
    loadavgAtStart: os.loadavg(),
  };
}

async function startContender(name, legacy, candidate, res) {
  if (name === 'direct') return directContender(legacy);
  if (name === 'undici' || name === 'http-proxy' || name === 'reply-from') return forwarderContender(name, legacy);
  if (name === 'nginx') {
    const c = await nginxContender(legacy, log);
    if (!c) res.skipped.push('nginx not installed (apt-get install nginx)');
    return c;
  }
  const pct = Number(name.slice('cutover-'.length));
  return cutoverContender(name, legacy, candidate, pct);
}

let aborted = false;
function onSignal(sig) {
  if (aborted) {
    killAllSync();
    process.exit(130);
  }
  aborted = true;
  log(`${sig}: stopping the load and cleaning up (again to kill at once)`);
  stopCurrentLoad();
  stopAll().finally(() => process.exit(130));
}

async function main() {
  let opts;
  try {
    opts = options(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err.message}\n\n${HELP}`);
    process.exit(2);
  }
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(s, () => onSignal(s));
  process.on('exit', killAllSync);
  let builtCommit;
  if (opts.cli) contenders.useCli(opts.cli);
  else if (opts.rev || opts.snapshot) {
    log(opts.rev ? `building git revision ${opts.rev} into a temp dir` : 'building a snapshot of the working tree into a temp dir');
    builtCommit = contenders.buildRevision(opts.rev);
  }

  const res = {
    startedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    machine: machineInfo(),
    cutover: { ...cutoverInfo(opts, builtCommit), nodeFlags: contenders.shippedNodeFlags() },
    params: { ...opts, command: `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim() },
    skipped: [],
    errors: {},
  };
  const want = (s) => opts.scenarios.includes(s);
  const allowed = (n) => !opts.only || opts.only.includes(n);
  // The latency scenario runs one cutover by default; --only may name any contender for it.
  const latencyNames = opts.only ? scenarios.THROUGHPUT_CONTENDERS.filter(allowed) : scenarios.LATENCY_CONTENDERS;
  log(`machine: ${res.machine.cpus} x ${res.machine.cpuModel}, node ${res.machine.node}; cutover ${res.cutover.commit}${res.cutover.dirtySrc ? ' (src has uncommitted changes)' : ''}, node flags: ${res.cutover.nodeFlags.join(' ') || 'none'}`);
  log(`scenarios: ${opts.scenarios.join(', ')}`);
  if (!opts.smoke) {
    // One quiet second first: if the machine is already busy, every number below is suspect.
    const s0 = systemCpu();
    const g0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 1000));
    const g = process.cpuUsage(g0);
    res.machine.otherCpuPctAtStart = Math.max(0, (systemCpu().busy - s0.busy - (g.user + g.system) / 1e6) * 100);
    if (res.machine.otherCpuPctAtStart > 20) log(`WARNING: other processes use ${res.machine.otherCpuPctAtStart.toFixed(0)}% of a core right now; results will be noisy`);
  }

  const [legacy, candidate] = await startUpstreams(['legacy', 'candidate']);
  const ctx = {
    opts,
    log,
    upstreams: [legacy, candidate],
    checkAborted() {
      if (aborted) throw new Error('aborted');
    },
  };

  const needed = new Set([
    ...(want('throughput') ? scenarios.THROUGHPUT_CONTENDERS.filter(allowed) : []),
    ...(want('latency') ? latencyNames : []),
  ]);
  const started = new Map();
  for (const name of scenarios.THROUGHPUT_CONTENDERS) {
    if (!needed.has(name)) continue;
    ctx.checkAborted();
    const c = await startContender(name, legacy, candidate, res);
    if (c) started.set(name, c);
  }
  const pick = (names) => names.filter((n) => started.has(n)).map((n) => started.get(n));

  const run = async (name, fn) => {
    if (!want(name)) return;
    ctx.checkAborted();
    try {
      res[name] = await fn();
    } catch (err) {
      if (aborted) throw err;
      log(`${name} failed: ${err.stack ?? err}`);
      res.errors[name] = String(err.message ?? err);
    }
  };
  await run('throughput', () => scenarios.throughput(ctx, pick(scenarios.THROUGHPUT_CONTENDERS.filter(allowed))));
  await run('latency', () => scenarios.latency(ctx, pick(latencyNames)));
  // Free the shared contenders before the memory scenarios, which start their own cutover.
  for (const c of started.values()) await c.stop();
  await run('hang', () => scenarios.hang(ctx));
  await run('shadow', () => scenarios.shadow(ctx));
  await run('connections', () => scenarios.connections(ctx));
  await run('body', () => scenarios.body(ctx));
  res.finishedAt = new Date().toISOString();
  res.machine.loadavgAtEnd = os.loadavg();

  process.stdout.write(`\n${formatAll(res)}\n\n`);
  if (!opts.smoke) log(`results written to ${writeJson(fileURLToPath(new URL('./results/', import.meta.url)), res)}`);

  let failed = Object.keys(res.errors).length > 0;
  if (opts.smoke) {
    for (const [n, r] of Object.entries(res.throughput?.results ?? {})) {
      if (r.non2xx || r.errors) {
        log(`smoke: ${n} answered ${r.non2xx} non-2xx and had ${r.errors} errors`);
        failed = true;
      }
    }
    if (!res.throughput) failed = true;
    log(failed ? 'smoke: FAILED' : 'smoke: ok');
  }
  return failed ? 1 : 0;
}

main()
  .then(async (code) => {
    await stopAll();
    process.exit(code);
  })
  .catch(async (err) => {
    if (!aborted) process.stderr.write(`bench failed: ${err.stack ?? err}\n`);
    await stopAll();
    process.exit(aborted ? 130 : 1);
  });
process.on('uncaughtException', (err) => {
  process.stderr.write(`bench crashed: ${err.stack ?? err}\n`);
  killAllSync();
  process.exit(1);
});
