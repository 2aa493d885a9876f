import { EventEmitter } from 'node:events';
import type { Logger } from '../observability/logger.js';
import {
  applyPatch,
  assertFlagName,
  compileFlag,
  parsePatch,
  sameState,
  type CompiledFlag,
  type FlagState,
  type FlagView,
} from './model.js';

/** Who made a change: shown in the audit log and in change events. */
export interface Actor {
  /** e.g. "admin-api", "file", "auto-disable", "library" */
  source: string;
  /** e.g. the remote address and X-Cutover-Actor of an admin call. */
  who?: string;
  reason?: string;
}

export interface FlagChange {
  name: string;
  before: FlagState | undefined;
  after: FlagState | undefined;
  actor: Actor;
  time: string;
}

/** Where flag state is kept. The memory store has none; the file store writes flags/. */
export interface FlagPersistence {
  load(): Promise<Map<string, FlagState>>;
  write(name: string, state: FlagState): Promise<void>;
  audit(change: FlagChange): Promise<void>;
  /** Calls `onExternal` whenever files may have changed underneath us. */
  watch(onExternal: () => void): void;
  /** Re-reads the store's files: name -> state, or an Error for a file that is invalid now. */
  scan(): Promise<Map<string, FlagState | Error>>;
  close(): Promise<void>;
}

/**
 * Flag state for the hot path (sync `get`) with serialized, persisted, audited changes.
 * Every change, from the API or from files edited underneath, goes through one queue, so a
 * partial update never races another and the audit log reads in the order changes took effect.
 */
export class FlagStore extends EventEmitter<{ change: [FlagChange] }> {
  private readonly states = new Map<string, FlagState>();
  private readonly compiled = new Map<string, CompiledFlag>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly logger: Logger,
    private readonly persistence?: FlagPersistence,
  ) {
    super();
  }

  async start(): Promise<void> {
    if (!this.persistence) return;
    for (const [name, state] of await this.persistence.load()) this.commit(name, state);
    this.persistence.watch(() => void this.enqueue(() => this.reloadFromFiles()));
  }

  /** Hot path: the compiled flag, or undefined when no such flag exists. */
  get(name: string): CompiledFlag | undefined {
    return this.compiled.get(name);
  }

  view(name: string): FlagView | undefined {
    const s = this.states.get(name);
    return s && { name, ...s };
  }

  list(): FlagView[] {
    return [...this.states.keys()].sort().map((n) => this.view(n) as FlagView);
  }

  /**
   * Applies a partial update (creating the flag if new), persists it, audits it, and only then
   * makes it live. Throws FlagValidationError for a bad name or patch, changing nothing.
   */
  set(name: string, patch: unknown, actor: Actor): Promise<FlagView> {
    assertFlagName(name);
    const valid = parsePatch(patch);
    return this.enqueue(async () => {
      const before = this.states.get(name);
      const after = applyPatch(before, valid);
      if (before !== undefined && sameState(before, after)) return { name, ...before };
      after.updated_at = new Date().toISOString();
      after.updated_by = actor.who ? `${actor.source}:${actor.who}` : actor.source;
      await this.persistence?.write(name, after);
      await this.record(name, before, after, actor);
      return { name, ...after };
    });
  }

  async close(): Promise<void> {
    await this.queue.catch(() => undefined);
    await this.persistence?.close();
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    const run = this.queue.then(job, job);
    this.queue = run.catch(() => undefined);
    return run;
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

  private async record(name: string, before: FlagState | undefined, after: FlagState | undefined, actor: Actor) {
    const change: FlagChange = { name, before, after, actor, time: new Date().toISOString() };
    await this.persistence?.audit(change);
    this.commit(name, after);
    this.logger.info(
      { flag: name, source: actor.source, who: actor.who, reason: actor.reason, before, after },
      after ? 'flag changed' : 'flag removed',
    );
    this.emit('change', change);
  }

  private commit(name: string, state: FlagState | undefined): void {
    if (state === undefined) {
      this.states.delete(name);
      this.compiled.delete(name);
    } else {
      this.states.set(name, state);
      this.compiled.set(name, compileFlag(name, state));
    }
  }
}
