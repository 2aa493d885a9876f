import type { Plan } from './plan.js';

export type RolloutState = 'running' | 'paused' | 'completed' | 'rolled_back' | 'aborted';
export const ROLLOUT_STATES: readonly RolloutState[] = ['running', 'paused', 'completed', 'rolled_back', 'aborted'];

/** A plan in these states still owns its flag: another plan for it waits until this one is aborted. */
export const ACTIVE: ReadonlySet<RolloutState> = new Set(['running', 'paused']);

export const HISTORY_MAX = 100;

export interface HistoryEntry {
  time: string;
  event: 'started' | 'advanced' | 'completed' | 'rolled_back' | 'paused' | 'resumed' | 'aborted';
  step: number;
  percentage: number;
  reason?: string;
  by?: string;
}

/** One flag's plan and where it is; the driver's own record (the API shows a RolloutView). */
export interface Rollout {
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
  /**
   * The gates read only traffic from this time on (ms): when the plan started or was last
   * resumed. Not reset by a step raise: the earlier step's traffic is the same candidate's.
   */
  gatesFrom: number;
  startedBy: string;
  updatedAt: number;
  history: HistoryEntry[];
  /** A flag write of ours in flight (fleet mode sees it come back from Unleash as a change). */
  pending?: { enabled: boolean; percentage: number } | undefined;
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

/** The percentage of a step (0-based) of the rollout's plan. */
export function stepPercentage(r: Rollout, step: number): number {
  return (r.plan.steps[step] as Plan['steps'][number]).percentage;
}

/** The tail the API view and the state file share, in the same order, so both read alike. */
export function timeline(r: Rollout): { startedAt: string; startedBy: string; updatedAt: string; history: HistoryEntry[] } {
  return {
    startedAt: new Date(r.startedAt).toISOString(),
    startedBy: r.startedBy,
    updatedAt: new Date(r.updatedAt).toISOString(),
    history: r.history,
  };
}
