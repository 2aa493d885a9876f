import { changedRouting, NEW_FLAG, ROUTING_FIELDS, type CompiledFlag, type FlagPatch, type FlagState, type FlagView } from './model.js';
import type { Actor } from './persistence.js';

export type RoutingField = (typeof ROUTING_FIELDS)[number];

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
   * it: true if anything was written there. Throws FlagOwnedError when that is not possible from
   * here (no admin token, fields the source has no place for), FlagSourceError when it failed with
   * nothing left changed, and UnleashChangeError when part or all of it is live anyway
   * (NotSeenHereError: applied for the fleet, not seen here within a bounded wait;
   * SupersededError: `superseded` was aborted). Must not change anything when it throws
   * FlagOwnedError, or what `check` throws.
   */
  apply(name: string, patch: FlagPatch, actor: Actor, opts?: ExternalApplyOptions): Promise<boolean>;
  /** The flag's routing state as the source has it right now (not as last polled); throws FlagSourceError if it cannot tell. */
  read(name: string): Promise<FlagView | undefined>;
  status(): FlagSourceStatus;
  close(): Promise<void>;
}

export interface ExternalApplyOptions {
  /** Called with the source's current state just before anything is changed; throws to refuse. */
  check?: (now: FlagView | undefined) => void;
  /** Called with the source's current state, as read just before anything is changed (before `check`). */
  observe?: (now: FlagView | undefined) => void;
  /** Aborted (reason: RollbackArrived) when a rollback of the flag arrives: stop, and stop waiting to see this change. */
  superseded?: AbortSignal;
}

/** The reason a change under way is told to stop: `live` says, once the rollback settled, whether its "off" is in the source. */
export class RollbackArrived {
  constructor(readonly live: Promise<boolean>) {}
}

/**
 * Whether the rollback that stopped a change is live in the source: one that failed outright
 * overrides nothing, and the change must not say it was overridden. Bounded by the rollback's own
 * HTTP timeouts. A signal aborted for another reason counts as overridden.
 */
export function rollbackLive(superseded: AbortSignal): Promise<boolean> {
  return superseded.reason instanceof RollbackArrived ? superseded.reason.live : Promise.resolve(true);
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

/**
 * Is this change the source reported one this replica is making with `patch` (so not to be audited
 * again as the source's)? Only if every routing field it changed went where the patch sets it:
 * a change made elsewhere meanwhile (another field, another value) is someone else's, even if it
 * arrives in the same poll. Creating a toggle or its strategy also moves `anonymous` (and the
 * percentage to 100 unless the patch sets one), through states of its own.
 */
export function isOwnChange(c: ExternalChange, patch: FlagPatch, creates: boolean): boolean {
  if (c.after === undefined) return false;
  if (c.before === undefined) return creates;
  const changed = changedRouting(c.before, c.after);
  const to = { ...(creates && { percentage: 100 }), ...patch };
  return changed.length > 0 && changed.every((k) => (k === 'anonymous' ? creates : k in to && JSON.stringify(c.after?.[k]) === JSON.stringify(to[k])));
}

/** A routing change this replica has under way in the source. */
export interface OwnChange {
  patch: FlagPatch;
  creates: boolean;
  /** Who made it, with the reason its audit line gives. */
  actor: Actor;
  /** Routing fields of it already audited, on a line of their own (see FleetAudit's gap lines), with their values. */
  audited: Partial<Record<RoutingField, unknown>>;
}

/** Does a change applied from `before` create the toggle, or its strategy (moving fields of its own)? */
export function createsToggle(before: FlagView | undefined): boolean {
  return before === undefined || (before.unleash?.strategies.length ?? 0) === 0;
}

/** Routing changes this replica has under way in the source, per flag: the SDK's report of one is not audited twice. */
export class OwnChanges {
  private readonly byFlag = new Map<string, Set<OwnChange>>();

  /** Registers a change about to be applied from `before`; `release` forgets it. */
  expect(name: string, patch: FlagPatch, before: FlagView | undefined, actor: Actor): { mine: OwnChange; release: () => void } {
    const mine: OwnChange = { patch, creates: createsToggle(before), actor, audited: {} };
    let set = this.byFlag.get(name);
    if (set === undefined) this.byFlag.set(name, (set = new Set()));
    const all = set;
    all.add(mine);
    const release = () => {
      all.delete(mine);
      if (all.size === 0 && this.byFlag.get(name) === all) this.byFlag.delete(name);
    };
    return { mine, release };
  }

  /** The change under way (other than `except`) that the source's move `c` is all of, if any. */
  ownerOf(c: ExternalChange, except?: OwnChange): OwnChange | undefined {
    return [...(this.byFlag.get(c.name) ?? [])].find((m) => m !== except && isOwnChange(c, m.patch, m.creates));
  }

  /**
   * The routing fields of a change the source reported that one under way from here set to just
   * that value: its own line has them. The rest (another field, another value) is someone else's,
   * even in the same poll. All of them when it is the creation of the toggle by one of ours.
   */
  ownedFields(c: ExternalChange): RoutingField[] {
    const set = this.byFlag.get(c.name);
    if (set === undefined || c.after === undefined) return [];
    if (c.before === undefined) return [...set].some((m) => m.creates) ? [...ROUTING_FIELDS] : [];
    return changedRouting(c.before, c.after).filter((k) => [...set].some((m) => isOwnChange({ ...c, after: { ...c.before, [k]: c.after?.[k] } as FlagView }, m.patch, m.creates)));
  }
}
