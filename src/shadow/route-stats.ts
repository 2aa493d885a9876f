import { RouteShadowStats } from './results.js';

/** How long a route's results are kept after a reload stops shadowing it (or removes it). */
export const RETIRED_TTL_MS = 24 * 3_600_000;
/** Most routes kept that way at once: the one unshadowed longest ago goes first. */
export const MAX_RETIRED = 100;

/**
 * Every route's shadow stats: the live config's shadowed routes, and retired ones (a reload
 * removed the route or its `shadow` section) kept a while, so a reload that drops shadowing and a
 * later one that puts it back continue the same totals: the cutover_shadow_total series and the
 * API's totals would otherwise restart at 0, which Prometheus reads as a counter reset and an
 * operator as lost history. Retired stats feed no gate, and are forgotten after RETIRED_TTL_MS
 * or when MAX_RETIRED newer ones push them out: renames across reloads must not pile up.
 */
export class RouteStatsTable {
  private readonly live = new Map<string, RouteShadowStats>();
  /** In retirement order (oldest first): pruning stops at the first one still young enough. */
  private readonly retired = new Map<string, RouteShadowStats>();
  /** Shadowed route -> flag in the live config. */
  private flags = new Map<string, string | undefined>();

  constructor(private readonly now: () => number = Date.now) {}

  /**
   * The stats a job for `route` records into: the live route's (created on first use), or else
   * throwaway stats that are not listed. Never a retired route's: its counters stay as they were
   * when it was unshadowed (the Shadower discards jobs a reload left behind, Shadower.current).
   */
  get(route: string): RouteShadowStats {
    const s = this.live.get(route);
    if (s !== undefined) return s;
    const fresh = new RouteShadowStats(route, this.flags.get(route), this.now);
    if (this.flags.has(route)) this.live.set(route, fresh);
    return fresh;
  }

  /** After every (re)load: the shadowed routes and their flags. */
  setLive(flags: Map<string, string | undefined>): void {
    this.flags = flags;
    for (const [route, s] of this.retired) {
      if (!flags.has(route)) continue;
      this.retired.delete(route);
      s.unretire();
      this.live.set(route, s);
    }
    for (const [route, s] of this.live) {
      if (flags.has(route)) {
        s.flag = flags.get(route);
        continue;
      }
      this.live.delete(route);
      s.retire(this.now());
      this.retired.set(route, s);
    }
    this.prune();
  }

  /** Live routes' stats (what the gates and the status page read). */
  active(): IterableIterator<RouteShadowStats> {
    return this.live.values();
  }

  /** Live then retired (still remembered) routes' stats. */
  all(): RouteShadowStats[] {
    this.prune();
    return [...this.live.values(), ...this.retired.values()];
  }

  private prune(): void {
    const cutoff = this.now() - RETIRED_TTL_MS;
    for (const [route, s] of this.retired) {
      if (this.retired.size <= MAX_RETIRED && (s.retiredAt as number) > cutoff) break;
      this.retired.delete(route);
    }
  }
}
