import { SerialQueue } from '../util/serial-queue.js';
import { EventEmitter } from 'node:events';
import type { Logger } from '../observability/logger.js';
import {
  AppliedThenFailedError,
  applyPatch,
  assertFlagName,
  changedRouting,
  compileFlag,
  FlagConflictError,
  NEW_FLAG,
  parsePatch,
  sameState,
  type CompiledFlag,
  type FlagPatch,
  type FlagState,
  type FlagView,
  UnleashChangeError,
} from './model.js';
import { fleetView, fleetViewOf, splitPatch, withLocalSettings, type ExternalChange, type ExternalFlags } from './fleet.js';
import { actorLabel, type Actor, type FlagChange, type FlagPersistence } from './persistence.js';
import { auditFoundAtStart } from './start-audit.js';

export type { Actor, FlagChange, FlagPersistence } from './persistence.js';
export type { ExternalChange, ExternalFlags, FlagSourceStatus } from './fleet.js';

/**
 * Flag state for the hot path (sync `get`) with serialized, persisted, audited changes.
 * Every change, from the API or from files edited underneath, goes through one queue, so a
 * partial update never races another and the audit log reads in the order changes took effect.
 */
export class FlagStore extends EventEmitter<{ change: [FlagChange] }> {
  private readonly states = new Map<string, FlagState>();
  private readonly compiled = new Map<string, CompiledFlag>();
  private readonly queue = new SerialQueue();
  /**
   * Fleet mode: one queue per flag for changes that call the source (see setFleet), kept only
   * while it has jobs: any valid name may be POSTed, so an entry per name ever seen would grow
   * without bound (a script looping over typos, each refused 409).
   */
  private readonly flagQueues = new Map<string, { queue: SerialQueue; jobs: number }>();
  /** Fleet mode: per flag, the routing state before the last change the source reported, numbered. */
  private readonly lastExternal = new Map<string, { seq: number; before: FlagView | undefined }>();
  private externalSeq = 0;

  constructor(
    private readonly logger: Logger,
    private readonly persistence?: FlagPersistence,
    /** Fleet mode: routing flags come from this source (Unleash); files keep local settings. */
    readonly external?: ExternalFlags,
  ) {
    super();
  }

  async start(): Promise<void> {
    if (this.persistence) {
      for (const [name, state] of await this.persistence.load()) this.commit(name, state);
      // In fleet mode the audit log's states are the fleet's (from Unleash), not the files'.
      if (!this.external) await auditFoundAtStart(this.persistence, this.logger);
      // A rescan that fails (directory unreadable, audit log unwritable) changes nothing and is
      // retried on the next event or poll; the queue would swallow its error, so say it here.
      this.persistence.watch(() => {
        this.enqueue(() => this.reloadFromFiles()).catch((err: Error) => this.logger.error({ err: err.message }, 'flags rescan failed; keeping the current state'));
      });
    }
    if (this.external) {
      await this.external.start((changes) => this.externalChanged(changes));
      for (const name of this.external.names()) this.recompose(name);
      for (const [name, s] of this.states) {
        if (!this.external.view(name) && s.enabled) {
          this.logger.warn({ flag: name }, `flag file says enabled but ${this.external.kind} has no such flag: in fleet mode only ${this.external.kind} routes, so its routes go to legacy`);
        }
      }
    }
  }

  /** Hot path: the compiled flag, or undefined when no such flag exists. */
  get(name: string): CompiledFlag | undefined {
    return this.compiled.get(name);
  }

  view(name: string): FlagView | undefined {
    const s = this.states.get(name);
    if (this.external) return fleetView(this.external, name, s);
    return s && { name, ...s };
  }

  list(): FlagView[] {
    const names = new Set(this.states.keys());
    if (this.external) for (const n of this.external.names()) names.add(n);
    return [...names].sort().map((n) => this.view(n) as FlagView);
  }

  /**
   * Applies a partial update (creating the flag if new), persists it, audits it, and only then
   * makes it live. Throws FlagValidationError for a bad name or patch, changing nothing.
   */
  set(name: string, patch: unknown, actor: Actor): Promise<FlagView> {
    assertFlagName(name);
    const valid = parsePatch(patch);
    if (this.external) return this.setFleet(this.external, name, valid, actor);
    return this.enqueue(async () => {
      // Memory trails the files by the watcher's debounce, or a whole poll on mounts where watch
      // events get lost. Patching it as is would overwrite a hand/GitOps edit not yet seen (say a
      // rollback) or answer "no change" to a patch the file no longer matches: take the files in
      // first, audited as the file changes they are.
      const seen = this.states.get(name);
      await this.reloadFromFiles();
      const before = this.states.get(name);
      // A rollout step decided on the state it saw; raising exposure over an edit it had not seen
      // would undo that edit (a GitOps rollback). Refused: the edit stands and pauses the plan.
      const edited = actor.source === 'rollout' && valid.enabled === true ? changedRouting(seen, before) : [];
      if (edited.length > 0) {
        throw new FlagConflictError(`flags/${name}.json changed (${edited.join(', ')}) just before this ${actor.source} change; not applied over it`);
      }
      const after = applyPatch(before, valid);
      if (before !== undefined && sameState(before, after)) return { name, ...before };
      await this.writeLocal(name, before, after, actor);
      return { name, ...after };
    });
  }

  async close(): Promise<void> {
    await Promise.all([...this.flagQueues.values()].map((q) => q.queue.idle()));
    await this.queue.idle();
    await this.external?.close();
    await this.persistence?.close();
  }

  /**
   * Fleet mode: the routing fields go to the source (which refuses with FlagOwnedError before
   * changing anything if it cannot take them), cutover's own settings to the local file.
   * The routing change goes first and, once live in the source (all of it, or the part an error
   * says is live), is audited at once: whatever fails after that, this replica's audit log has
   * the caller's fleet-wide change, and the error says it was applied. Local settings are written
   * only after a routing change that fully went through.
   */
  private setFleet(external: ExternalFlags, name: string, patch: FlagPatch, actor: Actor): Promise<FlagView> {
    const { routing, local } = splitPatch(patch);
    // Changes to one flag run in order; the Unleash calls (seconds, when Unleash is slow) do not
    // hold up another flag's change, a rollback above all. Local writes and audit lines still go
    // through the store's one queue.
    return this.runForFlag(name, async () => {
      const routingBefore = external.view(name);
      const seqBefore = this.externalSeq;
      // The audit line is built in the store's queue, in order with the lines of other changes:
      // the local settings as they are then (a rescan during the call has its own `file` line),
      // and the routing state just before the source reported our change (one made in Unleash
      // meanwhile has its own line), so its before/after chain with the lines around it.
      const auditLine = (change: (before: FlagView | undefined, after: FlagView | undefined) => FlagChange) => {
        const last = this.lastExternal.get(name);
        const settings = this.states.get(name);
        const before = fleetViewOf(external.kind, last !== undefined && last.seq > seqBefore ? last.before : routingBefore, name, settings);
        return this.auditFleetChange(change(before, this.view(name)));
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
          const unaudited = await this.enqueue(() =>
            auditLine((before) => ({ name, before, after: { ...(before ?? { name, ...NEW_FLAG }), ...applied }, actor: { ...actor, reason: `${reason}; ${err.note}` }, time: new Date().toISOString() })),
          );
          (err as Error).message += unaudited + notWritten;
          throw err;
        }
        const unaudited = await this.enqueue(() => auditLine((before, after) => ({ name, before, after: after ?? { name, ...NEW_FLAG }, actor: { ...actor, reason }, time: new Date().toISOString() })));
        if (unaudited !== '') {
          throw new AppliedThenFailedError(`the routing change ${JSON.stringify(routing)} was applied in ${external.kind} for the whole fleet and this replica routes by it.${unaudited}${notWritten}`, routing);
        }
      }
      if (localNames.length > 0) {
        try {
          await this.enqueue(async () => {
            const was = this.states.get(name);
            const after = applyPatch(was, local);
            if (was === undefined || !sameState(was, after)) await this.writeLocal(name, was, after, actor);
          });
        } catch (err) {
          if (!routed) throw err;
          throw new AppliedThenFailedError(
            `the routing change ${JSON.stringify(routing)} was applied in ${external.kind} for the whole fleet, this replica routes by it and its audit log has it, but the per-replica settings (${localNames.join(', ')}) were not written: ${(err as Error).message}`,
            routing,
          );
        }
      }
      return this.view(name) ?? { name, ...NEW_FLAG };
    });
  }

  /** Audits a change that is live fleet-wide; on a failed write the proxy log keeps it, and the caller hears so. */
  private async auditFleetChange(change: FlagChange): Promise<string> {
    try {
      await this.persistence?.audit(change);
      return '';
    } catch (err) {
      this.logger.error({ flag: change.name, actor: change.actor, before: change.before, after: change.after, err: (err as Error).message }, 'flag change applied fleet-wide but NOT in the audit log');
      return ` It is NOT in this replica's audit log (${(err as Error).message}); the proxy log has it.`;
    }
  }

  /** Changes the source saw (from its own polling): live at once, then audited in order. */
  private externalChanged(changes: ExternalChange[]): void {
    for (const c of changes) {
      this.recompose(c.name);
      if (c.after === undefined) this.lastExternal.delete(c.name);
      else this.lastExternal.set(c.name, { seq: ++this.externalSeq, before: c.before });
    }
    void this.enqueue(async () => {
      for (const c of changes) {
        const change: FlagChange = { name: c.name, before: c.before, after: c.after, actor: { source: this.external?.kind ?? 'external' }, time: new Date().toISOString() };
        await this.persistence?.audit(change).catch((err: Error) => this.logger.error({ err: err.message }, 'cannot write the audit log'));
        this.logger.info({ flag: c.name, source: change.actor.source, before: c.before, after: c.after }, c.after ? 'flag changed' : 'flag removed');
        this.emit('change', change);
      }
    });
  }

  private recompose(name: string): void {
    const ext = this.external?.compiled(name);
    if (ext === undefined) {
      this.compiled.delete(name);
      return;
    }
    this.compiled.set(name, withLocalSettings(ext, this.states.get(name)));
  }

  /** Fleet-mode flag queues alive now (one per flag with a change queued or running), for tests. */
  get flagQueueCount(): number {
    return this.flagQueues.size;
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

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    return this.queue.run(job);
  }

  private async reloadFromFiles(): Promise<void> {
    if (!this.persistence) return;
    const found = await this.persistence.scan();
    for (const [name, state] of found) {
      if (state instanceof Error) {
        this.logger.warn({ flag: name, err: state.message }, 'flag file is invalid; keeping the last good state');
        continue;
      }
      const before = this.states.get(name);
      if (!sameState(before, state)) await this.record(name, before, state, { source: 'file' });
    }
    for (const name of [...this.states.keys()]) {
      if (!found.has(name)) await this.record(name, this.states.get(name), undefined, { source: 'file' });
    }
  }

  /**
   * A change of ours to the local state: stamped, written, audited, then live. If the audit line
   * cannot be written the change is refused, and its file must go too: left on disk, the next
   * rescan (or restart) would make it live as an unaudited hand edit.
   */
  private async writeLocal(name: string, before: FlagState | undefined, after: FlagState, actor: Actor): Promise<void> {
    after.updated_at = new Date().toISOString();
    after.updated_by = actorLabel(actor);
    const change = changeOf(name, before, after, actor);
    if (this.persistence) {
      await this.persistence.write(name, after);
      try {
        await this.persistence.audit(change);
      } catch (err) {
        await this.putBack(this.persistence, change, err as Error);
        throw err;
      }
    }
    this.apply(change);
  }

  private async putBack(p: FlagPersistence, refused: FlagChange, auditErr: Error): Promise<void> {
    const { name, before } = refused;
    try {
      if (before === undefined) await p.remove(name);
      else await p.write(name, before);
      this.logger.error({ flag: name, err: auditErr.message }, 'cannot write the audit log: change refused, flag file put back');
    } catch (err) {
      const file = p.where(name);
      this.logger.error(
        { flag: name, file, err: (err as Error).message, auditErr: auditErr.message, refused: refused.after, previous: before ?? null },
        `cannot write the audit log, nor put back ${file}: that file now holds a refused, unaudited change, which the next rescan or restart makes live; restore "previous" (or delete the file if it is null)`,
      );
    }
  }

  private async record(name: string, before: FlagState | undefined, after: FlagState | undefined, actor: Actor) {
    const change = changeOf(name, before, after, actor);
    await this.persistence?.audit(change);
    this.apply(change);
  }

  private apply(change: FlagChange): void {
    const { name, before, after, actor } = change;
    this.commit(name, after);
    this.logger.info(
      { flag: name, source: actor.source, who: actor.who, reason: actor.reason, before, after },
      after ? 'flag changed' : 'flag removed',
    );
    this.emit('change', change);
  }

  private commit(name: string, state: FlagState | undefined): void {
    if (this.external) {
      // Fleet mode: files hold local settings only; the source decides who goes where.
      if (state === undefined) this.states.delete(name);
      else this.states.set(name, state);
      this.recompose(name);
      return;
    }
    if (state === undefined) {
      this.states.delete(name);
      this.compiled.delete(name);
    } else {
      this.states.set(name, state);
      this.compiled.set(name, compileFlag(name, state));
    }
  }
}

function changeOf(name: string, before: FlagState | undefined, after: FlagState | undefined, actor: Actor): FlagChange {
  return { name, before, after, actor, time: new Date().toISOString() };
}
