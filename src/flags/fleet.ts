import { NEW_FLAG, ROUTING_FIELDS, type CompiledFlag, type FlagPatch, type FlagState, type FlagView } from './model.js';
import type { Actor } from './persistence.js';

/** How an external flag source is doing, for the admin API, logs and metrics. */
export interface FlagSourceStatus {
  kind: string;
  /** True while the last fetch succeeded. */
  up: boolean;
  /** When the last fetch succeeded (ms since the epoch), if ever. */
  lastSuccessAt: number | undefined;
  lastFailureAt: number | undefined;
  lastError: string | undefined;
  /** What routing runs on now: live data, the bootstrap file (never reached yet), or nothing. */
  servingFrom: 'source' | 'bootstrap' | 'nothing';
  flags: number;
}

/** A change the source saw: the routing part of the state before and after (undefined: absent). */
export interface ExternalChange {
  name: string;
  before: FlagView | undefined;
  after: FlagView | undefined;
}

/**
 * A flag system outside cutover that owns routing flags: Unleash in fleet mode
 * (src/flags/unleash-source.ts). It owns every flag name: its SDK decides per user through
 * `CompiledFlag.evaluate`, and local files only add cutover's own per-replica settings
 * (auto-disable, health_check_interval, strict_validation, description).
 */
export interface ExternalFlags {
  readonly kind: string;
  /** Loads the last good state and connects; `onChange` is called for every later change. */
  start(onChange: (changes: ExternalChange[]) => void): Promise<void>;
  /** Hot path: the compiled flag, or undefined when the source has no such flag. */
  compiled(name: string): CompiledFlag | undefined;
  /** The routing part of a flag's view (enabled, percentage, ... plus source info). */
  view(name: string): FlagView | undefined;
  names(): string[];
  /**
   * Applies the routing part of a patch in the source and resolves once this replica routes by
   * it. Throws FlagOwnedError when that is not possible from here (no admin token, fields the
   * source has no place for), FlagSourceError when it failed with nothing left changed, and
   * UnleashChangeError when part or all of it is live anyway (NotSeenHereError: applied for the
   * fleet, not seen here within a bounded wait). Must not change anything when it throws
   * FlagOwnedError.
   */
  apply(name: string, patch: FlagPatch, actor: Actor): Promise<void>;
  status(): FlagSourceStatus;
  close(): Promise<void>;
}

/** A patch in fleet mode: the routing fields go to the source, the rest to the local file. */
export function splitPatch(patch: FlagPatch): { routing: FlagPatch; local: FlagPatch } {
  const routingParts: Record<string, unknown> = {};
  const localParts: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(patch)) {
    if (v !== undefined) ((ROUTING_FIELDS as readonly string[]).includes(k) ? routingParts : localParts)[k] = v;
  }
  return { routing: routingParts as FlagPatch, local: localParts as FlagPatch };
}

/** The routing flag as the hot path sees it: the source's decision plus local settings. */
export function withLocalSettings(ext: CompiledFlag, local: FlagState | undefined): CompiledFlag {
  return local === undefined
    ? ext
    : {
        ...ext,
        autoDisableAfter: ext.enabled && local.auto_disable_on_failure ? local.auto_disable_after : 0,
        healthIntervalMs: local.health_check_interval !== undefined ? local.health_check_interval * 1000 : undefined,
      };
}

/** A flag as the API shows it in fleet mode: the source's routing plus the local file's settings. */
export function fleetView(external: ExternalFlags, name: string, local: FlagState | undefined): FlagView | undefined {
  return fleetViewOf(external.kind, external.view(name), name, local);
}

/** fleetView over a given routing view of the source (undefined: the source has no such flag). */
export function fleetViewOf(kind: string, ext: FlagView | undefined, name: string, local: FlagState | undefined): FlagView | undefined {
  if (ext === undefined) {
    if (local === undefined) return undefined;
    return {
      name,
      ...local,
      enabled: false,
      source: 'file',
      ignored: `not in ${kind}: in fleet mode only ${kind} routes, so routes using this flag go to legacy${local.enabled ? ' (the file says enabled: true)' : ''}`,
    };
  }
  const own = local ?? NEW_FLAG;
  return {
    ...ext,
    auto_disable_on_failure: own.auto_disable_on_failure,
    auto_disable_after: own.auto_disable_after,
    ...(own.health_check_interval !== undefined && { health_check_interval: own.health_check_interval }),
    strict_validation: own.strict_validation,
    ...(own.description !== undefined && { description: own.description }),
  };
}
