import { z } from 'zod';
import { NAME_RE, formatKeyPath } from '../config/schema.js';

const userId = z.string().min(1).max(512);

const fields = {
  enabled: z.boolean(),
  percentage: z.number().int('must be a whole number').min(0).max(100),
  /** Pilot users always sent to the candidate (when enabled). */
  cohort: z.array(userId).max(100_000),
  /** Users always kept on legacy. */
  exclude: z.array(userId).max(100_000),
  /** Requests with no user id: legacy (default), candidate, or a random bucket per request. */
  anonymous: z.enum(['legacy', 'candidate', 'random']),
  auto_disable_on_failure: z.boolean(),
  /** Consecutive candidate failures that disable the flag when auto_disable_on_failure is on. */
  auto_disable_after: z.number().int().min(1).max(10_000),
  /** Seconds between health probes of this flag's candidate. */
  health_check_interval: z.number().positive().max(86_400),
  strict_validation: z.boolean(),
  description: z.string().max(2000),
};

/** What an admin call or library caller may change: any subset of the fields. */
export const flagPatchSchema = z.strictObject({
  enabled: fields.enabled.optional(),
  percentage: fields.percentage.optional(),
  cohort: fields.cohort.optional(),
  exclude: fields.exclude.optional(),
  anonymous: fields.anonymous.optional(),
  auto_disable_on_failure: fields.auto_disable_on_failure.optional(),
  auto_disable_after: fields.auto_disable_after.optional(),
  health_check_interval: fields.health_check_interval.optional(),
  strict_validation: fields.strict_validation.optional(),
  description: fields.description.optional(),
});

/** A flag file on disk: the full state. Hand-written files may leave out anything but enabled. */
export const flagFileSchema = z.strictObject({
  name: z.string().optional(),
  enabled: fields.enabled,
  percentage: fields.percentage.default(100),
  cohort: fields.cohort.default([]),
  exclude: fields.exclude.default([]),
  anonymous: fields.anonymous.default('legacy'),
  auto_disable_on_failure: fields.auto_disable_on_failure.default(false),
  auto_disable_after: fields.auto_disable_after.default(3),
  health_check_interval: fields.health_check_interval.optional(),
  strict_validation: fields.strict_validation.default(false),
  description: fields.description.optional(),
  updated_at: z.string().optional(),
  updated_by: z.string().optional(),
});

export type FlagPatch = z.output<typeof flagPatchSchema>;
export type FlagState = Omit<z.output<typeof flagFileSchema>, 'name'>;
/** The state as the API shows it: the name first, then every field. */
export type FlagView = { name: string } & FlagState & FlagSourceInfo;

/** What the API adds for flags in fleet mode (src/flags/unleash-source.ts); absent otherwise. */
export interface FlagSourceInfo {
  /** Who decides the routing: "unleash", or "file" for a local file that does not route in fleet mode. */
  source?: 'unleash' | 'file';
  /** The toggle as Unleash has it, in the environment of cutover's API token. */
  unleash?: UnleashToggleInfo;
  /** Why a local flag file has no effect on routing (fleet mode: only Unleash routes). */
  ignored?: string;
}

export interface UnleashToggleInfo {
  project: string | undefined;
  type: string | undefined;
  stale: boolean;
  /** The strategies that decide, in order (any one on = candidate), as the SDK evaluates them. */
  strategies: Array<{ name: string; rollout?: number; stickiness?: string; groupId?: string; constraints: number; segments: number }>;
  /** False when `percentage` does not tell the whole story (constraints, several or other strategies). */
  percentage_exact: boolean;
}

/**
 * A flag created by a patch starts disabled at 100%: like an Unleash toggle with its default
 * strategy, "enabled" alone means everyone, so the runbooks' `{"enabled": true, ...}` for a new
 * write flag does what it says. Set a percentage in the same call to start smaller.
 */
export const NEW_FLAG: FlagState = Object.freeze({
  enabled: false,
  percentage: 100,
  cohort: [],
  exclude: [],
  anonymous: 'legacy',
  auto_disable_on_failure: false,
  auto_disable_after: 3,
  strict_validation: false,
}) as FlagState;

/** The hot-path form of a flag: sets instead of arrays, and the groupId for bucketing. */
export interface CompiledFlag {
  readonly name: string;
  readonly groupId: string;
  readonly enabled: boolean;
  readonly percentage: number;
  readonly cohort: ReadonlySet<string> | undefined;
  readonly exclude: ReadonlySet<string> | undefined;
  readonly anonymous: 'legacy' | 'candidate' | 'random';
  /** Consecutive candidate failures that disable the flag; 0 when auto-disable is off. */
  readonly autoDisableAfter: number;
  /** Probe interval for this flag's candidate, ms (health_check_interval), or undefined. */
  readonly healthIntervalMs: number | undefined;
  /**
   * Set for flags owned by an external flag system (Unleash): its SDK decides per user, so its
   * constraints and strategies apply. `enabled`/`percentage` are then informational.
   */
  readonly evaluate?: (userId: string | undefined) => boolean;
}

export function compileFlag(name: string, s: FlagState): CompiledFlag {
  return {
    name,
    groupId: name,
    enabled: s.enabled,
    percentage: s.percentage,
    cohort: s.cohort.length ? new Set(s.cohort) : undefined,
    exclude: s.exclude.length ? new Set(s.exclude) : undefined,
    anonymous: s.anonymous,
    autoDisableAfter: s.enabled && s.auto_disable_on_failure ? s.auto_disable_after : 0,
    healthIntervalMs: s.health_check_interval !== undefined ? s.health_check_interval * 1000 : undefined,
  };
}

export class FlagValidationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlagValidationError';
  }
}

export function assertFlagName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new FlagValidationError(
      `invalid flag name ${JSON.stringify(name.slice(0, 140))}: use 1-128 letters, digits, '_', '.', '-', starting with a letter or digit`,
    );
  }
}

/** Validates an untrusted patch; throws FlagValidationError naming every bad field. */
export function parsePatch(input: unknown): FlagPatch {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new FlagValidationError('body must be a JSON object, e.g. {"enabled": true, "percentage": 25}');
  }
  const r = flagPatchSchema.safeParse(input);
  if (!r.success) throw new FlagValidationError(describeIssues(r.error.issues));
  return r.data;
}

export function parseFlagFile(input: unknown, name: string): FlagState {
  const r = flagFileSchema.safeParse(input);
  if (!r.success) throw new FlagValidationError(describeIssues(r.error.issues));
  const { name: inFile, ...state } = r.data;
  if (inFile !== undefined && inFile !== name) {
    throw new FlagValidationError(`name: file says "${inFile}" but the file is named for "${name}"`);
  }
  return state;
}

function describeIssues(issues: ReadonlyArray<{ path: PropertyKey[]; message: string; code: string; keys?: string[] }>): string {
  return issues
    .map((i) =>
      i.code === 'unrecognized_keys' && i.keys
        ? `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => JSON.stringify(k.slice(0, 64))).join(', ')}`
        : `${formatKeyPath(i.path)}: ${i.message}`,
    )
    .join('; ');
}

/** The next state for a patch; the patch wins field by field. */
export function applyPatch(before: FlagState | undefined, patch: FlagPatch): FlagState {
  const next: FlagState = { ...(before ?? NEW_FLAG) };
  for (const [k, v] of Object.entries(patch)) {
    if (v !== undefined) (next as Record<string, unknown>)[k] = v;
  }
  return next;
}

export function sameState(a: FlagState | undefined, b: FlagState | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return stableJson(withoutMeta(a)) === stableJson(withoutMeta(b));
}

function withoutMeta(s: FlagState): Omit<FlagState, 'updated_at' | 'updated_by'> {
  const { updated_at: _a, updated_by: _b, ...rest } = s;
  return rest;
}

function stableJson(v: object): string {
  return JSON.stringify(v, Object.keys(v).sort());
}

/** The fields that decide who goes where; in fleet mode Unleash owns them. */
export const ROUTING_FIELDS = ['enabled', 'percentage', 'cohort', 'exclude', 'anonymous'] as const;

/** The routing fields that differ between two states (a missing state differs in all). */
export function changedRouting(a: FlagState | undefined, b: FlagState | undefined): Array<(typeof ROUTING_FIELDS)[number]> {
  return ROUTING_FIELDS.filter((k) => JSON.stringify(a?.[k]) !== JSON.stringify(b?.[k]));
}

/**
 * An automatic change (a rollout step) that would turn a flag on over a routing change it had
 * not seen (a hand or GitOps edit just read from the files): refused, so the edit stands.
 */
export class FlagConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlagConflictError';
  }
}

/**
 * A change to a flag that its owner (Unleash, in fleet mode) does not allow from here: the admin
 * API answers 409 with the message, which says where to make the change instead.
 */
export class FlagOwnedError extends Error {
  constructor(
    message: string,
    readonly owner: string,
  ) {
    super(message);
    this.name = 'FlagOwnedError';
  }
}

/**
 * Fleet mode: a change to a toggle cutover does not use (no route's flag, no local file), most
 * likely another application's in the same Unleash environment: refused before anything is
 * changed, so an admin call here cannot switch off someone else's feature for the whole company.
 */
export class FlagNotUsedError extends FlagOwnedError {
  constructor(message: string, owner: string) {
    super(message, owner);
    this.name = 'FlagNotUsedError';
  }
}

/** The flag's owner could not be reached or refused the change (admin API: 502). */
export class FlagSourceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlagSourceError';
  }
}

/**
 * Unleash failed part-way through a change. `applied`: the routing fields live in Unleash because
 * of this call (undefined: nothing that routes changed); the message says what was undone and
 * what is left; `note` says it in a few words for the audit log.
 */
export class UnleashChangeError extends FlagSourceError {
  constructor(
    message: string,
    readonly applied: Pick<FlagPatch, 'enabled' | 'percentage'> | undefined,
    readonly note: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** The change is live in Unleash for the fleet, but this replica's SDK has not seen it in time (admin API: 504). */
export class NotSeenHereError extends UnleashChangeError {}

/**
 * A rollback (`enabled: false`) of the flag arrived while this change waited or ran: it is not
 * applied after it (admin API: 409). `applied`: what of it reached Unleash (then overridden);
 * `after`: the toggle as read back right after its calls, for the audit line.
 */
export class SupersededError extends UnleashChangeError {
  constructor(message: string, applied: Pick<FlagPatch, 'enabled' | 'percentage'> | undefined, note: string, readonly after?: Pick<FlagPatch, 'enabled' | 'percentage'>) {
    super(message, applied, note);
  }
}

/**
 * A routing change is live in the source for the whole fleet, then this replica failed to audit it
 * or to write the call's per-replica settings (admin API: 500, the message says what is live).
 */
export class AppliedThenFailedError extends Error {
  constructor(
    message: string,
    readonly applied: Pick<FlagPatch, 'enabled' | 'percentage'>,
  ) {
    super(message);
    this.name = 'AppliedThenFailedError';
  }
}
