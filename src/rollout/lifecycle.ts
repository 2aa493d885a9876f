import type { Logger } from '../observability/logger.js';
import type { FlagPatch } from '../flags/model.js';
import type { FlagExpect, FlagStore } from '../flags/store.js';
import type { RolloutFiles } from './files.js';
import type { Evaluation } from './gates.js';
import { ACTIVE, HISTORY_MAX, RolloutConflictError, RolloutNotFoundError, stepPercentage, type HistoryEntry, type Rollout, type RolloutState } from './model.js';
import { holdMs, planHash, type Plan } from './plan.js';
import { reviveRollout, serializeRollout } from './state-file.js';

export interface LifecycleDeps {
  flags: FlagStore;
  logger: Logger;
  /** Without them, plans live in memory only. */
  files: RolloutFiles | undefined;
  clock: () => number;
  evaluate(r: Rollout): Evaluation;
  /** The driver's queue: a write this module starts on its own must not interleave with others. */
  enqueue<T>(job: () => Promise<T>): Promise<T>;
}

/**
 * The plan's life: starting a plan, advancing it step by step while its gates are green, rolling
 * back (or pausing) when one is red, and every other state change, each written through to the
 * flag store (actor source "rollout", audited with the reason) and to the plan's state file.
 * Callers run these one at a time (the driver's queue).
 */
export class RolloutLifecycle {
  readonly rollouts = new Map<string, Rollout>();

  constructor(private readonly deps: LifecycleDeps) {}

  /** Loads persisted plans; a running one resumes, its hold counted from its `since`. */
  async load(): Promise<void> {
    if (!this.deps.files) return;
    for (const [flag, json] of await this.deps.files.loadStates()) {
      const r = json instanceof Error ? json : reviveRollout(flag, json);
      if (r instanceof Error) {
        this.deps.logger.error({ flag, err: r.message }, 'rollout state file is invalid; that plan is ignored');
        continue;
      }
      this.rollouts.set(flag, r);
      if (r.state === 'running') this.checkResumed(r);
    }
  }

  require(flag: string): Rollout {
    const r = this.rollouts.get(flag);
    if (r === undefined) throw new RolloutNotFoundError(`no rollout plan for flag ${JSON.stringify(flag.slice(0, 140))}`);
    return r;
  }

  /** `fileHash`: the flag's plan file as last scanned, if there is one. */
  async begin(flag: string, plan: Plan, origin: 'api' | 'file', who: string, fileHash: string | null): Promise<Rollout> {
    const existing = this.rollouts.get(flag);
    if (existing && ACTIVE.has(existing.state)) {
      throw new RolloutConflictError(
        `a plan for "${flag}" is ${existing.state} (step ${existing.step + 1}/${existing.plan.steps.length}); abort it first (POST /api/v1/rollouts/${flag}/abort)`,
      );
    }
    const before = this.deps.flags.view(flag);
    const now = this.deps.clock();
    const r: Rollout = {
      flag,
      plan,
      planHash: planHash(plan),
      origin,
      fileHash,
      state: 'running',
      step: 0,
      since: now,
      reason: null,
      initial: { exists: before !== undefined, enabled: before?.enabled ?? false, percentage: before?.percentage ?? 0 },
      startedAt: now,
      gatesFrom: now,
      startedBy: who,
      updatedAt: now,
      history: [],
    };
    const pct = stepPercentage(r, 0);
    await this.setFlag(r, { enabled: true, percentage: pct }, { who, reason: `plan started by ${who}: step 1/${plan.steps.length} -> ${pct} %` });
    // The gates judge this plan's traffic only: not the last plan's, which may have rolled it back.
    r.since = r.startedAt = r.gatesFrom = r.updatedAt = this.deps.clock();
    this.rollouts.set(flag, r);
    this.remember(r, 'started', null, who);
    await this.persist(r);
    this.deps.logger.info({ flag, steps: plan.steps.map((s) => s.percentage), origin, by: who }, 'rollout plan started');
    return r;
  }

  async evaluateAndAct(r: Rollout): Promise<void> {
    // The next step's hold counts from this decision, not from when the write finished.
    const decided = this.deps.clock();
    const ev = this.deps.evaluate(r);
    if (ev.verdict === 'red' && ev.failure) return this.fail(r, ev.failure.reason);
    if (ev.verdict !== 'green') return;
    const step = r.plan.steps[r.step] as Plan['steps'][number];
    if (decided < r.since + holdMs(step)) return;
    const held = `step ${r.step + 1} held ${step.hold} with every gate green`;
    if (r.step === r.plan.steps.length - 1) {
      await this.transition(r, 'completed', `${held}: plan complete at ${step.percentage} %`, undefined, 'completed', decided);
      this.deps.logger.info({ flag: r.flag, percentage: step.percentage }, 'rollout plan completed');
      return;
    }
    const next = r.step + 1;
    const pct = stepPercentage(r, next);
    const reason = `step ${next + 1}/${r.plan.steps.length} -> ${pct} % (${held})`;
    try {
      await this.setFlag(r, { enabled: true, percentage: pct }, { reason }, leftAt(r));
    } catch (err) {
      this.deps.logger.error({ flag: r.flag, err: (err as Error).message }, 'rollout could not advance; retrying');
      r.reason = `advancing to ${pct} % failed: ${(err as Error).message}; retrying`;
      return;
    }
    r.step = next;
    r.since = decided;
    r.updatedAt = this.deps.clock();
    r.reason = null;
    this.remember(r, 'advanced', reason, undefined, decided);
    await this.persist(r);
    this.deps.logger.info({ flag: r.flag, step: next + 1, percentage: pct }, 'rollout advanced');
  }

  /** A paused plan runs again: the flag back to its step, the hold and the gates' traffic start over. */
  async resume(r: Rollout, who: string): Promise<void> {
    const pct = stepPercentage(r, r.step);
    await this.setFlag(r, { enabled: true, percentage: pct }, { who, reason: `plan resumed by ${who}: step ${r.step + 1}/${r.plan.steps.length} -> ${pct} %` });
    // What paused it (a red gate, a person's change) is in the window: judging it again would undo the resume.
    r.gatesFrom = this.deps.clock();
    await this.transition(r, 'running', null, who, 'resumed', r.gatesFrom);
  }

  /** `expect`: where the plan left the flag; a change made since (a rollback) is not undone. */
  async setFlag(r: Rollout, patch: FlagPatch, actor: { who?: string; reason: string }, expect?: FlagExpect): Promise<void> {
    r.pending = patch.enabled !== undefined && patch.percentage !== undefined ? { enabled: patch.enabled, percentage: patch.percentage } : undefined;
    try {
      await this.deps.flags.set(r.flag, patch, { source: 'rollout', ...(actor.who !== undefined && { who: actor.who }), reason: actor.reason }, expect);
    } finally {
      r.pending = undefined;
    }
  }

  async transition(r: Rollout, state: RolloutState, reason: string | null, by?: string, event?: HistoryEntry['event'], at = this.deps.clock()): Promise<void> {
    r.state = state;
    r.reason = reason;
    r.since = at;
    r.updatedAt = this.deps.clock();
    this.remember(r, event ?? (state as HistoryEntry['event']), reason, by, at);
    await this.persist(r);
  }

  private async fail(r: Rollout, reason: string): Promise<void> {
    if (r.plan.onFailure === 'pause') {
      this.deps.logger.error({ flag: r.flag, reason }, 'rollout gate failed: plan paused (onFailure: pause), flag unchanged');
      await this.transition(r, 'paused', `${reason}; paused (onFailure: pause)`);
      return;
    }
    const patch = rollbackPatch(r);
    try {
      await this.setFlag(r, patch, { reason }, patch.enabled === true ? leftAt(r) : undefined);
    } catch (err) {
      this.deps.logger.error({ flag: r.flag, reason, err: (err as Error).message }, 'rollout gate failed but the rollback could not be written; retrying');
      r.reason = `${reason}; rolling back failed: ${(err as Error).message}; retrying`;
      return;
    }
    this.deps.logger.error({ flag: r.flag, reason, flagNow: patch }, 'rollout gate failed: flag rolled back');
    await this.transition(r, 'rolled_back', reason);
  }

  /** A plan still running after a restart: its flag must be where the plan left it, else it pauses. */
  private checkResumed(r: Rollout): void {
    const src = this.deps.flags.external?.status();
    if (src && src.servingFrom === 'nothing') return; // nothing known yet: the ticks will tell
    const v = this.deps.flags.view(r.flag);
    const pct = stepPercentage(r, r.step);
    if (v && v.enabled && v.percentage === pct) {
      this.deps.logger.info({ flag: r.flag, step: r.step + 1, percentage: pct, since: new Date(r.since).toISOString() }, 'rollout plan resumed after restart');
      return;
    }
    const found = v === undefined ? 'no such flag' : `${v.enabled ? 'enabled' : 'disabled'} at ${v.percentage} % (last by ${v.updated_by ?? 'unknown'})`;
    r.state = 'paused';
    r.reason = `the flag changed while cutover was stopped: the plan expected it enabled at ${pct} %, found ${found}; plan paused`;
    r.since = r.updatedAt = this.deps.clock();
    this.remember(r, 'paused', r.reason);
    this.deps.logger.warn({ flag: r.flag, reason: r.reason }, 'rollout plan paused at start');
    // persist() has logged a failure; the pause holds in memory and the next write retries it.
    this.deps.enqueue(() => this.persist(r)).catch(() => undefined);
  }

  private remember(r: Rollout, event: HistoryEntry['event'], reason: string | null, by?: string, at = this.deps.clock()): void {
    r.history.push({
      time: new Date(at).toISOString(),
      event,
      step: r.step + 1,
      percentage: stepPercentage(r, r.step),
      ...(reason !== null && { reason }),
      ...(by !== undefined && { by }),
    });
    if (r.history.length > HISTORY_MAX) r.history.splice(0, r.history.length - HISTORY_MAX);
  }

  private async persist(r: Rollout): Promise<void> {
    if (!this.deps.files) return;
    try {
      await this.deps.files.writeState(r.flag, serializeRollout(r));
    } catch (err) {
      this.deps.logger.error({ flag: r.flag, err: (err as Error).message }, 'cannot write the rollout state file');
      throw err;
    }
  }
}

/**
 * Where a running plan left its flag. A step that turns it on is applied only from there: the
 * change event of someone's rollback that pauses the plan comes once that rollback is done, and in
 * fleet mode that can be seconds (Unleash slow, the SDK's poll) after the step was decided.
 */
function leftAt(r: Rollout): FlagExpect {
  return { enabled: true, percentage: stepPercentage(r, r.step) };
}

function rollbackPatch(r: Rollout): FlagPatch {
  const to = r.plan.rollbackTo ?? 'off';
  if (to === 0) return { percentage: 0 };
  if (to === 'previous') {
    if (r.step > 0) return { enabled: true, percentage: stepPercentage(r, r.step - 1) };
    return r.initial.exists ? { enabled: r.initial.enabled, percentage: r.initial.percentage } : { enabled: false };
  }
  return { enabled: false };
}
