import type { SerialQueue } from '../util/serial-queue.js';
import type { Logger } from '../observability/logger.js';
import { AppliedThenFailedError, applyPatch, FlagNotUsedError, NEW_FLAG, sameState, SupersededError, UnleashChangeError, type FlagPatch, type FlagState, type FlagView } from './model.js';
import { fleetViewOf, OwnChanges, rollbackLive, splitPatch, type ExternalApplyOptions, type ExternalFlags } from './fleet.js';
import { actorLabel, type Actor, type FlagChange, type FlagPersistence } from './persistence.js';
import { checkExpect, FlagPreconditionError, type FlagExpect } from './expect.js';
import { FlagLanes } from './flag-lanes.js';
import { FleetAudit, type Reading } from './fleet-audit.js';

/**
 * What the fleet-mode change path shares with FlagStore. Local writes and audit lines must go
 * through the store's one queue, in order with file rescans, so they are the store's, not copies.
 */
export interface FleetHost {
  readonly queue: SerialQueue;
  /** The local files' settings, by flag name. */
  readonly states: ReadonlyMap<string, FlagState>;
  view(name: string): FlagView | undefined;
  /** Is this one of cutover's flags (a route's, or one with a local file)? */
  uses(name: string): boolean;
  writeLocal(name: string, before: FlagState | undefined, after: FlagState, actor: Actor): Promise<void>;
  /** Makes the hot path route by the source's current decision for this flag. */
  recompose(name: string): void;
  emitChange(change: FlagChange): void;
}

/**
 * Fleet mode: routing flags come from an external source (Unleash) shared by every replica;
 * the local files keep only cutover's own per-replica settings.
 */
export class FleetChanges {
  /** Per flag, the order of changes that call the source (see set). */
  private readonly lanes = new FlagLanes();
  /** Routing changes under way from here: the source's report of them is not a change made elsewhere. */
  private readonly own = new OwnChanges();
  /** The audit log's lines for routing changes, one before/after chain per flag. */
  private readonly auditLog: FleetAudit;

  constructor(
    private readonly external: ExternalFlags,
    private readonly host: FleetHost,
    private readonly logger: Logger,
    private readonly persistence?: FlagPersistence,
  ) {
    this.auditLog = new FleetAudit(external, host, this.own, logger, persistence);
  }

  /** Runs after the local files are loaded, so the hot path starts with their settings applied. */
  async start(): Promise<void> {
    await this.external.start((changes) => {
      for (const c of changes) this.host.recompose(c.name);
      this.auditLog.polled(changes);
    });
    this.auditLog.start();
    for (const name of this.external.names()) this.host.recompose(name);
    for (const [name, s] of this.host.states) {
      if (!this.external.view(name) && s.enabled) {
        this.logger.warn({ flag: name }, `flag file says enabled but ${this.external.kind} has no such flag: in fleet mode only ${this.external.kind} routes, so its routes go to legacy`);
      }
    }
  }

  /**
   * The routing fields go to the source (which refuses with FlagOwnedError before changing
   * anything if it cannot take them), cutover's own settings to the local file.
   * The routing change goes first and, once live in the source (all of it, or the part an error
   * says is live), is audited at once: whatever fails after that, this replica's audit log has
   * the caller's fleet-wide change, and the error says it was applied. Local settings are written
   * only after a routing change that fully went through.
   * Changes to one flag run in order; a rollback (`enabled: false`) does not wait (FlagLanes),
   * and the last one accepted has the last word (routing and local settings alike).
   */
  set(name: string, patch: FlagPatch, actor: Actor, expect?: FlagExpect): Promise<FlagView> {
    const { routing, local } = splitPatch(patch);
    if (!this.host.uses(name)) return Promise.reject(this.notUsed(name));
    const job = (superseded: AbortSignal) => this.change(name, routing, local, actor, expect, superseded);
    if (routing.enabled !== false) return this.lanes.run(name, job);
    // Is the rollback's "off" in the source: all of it (even if not audited or its local settings
    // not written: the caller is told it is live), kept from a partial failure, or there already
    // (its `expect` refused it as off: the caller is told so, and it must stay true)?
    const isLive = (answer: Promise<FlagView>) =>
      answer.then(
        () => true,
        (err: unknown) =>
          err instanceof AppliedThenFailedError ||
          (err instanceof UnleashChangeError && err.applied?.enabled === false) ||
          (err instanceof FlagPreconditionError && err.current?.enabled === false),
      );
    const by = actorLabel(actor);
    const refusal = `not applied: a rollback of "${name}" (${JSON.stringify(routing)} by ${by}) arrived while this change waited its turn; nothing of it was changed, in ${this.external.kind} or in this replica's settings`;
    return this.lanes.rollback(name, patch, job, isLive, (superseded) => this.reassert(name, routing, actor, superseded), refusal);
  }

  private async change(name: string, routing: FlagPatch, local: FlagPatch, actor: Actor, expect: FlagExpect | undefined, superseded: AbortSignal): Promise<FlagView> {
    const { external, host } = this;
    const routed = Object.keys(routing).length > 0;
    const localNames = Object.keys(local);
    const notWritten = localNames.length > 0 ? ` The per-replica settings in this call (${localNames.join(', ')}) were not written.` : '';
    // `expect` is checked in this flag's queue, after every earlier change to it through this
    // replica, against the toggle as the source has it now (read just before applying, not as
    // this replica's SDK last polled it): a change made in Unleash's UI or through another
    // replica a second ago counts. If the source cannot be read, the change is refused.
    const check = expect && ((now: FlagView | undefined) => checkExpect(fleetViewOf(external.kind, now, name, host.states.get(name)), expect));
    if (check !== undefined && !routed) check(await external.read(name));
    if (routed) await this.applyRouting(name, routing, actor, { check, superseded }, notWritten);
    // A rollback that arrived meanwhile (and is live) has the last word on this replica's settings
    // too: not written after its own. Decided outside the store's queue, where its write waits.
    for (let decided = false; localNames.length > 0; ) {
      if (superseded.aborted && !decided) {
        if (await rollbackLive(superseded)) throw this.localOvertaken(name, routing, localNames);
        decided = true; // it failed outright: it overrides nothing
      }
      try {
        const written = await host.queue.run(async () => {
          if (superseded.aborted && !decided) return false;
          const was = host.states.get(name);
          const after = applyPatch(was, local);
          if (was === undefined || !sameState(was, after)) await host.writeLocal(name, was, after, actor);
          return true;
        });
        if (written) break;
      } catch (err) {
        if (!routed) throw err;
        throw new AppliedThenFailedError(
          `the routing change ${JSON.stringify(routing)} was applied in ${external.kind} for the whole fleet, this replica routes by it and its audit log has it, but the per-replica settings (${localNames.join(', ')}) were not written: ${(err as Error).message}`,
          routing,
        );
      }
    }
    return host.view(name) ?? { name, ...NEW_FLAG };
  }

  /**
   * Applies a routing change in the source and audits what of it is live (FleetAudit: the line
   * starts where the flag's previous line left it; none if nothing was written in the source).
   */
  private async applyRouting(name: string, routing: FlagPatch, actor: Actor, opts: ExternalApplyOptions, notWritten: string): Promise<void> {
    const { external, auditLog } = this;
    const routingBefore = external.view(name);
    const reason = actor.reason ?? `applied in ${external.kind}`;
    let read: Reading | undefined;
    const { mine, release } = this.own.expect(name, routing, routingBefore, { ...actor, reason });
    let wrote: boolean;
    try {
      wrote = await external.apply(name, routing, actor, { ...opts, observe: (now) => void (read = auditLog.reading(name, now)) });
    } catch (err) {
      // Part of it live (or undone after a line had it): audited as such.
      if (!(err instanceof UnleashChangeError) || (err.applied === undefined && Object.keys(mine.audited).length === 0)) throw err;
      const unaudited = await auditLog.ownLine(name, mine, read, routingBefore, err.applied ?? {}, { ...actor, reason: `${reason}; ${err.note}` });
      (err as Error).message += unaudited + notWritten;
      throw err;
    } finally {
      // One overtaken by a rollback may still be reported by the SDK after it settled (Unleash's
      // order is unknown): still ours until the rollback's re-assert has been seen here.
      if (opts.superseded?.aborted === true) void this.lanes.settled(name).then(release);
      else release();
    }
    if (!wrote) return;
    const live = mine.creates ? { ...external.view(name), ...routing } : routing;
    const unaudited = await auditLog.ownLine(name, mine, read, routingBefore, live, { ...actor, reason });
    if (unaudited !== '') {
      throw new AppliedThenFailedError(`the routing change ${JSON.stringify(routing)} was applied in ${external.kind} for the whole fleet and this replica routes by it.${unaudited}${notWritten}`, routing);
    }
  }

  /** After a rollback overtook changes under way: applied again, audited only if the source had moved (their "on" landed after it). */
  private async reassert(name: string, routing: FlagPatch, actor: Actor, superseded: AbortSignal): Promise<void> {
    const reason = `${actor.reason ?? `applied in ${this.external.kind}`}; re-asserted after the change it overtook settled in ${this.external.kind}`;
    try {
      await this.applyRouting(name, routing, { ...actor, reason }, { superseded }, '');
    } catch (err) {
      this.logger.error({ flag: name, routing, actor, err: (err as Error).message }, `could not re-assert a rollback after the change it overtook: check the toggle in ${this.external.kind}`);
    }
  }

  /** A change whose per-replica settings a rollback that arrived during it overrides. */
  private localOvertaken(name: string, routing: FlagPatch, localNames: string[]): SupersededError {
    const settings = `the per-replica settings in this call (${localNames.join(', ')}) were not written: a rollback of "${name}" arrived while it was under way, and its settings stand`;
    if (Object.keys(routing).length === 0) return new SupersededError(`not applied: ${settings}`, undefined, 'not applied');
    return new SupersededError(`the routing change ${JSON.stringify(routing)} was applied in ${this.external.kind} for the whole fleet and its audit log has it, but ${settings}`, routing, 'applied, then overridden by a rollback that arrived during it');
  }

  private notUsed(name: string): FlagNotUsedError {
    const kind = this.external.kind === 'unleash' ? 'Unleash' : this.external.kind;
    const file = this.persistence ? ` and there is no ${this.persistence.where(name)}` : '';
    return new FlagNotUsedError(
      `flag "${name}" is not used by cutover: no route uses it${file}. In fleet mode cutover changes only the ${kind} toggles it routes by, never another application's; nothing was changed. Add the route that uses it first, or change it in ${kind}.`,
      this.external.kind,
    );
  }

  /** Flag queues alive now (one per flag with a change queued or running), for tests. */
  get queueCount(): number {
    return this.lanes.size;
  }

  /** Resolves once every change to the source queued so far has settled. */
  async idle(): Promise<void> {
    await this.lanes.idle();
  }
}
