import type { IncomingMessage, ServerResponse } from 'node:http';
import { FlagNotUsedError, FlagOwnedError, FlagSourceError, FlagValidationError } from '../flags/model.js';
import { stripMapped } from '../proxy/forwarded.js';
import { RolloutConflictError, RolloutNotFoundError, type RolloutDriver } from '../rollout/driver.js';
import { PlanValidationError } from '../rollout/plan.js';
import { HttpError, readJson, sendJson, decodeSegment } from './http.js';

const ONE = /^\/api\/v1\/rollouts\/([^/]+)$/;
const ACTION = /^\/api\/v1\/rollouts\/([^/]+)\/(pause|resume|abort)$/;

/**
 * The rollouts API (the router has checked the token):
 *   GET  /api/v1/rollouts                       {"rollouts": [...]}
 *   GET  /api/v1/rollouts/:flag                 the plan's live state, or 404
 *   PUT  /api/v1/rollouts/:flag                 start a plan (400 with every problem; 409 while one runs)
 *   POST /api/v1/rollouts/:flag/pause|resume|abort   JSON body optional: {"reason": "..."}
 */
export async function rolloutsApi(driver: RolloutDriver, path: string, method: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    if (path === '/api/v1/rollouts') {
      if (method !== 'GET') throw methodNotAllowed('GET');
      return sendJson(res, 200, { rollouts: driver.list() });
    }
    const a = ACTION.exec(path);
    if (a) {
      if (method !== 'POST') throw methodNotAllowed('POST');
      const flag = decodeSegment(a[1] as string, 'invalid_flag');
      const note = await readNote(req);
      const who = actorOf(req);
      const view =
        a[2] === 'pause' ? await driver.pause(flag, who, note) : a[2] === 'resume' ? await driver.resume(flag, who) : await driver.abort(flag, who, note);
      return sendJson(res, 200, view);
    }
    const m = ONE.exec(path);
    if (m) {
      const flag = decodeSegment(m[1] as string, 'invalid_flag');
      if (method === 'GET') {
        const view = driver.get(flag);
        if (!view) throw new HttpError(404, 'unknown_rollout', `no rollout plan for flag ${JSON.stringify(flag.slice(0, 140))}`);
        return sendJson(res, 200, view);
      }
      if (method === 'PUT') {
        const body = await readJson(req);
        return sendJson(res, 200, await driver.put(flag, body, actorOf(req)));
      }
      throw methodNotAllowed('GET, PUT');
    }
    throw new HttpError(404, 'not_found', `no admin endpoint ${method} ${path}`);
  } catch (err) {
    if (err instanceof PlanValidationError) throw new HttpError(400, 'invalid_plan', err.message);
    if (err instanceof FlagValidationError) throw new HttpError(400, 'invalid_flag', err.message);
    if (err instanceof RolloutNotFoundError) throw new HttpError(404, 'unknown_rollout', err.message);
    if (err instanceof RolloutConflictError) throw new HttpError(409, 'rollout_conflict', err.message);
    // Fleet mode, a toggle no route uses: cutover changes only its own flags, so it runs no plan on it.
    if (err instanceof FlagNotUsedError) throw new HttpError(409, 'not_used_by_cutover', err.message);
    // Fleet mode without UNLEASH_ADMIN_TOKEN: cutover cannot move the flag, so it runs no plan.
    if (err instanceof FlagOwnedError) throw new HttpError(409, 'owned_by_unleash', `${err.message}; a rollout plan needs cutover to be able to change the flag`);
    if (err instanceof FlagSourceError) throw new HttpError(502, 'unleash_error', err.message);
    throw err;
  }
}


/**
 * Action bodies are optional, but the content type is not: like every admin write, only
 * application/json (a cross-site form cannot send it without a CORS preflight).
 */
async function readNote(req: IncomingMessage): Promise<string | undefined> {
  let body: unknown;
  try {
    body = await readJson(req, 4096);
  } catch (err) {
    if (err instanceof HttpError && err.code === 'invalid_body') return undefined; // empty body
    throw err;
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'invalid_body', 'body must be a JSON object: {} or {"reason": "..."}');
  const extra = Object.keys(body).filter((k) => k !== 'reason');
  if (extra.length > 0) throw new HttpError(400, 'invalid_body', `unknown field${extra.length > 1 ? 's' : ''} ${extra.map((k) => JSON.stringify(k.slice(0, 64))).join(', ')}`);
  const reason = (body as { reason?: unknown }).reason;
  if (reason === undefined) return undefined;
  if (typeof reason !== 'string' || reason.length > 500) throw new HttpError(400, 'invalid_body', 'reason: must be a string of at most 500 characters');
  return reason;
}

/** The audit log's "who": an operator-supplied name if given, and always the peer address. */
function actorOf(req: IncomingMessage): string {
  const peer = stripMapped(req.socket.remoteAddress ?? 'unknown');
  const named = req.headers['x-cutover-actor'];
  if (typeof named === 'string' && /^[\w.@ -]{1,64}$/.test(named)) return `${named}@${peer}`;
  return peer;
}

function methodNotAllowed(allow: string): HttpError {
  return new HttpError(405, 'method_not_allowed', `allowed: ${allow}`);
}
