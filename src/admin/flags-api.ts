import type { IncomingMessage, ServerResponse } from 'node:http';
import { FlagValidationError } from '../flags/model.js';
import type { FlagStore } from '../flags/store.js';
import { stripMapped } from '../proxy/forwarded.js';
import { HttpError, readJson, sendJson } from './http.js';

/** GET /api/v1/flags */
export function listFlags(flags: FlagStore, res: ServerResponse): void {
  sendJson(res, 200, { flags: flags.list() });
}

/** GET /api/v1/flags/:name */
export function getFlag(flags: FlagStore, name: string, res: ServerResponse): void {
  const view = flags.view(name);
  if (!view) throw new HttpError(404, 'unknown_flag', `no flag named ${JSON.stringify(name)}`);
  sendJson(res, 200, view);
}

/** POST /api/v1/flags/:name: partial update, creating the flag if new; answers the full new state. */
export async function postFlag(flags: FlagStore, name: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readJson(req);
  try {
    const view = await flags.set(name, body, { source: 'admin-api', who: actorOf(req) });
    sendJson(res, 200, view);
  } catch (err) {
    if (err instanceof FlagValidationError) throw new HttpError(400, 'invalid_flag', err.message);
    throw err;
  }
}

/** The audit log's "who": an operator-supplied name if given, and always the peer address. */
function actorOf(req: IncomingMessage): string {
  const peer = stripMapped(req.socket.remoteAddress ?? 'unknown');
  const named = req.headers['x-cutover-actor'];
  if (typeof named === 'string' && /^[\w.@ -]{1,64}$/.test(named)) return `${named}@${peer}`;
  return peer;
}
