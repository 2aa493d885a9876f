import type { Config } from '../config/load.js';
import type { FlagStore } from '../flags/store.js';
import type { Logger } from '../observability/logger.js';
import { UpstreamHealth, type HealthView } from './health.js';
import type { Upstream } from './pools.js';

/** One UpstreamHealth per upstream, with probe intervals following the flags' health_check_interval. */
export class HealthRegistry {
  readonly byName = new Map<string, UpstreamHealth>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly config: Config,
    upstreams: ReadonlyMap<string, Upstream>,
    private readonly flags: FlagStore,
    logger: Logger,
  ) {
    for (const [name, up] of upstreams) {
      const cfg = config.upstreams.get(name);
      if (cfg) this.byName.set(name, new UpstreamHealth(up, cfg.outlier, cfg.health, logger));
    }
    const sync = () => this.syncIntervals();
    flags.on('change', sync);
    this.unsubscribe = () => flags.off('change', sync);
  }

  start(): void {
    for (const h of this.byName.values()) h.start();
    this.syncIntervals();
  }

  /** A candidate is probed as often as the most demanding flag routing to it asks. */
  private syncIntervals(): void {
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
    this.unsubscribe();
    for (const h of this.byName.values()) h.close();
  }
}
