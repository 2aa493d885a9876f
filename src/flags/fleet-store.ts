import { SerialQueue } from '../util/serial-queue.js';
import type { Logger } from '../observability/logger.js';
import { AppliedThenFailedError, applyPatch, FlagNotUsedError, NEW_FLAG, sameState, UnleashChangeError, type FlagPatch, type FlagState, type FlagView } from './model.js';
import { fleetViewOf, splitPatch, type ExternalChange, type ExternalFlags } from './fleet.js';
import type { Actor, FlagChange, FlagPersistence } from './persistence.js';
import { checkExpect, type FlagExpect } from './expect.js';

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
  /**
   * One queue per flag for changes that call the source (see set), kept only while it has jobs:
   * any valid name may be POSTed, so an entry per name ever seen would grow without bound (a
   * script looping over typos, each refused 409).
   */
  private readonly flagQueues = new Map<string, { queue: SerialQueue; jobs: number }>();
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
   */
  set(name: string, patch: FlagPatch, actor: Actor, expect?: FlagExpect): Promise<FlagView> {
    const { external, host } = this;
    const { routing, local } = splitPatch(patch);
    if (!host.uses(name)) return Promise.reject(this.notUsed(name));
    // Changes to one flag run in order; the Unleash calls (seconds, when Unleash is slow) do not
    // hold up another flag's change, a rollback above all. Local writes and audit lines still go
    // through the store's one queue.
    return this.runForFlag(name, async () => {
      // `expect` is checked here, in this flag's queue: after every earlier change to it through
      // this replica (apply() resolves only once this replica routes by it), against the toggle
      // as this replica's SDK last fetched it. A change made in Unleash itself or through another
      // replica is seen only from the SDK's next poll (refreshIntervalMs) on.
      checkExpect(host.view(name), expect);
      const routingBefore = external.view(name);
      const seqBefore = this.externalSeq;
      // The audit line is built in the store's queue, in order with the lines of other changes:
      // the local settings as they are then (a rescan during the call has its own `file` line),
      // and the routing state just before the source reported our change (one made in Unleash
      // meanwhile has its own line), so its before/after chain with the lines around it.
      const auditLine = (change: (before: FlagView | undefined, after: FlagView | undefined) => FlagChange) => {
        const last = this.lastExternal.get(name);
        const settings = host.states.get(name);
        const before = fleetViewOf(external.kind, last !== undefined && last.seq > seqBefore ? last.before : routingBefore, name, settings);
        return this.audit(change(before, host.view(name)));
      };
      const routed = Object.keys(routing).length > 0;
      const localNames = Object.keys(local);
      const reason = actor.reason ?? `applied in ${external.kind}`;
      const notWritten = localNames.length > 0 ? ` The per-replica settings in this call (${localNames.join(', ')}) were not written.` : '';
      if (routed) {
        try {
          await external.apply(name, routing, actor);
        } catch (err) {
          if (!(err instanceof UnleashChangeError) || err.applied === undefined) throw err;
          const applied = err.applied;
          const unaudited = await host.queue.run(() =>
            auditLine((before) => ({ name, before, after: { ...(before ?? { name, ...NEW_FLAG }), ...applied }, actor: { ...actor, reason: `${reason}; ${err.note}` }, time: new Date().toISOString() })),
          );
          (err as Error).message += unaudited + notWritten;
          throw err;
        }
        const unaudited = await host.queue.run(() => auditLine((before, after) => ({ name, before, after: after ?? { name, ...NEW_FLAG }, actor: { ...actor, reason }, time: new Date().toISOString() })));
        if (unaudited !== '') {
          throw new AppliedThenFailedError(`the routing change ${JSON.stringify(routing)} was applied in ${external.kind} for the whole fleet and this replica routes by it.${unaudited}${notWritten}`, routing);
        }
      }
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
    });
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
    return this.flagQueues.size;
  }

  /** Resolves once every change to the source queued so far has settled. */
  async idle(): Promise<void> {
    await Promise.all([...this.flagQueues.values()].map((q) => q.queue.idle()));
  }

  /** Audits a change that is live fleet-wide; on a failed write the proxy log keeps it, and the caller hears so. */
  private async audit(change: FlagChange): Promise<string> {
    try {
      await this.persistence?.audit(change);
      return '';
    } catch (err) {
      this.logger.error({ flag: change.name, actor: change.actor, before: change.before, after: change.after, err: (err as Error).message }, 'flag change applied fleet-wide but NOT in the audit log');
      return ` It is NOT in this replica's audit log (${(err as Error).message}); the proxy log has it.`;
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
    // cutover's to audit, log or count (a metric series per toggle in the environment).
    const ours = changes.filter((c) => this.host.uses(c.name));
    void this.host.queue.run(async () => {
      for (const c of ours) {
        const change: FlagChange = { name: c.name, before: c.before, after: c.after, actor: { source: this.external.kind }, time: new Date().toISOString() };
        await this.persistence?.audit(change).catch((err: Error) => this.logger.error({ err: err.message }, 'cannot write the audit log'));
        this.logger.info({ flag: c.name, source: change.actor.source, before: c.before, after: c.after }, c.after ? 'flag changed' : 'flag removed');
        this.host.emitChange(change);
      }
    });
  }

  private runForFlag<T>(name: string, job: () => Promise<T>): Promise<T> {
    let entry = this.flagQueues.get(name);
    if (entry === undefined) this.flagQueues.set(name, (entry = { queue: new SerialQueue(), jobs: 0 }));
    const mine = entry;
    mine.jobs++;
    // A job queued while this one ran keeps the entry (and the order); the last one drops it.
    return mine.queue.run(job).finally(() => {
      if (--mine.jobs === 0) this.flagQueues.delete(name);
    });
  }
}
