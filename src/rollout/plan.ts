import { createHash } from 'node:crypto';
import { z } from 'zod';
import { formatKeyPath } from '../config/schema.js';
import { formatDuration, parseDuration } from '../util/duration.js';

/**
 * A rollout plan, as PUT /api/v1/rollouts/:flag takes it (and as a plan file holds it):
 *
 *   {"steps": [{"percentage": 25, "hold": "3d"}, {"percentage": 50, "hold": "3d"}, ...],
 *    "gates": {"maxErrorRate": 0.001, "maxP95Ms": 50, "maxP99Ms": 200,
 *              "maxErrorRateVsLegacy": 2.0, "maxShadowMismatch": 0.005, "minRequests": 100},
 *    "onFailure": "rollback"}
 *
 * Optional extras: gates.window (how far back the gates look, default "1m", at most "5m") and
 * rollbackTo ("off" = {"enabled": false}, the default; 0 = percentage 0; "previous" = the
 * previous step's percentage, or the flag as it was before the plan when on the first step).
 */

/** The longest gate window: the observer's coarse ring holds 5 minutes. */
export const MAX_WINDOW_MS = 300_000;
export const DEFAULT_WINDOW = '1m';
export const DEFAULT_MIN_REQUESTS = 100;
const MAX_HOLD_MS = 366 * 86_400_000;

function duration(what: string, min: number, max: number) {
  return z.string().superRefine((v, ctx) => {
    const ms = parseDuration(v);
    if (ms === undefined) ctx.addIssue({ code: 'custom', message: `${what} must be a duration like "500ms", "30s", "5m", "4h" or "3d"` });
    else if (ms < min || ms > max) ctx.addIssue({ code: 'custom', message: `${what} must be between ${formatDuration(min)} and ${formatDuration(max)}` });
  });
}

const stepSchema = z.strictObject({
  percentage: z.number().int('must be a whole number').min(1).max(100),
  hold: duration('hold', 0, MAX_HOLD_MS),
});

const rate = z.number().min(0).max(1);

export const gatesSchema = z.strictObject({
  /** Candidate errors / candidate requests in the window. */
  maxErrorRate: rate.optional(),
  /** Candidate attempt latency percentiles in the window, ms. */
  maxP95Ms: z.number().positive().max(600_000).optional(),
  maxP99Ms: z.number().positive().max(600_000).optional(),
  /** Candidate error rate / legacy error rate (legacy with no errors counts as one). */
  maxErrorRateVsLegacy: z.number().positive().max(1_000_000).optional(),
  /** Shadow comparisons that differed / compared (needs a shadow provider; else "no-data"). */
  maxShadowMismatch: rate.optional(),
  /** Fewer candidate requests than this in the window: the gates wait (no advance, no rollback). */
  minRequests: z.number().int('must be a whole number').min(1).max(10_000_000).default(DEFAULT_MIN_REQUESTS),
  /** How far back the gates look. */
  window: duration('window', 1000, MAX_WINDOW_MS).default(DEFAULT_WINDOW),
});

export const planSchema = z
  .strictObject({
    steps: z.array(stepSchema).min(1).max(20),
    gates: gatesSchema,
    onFailure: z.enum(['rollback', 'pause']).default('rollback'),
    rollbackTo: z.union([z.literal('off'), z.literal(0), z.literal('previous')]).optional(),
  })
  .superRefine((p, ctx) => {
    for (let i = 1; i < p.steps.length; i++) {
      const prev = (p.steps[i - 1] as { percentage: number }).percentage;
      const cur = (p.steps[i] as { percentage: number }).percentage;
      if (cur <= prev) ctx.addIssue({ code: 'custom', path: ['steps', i, 'percentage'], message: `must be greater than the previous step's ${prev} (percentages strictly increase)` });
    }
    if (p.rollbackTo !== undefined && p.onFailure !== 'rollback') {
      ctx.addIssue({ code: 'custom', path: ['rollbackTo'], message: 'only applies with "onFailure": "rollback"' });
    }
  });

export type Plan = z.output<typeof planSchema>;
export type Gates = Plan['gates'];
export type GateName = 'maxErrorRate' | 'maxP95Ms' | 'maxP99Ms' | 'maxErrorRateVsLegacy' | 'maxShadowMismatch';
/** The gates in the order they are evaluated and shown. */
export const GATE_NAMES: readonly GateName[] = ['maxErrorRate', 'maxP95Ms', 'maxP99Ms', 'maxErrorRateVsLegacy', 'maxShadowMismatch'];

export class PlanValidationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlanValidationError';
  }
}

/** Validates an untrusted plan; throws PlanValidationError naming every problem. */
export function parsePlan(input: unknown): Plan {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new PlanValidationError('body must be a JSON object: {"steps": [{"percentage": 25, "hold": "3d"}, ...], "gates": {...}, "onFailure": "rollback"}');
  }
  const r = planSchema.safeParse(input);
  if (!r.success) {
    throw new PlanValidationError(
      r.error.issues
        .map((i) =>
          i.code === 'unrecognized_keys'
            ? `${i.path.length ? formatKeyPath(i.path) + ': ' : ''}unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => JSON.stringify(k.slice(0, 64))).join(', ')}`
            : `${formatKeyPath(i.path)}: ${i.message}`,
        )
        .join('; '),
    );
  }
  return r.data;
}

export function holdMs(step: { hold: string }): number {
  return parseDuration(step.hold) ?? 0;
}

export function windowMs(gates: Gates): number {
  return parseDuration(gates.window) ?? 60_000;
}

/** A stable fingerprint of a plan (plan files are started once per distinct content). */
export function planHash(plan: Plan): string {
  return createHash('sha256').update(canonical(plan)).digest('hex').slice(0, 16);
}

function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}
