import type { ShadowConfig, ShadowingConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import { bucketOf, inRollout } from '../routing/bucket.js';
import type { Upstream } from '../upstream/pools.js';
import { compareResponses, type CapturedResponse, type CompareOptions } from './compare.js';
import { decodeBody } from './decode.js';
import { compilePaths, diffJson, isLeafDifference, type PathSet } from './json-diff.js';
import { fetchCaptured } from './mirror.js';
import type { RouteShadowStats } from './results.js';
import { RouteStatsTable } from './route-stats.js';

/** A route's shadow settings, compiled once at config load. */
export interface CompiledShadow {
  readonly percentage: number;
  readonly compare: CompareOptions;
  readonly noiseSample: number;
  readonly noiseTtlMs: number;
  readonly writes: boolean;
  readonly timeoutMs: number;
  readonly maxBody: number;
  /** The section as configured (sectionKey): a probe counts only while its route still has it. */
  readonly key: string;
}

/** A shadow section's identity across reloads: every reload parses it afresh, in schema key order. */
function sectionKey(section: object): string {
  return JSON.stringify(section);
}

export function compileShadow(cfg: ShadowConfig): CompiledShadow {
  return {
    percentage: cfg.percentage,
    compare: {
      ignore: compilePaths(cfg.ignore),
      numericTolerance: cfg.numericTolerance,
      unordered: typeof cfg.unorderedArrays === 'boolean' ? cfg.unorderedArrays : compilePaths(cfg.unorderedArrays),
      headers: cfg.headers,
    },
    noiseSample: cfg.noiseSample,
    noiseTtlMs: cfg.noiseTtl,
    writes: cfg.writes,
    timeoutMs: cfg.timeout,
    maxBody: cfg.maxBody,
    key: sectionKey(cfg),
  };
}

/** Users are sampled by their own bucket in one shared group, so a user's whole journey is shadowed or not. */
export const SHADOW_GROUP = 'cutover.shadow';

export function shadowsUser(s: CompiledShadow, userId: string | undefined): boolean {
  if (s.percentage <= 0) return false;
  if (userId === undefined) return Math.random() * 100 < s.percentage;
  return inRollout(bucketOf(SHADOW_GROUP, userId), s.percentage);
}

/** A configured route's name, flag, upstream names and shadow section, as configured (a RouteConfig). */
export interface RouteFlag {
  readonly name: string;
  readonly flag?: string | undefined;
  readonly legacy: string;
  readonly candidate?: string | undefined;
  /** Absent: the route is not shadowed. */
  readonly shadow?: object | undefined;
}

/** What a live shadowed route's probes must have been started under to count (Shadower.current). */
interface LiveShadow {
  readonly key: string;
  readonly legacy: string;
  readonly candidate: string | undefined;
}

export interface ShadowJob {
  route: string;
  shadow: CompiledShadow;
  legacy: Upstream;
  candidate: Upstream;
  method: string;
  /** Normalized path + query, without any upstream base path. */
  path: string;
  /** Request headers as forwarded (no Host). */
  headers: string[];
  body: Buffer | null;
  requestId: string;
  legacyResponse: CapturedResponse;
}

/**
 * Mirrors requests legacy already answered to the candidate, compares, and records the outcome.
 * Runs off the request path: the client has its answer before a shadow job even starts. Bounded:
 * `concurrency` jobs at once, `queue` waiting; beyond that jobs are dropped (and counted).
 */
export class Shadower {
  private readonly stats: RouteStatsTable;
  private readonly waiting: ShadowJob[] = [];
  /** Shadowed route -> its shadow section and upstreams in the live config. */
  private live = new Map<string, LiveShadow>();
  private active = 0;
  private closed = false;

  constructor(
    private limits: ShadowingConfig,
    private readonly logger: Logger,
    routes: Iterable<RouteFlag> = [],
    now: () => number = Date.now,
  ) {
    this.stats = new RouteStatsTable(now);
    this.setRouteFlags(routes);
  }

  setLimits(limits: ShadowingConfig): void {
    this.limits = limits;
  }

  submit(job: ShadowJob): void {
    // Not current: a request routed before a reload that changed its route's shadowing (current).
    if (this.closed || !this.current(job)) return;
    if (this.active < this.limits.concurrency) return void this.run(job);
    if (this.waiting.length < this.limits.queue) return void this.waiting.push(job);
    this.statsFor(job.route).record('dropped');
  }

  /**
   * A route's stats, carrying the route's flag in the live config (not the one a queued job's
   * request was routed under): a reload may move a route to another flag, and the
   * maxShadowMismatch gate finds stats by flag. See RouteStatsTable.get for a route the live
   * config does not shadow.
   */
  statsFor(route: string): RouteShadowStats {
    return this.stats.get(route);
  }

  /**
   * The live config's routes, after every (re)load: each route's stats now count for the route's
   * current flag (comparisons already made stay: they judged the same route's answers); a route no
   * longer configured, or kept without its shadow section, is retired: listed with its totals and
   * findings, feeding no gate, its learned noise dropped, until shadowing comes back (the same
   * totals continue) or it is forgotten (RouteStatsTable). Jobs started under the previous config
   * count only if their route kept its shadowing (see current).
   */
  setRouteFlags(routes: Iterable<RouteFlag>): void {
    const flags = new Map<string, string | undefined>();
    const live = new Map<string, LiveShadow>();
    for (const r of routes) {
      if (r.shadow === undefined) continue;
      flags.set(r.name, r.flag);
      live.set(r.name, { key: sectionKey(r.shadow), legacy: r.legacy, candidate: r.candidate });
    }
    this.live = live;
    this.stats.setLive(flags);
    // Queued jobs the reload made stale go now, rather than hold queue room until their turn.
    let kept = 0;
    for (const job of this.waiting) if (this.current(job)) this.waiting[kept++] = job;
    this.waiting.length = kept;
  }

  /**
   * May a job (queued, or a probe in flight) still record into its route? Only while the live
   * config shadows the route with the same shadow section and upstreams the job was started under.
   * Otherwise a reload came in between, and the job is discarded uncounted: a route it unshadowed
   * keeps its counters flat from then on, and one whose comparison it changed (ignore paths,
   * tolerance, timeout, the upstreams compared...) must not mix the old rules' verdicts into the
   * new ones'. Moving the route to another flag alone changes no comparison: those still count.
   */
  private current(job: ShadowJob): boolean {
    const l = this.live.get(job.route);
    return l !== undefined && l.key === job.shadow.key && l.legacy === job.legacy.name && l.candidate === job.candidate.name;
  }

  /**
   * Operator reset (DELETE /api/v1/shadow[/:route]): see RouteShadowStats.reset. Logged with who
   * asked and what the since-view held, since it discards evidence. False for an unknown route.
   */
  reset(route: string | undefined, who: string): boolean {
    const targets = this.all().filter((s) => route === undefined || s.route === route);
    if (route !== undefined && targets.length === 0) return false;
    for (const s of targets) {
      this.logger.info({ route: s.route, who, since: new Date(s.since).toISOString(), ...s.sinceReset(), noisyFields: s.noisyFields() }, 'shadow results reset');
      s.reset();
    }
    return true;
  }

  /** Shadowed routes, then retired ones still remembered (RouteShadowStats.retiredAt set). */
  all(): RouteShadowStats[] {
    return this.stats.all();
  }

  /**
   * Compared/mismatched over the last 5 minutes for every route behind `flag` (a rollout gate
   * input), from `from` (epoch ms: the plan's start or resume) on when given.
   */
  forFlag(flag: string, from?: number): { compared: number; mismatched: number; windowSeconds: number } | undefined {
    let compared = 0;
    let mismatched = 0;
    let any = false;
    for (const s of this.stats.active()) {
      if (s.flag !== flag) continue;
      any = true;
      const w = s.window(300, from);
      compared += w.compared;
      mismatched += w.mismatched;
    }
    return any ? { compared, mismatched, windowSeconds: 300 } : undefined;
  }

  close(): void {
    this.closed = true;
    this.waiting.length = 0;
  }

  private async run(job: ShadowJob): Promise<void> {
    this.active++;
    // Current now (submit and setRouteFlags see to it), but a reload may come while its probes run.
    const stats = this.statsFor(job.route);
    stats.noiseTtlMs = job.shadow.noiseTtlMs;
    try {
      // Compared by content: how each side compressed its answer is not a difference.
      const legacy = await decodeBody(job.legacyResponse, job.shadow.maxBody);
      if (job.shadow.noiseSample > 0 && job.method === 'GET' && Math.random() * 100 < job.shadow.noiseSample) {
        await this.learnNoise(job, legacy, stats);
      }
      const candidate = await decodeBody(await fetchCaptured(job.candidate, job, job.shadow), job.shadow.maxBody);
      if (!this.current(job)) return;
      const opts = { ...job.shadow.compare, ignore: withNoise(job.shadow.compare.ignore, stats) };
      const verdict = compareResponses(legacy, candidate, opts);
      const example = { requestId: job.requestId, method: job.method, path: job.path, differences: verdict.result === 'mismatch' ? verdict.differences.slice(0, 10) : [] };
      const kept = verdict.result === 'error' ? stats.record('error', { ...example, reason: verdict.reason }) : stats.record(verdict.result, example);
      if (verdict.result === 'mismatch') {
        // The kept example's previews, not the raw values: one could be most of a body.
        this.logger.info({ route: job.route, requestId: job.requestId, path: job.path, differences: kept?.differences }, 'shadow mismatch');
      }
    } catch (err) {
      if (this.current(job)) stats.record('error', { requestId: job.requestId, method: job.method, path: job.path, reason: (err as Error).message, differences: [] });
    } finally {
      this.active--;
      const next = this.waiting.shift();
      if (next !== undefined && !this.closed) void this.run(next);
    }
  }

  /**
   * Asks legacy again: leaf fields that differ between two good legacy answers are noise (Diffy's
   * idea). Only when both answers are the same 2xx status: an error page on either call differs
   * from the real answer everywhere. Never `$` or a whole object or array (see isLeafDifference),
   * and a field is ignored only once two probes saw it differ (see markNoisy).
   */
  private async learnNoise(job: ShadowJob, first: CapturedResponse, stats: RouteShadowStats): Promise<void> {
    if (first.status < 200 || first.status > 299 || first.truncated || first.encoded !== undefined) return;
    const fetched = await fetchCaptured(job.legacy, job, job.shadow).catch(() => undefined);
    if (fetched === undefined || fetched.status !== first.status) return;
    const again = await decodeBody(fetched, job.shadow.maxBody);
    if (again.truncated || again.encoded !== undefined) return;
    let a: unknown;
    let b: unknown;
    try {
      a = JSON.parse(first.body.toString('utf8'));
      b = JSON.parse(again.body.toString('utf8'));
    } catch {
      return;
    }
    if (!this.current(job)) return; // noise under rules the route no longer has
    for (const d of diffJson(a, b, job.shadow.compare)) if (isLeafDifference(d)) stats.markNoisy(d.path);
  }
}

function withNoise(ignore: PathSet, stats: RouteShadowStats): PathSet {
  const noisy = stats.noisePaths();
  if (noisy === undefined) return ignore;
  return { has: (p) => ignore.has(p) || noisy.has(p), covers: (p) => ignore.covers(p) || noisy.covers(p), size: ignore.size + noisy.size };
}
