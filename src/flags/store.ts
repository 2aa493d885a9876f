import { SerialQueue } from '../util/serial-queue.js';
import { EventEmitter } from 'node:events';
import type { Logger } from '../observability/logger.js';
import { applyPatch, assertFlagName, changedRouting, compileFlag, FlagConflictError, parsePatch, sameState, type CompiledFlag, type FlagState, type FlagView } from './model.js';
import { fleetView, withLocalSettings, type ExternalFlags } from './fleet.js';
import { FleetChanges } from './fleet-store.js';
import { actorLabel, type Actor, type FlagChange, type FlagPersistence } from './persistence.js';
import { checkExpect, type FlagExpect } from './expect.js';
import { auditFoundAtStart } from './start-audit.js';

export type { Actor, FlagChange, FlagPersistence } from './persistence.js';
export type { ExternalChange, ExternalFlags, FlagSourceStatus } from './fleet.js';
export type { FlagExpect } from './expect.js';

/**
 * Flag state for the hot path (sync `get`) with serialized, persisted, audited changes.
 * Every change, from the API or from files edited underneath, goes through one queue, so a
 * partial update never races another and the audit log reads in the order changes took effect.
 */
export class FlagStore extends EventEmitter<{ change: [FlagChange] }> {
  private readonly states = new Map<string, FlagState>();
  private readonly compiled = new Map<string, CompiledFlag>();
  private readonly queue = new SerialQueue();
  private closed = false;
  private readonly fleet: FleetChanges | undefined;
  /** The flags the current routes use (set by setRouteFlags at start and on every reload). */
  private routeFlags: ReadonlySet<string> = new Set();

  constructor(
    private readonly logger: Logger,
    private readonly persistence?: FlagPersistence,
    /** Fleet mode: routing flags come from this source (Unleash); files keep local settings. */
    readonly external?: ExternalFlags,
  ) {
    super();
    this.fleet =
      external &&
      new FleetChanges(
        external,
        {
          queue: this.queue,
          states: this.states,
          view: (name) => this.fleetView(name),
          uses: (name) => this.uses(name),
          writeLocal: (name, before, after, actor) => this.writeLocal(name, before, after, actor),
          recompose: (name) => this.recompose(name),
          emitChange: (change) => this.emit('change', change),
        },
        logger,
        persistence,
      );
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
    await this.fleet?.start();
  }

  /** Hot path: the compiled flag, or undefined when no such flag exists. */
  get(name: string): CompiledFlag | undefined {
    return this.compiled.get(name);
  }

  /**
   * The flags the routes use. In fleet mode the Unleash environment also holds the company's other
   * toggles: only these and the flags with a local file are cutover's to list, export and change.
   */
  setRouteFlags(names: Iterable<string | undefined>): void {
    this.routeFlags = new Set([...names].filter((n): n is string => n !== undefined));
  }

  /** Is this flag cutover's (always, outside fleet mode)? */
  uses(name: string): boolean {
    return this.external === undefined || this.routeFlags.has(name) || this.states.has(name);
  }

  view(name: string): FlagView | undefined {
    const s = this.states.get(name);
    if (this.external) return this.uses(name) ? this.fleetView(name) : undefined;
    return s && { name, ...s };
  }

  list(): FlagView[] {
    const names = new Set(this.states.keys());
    if (this.external) for (const n of this.external.names()) if (this.uses(n)) names.add(n);
    return [...names].sort().map((n) => this.view(n) as FlagView);
  }

  /**
   * Applies a partial update (creating the flag if new), persists it, audits it, and only then
   * makes it live. Throws FlagValidationError for a bad name or patch, changing nothing.
   * With `expect`, throws FlagPreconditionError (changing nothing) unless the flag still has the
   * expected fields when its turn comes in the queue, after the files are reread.
   */
  set(name: string, patch: unknown, actor: Actor, expect?: FlagExpect): Promise<FlagView> {
    assertFlagName(name);
    const valid = parsePatch(patch);
    if (this.closed) return Promise.reject(shuttingDown());
    if (this.fleet) return this.fleet.set(name, valid, actor, expect);
    return this.enqueue(async () => {
      // Memory trails the files by the watcher's debounce, or a whole poll on mounts where watch
      // events get lost. Patching it as is would overwrite a hand/GitOps edit not yet seen (say a
      // rollback) or answer "no change" to a patch the file no longer matches: take the files in
      // first, audited as the file changes they are.
      const seen = this.states.get(name);
      await this.reloadFromFiles();
      const before = this.states.get(name);
      checkExpect(before && { name, ...before }, expect);
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
    // Closed first: a change or rescan arriving now (auto-disable from a request the shutdown cut,
    // a watcher event) would reread the files and write into a directory that may be going away.
    this.closed = true;
    await this.persistence?.close();
    await this.fleet?.idle();
    await this.queue.idle();
    await this.external?.close();
  }

  /** Any flag's fleet view, cutover's or not (the hot path and audit lines need them all). */
  private fleetView(name: string): FlagView | undefined {
    return this.external && fleetView(this.external, name, this.states.get(name));
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
    return this.fleet?.queueCount ?? 0;
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(shuttingDown());
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

function shuttingDown(): Error {
  return new Error('cutover is shutting down: flag change not applied');
}
