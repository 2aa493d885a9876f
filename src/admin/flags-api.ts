import type { IncomingMessage, ServerResponse } from 'node:http';
import { FlagPreconditionError, type FlagExpect } from '../flags/expect.js';
import { AppliedThenFailedError, FlagNotUsedError, type FlagView, FlagOwnedError, FlagSourceError, FlagValidationError, NotSeenHereError, SupersededError, UnleashChangeError } from '../flags/model.js';
import type { FlagSourceStatus, FlagStore } from '../flags/store.js';
import { stripMapped } from '../proxy/forwarded.js';
import { HttpError, readJson, sendJson } from './http.js';

/** GET /api/v1/flags (in fleet mode also `source`: is Unleash reachable, since when) */
export function listFlags(flags: FlagStore, res: ServerResponse): void {
  const source = flags.external?.status();
  sendJson(res, 200, source ? { flags: flags.list(), source: sourceJson(source) } : { flags: flags.list() });
}

export function sourceJson(s: FlagSourceStatus, now = Date.now()): Record<string, unknown> {
  return {
    kind: s.kind,
    up: s.up,
    serving_from: s.servingFrom,
    flags: s.flags,
    last_success_at: s.lastSuccessAt !== undefined ? new Date(s.lastSuccessAt).toISOString() : null,
    seconds_since_success: s.lastSuccessAt !== undefined ? Math.round((now - s.lastSuccessAt) / 100) / 10 : null,
    last_failure_at: s.lastFailureAt !== undefined ? new Date(s.lastFailureAt).toISOString() : null,
    last_error: s.lastError ?? null,
  };
}

/** The routes that route by a flag, when the admin API knows the config (always, in cutover itself). */
export type RoutesOfFlag = ((flag: string) => string[]) | undefined;

/**
 * A flag's state plus the routes that use it. A runbook call on a flag no route uses (a name the
 * routes spell differently) is a 200 that moves nobody: the answer says so rather than stay silent.
 */
function withRoutes(view: FlagView, routesOf: RoutesOfFlag): FlagView | (FlagView & { routes: string[]; warning?: string }) {
  if (routesOf === undefined) return view;
  const routes = routesOf(view.name);
  if (routes.length > 0) return { ...view, routes };
  return { ...view, routes, warning: `no route uses flag ${JSON.stringify(view.name)}: this flag moves no traffic until a route names it` };
}

/** GET /api/v1/flags/:name */
export function getFlag(flags: FlagStore, name: string, res: ServerResponse, routesOf?: RoutesOfFlag): void {
  const view = flags.view(name);
  if (!view) throw new HttpError(404, 'unknown_flag', `no flag named ${JSON.stringify(name)}`);
  sendJson(res, 200, withRoutes(view, routesOf));
}

/** POST /api/v1/flags/:name: partial update, creating the flag if new; answers the full new state. */
export async function postFlag(flags: FlagStore, name: string, req: IncomingMessage, res: ServerResponse, routesOf?: RoutesOfFlag): Promise<void> {
  const { patch, expect } = splitExpect(await readJson(req));
  try {
    // The store checks `expect` in its queue, just before the change (a bad name or patch is a 400 first).
    const view = await flags.set(name, patch, { source: 'admin-api', who: actorOf(req) }, expect);
    sendJson(res, 200, withRoutes(view, routesOf));
  } catch (err) {
    if (err instanceof FlagPreconditionError) return sendJson(res, 409, { error: 'precondition_failed', message: err.message, current: err.current ?? null });
    if (err instanceof FlagValidationError) throw new HttpError(400, 'invalid_flag', err.message);
    if (err instanceof FlagNotUsedError) throw new HttpError(409, 'not_used_by_cutover', err.message);
    // Fleet mode: the flag belongs to Unleash (no admin token, or a change it cannot take).
    if (err instanceof FlagOwnedError) throw new HttpError(409, 'owned_by_unleash', err.message);
    // Fleet mode: a rollback of the flag came while this change waited (not applied) or ran (overridden).
    if (err instanceof SupersededError) return sendJson(res, 409, { error: 'superseded_by_rollback', message: err.message, applied: err.applied ?? null, current: flags.view(name) ?? null });
    // Applied in Unleash for the fleet, but this replica does not route by it yet.
    if (err instanceof NotSeenHereError) throw new HttpError(504, 'not_seen_here', err.message);
    if (err instanceof UnleashChangeError && err.applied !== undefined) throw new HttpError(502, 'partly_applied', err.message);
    if (err instanceof FlagSourceError) throw new HttpError(502, 'unleash_error', err.message);
    // The routing change is live fleet-wide, then this replica failed (audit or local settings).
    if (err instanceof AppliedThenFailedError) throw new HttpError(500, 'applied_then_failed', err.message);
    throw err;
  }
}

/** Takes `expect` off a POST body; anything but {enabled?: boolean, percentage?: 0..100} is a 400. */
export function splitExpect(body: unknown): { patch: unknown; expect: FlagExpect | undefined } {
  if (typeof body !== 'object' || body === null || Array.isArray(body) || !Object.hasOwn(body, 'expect')) return { patch: body, expect: undefined };
  const { expect, ...patch } = body as Record<string, unknown>;
  const bad = (why: string) => new HttpError(400, 'invalid_expect', `expect: ${why}, e.g. {"enabled": false, "expect": {"enabled": true}}`);
  if (typeof expect !== 'object' || expect === null || Array.isArray(expect)) throw bad('must be an object');
  const e = expect as Record<string, unknown>;
  const unknown = Object.keys(e).filter((k) => k !== 'enabled' && k !== 'percentage');
  if (unknown.length > 0) throw bad(`only "enabled" and "percentage" can be expected, not ${unknown.map((k) => JSON.stringify(k.slice(0, 64))).join(', ')}`);
  if (Object.keys(e).length === 0) throw bad('name "enabled" and/or "percentage"');
  if (e.enabled !== undefined && typeof e.enabled !== 'boolean') throw bad('"enabled" must be true or false');
  if (e.percentage !== undefined && !(Number.isInteger(e.percentage) && (e.percentage as number) >= 0 && (e.percentage as number) <= 100)) {
    throw bad('"percentage" must be a whole number from 0 to 100');
  }
  return { patch, expect: e as FlagExpect };
}

/** The audit log's "who": an operator-supplied name if given, and always the peer address. */
export function actorOf(req: IncomingMessage): string {
  const peer = stripMapped(req.socket.remoteAddress ?? 'unknown');
  const named = req.headers['x-cutover-actor'];
  if (typeof named === 'string' && /^[\w.@ -]{1,64}$/.test(named)) return `${named}@${peer}`;
  return peer;
}
