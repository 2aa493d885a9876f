import { compilePaths, type Difference, type PathSet } from './json-diff.js';
import { previewDifference } from './preview.js';

export type ShadowResult = 'match' | 'mismatch' | 'error' | 'dropped';

export interface ShadowExample {
  time: string;
  requestId: string;
  method: string;
  path: string;
  result: ShadowResult;
  reason?: string;
  /** Values are previews (see previewValue): bounded whatever the answers held. */
  differences: Difference[];
}

const SLOTS = 300; // one per second: a 5 minute window
const MAX_FIELDS = 200;
const MAX_NOISY = 100;
const MAX_EXAMPLES = 10;

/** How long a noisy field stays ignored without a probe seeing it differ again (shadow.noiseTtl's default). */
const DEFAULT_NOISE_TTL_MS = 10 * 60_000;

/**
 * Shadow outcomes for one route, in bounded memory: totals, a per-second ring for windowed rates,
 * the most frequent differing fields, noisy fields (legacy disagreeing with itself), and the last
 * few example diffs. Totals are for the process's life, across reloads that stop and resume
 * shadowing the route (they are the /metrics counters, which must not go down); fields, examples
 * and noise are since `since` (creation or the last reset).
 */
export class RouteShadowStats {
  readonly totals: Record<ShadowResult, number> = { match: 0, mismatch: 0, error: 0, dropped: 0 };
  private readonly compared = new Uint32Array(SLOTS);
  private readonly mismatched = new Uint32Array(SLOTS);
  private readonly slotTime = new Float64Array(SLOTS);
  /** Differing field -> how often and when last (ms): a field that stopped differing shows as such. */
  private readonly fields = new Map<string, { count: number; last: number }>();
  /** Confirmed noisy fields (seen differing by two separate probes) -> when a probe last saw it differ (ms). */
  readonly noisy = new Map<string, number>();
  /** Fields one probe saw differ -> when (ms): not ignored yet. */
  private readonly suspects = new Map<string, number>();
  private noisyCompiled: PathSet | undefined;
  /** No noisy field or suspect is older than a TTL before this (ms): pruning is skipped until then. */
  private nextExpiry = Infinity;
  private ttl = DEFAULT_NOISE_TTL_MS;
  private readonly examples: ShadowExample[] = [];
  /** Start of what compared/mismatched, fields, examples and noise cover (ms). */
  since: number;
  private base = { match: 0, mismatch: 0 };
  /** When a reload stopped shadowing the route (ms); undefined while it is shadowed. */
  retiredAt: number | undefined;

  constructor(
    readonly route: string,
    /** The route's flag in the live config (the Shadower updates it on reload). */
    public flag: string | undefined,
    private readonly now: () => number = Date.now,
  ) {
    this.since = now();
  }

  /** The route's live shadow.noiseTtl (the Shadower sets it from each job's config). */
  set noiseTtlMs(ms: number) {
    if (ms === this.ttl) return;
    this.ttl = ms;
    this.nextExpiry = -Infinity;
  }

  /** Counts one outcome; returns the example as kept (with value previews), if one was. */
  record(result: ShadowResult, example?: Omit<ShadowExample, 'time' | 'result'>): ShadowExample | undefined {
    this.totals[result]++;
    if (result === 'match' || result === 'mismatch') {
      const i = this.slot();
      this.compared[i] = (this.compared[i] as number) + 1;
      if (result === 'mismatch') this.mismatched[i] = (this.mismatched[i] as number) + 1;
    }
    if (result === 'mismatch' && example) {
      for (const d of example.differences) this.countField(d.path);
    }
    if (!example || result === 'match') return undefined;
    // Previews made here, once: the examples outlive the comparison that produced them.
    const kept = { time: new Date(this.now()).toISOString(), result, ...example, differences: example.differences.map(previewDifference) };
    this.examples.push(kept);
    if (this.examples.length > MAX_EXAMPLES) this.examples.shift();
    return kept;
  }

  /**
   * A field two legacy answers disagreed on. It becomes noise (ignored) only when a second,
   * separate probe sees it differ too within the noise TTL: one odd legacy answer (a deploy landing
   * between the two calls, a cache filling) must not hide a field. It stays noise only while probes
   * keep seeing it differ: a field that was noisy once (during a legacy deploy, say) counts again a
   * TTL later, so a regression in it is not hidden for the rest of the process's life.
   */
  markNoisy(path: string): void {
    this.expireNoise();
    const at = this.now();
    this.nextExpiry = Math.min(this.nextExpiry, at + this.ttl);
    if (this.noisy.has(path)) return void this.noisy.set(path, at);
    if (!this.suspects.has(path)) {
      // Bounded, like everything here: the oldest suspect makes room, so one-off paths (a deploy
      // can produce many) never stop learning for good.
      if (this.suspects.size >= MAX_NOISY) this.suspects.delete(this.suspects.keys().next().value as string);
      this.suspects.set(path, at);
      return;
    }
    if (this.noisy.size >= MAX_NOISY) return;
    this.suspects.delete(path);
    this.noisy.set(path, at);
    this.noisyCompiled = undefined;
    this.fields.delete(path);
  }

  /** The noisy fields as a path set, compiled once per change (read on every comparison); undefined if none. */
  noisePaths(): PathSet | undefined {
    this.expireNoise();
    if (this.noisy.size === 0) return undefined;
    return (this.noisyCompiled ??= compilePaths([...this.noisy.keys()]));
  }

  noisyFields(): string[] {
    this.expireNoise();
    return [...this.noisy.keys()];
  }

  /** Match and mismatch counts since `since`. */
  sinceReset(): { compared: number; mismatched: number } {
    const mismatched = this.totals.mismatch - this.base.mismatch;
    return { compared: this.totals.match - this.base.match + mismatched, mismatched };
  }

  /**
   * Starts the since-view afresh (an operator after fixing the candidate): fields, examples and
   * learned noise go. Totals stay (the /metrics counters must not go down), and so do the 1- and
   * 5-minute windows: they age out by themselves and feed the maxShadowMismatch gate, which a
   * reset must not turn green by hand.
   */
  reset(): void {
    this.since = this.now();
    this.base = { match: this.totals.match, mismatch: this.totals.mismatch };
    this.fields.clear();
    this.examples.length = 0;
    this.noisy.clear();
    this.suspects.clear();
    this.noisyCompiled = undefined;
    this.nextExpiry = Infinity;
  }

  /**
   * A reload stopped shadowing the route: totals, windows and findings are kept (see
   * RouteStatsTable), learned noise is not: no probe would refresh it, and if shadowing comes back
   * (perhaps with another `ignore`) it learns afresh rather than trust fields noisy back then.
   */
  retire(at: number): void {
    this.retiredAt = at;
    this.noisy.clear();
    this.suspects.clear();
    this.noisyCompiled = undefined;
    this.nextExpiry = Infinity;
  }

  unretire(): void {
    this.retiredAt = undefined;
  }

  /** Forgets noisy fields and suspects no probe saw differ for a TTL. */
  private expireNoise(): void {
    const now = this.now();
    if (now < this.nextExpiry) return;
    const cutoff = now - this.ttl;
    let next = Infinity;
    for (const [map, isNoisy] of [[this.noisy, true], [this.suspects, false]] as const) {
      for (const [path, seen] of map) {
        if (seen > cutoff) next = Math.min(next, seen + this.ttl);
        else if (map.delete(path) && isNoisy) this.noisyCompiled = undefined;
      }
    }
    this.nextExpiry = next;
  }

  /**
   * Compared and mismatched counts over the last `seconds` (<= 300), and with `from` (epoch ms)
   * only from the first whole second at or after it (a rollout plan's start or resume).
   */
  window(seconds: number, from?: number): { compared: number; mismatched: number; rate: number | null; windowSeconds: number } {
    const now = Math.floor(this.now() / 1000);
    const first = from === undefined ? now - seconds + 1 : Math.max(now - seconds + 1, Math.ceil(from / 1000));
    let compared = 0;
    let mismatched = 0;
    for (let i = 0; i < SLOTS; i++) {
      const t = this.slotTime[i] as number;
      if (t >= first && t <= now) {
        compared += this.compared[i] as number;
        mismatched += this.mismatched[i] as number;
      }
    }
    return { compared, mismatched, rate: compared ? mismatched / compared : null, windowSeconds: seconds };
  }

  /** The most frequent differing fields, each with when it last differed (ISO time). */
  topFields(n = 10): Array<{ path: string; count: number; last_seen: string }> {
    return [...this.fields]
      .sort((a, b) => b[1].count - a[1].count)
      .slice(0, n)
      .map(([path, f]) => ({ path, count: f.count, last_seen: new Date(f.last).toISOString() }));
  }

  recentExamples(): ShadowExample[] {
    return [...this.examples].reverse();
  }

  private countField(path: string): void {
    if (this.noisy.has(path)) return;
    if (!this.fields.has(path) && this.fields.size >= MAX_FIELDS) {
      // Keep the map bounded: forget the rarest field.
      let rare: string | undefined;
      let min = Infinity;
      for (const [p, f] of this.fields) if (f.count < min) [rare, min] = [p, f.count];
      if (rare !== undefined) this.fields.delete(rare);
    }
    const f = this.fields.get(path);
    if (f === undefined) this.fields.set(path, { count: 1, last: this.now() });
    else {
      f.count++;
      f.last = this.now();
    }
  }

  private slot(): number {
    const sec = Math.floor(this.now() / 1000);
    const i = sec % SLOTS;
    if (this.slotTime[i] !== sec) {
      this.slotTime[i] = sec;
      this.compared[i] = 0;
      this.mismatched[i] = 0;
    }
    return i;
  }
}
