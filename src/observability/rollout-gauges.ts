import { Gauge, type Registry } from 'prom-client';

// The cutover_rollout_* gauges, read from the rollout driver at scrape time (metrics.ts owns the registry).

/** Rollout plans as the cutover_rollout_* gauges read them at scrape time (src/rollout/driver.ts). */
export interface RolloutMetricsSource {
  rolloutMetrics(): Array<{ flag: string; state: string; step: number; gates: Array<{ gate: string; value: number | null; limit: number }> }>;
}

/** The states a rollout plan can be in (cutover_rollout_state has one series per state). */
export const ROLLOUT_STATE_NAMES = ['running', 'paused', 'completed', 'rolled_back', 'aborted'] as const;

export function registerRolloutGauges(registers: Registry[], source: () => RolloutMetricsSource | undefined): void {
  new Gauge({
    name: 'cutover_rollout_step',
    help: "The current step of the flag's rollout plan (1-based).",
    labelNames: ['flag'] as const,
    registers,
    collect() {
      this.reset();
      for (const r of source()?.rolloutMetrics() ?? []) this.set({ flag: r.flag }, r.step);
    },
  });

  new Gauge({
    name: 'cutover_rollout_state',
    help: "1 for the state the flag's rollout plan is in (running, paused, completed, rolled_back, aborted), 0 for the others.",
    labelNames: ['flag', 'state'] as const,
    registers,
    collect() {
      this.reset();
      for (const r of source()?.rolloutMetrics() ?? []) for (const state of ROLLOUT_STATE_NAMES) this.set({ flag: r.flag, state }, r.state === state ? 1 : 0);
    },
  });

  new Gauge({
    name: 'cutover_rollout_gate_value',
    help: "A rollout gate's live value over its window, in the gate's unit: maxErrorRate, maxShadowMismatch a fraction 0..1; maxP95Ms, maxP99Ms milliseconds; maxErrorRateVsLegacy a ratio, candidate error rate / legacy error rate (2 = twice legacy's). Absent while it has none.",
    labelNames: ['flag', 'gate'] as const,
    registers,
    collect() {
      this.reset();
      for (const r of source()?.rolloutMetrics() ?? []) for (const g of r.gates) if (g.value !== null) this.set({ flag: r.flag, gate: g.gate }, g.value);
    },
  });

  new Gauge({
    name: 'cutover_rollout_gate_limit',
    help: "A rollout gate's limit, as in the plan (same unit as cutover_rollout_gate_value).",
    labelNames: ['flag', 'gate'] as const,
    registers,
    collect() {
      this.reset();
      for (const r of source()?.rolloutMetrics() ?? []) for (const g of r.gates) this.set({ flag: r.flag, gate: g.gate }, g.limit);
    },
  });
}
