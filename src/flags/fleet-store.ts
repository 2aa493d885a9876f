import type { SerialQueue } from '../util/serial-queue.js';
import type { Logger } from '../observability/logger.js';
import { AppliedThenFailedError, applyPatch, FlagNotUsedError, NEW_FLAG, sameState, SupersededError, UnleashChangeError, type FlagPatch, type FlagState, type FlagView } from './model.js';
import { fleetViewOf, OwnChanges, splitPatch, type ExternalApplyOptions, type ExternalChange, type ExternalFlags } from './fleet.js';
import { actorLabel, type Actor, type FlagChange, type FlagPersistence } from './persistence.js';
import { checkExpect, FlagPreconditionError, type FlagExpect } from './expect.js';
import { FlagLanes } from './flag-lanes.js';

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
  /** Per flag, the routing state before the last change the source reported, numbered. */
  private readonly lastExternal = new Map<string, { seq: number; before: FlagView | undefined }>();
  private externalSeq = 0;

  constructor(
    private readonly external: ExternalFlags,
    private readonly host: FleetHost,
    private readonly logger: Logger,
    private readonly persistence?: FlagPersistence,
  ) {}

  /** Runs after the local files are loaded, so the hot path starts with their settings applied. */
  async start(): Promise<void> {
    await this.external.start((changes) => this.changed(changes));
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
   * Changes to one flag run in order; a rollback (`enabled: false`) does not wait (FlagLanes).
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
    return this.lanes.rollback(name, job, isLive, () => this.reassert(name, routing, actor), refusal);
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
    if (localNames.length > 0) {
      try {
        await host.queue.run(async () => {
          const was = host.states.get(name);
          const after = applyPatch(was, local);
          if (was === undefined || !sameState(was, after)) await host.writeLocal(name, was, after, actor);
        });
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
   * Applies a routing change in the source and audits what of it is live. `reassert`: no line if
   * the source was already so, and the line starts from the state the source was read in (this
   * replica's SDK may never have polled the state it undoes).
   */
  private async applyRouting(name: string, routing: FlagPatch, actor: Actor, opts: ExternalApplyOptions, notWritten: string, reassert = false): Promise<void> {
    const { external, host } = this;
    const routingBefore = external.view(name);
    const seqBefore = this.externalSeq;
    // The audit line is built in the store's queue, in order with the lines of other changes:
    // the local settings as they are then (a rescan during the call has its own `file` line),
    // and the routing state just before the source reported our change (one made in Unleash
    // meanwhile has its own line), so its before/after chain with the lines around it.
    const auditLine = (change: (before: FlagView | undefined, after: FlagView | undefined) => FlagChange) => {
      const last = this.lastExternal.get(name);
      const settings = host.states.get(name);
      const before = fleetViewOf(external.kind, read ?? (last !== undefined && last.seq > seqBefore ? last.before : routingBefore), name, settings);
      return this.audit(change(before, host.view(name)));
    };
    const reason = actor.reason ?? `applied in ${external.kind}`;
    let read: FlagView | undefined;
    if (reassert) opts = { ...opts, check: (now) => void (read = now) };
    const release = this.own.expect(name, routing, routingBefore);
    let wrote: boolean;
    try {
      wrote = await external.apply(name, routing, actor, opts);
    } catch (err) {
      if (!(err instanceof UnleashChangeError) || err.applied === undefined) throw err;
      // Overtaken by a rollback: what Unleash showed right after its calls (the rollback's off may be in it).
      const applied = { ...err.applied, ...(err instanceof SupersededError && Object.fromEntries(Object.entries(err.after ?? {}).filter(([, v]) => v !== undefined))) };
      const unaudited = await host.queue.run(() =>
        auditLine((before) => ({ name, before, after: { ...(before ?? { name, ...NEW_FLAG }), ...applied }, actor: { ...actor, reason: `${reason}; ${err.note}` }, time: new Date().toISOString() })),
      );
      (err as Error).message += unaudited + notWritten;
      throw err;
    } finally {
      // One overtaken by a rollback may still be reported by the SDK after it settled (Unleash's
      // order is unknown): still ours until the rollback's re-assert has been seen here.
      if (opts.superseded?.aborted === true) void this.lanes.settled(name).then(release);
      else release();
    }
    if (reassert && !wrote) return;
    const unaudited = await host.queue.run(() => auditLine((before, after) => ({ name, before, after: after ?? { name, ...NEW_FLAG }, actor: { ...actor, reason }, time: new Date().toISOString() })));
    if (unaudited !== '') {
      throw new AppliedThenFailedError(`the routing change ${JSON.stringify(routing)} was applied in ${external.kind} for the whole fleet and this replica routes by it.${unaudited}${notWritten}`, routing);
    }
  }

  /** After a rollback overtook changes under way: applied again, audited only if the source had moved (their "on" landed after it). */
  private async reassert(name: string, routing: FlagPatch, actor: Actor): Promise<void> {
    const reason = `${actor.reason ?? `applied in ${this.external.kind}`}; re-asserted after the change it overtook settled in ${this.external.kind}`;
    try {
      await this.applyRouting(name, routing, { ...actor, reason }, {}, '', true);
    } catch (err) {
      this.logger.error({ flag: name, routing, actor, err: (err as Error).message }, `could not re-assert a rollback after the change it overtook: check the toggle in ${this.external.kind}`);
    }
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

  /**
   * Audits a change of ours that is live fleet-wide, and tells the store's listeners (metrics,
   * auto-disable, rollout plans) with its actor: the source's report of it is not passed on.
   * On a failed write the proxy log keeps it, and the caller hears so.
   */
  private async audit(change: FlagChange): Promise<string> {
    try {
      await this.persistence?.audit(change);
      return '';
    } catch (err) {
      this.logger.error({ flag: change.name, actor: change.actor, before: change.before, after: change.after, err: (err as Error).message }, 'flag change applied fleet-wide but NOT in the audit log');
      return ` It is NOT in this replica's audit log (${(err as Error).message}); the proxy log has it.`;
    } finally {
      this.host.emitChange(change);
    }
  }

  /** Changes the source saw (from its own polling): live at once, then audited in order. */
  private changed(changes: ExternalChange[]): void {
    for (const c of changes) {
      this.host.recompose(c.name);
      if (c.after === undefined) this.lastExternal.delete(c.name);
      else this.lastExternal.set(c.name, { seq: ++this.externalSeq, before: c.before });
    }
    // The company's other toggles change too: routed by (a reload may add their route) but not
    // cutover's to audit, log or count (a metric series per toggle in the environment). Nor is
    // a change this replica is making through the Admin API: its own line (the caller's) has it.
    const ours = changes.filter((c) => this.host.uses(c.name) && !this.own.claims(c));
    void this.host.queue.run(async () => {
      for (const c of ours) {
        const change: FlagChange = { name: c.name, before: c.before, after: c.after, actor: { source: this.external.kind }, time: new Date().toISOString() };
        await this.persistence?.audit(change).catch((err: Error) => this.logger.error({ err: err.message }, 'cannot write the audit log'));
        this.logger.info({ flag: c.name, source: change.actor.source, before: c.before, after: c.after }, c.after ? 'flag changed' : 'flag removed');
        this.host.emitChange(change);
      }
    });
  }
}
