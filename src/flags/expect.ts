import type { FlagView } from './model.js';

/** `expect` on a change: the state the caller decided on (the dashboard: what its button was drawn for). */
export interface FlagExpect {
  enabled?: boolean;
  percentage?: number;
}

/**
 * The flag is no longer what the change expected: nothing was changed. `current` is the state it
 * was checked against (undefined: no such flag), so the caller can look again.
 */
export class FlagPreconditionError extends Error {
  constructor(
    message: string,
    readonly current: FlagView | undefined,
  ) {
    super(message);
    this.name = 'FlagPreconditionError';
  }
}

/**
 * Throws FlagPreconditionError unless `now` has every expected field. Called inside the queue
 * that serializes changes to the flag, just before it would be changed: checked earlier, a change
 * queued ahead of this one (auto-disable, a rollout step, another admin call) or a file edit read
 * in there would slip in between, and this change would be applied over a state nobody expected.
 */
export function checkExpect(now: FlagView | undefined, expect: FlagExpect | undefined): void {
  if (expect === undefined) return;
  if (now === undefined) throw new FlagPreconditionError(`expected ${JSON.stringify(expect)} but there is no such flag; nothing changed`, undefined);
  const off = (Object.keys(expect) as Array<keyof FlagExpect>).filter((k) => now[k] !== expect[k]);
  if (off.length === 0) return;
  const it = off.map((k) => `${k} ${JSON.stringify(now[k])}`).join(', ');
  const was = off.map((k) => `${k} ${JSON.stringify(expect[k])}`).join(', ');
  throw new FlagPreconditionError(`the flag changed: it is ${it}, not ${was} as expected; nothing changed`, now);
}
