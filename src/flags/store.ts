import { SerialQueue } from '../util/serial-queue.js';
import { EventEmitter } from 'node:events';
import type { Logger } from '../observability/logger.js';
import {
  applyPatch,
  assertFlagName,
  compileFlag,
  NEW_FLAG,
  parsePatch,
  ROUTING_FIELDS,
  sameState,
  type CompiledFlag,
  type FlagPatch,
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
   * it (or after a bounded wait). Throws FlagOwnedError when that is not possible from here
   * (no admin token, fields the source has no place for) and FlagSourceError when it failed.
   * Must not change anything when it throws FlagOwnedError.
   */
  apply(name: string, patch: FlagPatch, actor: Actor): Promise<void>;
  status(): FlagSourceStatus;
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
  private readonly queue = new SerialQueue();

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
      this.persistence.watch(() => void this.enqueue(() => this.reloadFromFiles()));
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
    if (this.external) return this.fleetView(name, s);
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
    await this.queue.idle();
    await this.external?.close();
    await this.persistence?.close();
  }

  /**
   * Fleet mode: the routing fields go to the source (which refuses with FlagOwnedError before
   * changing anything if it cannot take them), cutover's own settings to the local file.
   */
  private setFleet(external: ExternalFlags, name: string, patch: FlagPatch, actor: Actor): Promise<FlagView> {
    const routingParts: Record<string, unknown> = {};
    const localParts: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(patch)) {
      if (v !== undefined) ((ROUTING_FIELDS as readonly string[]).includes(k) ? routingParts : localParts)[k] = v;
    }
    const routing = routingParts as FlagPatch;
    const local = localParts as FlagPatch;
    return this.enqueue(async () => {
      const before = this.view(name);
      if (Object.keys(routing).length > 0) await external.apply(name, routing, actor);
      if (Object.keys(local).length > 0) {
        const was = this.states.get(name);
        const after = applyPatch(was, local);
        if (was === undefined || !sameState(was, after)) {
          after.updated_at = new Date().toISOString();
          after.updated_by = actor.who ? `${actor.source}:${actor.who}` : actor.source;
          await this.persistence?.write(name, after);
          await this.record(name, was, after, actor);
        }
      }
      const view = this.view(name) ?? { name, ...NEW_FLAG };
      if (Object.keys(routing).length > 0) {
        const change: FlagChange = { name, before, after: view, actor: { ...actor, reason: actor.reason ?? `applied in ${external.kind}` }, time: new Date().toISOString() };
        await this.persistence?.audit(change);
      }
      return view;
    });
  }

  /** Changes the source saw (from its own polling): live at once, then audited in order. */
  private externalChanged(changes: ExternalChange[]): void {
    for (const c of changes) this.recompose(c.name);
    void this.enqueue(async () => {
      for (const c of changes) {
        const change: FlagChange = { name: c.name, before: c.before, after: c.after, actor: { source: this.external?.kind ?? 'external' }, time: new Date().toISOString() };
        await this.persistence?.audit(change).catch((err: Error) => this.logger.error({ err: err.message }, 'cannot write the audit log'));
        this.logger.info({ flag: c.name, source: change.actor.source, before: c.before, after: c.after }, c.after ? 'flag changed' : 'flag removed');
        this.emit('change', change);
      }
    });
  }

  /** The routing flag as the hot path sees it: the source's decision plus local settings. */
  private recompose(name: string): void {
    const ext = this.external?.compiled(name);
    if (ext === undefined) {
      this.compiled.delete(name);
      return;
    }
    const local = this.states.get(name);
    this.compiled.set(
      name,
      local === undefined
        ? ext
        : {
            ...ext,
            autoDisableAfter: ext.enabled && local.auto_disable_on_failure ? local.auto_disable_after : 0,
            healthIntervalMs: local.health_check_interval !== undefined ? local.health_check_interval * 1000 : undefined,
          },
    );
  }

  private fleetView(name: string, local: FlagState | undefined): FlagView | undefined {
    const ext = this.external?.view(name);
    if (ext === undefined) {
      if (local === undefined) return undefined;
      const kind = this.external?.kind ?? 'external';
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
