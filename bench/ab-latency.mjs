// Added latency at a fixed rate for two or more builds of cutover, side by side: the bench's
// latency scenario (1 s rounds, contenders alternating) with one cutover-50 per build, beside
// direct and the bare undici forwarder, repeated for several sittings. For a hot-path change
// whose effect on the tail is smaller than this host's run-to-run noise: one sitting says
// little; count in how many sittings each build had the lowest p99.
//   npm run build && node bench/ab-latency.mjs [--sittings N] [--rounds N] LABEL=DIST_DIR ...
//   e.g. node bench/ab-latency.mjs shipped=dist nolog=/tmp/nolog/dist
// A build runs under the node flags its cli.js shebang gives (as cutover ships); LABEL=DIST_DIR@FLAG@FLAG
// runs it under these instead (e.g. dist@--min-semi-space-size=16), and LABEL=DIST_DIR@ under none.
// DIST_DIR: a built dist/ (tsc output) with cli.js in it; a copy of dist/ with one change is enough.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { cutoverContender, directContender, forwarderContender, startUpstreams, useCli } from './contenders.mjs';
import { killAllSync, stopAll } from './proc.mjs';
import { formatLatency, pairedGaps } from './report.mjs';
import { latency } from './scenarios.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    // Also runs the bare forwarder under these node flags ("undici+flags"), e.g. cutover's own.
    'forwarder-flags': { type: 'string' },
    sittings: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '25' },
    rate: { type: 'string', default: '1000' },
  },
});
const builds = positionals.map((p) => {
  const eq = p.indexOf('=');
  const label = p.slice(0, Math.max(0, eq));
  const [dir, ...flags] = p.slice(eq + 1).split('@');
  const nodeFlags = p.includes('@') ? flags.filter(Boolean) : undefined;
  const cli = join(resolve(dir ?? ''), 'cli.js');
  if (!label || !dir || !existsSync(cli)) throw new Error(`expected LABEL=DIST_DIR[@NODE_FLAG...] with cli.js in it, got ${JSON.stringify(p)}`);
  return { label, cli, nodeFlags };
});
if (builds.length < 2) throw new Error('give at least two builds: LABEL=DIST_DIR LABEL=DIST_DIR');

const log = (m) => console.error(`[ab] ${m}`);
const opts = { rate: Number(values.rate), warmup: 2, latencyRounds: Number(values.rounds), latencySlice: 1, latencyDuration: 2 };
const ctx = { opts, log: () => {}, checkAborted() {} };
process.on('exit', killAllSync);

const [legacy, candidate] = await startUpstreams(['legacy', 'candidate']);
ctx.upstreams = [legacy, candidate];
const contenders = [directContender(legacy), await forwarderContender('undici', legacy)];
if (values['forwarder-flags']) {
  contenders.push({ ...(await forwarderContender('undici', legacy, values['forwarder-flags'].split(' '))), name: 'undici+flags' });
}
for (const b of builds) {
  useCli(b.cli);
  contenders.push({ ...(await cutoverContender(`cutover-50@${b.label}`, legacy, candidate, 50, { nodeFlags: b.nodeFlags })), name: b.label });
}

const wins = Object.fromEntries(builds.map((b) => [b.label, { p99: 0, over1ms: 0 }]));
// Round by round, each build's p99 minus the first build's and minus the bare forwarder's: the
// contenders of one round ran within seconds of each other, so the host's swings cancel in a pair.
const gaps = Object.fromEntries(builds.map((b) => [b.label, { first: [], undici: [] }]));
const sittings = Number(values.sittings);
for (let s = 1; s <= sittings; s++) {
  log(`sitting ${s}/${sittings}: ${opts.latencyRounds} rounds of 1 s each, ${contenders.map((c) => c.name).join(', ')}`);
  const l = await latency(ctx, contenders);
  console.log(`sitting ${s}\n${formatLatency(l)}\n`);
  const of = (b) => l.results[b.label].paced.latency;
  const best = (key) => builds.reduce((a, b) => (of(b)[key] < of(a)[key] ? b : a)).label;
  wins[best('p99')].p99++;
  wins[best('over1msShare')].over1ms++;
  const rounds = (name) => l.results[name].pacedRounds.map((r) => r.latency.p99);
  const first = rounds(builds[0].label);
  const undici = rounds('undici');
  for (const b of builds) {
    rounds(b.label).forEach((p, i) => {
      gaps[b.label].first.push(p - first[i]);
      gaps[b.label].undici.push(p - undici[i]);
    });
  }
}
console.log(`Sittings in which each build had the lowest p99 / the smallest share of requests over 1 ms (of ${sittings}):`);
for (const [label, w] of Object.entries(wins)) console.log(`  ${label.padEnd(16)} ${w.p99} / ${w.over1ms}`);
console.log(`Round by round, each build's p99 against the bare undici forwarder's and against ${builds[0].label}'s:`);
for (const b of builds) {
  const g = gaps[b.label];
  console.log(`  ${b.label.padEnd(16)} vs undici: ${pairedGaps(g.undici)}${b === builds[0] ? '' : `; vs ${builds[0].label}: ${pairedGaps(g.first)}`}`);
}
await stopAll();
