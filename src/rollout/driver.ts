import { SerialQueue } from '../util/serial-queue.js';
import type { Logger } from '../observability/logger.js';
import type { FlagWindow } from '../observability/observer-impl.js';
import type { RolloutMetricsSource } from '../observability/metrics.js';
import { assertFlagName, ROUTING_FIELDS, type FlagPatch } from '../flags/model.js';
import type { FlagChange, FlagStore } from '../flags/store.js';
import { RolloutFiles } from './files.js';
import { emptySample, evaluateGates, type Evaluation, type GateResult, type ShadowCounts } from './gates.js';
import { holdMs, parsePlan, planHash, windowMs, type GateName, type Plan } from './plan.js';

export type RolloutState = 'running' | 'paused' | 'completed' | 'rolled_back' | 'aborted';
export const ROLLOUT_STATES: readonly RolloutState[] = ['running', 'paused', 'completed', 'rolled_back', 'aborted'];

/**
 * Shadow comparison counts over a recent window for the routes whose flag is `flag`, or
 * undefined when there are none (no shadow configured): the maxShadowMismatch gate then reports
 * "no-data" and does not block.
 */
export type ShadowProvider = (flag: string) => ShadowCounts | undefined;

/** What the driver reads the live windows from (CutoverObserver). */
export interface RolloutStats {
  flagWindow(routes: readonly string[], windowMs: number): FlagWindow;
  /** When given, the driver registers its gauges there (cutover_rollout_*). */
  readonly metrics?: { setRollouts(source: RolloutMetricsSource | undefined): void };
}

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

interface HistoryEntry {
  time: string;
  event: 'started' | 'advanced' | 'completed' | 'rolled_back' | 'paused' | 'resumed' | 'aborted';
  step: number;
  percentage: number;
  reason?: string;
  by?: string;
}

interface Rollout {
  flag: string;
  plan: Plan;
  planHash: string;
  origin: 'api' | 'file';
  /** The plan file's hash when this rollout was created (a changed file may start a new plan). */
  fileHash: string | null;
  state: RolloutState;
  /** 0-based here; 1-based in the API and in state files. */
  step: number;
  /** When the current step (or state) began, ms. */
  since: number;
  reason: string | null;
  /** The flag before the plan started (for rollbackTo "previous" on the first step). */
  initial: { exists: boolean; enabled: boolean; percentage: number };
  startedAt: number;
  startedBy: string;
  updatedAt: number;
  history: HistoryEntry[];
  /** A flag write of ours in flight (fleet mode sees it come back from Unleash as a change). */
  pending?: { enabled: boolean; percentage: number } | undefined;
}

/** A rollout as the API shows it. */
export interface RolloutView {
  flag: string;
  state: RolloutState;
  /** 1-based step number, of `steps`. */
  step: number;
  steps: number;
  /** The current step's percentage. */
  percentage: number;
  since: string;
  /** When the hold of a running step is over (it advances then, once every gate is green). */
  nextStepAt: string | null;
  reason: string | null;
  gates: Partial<Record<GateName, GateResult>>;
  window: Evaluation['window'];
  /** green: would advance once the hold is over; waiting: too little traffic; red: failing. */
  verdict: Evaluation['verdict'];
  routes: string[];
  flagState: { exists: boolean; enabled: boolean; percentage: number };
  plan: Plan;
  origin: 'api' | 'file';
  startedAt: string;
  startedBy: string;
  updatedAt: string;
  history: HistoryEntry[];
  time: string;
}

/** 404: no plan for that flag. */
export class RolloutNotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RolloutNotFoundError';
  }
}

/** 409: the plan is not in a state that allows this (e.g. resume a running plan). */
export class RolloutConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RolloutConflictError';
  }
}

const HISTORY_MAX = 100;
const ACTIVE: ReadonlySet<RolloutState> = new Set(['running', 'paused']);

/**
 * Drives rollout plans: every `intervalMs` each running plan's gates are evaluated over the live
 * windows of its flag's routes; a red gate rolls the flag back (or pauses, per plan) at once; a
 * step whose hold is over advances when every gate is green over a window with enough traffic.
 * Every flag change goes through FlagStore.set with actor source "rollout" (persisted and
 * audited with the reason). A change to the flag by anyone else pauses the plan.
 * All operations (ticks, API calls, plan files) run one at a time through one queue.
 */
export class RolloutDriver implements RolloutMetricsSource {
  private readonly rollouts = new Map<string, Rollout>();
  private readonly files: RolloutFiles | undefined;
  private readonly clock: () => number;
  private readonly logger: Logger;
  private shadow: ShadowProvider | undefined;
  private readonly queue = new SerialQueue();
  private timer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private ticking = false;
  private scanning = false;
  private closed = false;
  private readonly warned = new Set<string>();
  /** Plan file hashes as last scanned. */
  private readonly fileHashes = new Map<string, string>();
  private shadowFailed = false;
  private readonly onChange = (c: FlagChange) => this.flagChanged(c);

  constructor(private readonly opts: RolloutDriverOptions) {
    this.clock = opts.clock ?? Date.now;
    this.logger = opts.logger;
    this.shadow = opts.shadow;
    this.files = opts.flagsDir !== undefined ? new RolloutFiles(opts.flagsDir) : undefined;
  }

  /** Loads persisted plans (a running one resumes, its hold counted from its `since`) and plan files; starts evaluating. */
  async start(): Promise<void> {
    this.opts.flags.on('change', this.onChange);
    if (this.files) {
      for (const [flag, json] of await this.files.loadStates()) {
        const r = json instanceof Error ? json : revive(flag, json);
        if (r instanceof Error) {
          this.logger.error({ flag, err: r.message }, 'rollout state file is invalid; that plan is ignored');
          continue;
        }
        this.rollouts.set(flag, r);
        if (r.state === 'running') this.checkResumed(r);
      }
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
    this.shadow = provider;
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
    return this.enqueue(async () => this.view(await this.begin(flag, plan, 'api', who)));
  }

  pause(flag: string, who: string, note?: string): Promise<RolloutView> {
    return this.enqueue(async () => {
      const r = this.require(flag);
      if (r.state !== 'running') throw new RolloutConflictError(`the plan for "${flag}" is ${r.state}: only a running plan can be paused`);
      await this.transition(r, 'paused', `paused by ${who}${note ? `: ${note}` : ''}`, who);
      return this.view(r);
    });
  }

  /** Resumes a paused plan: the flag goes back to the current step and its hold starts over. */
  resume(flag: string, who: string): Promise<RolloutView> {
    return this.enqueue(async () => {
      const r = this.require(flag);
      if (r.state !== 'paused') {
        throw new RolloutConflictError(
          `the plan for "${flag}" is ${r.state}: only a paused plan can be resumed${ACTIVE.has(r.state) ? '' : ` (PUT /api/v1/rollouts/${flag} starts a plan again)`}`,
        );
      }
      const pct = this.pct(r, r.step);
      await this.setFlag(r, { enabled: true, percentage: pct }, { who, reason: `plan resumed by ${who}: step ${r.step + 1}/${r.plan.steps.length} -> ${pct} %` });
      await this.transition(r, 'running', null, who, 'resumed');
      return this.view(r);
    });
  }

  /** Stops a running or paused plan for good; the flag stays where it is. */
  abort(flag: string, who: string, note?: string): Promise<RolloutView> {
    return this.enqueue(async () => {
      const r = this.require(flag);
      if (!ACTIVE.has(r.state)) throw new RolloutConflictError(`the plan for "${flag}" is already ${r.state}`);
      await this.transition(r, 'aborted', `aborted by ${who}${note ? `: ${note}` : ''}`, who);
      return this.view(r);
    });
  }

  /** One evaluation of every running plan (the timer calls this; tests may too). */
  tick(): Promise<void> {
    if (this.ticking || this.closed) return Promise.resolve();
    this.ticking = true;
    return this.enqueue(async () => {
      for (const r of this.rollouts.values()) if (r.state === 'running') await this.evaluateAndAct(r);
    })
      .catch((err: Error) => this.logger.error({ err: err.message }, 'rollout evaluation failed'))
      .finally(() => (this.ticking = false));
  }

  /** For cutover_rollout_* gauges (scrape time). */
  rolloutMetrics() {
    return [...this.rollouts.values()].map((r) => {
      const ev = this.evaluate(r);
      return {
        flag: r.flag,
        state: r.state,
        step: r.step + 1,
        percentage: this.pct(r, r.step),
        gates: Object.entries(ev.gates).map(([gate, g]) => ({ gate, value: g.value, limit: g.limit })),
      };
    });
  }

  // ---------------------------------------------------------------- the plan's life

  private async begin(flag: string, plan: Plan, origin: 'api' | 'file', who: string): Promise<Rollout> {
    const existing = this.rollouts.get(flag);
    if (existing && ACTIVE.has(existing.state)) {
      throw new RolloutConflictError(
        `a plan for "${flag}" is ${existing.state} (step ${existing.step + 1}/${existing.plan.steps.length}); abort it first (POST /api/v1/rollouts/${flag}/abort)`,
      );
    }
    const before = this.opts.flags.view(flag);
    const now = this.clock();
    const r: Rollout = {
      flag,
      plan,
      planHash: planHash(plan),
      origin,
      fileHash: this.fileHashes.get(flag) ?? null,
      state: 'running',
      step: 0,
      since: now,
      reason: null,
      initial: { exists: before !== undefined, enabled: before?.enabled ?? false, percentage: before?.percentage ?? 0 },
      startedAt: now,
      startedBy: who,
      updatedAt: now,
      history: [],
    };
    const pct = this.pct(r, 0);
    await this.setFlag(r, { enabled: true, percentage: pct }, { who, reason: `plan started by ${who}: step 1/${plan.steps.length} -> ${pct} %` });
    r.since = r.startedAt = r.updatedAt = this.clock();
    this.rollouts.set(flag, r);
    this.remember(r, 'started', null, who);
    await this.persist(r);
    this.logger.info({ flag, steps: plan.steps.map((s) => s.percentage), origin, by: who }, 'rollout plan started');
    return r;
  }

  private async evaluateAndAct(r: Rollout): Promise<void> {
    // The next step's hold counts from this decision, not from when the write finished.
    const decided = this.clock();
    const ev = this.evaluate(r);
    if (ev.verdict === 'red' && ev.failure) return this.fail(r, ev.failure.reason);
    if (ev.verdict !== 'green') return;
    const step = r.plan.steps[r.step] as Plan['steps'][number];
    if (decided < r.since + holdMs(step)) return;
    const held = `step ${r.step + 1} held ${step.hold} with every gate green`;
    if (r.step === r.plan.steps.length - 1) {
      await this.transition(r, 'completed', `${held}: plan complete at ${step.percentage} %`, undefined, 'completed', decided);
      this.logger.info({ flag: r.flag, percentage: step.percentage }, 'rollout plan completed');
      return;
    }
    const next = r.step + 1;
    const pct = this.pct(r, next);
    const reason = `step ${next + 1}/${r.plan.steps.length} -> ${pct} % (${held})`;
    try {
      await this.setFlag(r, { enabled: true, percentage: pct }, { reason });
    } catch (err) {
      this.logger.error({ flag: r.flag, err: (err as Error).message }, 'rollout could not advance; retrying');
      r.reason = `advancing to ${pct} % failed: ${(err as Error).message}; retrying`;
      return;
    }
    r.step = next;
    r.since = decided;
    r.updatedAt = this.clock();
    r.reason = null;
    this.remember(r, 'advanced', reason, undefined, decided);
    await this.persist(r);
    this.logger.info({ flag: r.flag, step: next + 1, percentage: pct }, 'rollout advanced');
  }

  private async fail(r: Rollout, reason: string): Promise<void> {
    if (r.plan.onFailure === 'pause') {
      this.logger.error({ flag: r.flag, reason }, 'rollout gate failed: plan paused (onFailure: pause), flag unchanged');
      await this.transition(r, 'paused', `${reason}; paused (onFailure: pause)`);
      return;
    }
    const patch = this.rollbackPatch(r);
    try {
      await this.setFlag(r, patch, { reason });
    } catch (err) {
      this.logger.error({ flag: r.flag, reason, err: (err as Error).message }, 'rollout gate failed but the rollback could not be written; retrying');
      r.reason = `${reason}; rolling back failed: ${(err as Error).message}; retrying`;
      return;
    }
    this.logger.error({ flag: r.flag, reason, flagNow: patch }, 'rollout gate failed: flag rolled back');
    await this.transition(r, 'rolled_back', reason);
  }

  private rollbackPatch(r: Rollout): FlagPatch {
    const to = r.plan.rollbackTo ?? 'off';
    if (to === 0) return { percentage: 0 };
    if (to === 'previous') {
      if (r.step > 0) return { enabled: true, percentage: this.pct(r, r.step - 1) };
      return r.initial.exists ? { enabled: r.initial.enabled, percentage: r.initial.percentage } : { enabled: false };
    }
    return { enabled: false };
  }

  /** Someone else changed the flag: a running plan pauses (it would otherwise undo their change). */
  private flagChanged(c: FlagChange): void {
    if (c.actor.source === 'rollout') return;
    const r = this.rollouts.get(c.name);
    if (r === undefined || r.state !== 'running') return;
    const before = c.before as Record<string, unknown> | undefined;
    const after = c.after as Record<string, unknown> | undefined;
    const changed = ROUTING_FIELDS.filter((k) => JSON.stringify(before?.[k]) !== JSON.stringify(after?.[k]));
    if (after !== undefined && before !== undefined && changed.length === 0) return; // description, health_check_interval, ...
    // Fleet mode: our own write comes back from Unleash's polling as a change by "unleash".
    const external = this.opts.flags.external;
    if (external && c.actor.source === external.kind && after !== undefined) {
      const cur = { enabled: true, percentage: this.pct(r, r.step) };
      const same = (x: { enabled: boolean; percentage: number } | undefined) => x !== undefined && after.enabled === x.enabled && after.percentage === x.percentage;
      if (same(cur) || same(r.pending)) return;
    }
    const by = c.actor.who ? `${c.actor.source}:${c.actor.who}` : c.actor.source;
    const what =
      after === undefined
        ? 'flag removed'
        : changed.map((k) => `${k} ${JSON.stringify(before?.[k] ?? null)} -> ${JSON.stringify(after[k] ?? null)}`).join(', ');
    const reason = `manual change by ${by}${c.actor.reason ? ` (${c.actor.reason})` : ''}: ${what}; plan paused (resume to continue from step ${r.step + 1})`;
    void this.enqueue(async () => {
      if (r.state !== 'running') return;
      this.logger.warn({ flag: r.flag, by, change: what }, 'flag changed by hand during a rollout plan: plan paused');
      await this.transition(r, 'paused', reason, by);
    }).catch((err: Error) => this.logger.error({ flag: r.flag, err: err.message }, 'cannot pause the rollout plan'));
  }

  /** A plan still running after a restart: its flag must be where the plan left it, else it pauses. */
  private checkResumed(r: Rollout): void {
    const src = this.opts.flags.external?.status();
    if (src && src.servingFrom === 'nothing') return; // nothing known yet: the ticks will tell
    const v = this.opts.flags.view(r.flag);
    const pct = this.pct(r, r.step);
    if (v && v.enabled && v.percentage === pct) {
      this.logger.info({ flag: r.flag, step: r.step + 1, percentage: pct, since: new Date(r.since).toISOString() }, 'rollout plan resumed after restart');
      return;
    }
    const found = v === undefined ? 'no such flag' : `${v.enabled ? 'enabled' : 'disabled'} at ${v.percentage} % (last by ${v.updated_by ?? 'unknown'})`;
    r.state = 'paused';
    r.reason = `the flag changed while cutover was stopped: the plan expected it enabled at ${pct} %, found ${found}; plan paused`;
    r.since = r.updatedAt = this.clock();
    this.remember(r, 'paused', r.reason);
    this.logger.warn({ flag: r.flag, reason: r.reason }, 'rollout plan paused at start');
    void this.enqueue(() => this.persist(r));
  }

  private async scanPlanFiles(): Promise<void> {
    if (!this.files || this.closed) return;
    let found;
    try {
      found = await this.files.scanPlans();
    } catch (err) {
      return this.warnOnce(`dir:${(err as Error).message}`, { dir: this.files.plansDir, err: (err as Error).message }, 'cannot read the rollout plans directory');
    }
    for (const [flag, entry] of found) {
      const where = `rollouts/${flag}.json`;
      if (entry instanceof Error) {
        this.warnOnce(`${flag}:${entry.message}`, { file: where, err: entry.message }, 'rollout plan file is invalid; ignored');
        continue;
      }
      let plan: Plan;
      try {
        plan = parsePlan(entry.json);
      } catch (err) {
        this.warnOnce(`${flag}:${entry.text}`, { file: where, err: (err as Error).message }, 'rollout plan file is invalid; ignored');
        continue;
      }
      const hash = planHash(plan);
      this.fileHashes.set(flag, hash);
      const r = this.rollouts.get(flag);
      if (r !== undefined && (r.fileHash === hash || r.planHash === hash)) continue;
      if (r !== undefined && ACTIVE.has(r.state)) {
        this.warnOnce(`${flag}:${hash}:active`, { file: where, flag, state: r.state }, 'rollout plan file changed while a plan runs for its flag: abort that plan to start the file\'s');
        continue;
      }
      try {
        await this.begin(flag, plan, 'file', `file:${where}`);
      } catch (err) {
        this.warnOnce(`${flag}:${hash}:begin`, { file: where, err: (err as Error).message }, 'cannot start the rollout plan file');
      }
    }
  }

  // ---------------------------------------------------------------- helpers

  private evaluate(r: Rollout): Evaluation {
    const gates = r.plan.gates;
    const sample = emptySample(gates);
    const routes = this.opts.routesOf(r.flag);
    if (this.opts.observer && routes.length > 0) {
      const w = this.opts.observer.flagWindow(routes, windowMs(gates));
      sample.candidate = { requests: w.candidate.requests, errors: w.candidate.errors, p95_ms: w.candidate.p95_ms, p99_ms: w.candidate.p99_ms };
      sample.skipped = w.skipped;
      sample.legacy = { requests: w.legacy.requests, errors: w.legacy.errors };
    }
    if (gates.maxShadowMismatch !== undefined && this.shadow) {
      try {
        sample.shadow = this.shadow(r.flag);
      } catch (err) {
        if (!this.shadowFailed) this.logger.error({ err: (err as Error).message }, 'shadow results provider failed (reported once): maxShadowMismatch reads no-data');
        this.shadowFailed = true;
      }
    }
    return evaluateGates(gates, sample);
  }

  private async setFlag(r: Rollout, patch: FlagPatch, actor: { who?: string; reason: string }): Promise<void> {
    r.pending = patch.enabled !== undefined && patch.percentage !== undefined ? { enabled: patch.enabled, percentage: patch.percentage } : undefined;
    try {
      await this.opts.flags.set(r.flag, patch, { source: 'rollout', ...(actor.who !== undefined && { who: actor.who }), reason: actor.reason });
    } finally {
      r.pending = undefined;
    }
  }

  private async transition(r: Rollout, state: RolloutState, reason: string | null, by?: string, event?: HistoryEntry['event'], at = this.clock()): Promise<void> {
    r.state = state;
    r.reason = reason;
    r.since = at;
    r.updatedAt = this.clock();
    this.remember(r, event ?? (state as HistoryEntry['event']), reason, by, at);
    await this.persist(r);
  }

  private remember(r: Rollout, event: HistoryEntry['event'], reason: string | null, by?: string, at = this.clock()): void {
    r.history.push({
      time: new Date(at).toISOString(),
      event,
      step: r.step + 1,
      percentage: this.pct(r, r.step),
      ...(reason !== null && { reason }),
      ...(by !== undefined && { by }),
    });
    if (r.history.length > HISTORY_MAX) r.history.splice(0, r.history.length - HISTORY_MAX);
  }

  private async persist(r: Rollout): Promise<void> {
    if (!this.files) return;
    try {
      await this.files.writeState(r.flag, serialize(r));
    } catch (err) {
      this.logger.error({ flag: r.flag, err: (err as Error).message }, 'cannot write the rollout state file');
      throw err;
    }
  }

  private view(r: Rollout): RolloutView {
    const ev = this.evaluate(r);
    const flag = this.opts.flags.view(r.flag);
    const step = r.plan.steps[r.step] as Plan['steps'][number];
    return {
      flag: r.flag,
      state: r.state,
      step: r.step + 1,
      steps: r.plan.steps.length,
      percentage: step.percentage,
      since: new Date(r.since).toISOString(),
      nextStepAt: r.state === 'running' ? new Date(r.since + holdMs(step)).toISOString() : null,
      reason: r.reason,
      gates: ev.gates,
      window: ev.window,
      verdict: ev.verdict,
      routes: this.opts.routesOf(r.flag),
      flagState: { exists: flag !== undefined, enabled: flag?.enabled ?? false, percentage: flag?.percentage ?? 0 },
      plan: r.plan,
      origin: r.origin,
      startedAt: new Date(r.startedAt).toISOString(),
      startedBy: r.startedBy,
      updatedAt: new Date(r.updatedAt).toISOString(),
      history: r.history,
      time: new Date(this.clock()).toISOString(),
    };
  }

  private pct(r: Rollout, step: number): number {
    return (r.plan.steps[step] as Plan['steps'][number]).percentage;
  }

  private require(flag: string): Rollout {
    const r = this.rollouts.get(flag);
    if (r === undefined) throw new RolloutNotFoundError(`no rollout plan for flag ${JSON.stringify(flag.slice(0, 140))}`);
    return r;
  }

  private warnOnce(key: string, fields: Record<string, unknown>, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.logger.error(fields, msg);
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    return this.queue.run(job);
  }

}

// ---------------------------------------------------------------- state files

const STATE_VERSION = 1;

function serialize(r: Rollout): Record<string, unknown> {
  return {
    version: STATE_VERSION,
    flag: r.flag,
    state: r.state,
    step: r.step + 1,
    since: new Date(r.since).toISOString(),
    reason: r.reason,
    plan: r.plan,
    planHash: r.planHash,
    origin: r.origin,
    fileHash: r.fileHash,
    initial: r.initial,
    startedAt: new Date(r.startedAt).toISOString(),
    startedBy: r.startedBy,
    updatedAt: new Date(r.updatedAt).toISOString(),
    history: r.history,
  };
}

function revive(flag: string, json: unknown): Rollout | Error {
  try {
    if (typeof json !== 'object' || json === null) throw new Error('not a JSON object');
    const o = json as Record<string, unknown>;
    if (o.version !== STATE_VERSION) throw new Error(`unknown version ${JSON.stringify(o.version)}`);
    if (o.flag !== flag) throw new Error(`file says flag ${JSON.stringify(o.flag)}`);
    const plan = parsePlan(o.plan);
    const state = o.state as RolloutState;
    if (!ROLLOUT_STATES.includes(state)) throw new Error(`unknown state ${JSON.stringify(o.state)}`);
    const step = Number(o.step) - 1;
    if (!Number.isInteger(step) || step < 0 || step >= plan.steps.length) throw new Error(`step ${JSON.stringify(o.step)} is not in the plan`);
    const time = (k: string) => {
      const t = Date.parse(String(o[k]));
      if (!Number.isFinite(t)) throw new Error(`${k}: not a time`);
      return t;
    };
    const initial = (o.initial ?? {}) as Record<string, unknown>;
    return {
      flag,
      plan,
      planHash: planHash(plan),
      origin: o.origin === 'file' ? 'file' : 'api',
      fileHash: typeof o.fileHash === 'string' ? o.fileHash : null,
      state,
      step,
      since: time('since'),
      reason: typeof o.reason === 'string' ? o.reason : null,
      initial: { exists: initial.exists === true, enabled: initial.enabled === true, percentage: typeof initial.percentage === 'number' ? initial.percentage : 0 },
      startedAt: time('startedAt'),
      startedBy: typeof o.startedBy === 'string' ? o.startedBy : 'unknown',
      updatedAt: time('updatedAt'),
      history: Array.isArray(o.history) ? (o.history as HistoryEntry[]).slice(-HISTORY_MAX) : [],
    };
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}
