import { HISTORY_MAX, ROLLOUT_STATES, timeline, type HistoryEntry, type Rollout, type RolloutState } from './model.js';
import { parsePlan, planHash } from './plan.js';

/**
 * A rollout as its state file holds it (`<flagsDir>/.rollouts/<flag>.json`), and back. A file
 * that does not revive comes back as an Error, so its plan is ignored rather than run on bad data.
 */

const STATE_VERSION = 1;

export function serializeRollout(r: Rollout): Record<string, unknown> {
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
    gatesFrom: new Date(r.gatesFrom).toISOString(),
    ...timeline(r),
  };
}

export function reviveRollout(flag: string, json: unknown): Rollout | Error {
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
    const startedAt = time('startedAt');
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
      startedAt,
      // Files written before gatesFrom existed: the plan's start (live windows are empty after a restart anyway).
      gatesFrom: o.gatesFrom === undefined ? startedAt : time('gatesFrom'),
      startedBy: typeof o.startedBy === 'string' ? o.startedBy : 'unknown',
      updatedAt: time('updatedAt'),
      history: Array.isArray(o.history) ? (o.history as HistoryEntry[]).slice(-HISTORY_MAX) : [],
    };
  } catch (err) {
    return err instanceof Error ? err : new Error(String(err));
  }
}
