import { GATE_NAMES, windowMs, type GateName, type Gates } from './plan.js';

/**
 * Gate evaluation: pure arithmetic over one sample of the live windows.
 *
 *   ok       the value is within its limit over a window that had >= minRequests
 *   failing  the value is over its limit over a window that had >= minRequests: roll back
 *   waiting  too few requests (or shadow comparisons) in the window to judge: the step neither
 *            advances nor fails
 *   no-data  the gate has nothing to judge by (no shadow results; no legacy traffic to compare
 *            with; no candidate attempt to time): it does not block and never fails
 */
export type GateState = 'ok' | 'failing' | 'waiting' | 'no-data';

export interface GateResult {
  /** The live value (null when there is nothing to compute it from). */
  value: number | null;
  limit: number;
  state: GateState;
  /** true: ok; false: failing; null: waiting or no-data. */
  ok: boolean | null;
  /** What the value is made of, for people ("3 errors in 412 candidate requests"). */
  detail: string;
}

/** Shadow comparison counts over a recent window for the routes of one flag. */
export interface ShadowCounts {
  compared: number;
  mismatched: number;
  windowSeconds: number;
}

export interface GateSample {
  windowSeconds: number;
  /**
   * How long ago the gates began counting (the plan's start or last resume), in whole seconds.
   * A plan younger than a window has only that much traffic in it, and its details say so.
   */
  since?: { seconds: number; event: 'started' | 'resumed' };
  /** The candidate's attempts on the flag's routes (failures masked by fallback included). */
  candidate: { requests: number; errors: number; p95_ms: number | null; p99_ms: number | null };
  /** Requests meant for the candidate that skipped it as ejected / probed down: counted as errors. */
  skipped: number;
  legacy: { requests: number; errors: number };
  shadow: ShadowCounts | undefined;
}

export interface Evaluation {
  gates: Partial<Record<GateName, GateResult>>;
  window: { seconds: number; candidateRequests: number; candidateErrors: number; skipped: number; legacyRequests: number; legacyErrors: number; minRequests: number };
  /** red: some gate failed; waiting: too little traffic or a gate waits; green: advance when the hold is over. */
  verdict: 'green' | 'red' | 'waiting';
  /** The first failing gate, as the audit reason: "maxErrorRate 0.0412 > 0.001 (...)". */
  failure?: { gate: GateName; value: number; limit: number; reason: string };
}

export function evaluateGates(gates: Gates, s: GateSample): Evaluation {
  const min = gates.minRequests;
  const requests = s.candidate.requests + s.skipped;
  const errors = s.candidate.errors + s.skipped;
  const enough = requests >= min;
  const w = span(s.windowSeconds, s.since);
  const errorRate = requests > 0 ? errors / requests : null;
  const skippedNote = s.skipped > 0 ? `, ${s.skipped} of them skipped as unhealthy` : '';
  const out: Partial<Record<GateName, GateResult>> = {};
  const judge = (limit: number, value: number | null, detail: string, ready = enough): GateResult => {
    if (value === null) return { value, limit, state: ready ? 'no-data' : 'waiting', ok: null, detail };
    if (!ready) return { value: round(value), limit, state: 'waiting', ok: null, detail: `${detail}; waiting for ${min} requests` };
    const ok = value <= limit;
    return { value: round(value), limit, state: ok ? 'ok' : 'failing', ok, detail };
  };

  if (gates.maxErrorRate !== undefined) {
    out.maxErrorRate = judge(gates.maxErrorRate, errorRate, `${errors} errors in ${requests} candidate requests${skippedNote}, ${w}`);
  }
  if (gates.maxP95Ms !== undefined) {
    out.maxP95Ms = judge(gates.maxP95Ms, s.candidate.p95_ms, `candidate p95 over ${s.candidate.requests} attempts, ${w}`);
  }
  if (gates.maxP99Ms !== undefined) {
    out.maxP99Ms = judge(gates.maxP99Ms, s.candidate.p99_ms, `candidate p99 over ${s.candidate.requests} attempts, ${w}`);
  }
  if (gates.maxErrorRateVsLegacy !== undefined) {
    const limit = gates.maxErrorRateVsLegacy;
    if (s.legacy.requests === 0) {
      out.maxErrorRateVsLegacy = { value: null, limit, state: 'no-data', ok: null, detail: `no legacy requests to compare with, ${w}` };
    } else {
      // Legacy with no errors counts as one: no division by zero, and a candidate is compared
      // with the best legacy has been shown to do on this much traffic.
      const legacyRate = Math.max(s.legacy.errors, 1) / s.legacy.requests;
      const value = errorRate === null ? null : errorRate / legacyRate;
      const detail = `candidate ${pct(errorRate)} vs legacy ${pct(s.legacy.errors / s.legacy.requests)} (${s.legacy.errors} errors in ${s.legacy.requests}${s.legacy.errors === 0 ? ', counted as 1' : ''}), ${w}`;
      out.maxErrorRateVsLegacy = judge(limit, value, detail);
    }
  }
  if (gates.maxShadowMismatch !== undefined) {
    const limit = gates.maxShadowMismatch;
    const sh = s.shadow;
    if (sh === undefined || sh.compared === 0) {
      out.maxShadowMismatch = { value: null, limit, state: 'no-data', ok: null, detail: sh === undefined ? 'no shadow results for this flag' : `no shadow comparisons, ${span(sh.windowSeconds, s.since)}` };
    } else {
      const detail = `${sh.mismatched} of ${sh.compared} shadow comparisons differed, ${span(sh.windowSeconds, s.since)}`;
      out.maxShadowMismatch = judge(limit, sh.mismatched / sh.compared, detail, sh.compared >= min);
    }
  }

  const window = {
    seconds: s.windowSeconds,
    candidateRequests: requests,
    candidateErrors: errors,
    skipped: s.skipped,
    legacyRequests: s.legacy.requests,
    legacyErrors: s.legacy.errors,
    minRequests: min,
  };
  for (const name of GATE_NAMES) {
    const g = out[name];
    if (g?.state === 'failing') {
      const value = g.value as number;
      return { gates: out, window, verdict: 'red', failure: { gate: name, value, limit: g.limit, reason: `${name} ${fmt(value)} > ${fmt(g.limit)} (${g.detail})` } };
    }
  }
  const waiting = !enough || Object.values(out).some((g) => g.state === 'waiting');
  return { gates: out, window, verdict: waiting ? 'waiting' : 'green' };
}

/** An empty sample (no traffic yet), e.g. for a flag with no route. */
export function emptySample(gates: Gates): GateSample {
  return {
    windowSeconds: Math.round(windowMs(gates) / 1000),
    candidate: { requests: 0, errors: 0, p95_ms: null, p99_ms: null },
    skipped: 0,
    legacy: { requests: 0, errors: 0 },
    shadow: undefined,
  };
}

/** The time a gate's numbers cover: "last 60 s", or "last 12 s, since the plan started". */
function span(windowSeconds: number, since: GateSample['since']): string {
  return since !== undefined && since.seconds < windowSeconds ? `last ${since.seconds} s, since the plan ${since.event}` : `last ${windowSeconds} s`;
}

/** Four significant digits: 0.04123 -> "0.04123", 2.5 -> "2.5". */
export function fmt(v: number): string {
  return String(Number(v.toPrecision(4)));
}

function round(v: number): number {
  return Number.isFinite(v) ? Number(v.toPrecision(6)) : v;
}

function pct(v: number | null): string {
  return v === null ? 'n/a' : `${fmt(v * 100)} %`;
}
