import type { ShadowConfig, ShadowingConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import { bucketOf, inRollout } from '../routing/bucket.js';
import type { Upstream } from '../upstream/pools.js';
import { compareResponses, type CapturedResponse, type CompareOptions } from './compare.js';
import { decodeBody } from './decode.js';
import { compilePaths, diffJson, isLeafDifference, type PathSet } from './json-diff.js';
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
  };
}

/** Users are sampled by their own bucket in one shared group, so a user's whole journey is shadowed or not. */
export const SHADOW_GROUP = 'cutover.shadow';

export function shadowsUser(s: CompiledShadow, userId: string | undefined): boolean {
  if (s.percentage <= 0) return false;
  if (userId === undefined) return Math.random() * 100 < s.percentage;
  return inRollout(bucketOf(SHADOW_GROUP, userId), s.percentage);
}

/** A configured route's name, flag and shadow section (a CompiledRoute or a RouteConfig will do). */
export interface RouteFlag {
  readonly name: string;
  readonly flag?: string | undefined;
  /** Absent: the route is not shadowed. */
  readonly shadow?: unknown;
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
    if (this.closed) return;
    if (this.active < this.limits.concurrency) return void this.run(job);
    if (this.waiting.length < this.limits.queue) return void this.waiting.push(job);
    this.statsFor(job.route).record('dropped');
  }

  /**
   * A route's stats, carrying the route's flag in the live config (not the one a queued job's
   * request was routed under): a reload may move a route to another flag, and the
   * maxShadowMismatch gate finds stats by flag. See RouteStatsTable.get for a route a reload
   * stopped shadowing.
   */
  statsFor(route: string): RouteShadowStats {
    return this.stats.get(route);
  }

  /**
   * The live config's routes, after every (re)load: each route's stats now count for the route's
   * current flag (comparisons already made stay: they judged the same route's answers); a route no
   * longer configured, or kept without its shadow section, is retired: listed with its totals and
   * findings, feeding no gate, its learned noise dropped, until shadowing comes back (the same
   * totals continue) or it is forgotten (RouteStatsTable).
   */
  setRouteFlags(routes: Iterable<RouteFlag>): void {
    const live = new Map<string, string | undefined>();
    for (const r of routes) if (r.shadow !== undefined) live.set(r.name, r.flag);
    this.stats.setLive(live);
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
    const stats = this.statsFor(job.route);
    stats.noiseTtlMs = job.shadow.noiseTtlMs;
    try {
      // Compared by content: how each side compressed its answer is not a difference.
      const legacy = await decodeBody(job.legacyResponse, job.shadow.maxBody);
      if (job.shadow.noiseSample > 0 && job.method === 'GET' && Math.random() * 100 < job.shadow.noiseSample) {
        await this.learnNoise(job, legacy, stats);
      }
      const candidate = await decodeBody(await fetchCaptured(job.candidate, job, job.shadow), job.shadow.maxBody);
      const opts = { ...job.shadow.compare, ignore: withNoise(job.shadow.compare.ignore, stats) };
      const verdict = compareResponses(legacy, candidate, opts);
      const example = { requestId: job.requestId, method: job.method, path: job.path, differences: verdict.result === 'mismatch' ? verdict.differences.slice(0, 10) : [] };
      const kept = verdict.result === 'error' ? stats.record('error', { ...example, reason: verdict.reason }) : stats.record(verdict.result, example);
      if (verdict.result === 'mismatch') {
        // The kept example's previews, not the raw values: one could be most of a body.
        this.logger.info({ route: job.route, requestId: job.requestId, path: job.path, differences: kept?.differences }, 'shadow mismatch');
      }
    } catch (err) {
      stats.record('error', { requestId: job.requestId, method: job.method, path: job.path, reason: (err as Error).message, differences: [] });
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
    for (const d of diffJson(a, b, job.shadow.compare)) if (isLeafDifference(d)) stats.markNoisy(d.path);
  }
}

function withNoise(ignore: PathSet, stats: RouteShadowStats): PathSet {
  const noisy = stats.noisePaths();
  if (noisy === undefined) return ignore;
  return { has: (p) => ignore.has(p) || noisy.has(p), covers: (p) => ignore.covers(p) || noisy.covers(p), size: ignore.size + noisy.size };
}

/**
 * The mirrored request's headers: the forwarded ones with the upstream's Host and one
 * `x-cutover-shadow: 1`. A client's own copy never gets this far: copyRequestHeaders drops it
 * from every forwarded request (proxy/headers.ts), so a real order cannot look like a dry run.
 */
function shadowHeaders(forwarded: readonly string[], host: string): string[] {
  return [...forwarded, 'host', host, 'x-cutover-shadow', '1'];
}

async function fetchCaptured(up: Upstream, job: ShadowJob, s: CompiledShadow): Promise<CapturedResponse> {
  const r = await up.pool.request({
    method: job.method as 'GET',
    path: up.basePath + job.path,
    headers: shadowHeaders(job.headers, up.host),
    body: job.body,
    headersTimeout: s.timeoutMs,
    bodyTimeout: s.timeoutMs,
    signal: AbortSignal.timeout(s.timeoutMs),
  });
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  for await (const chunk of r.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > s.maxBody) {
      truncated = true;
      r.body.destroy();
      break;
    }
    chunks.push(chunk);
  }
  return { status: r.statusCode, headers, body: Buffer.concat(chunks), truncated };
}
