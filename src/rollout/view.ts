import type { FlagView } from '../flags/model.js';
import type { Evaluation, GateResult } from './gates.js';
import { stepPercentage, timeline, type HistoryEntry, type Rollout, type RolloutState } from './model.js';
import { holdMs, type GateName, type Plan } from './plan.js';

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
  /** `from`: the gates count no traffic before it (the plan's start or last resume). */
  window: Evaluation['window'] & { from: string };
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

export function rolloutView(r: Rollout, ev: Evaluation, flag: FlagView | undefined, routes: string[], now: number): RolloutView {
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
    window: { ...ev.window, from: new Date(r.gatesFrom).toISOString() },
    verdict: ev.verdict,
    routes,
    flagState: { exists: flag !== undefined, enabled: flag?.enabled ?? false, percentage: flag?.percentage ?? 0 },
    plan: r.plan,
    origin: r.origin,
    ...timeline(r),
    time: new Date(now).toISOString(),
  };
}

/** One rollout as the cutover_rollout_* gauges read it. */
export function rolloutGauges(r: Rollout, ev: Evaluation) {
  return {
    flag: r.flag,
    state: r.state,
    step: r.step + 1,
    percentage: stepPercentage(r, r.step),
    gates: Object.entries(ev.gates).map(([gate, g]) => ({ gate, value: g.value, limit: g.limit })),
  };
}
