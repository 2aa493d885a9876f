import t from 'tap';
import { createRequire } from 'node:module';
import { bucketOf, inRollout } from '../../src/routing/bucket.js';
import { decide } from '../../src/routing/decide.js';
import { compileFlag, NEW_FLAG } from '../../src/flags/model.js';

const require = createRequire(import.meta.url);

interface Strategy {
  name: string;
  parameters?: Record<string, string> | null;
  constraints?: unknown[];
}
interface Spec {
  state: { features: Array<{ name: string; enabled: boolean; strategies: Strategy[] }> };
  tests: Array<{ description: string; context: Record<string, unknown>; toggleName: string; expectedResult: boolean }>;
}

/** Evaluates the rollout strategies cutover implements, using only cutover's bucket function. */
function evaluate(strategy: Strategy, ctx: Record<string, unknown>): boolean | 'unsupported' {
  const p = strategy.parameters ?? {};
  if (strategy.constraints?.length) return 'unsupported';
  const props = (ctx.properties ?? {}) as Record<string, string>;
  if (strategy.name === 'default') return true;
  if (strategy.name === 'gradualRolloutUserId') {
    const user = ctx.userId as string | undefined;
    return user !== undefined && inRollout(bucketOf(p.groupId as string, user), Number(p.percentage));
  }
  if (strategy.name === 'flexibleRollout') {
    const rollout = Number(p.rollout);
    const stick = p.stickiness ?? 'default';
    let value: string | undefined;
    if (stick === 'default') value = (ctx.userId ?? ctx.sessionId) as string | undefined;
    else if (stick === 'userId' || stick === 'sessionId') value = ctx[stick] as string | undefined;
    else value = props[stick];
    if (value === undefined) {
      // Unleash falls back to a random value for "default" stickiness; only 0 and 100 are decidable.
      if (stick === 'default') return rollout === 100 ? true : rollout === 0 ? false : 'unsupported';
      return false;
    }
    return inRollout(bucketOf(p.groupId as string, value), rollout);
  }
  return 'unsupported';
}

t.test('Unleash client-specification rollout vectors', async (t) => {
  let checked = 0;
  for (const file of ['03-gradual-rollout-user-id-strategy', '10-flexible-rollout-strategy', '12-custom-stickiness']) {
    const spec = require(`@unleash/client-specification/specifications/${file}.json`) as Spec;
    for (const test of spec.tests) {
      const feature = spec.state.features.find((f) => f.name === test.toggleName);
      if (!feature) continue;
      const results = feature.strategies.map((s) => evaluate(s, test.context));
      if (results.includes('unsupported')) continue;
      const got = feature.enabled && results.some((r) => r === true);
      t.equal(got, test.expectedResult, `${file}: ${test.description}`);
      checked++;
    }
  }
  t.ok(checked >= 18, `checked ${checked} vectors`);
});

t.test('boundary vectors from the design notes, through decide()', async (t) => {
  t.equal(bucketOf('Feature.flexibleRollout.10', '174'), 10);
  t.equal(bucketOf('Feature.flexibleRollout.userId.55', '25'), 55);
  const at = (name: string, pct: number) => compileFlag(name, { ...NEW_FLAG, enabled: true, percentage: pct });
  t.equal(decide(at('Feature.flexibleRollout.10', 10), '174').target, 'candidate', 'bucket 10 is in at 10%');
  t.equal(decide(at('Feature.flexibleRollout.10', 9), '174').target, 'legacy', 'bucket 10 is out at 9%');
  t.equal(decide(at('Feature.flexibleRollout.userId.55', 55), '25').target, 'candidate');
  t.equal(decide(at('Feature.flexibleRollout.userId.55', 54), '25').target, 'legacy');
  t.equal(decide(at('x', 0), '174').target, 'legacy', '0% sends nobody');
});

// An independent murmur3_x86_32 over explicit UTF-8 bytes: if bucketOf ever hashed UTF-16 code
// units or low bytes (as murmurhash3js in Unleash's Node SDK does), non-ASCII ids would differ.
function murmur3Bytes(bytes: Uint8Array, seed = 0): number {
  let h = seed >>> 0;
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  const n = bytes.length & ~3;
  for (let i = 0; i < n; i += 4) {
    let k = (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)) >>> 0;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
  }
  const rest = bytes.length & 3;
  if (rest > 0) {
    let k = 0;
    if (rest === 3) k ^= bytes[n + 2]! << 16;
    if (rest >= 2) k ^= bytes[n + 1]! << 8;
    k ^= bytes[n]!;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= bytes.length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

t.test('non-ASCII ids hash their UTF-8 bytes (as the Go, Java and Rust SDKs do)', async (t) => {
  t.equal(murmur3Bytes(Buffer.from('josé', 'utf8')), 1372596709, 'reference implementation agrees with the design notes');
  for (const id of ['josé', 'Zoë', '用户-42', 'emoji-🚀', 'ascii-user-7']) {
    const expected = (murmur3Bytes(Buffer.from(`my_flag:${id}`, 'utf8')) % 100) + 1;
    t.equal(bucketOf('my_flag', id), expected, id);
  }
});

t.test('long and multi-byte ids hash the same whether or not they fit the reused buffer', async (t) => {
  // Keys up to 256 UTF-16 units go through a reused 768-byte buffer, longer ones as strings:
  // both sides of that line, in 1-, 2-, 3- and 4-byte UTF-8, must hash their full UTF-8 bytes.
  for (const unit of ['a', 'é', '€', '🚀']) {
    for (const keyLength of [255, 256, 257, 600]) {
      const id = unit.repeat(Math.ceil((keyLength - 'f:'.length) / unit.length));
      const expected = (murmur3Bytes(Buffer.from(`f:${id}`, 'utf8')) % 100) + 1;
      t.equal(bucketOf('f', id), expected, `${unit} x ${id.length / unit.length} (key ${id.length + 2} units)`);
    }
  }
  t.equal(bucketOf('f', 'short'), (murmur3Bytes(Buffer.from('f:short')) % 100) + 1, 'a short id after long ones: no stale bytes');
});

t.test('10,000 ids land within 1.5 points of the percentage', async (t) => {
  for (const pct of [1, 10, 25, 50, 75, 90, 99]) {
    let inside = 0;
    for (let i = 0; i < 10_000; i++) if (inRollout(bucketOf('order_cutover', `user-${i}`), pct)) inside++;
    const share = inside / 100;
    t.ok(Math.abs(share - pct) <= 1.5, `${pct}%: got ${share}%`);
  }
});

t.test('raising the percentage never moves a user back to legacy', async (t) => {
  const steps = [0, 10, 25, 50, 75, 100];
  let moved = 0;
  let notAtFull = 0;
  for (let i = 0; i < 10_000; i++) {
    let wasCandidate = false;
    for (const pct of steps) {
      const flag = compileFlag('order_cutover', { ...NEW_FLAG, enabled: true, percentage: pct });
      const now = decide(flag, `u${i}`).target === 'candidate';
      if (wasCandidate && !now) moved++;
      wasCandidate = now;
    }
    if (!wasCandidate) notAtFull++;
  }
  t.equal(moved, 0, 'no user moved back at any step');
  t.equal(notAtFull, 0, 'everyone is on the candidate at 100%');
});

t.test('buckets differ per flag, so flags are not correlated', async (t) => {
  let both = 0;
  for (let i = 0; i < 10_000; i++) {
    if (inRollout(bucketOf('customer_read', `u${i}`), 50) && inRollout(bucketOf('order_cutover', `u${i}`), 50)) both++;
  }
  t.ok(Math.abs(both / 100 - 25) <= 2, `~25% in both 50% rollouts, got ${both / 100}%`);
});
