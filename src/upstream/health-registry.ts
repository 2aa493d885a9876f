import type { Config } from '../config/load.js';
import type { FlagStore } from '../flags/store.js';
import type { Logger } from '../observability/logger.js';
import { UpstreamHealth, type HealthView } from './health.js';
import type { Upstream } from './pools.js';

/**
 * One UpstreamHealth per upstream, with probe intervals following the flags' health_check_interval.
 * On a config reload, upstreams that kept their Upstream object keep their health state too, so
 * an ejected candidate stays ejected across an unrelated route edit.
 */
export class HealthRegistry {
  byName = new Map<string, UpstreamHealth>();
  private config: Config | undefined;
  private readonly sync = () => this.syncIntervals();

  constructor(
    private readonly flags: FlagStore,
    private readonly logger: Logger,
  ) {
    flags.on('change', this.sync);
  }

  /** Adopts a (new) config and its upstreams; returns the health map to compile routes with. */
  update(config: Config, upstreams: ReadonlyMap<string, Upstream>): Map<string, UpstreamHealth> {
    const next = new Map<string, UpstreamHealth>();
    for (const [name, up] of upstreams) {
      const prev = this.byName.get(name);
      const cfg = config.upstreams.get(name);
      if (prev !== undefined && prev.upstream === up) next.set(name, prev);
      else if (cfg) {
        const h = new UpstreamHealth(up, cfg.outlier, cfg.health, this.logger);
        h.start();
        next.set(name, h);
      }
    }
    for (const [name, h] of this.byName) if (next.get(name) !== h) h.close();
    this.byName = next;
    this.config = config;
    this.syncIntervals();
    return next;
  }

  /** A candidate is probed as often as the most demanding flag routing to it asks. */
  private syncIntervals(): void {
    if (!this.config) return;
    const wanted = new Map<string, number>();
    for (const r of this.config.routes) {
      if (r.candidate === undefined || r.flag === undefined) continue;
      const ms = this.flags.get(r.flag)?.healthIntervalMs;
      if (ms === undefined) continue;
      wanted.set(r.candidate, Math.min(ms, wanted.get(r.candidate) ?? Infinity));
    }
    for (const [name, h] of this.byName) h.setInterval(wanted.get(name));
  }

  view(): Record<string, HealthView> {
    const out: Record<string, HealthView> = {};
    for (const [name, h] of this.byName) out[name] = h.view();
    return out;
  }

  close(): void {
    this.flags.off('change', this.sync);
    for (const h of this.byName.values()) h.close();
  }
}
