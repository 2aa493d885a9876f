import type { FlagState } from './model.js';

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
  /** Deletes a flag's stored state as durably as `write` stores it; no error if there is none. */
  remove(name: string): Promise<void>;
  /** Where a flag's state is kept (a path), for log lines that must say which file to look at. */
  where(name: string): string;
  audit(change: FlagChange): Promise<void>;
  /** Calls `onExternal` whenever files may have changed underneath us. */
  watch(onExternal: () => void): void;
  /** Re-reads the store's files: name -> state, or an Error for a file that is invalid now. */
  scan(): Promise<Map<string, FlagState | Error>>;
  /**
   * The state each flag's last audit line left it in (undefined: removed); empty when nothing was
   * ever audited. Read once at start (see start-audit.ts); optional for other stores.
   */
  lastAudited?(): Promise<Map<string, FlagState | undefined>>;
  close(): Promise<void>;
}

/** An actor in one word, as `updated_by` and the audit log's `actor` show it: "admin-api:alice". */
export function actorLabel(actor: Actor): string {
  return actor.who ? `${actor.source}:${actor.who}` : actor.source;
}
