// CPU profile of one contender under load: where its time per request goes.
//   npm run build && node bench/profile.mjs [cutover-50|undici|http-proxy|reply-from] [--duration S] [--connections C] [--keep DIR]
// Starts the bench upstreams and the contender with --cpu-prof, drives it with autocannon, stops
// it cleanly (the profile is written at exit) and prints self time by area and the top functions,
// each also as microseconds per request. Open the .cpuprofile in Chrome DevTools with --keep.
import { readFileSync, readdirSync, cpSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startUpstreams, cutoverContender, forwarderContender, repoRoot } from './contenders.mjs';
import { runAutocannon } from './load.mjs';
import { stopAll, tempDir } from './proc.mjs';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    keep: { type: 'string' },
    top: { type: 'string', default: '25' },
  },
});
const name = positionals[0] ?? 'cutover-50';

/** The area a profile node's code belongs to, from its script URL. */
function area(frame) {
  const url = frame.url;
  if (!url) return frame.functionName.startsWith('(') ? frame.functionName : '(native)';
  if (url.includes('/node_modules/')) {
    const parts = url.split('/node_modules/').pop().split('/');
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]; // @fastify/reply-from, not @fastify
  }
  if (url.startsWith('node:')) {
    const m = /^node:(?:internal\/)?([^/]+)/.exec(url);
    return `node:${m?.[1] ?? url}`;
  }
  if (url.includes('/dist/')) return 'cutover'; // ./dist or a --rev build's temp dist
  if (url.includes('/bench/')) return 'bench';
  return url;
}

function summarize(profile, requests, top) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    self.set(profile.samples[i], (self.get(profile.samples[i]) ?? 0) + dt);
    total += dt;
  }
  const areas = new Map();
  const fns = new Map();
  for (const [id, us] of self) {
    const f = byId.get(id).callFrame;
    const a = area(f);
    areas.set(a, (areas.get(a) ?? 0) + us);
    const key = `${f.functionName || '(anonymous)'}  ${f.url ? `${f.url.replace(repoRoot, '').replace(/^file:\/\//, '')}:${f.lineNumber + 1}` : ''}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const busy = total - (areas.get('(idle)') ?? 0);
  const perReq = (us) => (us / requests).toFixed(2).padStart(7);
  const pct = (us) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  const lines = [`busy ${(busy / 1e6).toFixed(2)} s of ${(total / 1e6).toFixed(2)} s profiled, ${requests} requests: ${(busy / requests).toFixed(1)} us/request (profiler overhead included)`, '', 'self time by area      us/req   share'];
  for (const [a, us] of [...areas].filter(([a]) => a !== '(idle)').sort((x, y) => y[1] - x[1])) lines.push(`  ${a.padEnd(20)} ${perReq(us)}  ${pct(us)}`);
  lines.push('', `top ${top} functions by self time`);
  for (const [k, us] of [...fns].filter(([k]) => !k.startsWith('(idle)')).sort((x, y) => y[1] - x[1]).slice(0, top)) lines.push(`  ${perReq(us)}  ${pct(us)}  ${k}`);
  return lines.join('\n');
}

async function main() {
  const profDir = tempDir('profile');
  const nodeArgs = ['--cpu-prof', '--cpu-prof-dir', profDir];
  const [legacy, candidate] = await startUpstreams(['legacy', 'candidate']);
  const c = name.startsWith('cutover-')
    ? await cutoverContender(name, legacy, candidate, Number(name.slice('cutover-'.length)), { nodeArgs })
    : await forwarderContender(name, legacy, nodeArgs);
  // Warm up, so the profile shows optimized steady state, not compilation.
  const warm = await runAutocannon({ url: c.url, connections: Number(values.connections), duration: 2 });
  const r = await runAutocannon({ url: c.url, connections: Number(values.connections), duration: Number(values.duration) });
  await c.stop();
  const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`${name} wrote no profile (did it exit cleanly?)`);
  const profile = JSON.parse(readFileSync(join(profDir, file), 'utf8'));
  console.log(`${name}: ${Math.round(r.rps)} req/s under -c ${values.connections} while profiled`);
  console.log(summarize(profile, r.requests + warm.requests, // warmup is in the profile too
    Number(values.top)));
  if (values.keep) {
    cpSync(join(profDir, file), join(values.keep, `${name}.cpuprofile`));
    console.log(`\nprofile kept: ${join(values.keep, `${name}.cpuprofile`)}`);
  }
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => stopAll());
