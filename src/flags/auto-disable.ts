import type { Logger } from '../observability/logger.js';
import type { FlagStore } from './store.js';

/**
 * Switches a flag off after `auto_disable_after` consecutive candidate failures when the flag has
 * `auto_disable_on_failure: true` (the runbooks' "3+ failures -> disable the feature flag").
 * The change goes through the flag store like any other: persisted, audited with the reason,
 * visible to every route. Turning it back on is left to a human.
 */
export class AutoDisabler {
  private readonly streaks = new Map<string, number>();
  private readonly pending = new Set<string>();

  constructor(
    private readonly flags: FlagStore,
    private readonly logger: Logger,
  ) {
    // A human re-enabling the flag starts a fresh count.
    flags.on('change', (c) => {
      if (c.actor.source !== 'auto-disable') this.streaks.delete(c.name);
    });
  }

  success(flag: string): void {
    if (this.streaks.size !== 0) this.streaks.delete(flag);
  }

  failure(flag: string, reason: string, route: string): void {
    const f = this.flags.get(flag);
    if (f === undefined || f.autoDisableAfter === 0) return;
    const n = (this.streaks.get(flag) ?? 0) + 1;
    this.streaks.set(flag, n);
    if (n < f.autoDisableAfter || this.pending.has(flag)) return;
    this.pending.add(flag);
    const why = `${n} consecutive candidate failures (last: ${reason} on route ${route})`;
    this.flags
      .set(flag, { enabled: false }, { source: 'auto-disable', reason: why })
      .then(
        () => this.logger.error({ flag, reason: why }, 'flag disabled automatically; re-enabling is a human decision'),
        (err: Error) => this.logger.error({ flag, err: err.message }, 'auto-disable failed to persist'),
      )
      .finally(() => {
        this.pending.delete(flag);
        this.streaks.delete(flag);
      });
  }
}
