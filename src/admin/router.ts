import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../observability/logger.js';
import type { FlagStore } from '../flags/store.js';
import { tokenChecker } from './auth.js';
import { getFlag, listFlags, postFlag } from './flags-api.js';
import { HttpError, sendError, sendJson } from './http.js';

export interface AdminDeps {
  flags: FlagStore;
  logger: Logger;
  token?: string | undefined;
  /** False while starting or draining: /readyz answers 503 so load balancers stop sending. */
  isReady: () => boolean;
}

const FLAG_PATH = /^\/api\/v1\/flags\/([^/]+)$/;

/** The admin API as a node:http handler, for the admin listener or for mounting in a host app. */
export function createAdminHandler(deps: AdminDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const authorized = tokenChecker(deps.token);
  return (req, res) => {
    dispatch(deps, authorized, req, res).catch((err: unknown) => {
      if (err instanceof HttpError) return sendError(res, err);
      deps.logger.error({ err: (err as Error).message, url: req.url }, 'admin request failed');
      if (!res.headersSent) sendError(res, new HttpError(500, 'internal', 'internal error; see the proxy log'));
      else res.destroy();
    });
  };
}

async function dispatch(
  deps: AdminDeps,
  authorized: (req: IncomingMessage) => boolean,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const path = (req.url ?? '/').split('?')[0] as string;
  const method = req.method ?? 'GET';

  // Probes carry no credentials: liveness and readiness are open on the admin listener.
  if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
  if (path === '/readyz') return deps.isReady() ? sendJson(res, 200, { status: 'ready' }) : sendJson(res, 503, { status: 'not ready' });

  if (!authorized(req)) {
    req.resume();
    return sendError(res, new HttpError(401, 'unauthorized', 'missing or wrong bearer token'), { 'www-authenticate': 'Bearer' });
  }

  if (path === '/api/v1/flags') {
    if (method !== 'GET') throw methodNotAllowed('GET');
    return listFlags(deps.flags, res);
  }
  const m = FLAG_PATH.exec(path);
  if (m) {
    let name: string;
    try {
      name = decodeURIComponent(m[1] as string);
    } catch {
      throw new HttpError(400, 'invalid_flag', 'flag name is not valid percent-encoding');
    }
    if (method === 'GET') return getFlag(deps.flags, name, res);
    if (method === 'POST') return postFlag(deps.flags, name, req, res);
    throw methodNotAllowed('GET, POST');
  }
  throw new HttpError(404, 'not_found', `no admin endpoint ${method} ${path}`);
}

function methodNotAllowed(allow: string): HttpError {
  return new HttpError(405, 'method_not_allowed', `allowed: ${allow}`);
}
