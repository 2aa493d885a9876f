import { SerialQueue } from '../util/serial-queue.js';
import type { Logger } from '../observability/logger.js';
import type { RolloutMetricsSource } from '../observability/metrics.js';
import { assertFlagName, changedRouting } from '../flags/model.js';
import { actorLabel, type FlagChange } from '../flags/persistence.js';
import type { FlagStore } from '../flags/store.js';
import { RolloutFiles } from './files.js';
import { RolloutLifecycle } from './lifecycle.js';
import { LiveGates, type RolloutStats, type ShadowProvider } from './live-gates.js';
import { ACTIVE, RolloutConflictError, stepPercentage, type Rollout } from './model.js';
import { parsePlan } from './plan.js';
import { PlanFileScanner } from './plan-file-scan.js';
import { rolloutGauges, rolloutView, type RolloutView } from './view.js';

export { ROLLOUT_STATES, RolloutConflictError, RolloutNotFoundError, type RolloutState } from './model.js';
export type { RolloutStats, ShadowProvider } from './live-gates.js';
export type { RolloutView } from './view.js';

export interface RolloutDriverOptions {
  flags: FlagStore;
  logger: Logger;
  /** Live windows (the observer); without it every gate waits. */
  observer?: RolloutStats;
  /** The routes whose flag is `flag` (read on every evaluation, so a reload is followed). */
  routesOf: (flag: string) => string[];
  /** Keep plan state in `<flagsDir>/.rollouts/` and read plan files from `<flagsDir>/rollouts/`. Else in memory. */
  flagsDir?: string | undefined;
  /** Gate evaluation period, ms [1000]. */
  intervalMs?: number;
  /** Rescan period of plan files, ms [2000; 0 = only at start]. */
  pollMs?: number;
  /** Wall clock for holds, `since` and history (ms since the epoch) [Date.now]. */
  clock?: () => number;
  shadow?: ShadowProvider | undefined;
}

/**
 * Drives rollout plans: every `intervalMs` each running plan's gates are evaluated over the live
 * windows of its flag's routes; a red gate rolls the flag back (or pauses, per plan) at once; a
 * step whose hold is over advances when every gate is green over a window with enough traffic.
 * Every flag change goes through FlagStore.set with actor source "rollout" (persisted and
 * audited with the reason). A change to the flag by anyone else pauses the plan.
 * All operations (ticks, API calls, plan files) run one at a time through one queue.
 */
export class RolloutDriver implements RolloutMetricsSource {
  private readonly files: RolloutFiles | undefined;
  private readonly planFiles: PlanFileScanner | undefined;
  private readonly clock: () => number;
  private readonly logger: Logger;
  private readonly gates: LiveGates;
  private readonly life: RolloutLifecycle;
  private readonly rollouts: Map<string, Rollout>;
  private readonly queue = new SerialQueue();
  private timer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private ticking = false;
  private scanning = false;
  private closed = false;
  private readonly onChange = (c: FlagChange) => this.flagChanged(c);

  constructor(private readonly opts: RolloutDriverOptions) {
    this.clock = opts.clock ?? Date.now;
    this.logger = opts.logger;
    this.gates = new LiveGates(opts.logger, opts.routesOf, opts.observer, opts.shadow, this.clock);
    this.files = opts.flagsDir !== undefined ? new RolloutFiles(opts.flagsDir) : undefined;
    this.planFiles = this.files && new PlanFileScanner(this.files, opts.logger);
    this.life = new RolloutLifecycle({
      flags: opts.flags,
      logger: opts.logger,
      files: this.files,
      clock: this.clock,
      evaluate: (r) => this.gates.evaluate(r),
      enqueue: (job) => this.enqueue(job),
    });
    this.rollouts = this.life.rollouts;
  }

  /** Loads persisted plans (a running one resumes, its hold counted from its `since`) and plan files; starts evaluating. */
  async start(): Promise<void> {
    this.opts.flags.on('change', this.onChange);
    if (this.files) {
      await this.life.load();
      await this.enqueue(() => this.scanPlanFiles());
    }
    const intervalMs = this.opts.intervalMs ?? 1000;
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
    const pollMs = this.opts.pollMs ?? 2000;
    if (this.files && pollMs > 0) {
      this.pollTimer = setInterval(() => {
        if (this.scanning) return;
        this.scanning = true;
        void this.enqueue(() => this.scanPlanFiles()).finally(() => (this.scanning = false));
      }, pollMs);
      this.pollTimer.unref();
    }
    this.opts.observer?.metrics?.setRollouts(this);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    clearInterval(this.pollTimer);
    this.opts.flags.off('change', this.onChange);
    this.opts.observer?.metrics?.setRollouts(undefined);
    await this.queue.idle();
  }

  /** The shadow results provider for the maxShadowMismatch gate (undefined: "no-data"). */
  setShadow(provider: ShadowProvider | undefined): void {
    this.gates.shadow = provider;
  }

  list(): RolloutView[] {
    return [...this.rollouts.keys()].sort().map((f) => this.view(this.rollouts.get(f) as Rollout));
  }

  get(flag: string): RolloutView | undefined {
    const r = this.rollouts.get(flag);
    return r && this.view(r);
  }

  /**
   * Starts a plan (PUT): validates it (PlanValidationError, FlagValidationError), refuses while
   * another plan for the flag is running or paused (RolloutConflictError), and sets the flag to
   * the first step. Fleet mode without an Unleash admin token: FlagOwnedError from the store.
   */
  put(flag: string, body: unknown, who: string): Promise<RolloutView> {
    assertFlagName(flag);
    const plan = parsePlan(body);
    return this.enqueue(async () => this.view(await this.life.begin(flag, plan, 'api', who, this.planFiles?.hashOf(flag) ?? null)));
  }

  pause(flag: string, who: string, note?: string): Promise<RolloutView> {
    return this.enqueue(async () => {
      const r = this.life.require(flag);
      if (r.state !== 'running') throw new RolloutConflictError(`the plan for "${flag}" is ${r.state}: only a running plan can be paused`);
      await this.life.transition(r, 'paused', `paused by ${who}${note ? `: ${note}` : ''}`, who);
      return this.view(r);
    });
  }

  /** Resumes a paused plan: the flag goes back to the current step; its hold and the gates' traffic start over. */
  resume(flag: string, who: string): Promise<RolloutView> {
    return this.enqueue(async () => {
      const r = this.life.require(flag);
      if (r.state !== 'paused') {
        throw new RolloutConflictError(
          `the plan for "${flag}" is ${r.state}: only a paused plan can be resumed${ACTIVE.has(r.state) ? '' : ` (PUT /api/v1/rollouts/${flag} starts a plan again)`}`,
        );
      }
      await this.life.resume(r, who);
      return this.view(r);
    });
  }

  /** Stops a running or paused plan for good; the flag stays where it is. */
  abort(flag: string, who: string, note?: string): Promise<RolloutView> {
    return this.enqueue(async () => {
      const r = this.life.require(flag);
      if (!ACTIVE.has(r.state)) throw new RolloutConflictError(`the plan for "${flag}" is already ${r.state}`);
      await this.life.transition(r, 'aborted', `aborted by ${who}${note ? `: ${note}` : ''}`, who);
      return this.view(r);
    });
  }

  /** One evaluation of every running plan (the timer calls this; tests may too). */
  tick(): Promise<void> {
    if (this.ticking || this.closed) return Promise.resolve();
    this.ticking = true;
    return this.enqueue(async () => {
      for (const r of this.rollouts.values()) if (r.state === 'running') await this.life.evaluateAndAct(r);
    })
      .catch((err: Error) => this.logger.error({ err: err.message }, 'rollout evaluation failed'))
      .finally(() => (this.ticking = false));
  }

  /** For cutover_rollout_* gauges (scrape time). */
  rolloutMetrics() {
    return [...this.rollouts.values()].map((r) => rolloutGauges(r, this.gates.evaluate(r)));
  }

  /** Someone else changed the flag: a running plan pauses (it would otherwise undo their change). */
  private flagChanged(c: FlagChange): void {
    if (c.actor.source === 'rollout') return;
    const r = this.rollouts.get(c.name);
    if (r === undefined || r.state !== 'running') return;
    const before = c.before as Record<string, unknown> | undefined;
    const after = c.after as Record<string, unknown> | undefined;
    const changed = changedRouting(c.before, c.after);
    if (after !== undefined && before !== undefined && changed.length === 0) return; // description, health_check_interval, ...
    // Fleet mode: our own write comes back from Unleash's polling as a change by "unleash".
    const external = this.opts.flags.external;
    if (external && c.actor.source === external.kind && after !== undefined) {
      const cur = { enabled: true, percentage: stepPercentage(r, r.step) };
      const same = (x: { enabled: boolean; percentage: number } | undefined) => x !== undefined && after.enabled === x.enabled && after.percentage === x.percentage;
      if (same(cur) || same(r.pending)) return;
    }
    const by = actorLabel(c.actor);
    const what =
      after === undefined
        ? 'flag removed'
        : changed.map((k) => `${k} ${JSON.stringify(before?.[k] ?? null)} -> ${JSON.stringify(after[k] ?? null)}`).join(', ');
    const reason = `manual change by ${by}${c.actor.reason ? ` (${c.actor.reason})` : ''}: ${what}; plan paused (resume to continue from step ${r.step + 1})`;
    void this.enqueue(async () => {
      if (r.state !== 'running') return;
      this.logger.warn({ flag: r.flag, by, change: what }, 'flag changed by hand during a rollout plan: plan paused');
      await this.life.transition(r, 'paused', reason, by);
    }).catch((err: Error) => this.logger.error({ flag: r.flag, err: err.message }, 'cannot pause the rollout plan'));
  }

  private async scanPlanFiles(): Promise<void> {
    if (!this.planFiles || this.closed) return;
    await this.planFiles.scan(this.life);
  }

  private view(r: Rollout): RolloutView {
    const ev = this.gates.evaluate(r);
    const flag = this.opts.flags.view(r.flag);
    return rolloutView(r, ev, flag, this.opts.routesOf(r.flag), this.clock());
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    return this.queue.run(job);
  }
}
