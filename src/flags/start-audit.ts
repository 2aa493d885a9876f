import type { Logger } from '../observability/logger.js';
import { sameState, type FlagState } from './model.js';
import type { FlagChange, FlagPersistence } from './persistence.js';

const CHANGED = 'found at start: not what the audit log last recorded (edited or deleted while cutover was stopped, or written just before a crash)';
const UNKNOWN = 'found at start: not in the audit log (created while cutover was stopped, there before the log began, or written just before a crash)';

/**
 * File mode, at start: every flag whose file differs from what the audit log last said of it
 * gets an audit line now (source "file"), so the log accounts for the state cutover starts
 * with: edits made while it was stopped, a flag file deleted meanwhile, or a change whose file
 * was written when a crash (kill -9) came before its audit line. A log with no lines yet (first
 * start) is the baseline and gets none; so a flag that was there before the log began is one the
 * log does not know, and gets its line, saying so, at the first start after the log began.
 */
export async function auditFoundAtStart(persistence: FlagPersistence, logger: Logger): Promise<FlagChange[]> {
  const audited = (await persistence.lastAudited?.()) ?? new Map<string, FlagState | undefined>();
  if (audited.size === 0) return [];
  const found = await persistence.scan();
  const changes: FlagChange[] = [];
  for (const name of [...new Set([...audited.keys(), ...found.keys()])].sort()) {
    const state = found.get(name);
    if (state instanceof Error) continue; // an invalid file is logged by load() and ignored
    const before = audited.get(name);
    if (sameState(before, state)) continue;
    const change: FlagChange = { name, before, after: state, actor: { source: 'file', reason: before === undefined ? UNKNOWN : CHANGED }, time: new Date().toISOString() };
    await persistence.audit(change);
    logger.warn({ flag: name, before, after: state }, 'flag state at start differs from the audit log; audited now');
    changes.push(change);
  }
  return changes;
}
