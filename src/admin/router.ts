import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../observability/logger.js';
import type { FlagStore } from '../flags/store.js';
import { isLocalRequest, tokenChecker } from './auth.js';
import { getFlag, listFlags, postFlag } from './flags-api.js';
import { decodeSegment, HttpError, sendError, sendJson } from './http.js';
import { DASHBOARD_HEADERS, DASHBOARD_HTML } from './dashboard/page.js';
import { getMetrics, getStatus, routesOfFlag, type StatusDeps } from './status-api.js';
import { DEFAULTS } from '../defaults.js';
import { rolloutsApi } from './rollouts-api.js';
import type { RolloutDriver } from '../rollout/driver.js';
import { getShadow, listShadow, resetShadow } from './shadow-api.js';
import type { Shadower } from '../shadow/shadower.js';

export interface AdminDeps {
  flags: FlagStore;
  logger: Logger;
  token?: string | undefined;
  /** False while starting or draining: /readyz answers 503 so load balancers stop sending. */
  isReady: () => boolean;
  /** Observability: GET /metrics, GET /api/v1/status and the dashboard at GET /. */
  status?: StatusDeps | undefined;
  /** Rollout plans: /api/v1/rollouts[/:flag[/pause|resume|abort]]. */
  rollouts?: RolloutDriver | undefined;
  /** Shadow traffic results: GET and DELETE (reset) /api/v1/shadow[/:route]. */
  shadow?: Shadower | undefined;
}

const FLAG_PATH = /^\/api\/v1\/flags\/([^/]+)$/;

/**
 * The admin API as a node:http handler, for the admin listener or for mounting in a host app.
 * Without a token it answers only local requests (isLocalRequest), wherever it is mounted.
 */
export function createAdminHandler(deps: AdminDeps): (req: IncomingMessage, res: ServerResponse) => void {
  // No "no token" checker that allows everything: without a token the only way in is isLocalRequest.
  const checkToken = deps.token ? tokenChecker(deps.token) : undefined;
  let warned = false;
  const access = (req: IncomingMessage): Access => {
    if (checkToken !== undefined) return checkToken(req) ? 'ok' : 'unauthorized';
    if (isLocalRequest(req)) return 'ok';
    // Once: an operator behind a proxy gets 403s and needs to know why, an attacker's retries must not flood the log.
    if (!warned) {
      warned = true;
      deps.logger.warn(
        { host: req.headers.host, peer: req.socket.remoteAddress },
        'admin API refused a non-local request: without an admin token (CUTOVER_ADMIN_TOKEN, or the adminToken option) it answers only requests from this machine addressed to localhost',
      );
    }
    return 'forbidden_host';
  };
  return (req, res) => {
    dispatch(deps, access, req, res).catch((err: unknown) => {
      if (err instanceof HttpError) return sendError(res, err);
      deps.logger.error({ err: (err as Error).message, url: req.url }, 'admin request failed');
      if (!res.headersSent) sendError(res, new HttpError(500, 'internal', 'internal error; see the proxy log'));
      else res.destroy();
    });
  };
}

type Access = 'ok' | 'unauthorized' | 'forbidden_host';

async function dispatch(
  deps: AdminDeps,
  accessOf: (req: IncomingMessage) => Access,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const path = (req.url ?? '/').split('?')[0] as string;
  const method = req.method ?? 'GET';

  // Probes carry no credentials: liveness and readiness are open on the admin listener.
  if (path === DEFAULTS.livenessPath) return sendJson(res, 200, { status: 'ok' });
  if (path === DEFAULTS.readinessPath) return deps.isReady() ? sendJson(res, 200, { status: 'ready' }) : sendJson(res, 503, { status: 'not ready' });

  const access = accessOf(req);
  if (access === 'forbidden_host') {
    req.resume();
    return sendError(res, new HttpError(403, 'forbidden_host', 'without an admin token (CUTOVER_ADMIN_TOKEN, or the adminToken option) the admin API answers only requests from this machine addressed to localhost (DNS rebinding guard)'));
  }

  // The dashboard page is static and holds no data: it must load without credentials so it can
  // ask for the token; every call it makes goes through the checks below.
  if (path === '/' || path === '/index.html') {
    if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed('GET, HEAD');
    res.writeHead(200, { ...DASHBOARD_HEADERS, 'content-length': Buffer.byteLength(DASHBOARD_HTML) });
    res.end(method === 'HEAD' ? undefined : DASHBOARD_HTML);
    return;
  }

  if (access === 'unauthorized') {
    req.resume();
    return sendError(res, new HttpError(401, 'unauthorized', 'missing or wrong bearer token'), { 'www-authenticate': 'Bearer' });
  }

  if (path === DEFAULTS.metricsPath && deps.status) {
    if (method !== 'GET') throw methodNotAllowed('GET');
    return getMetrics(deps.status.observer, res);
  }
  if (path === '/api/v1/shadow' && deps.shadow) {
    if (method === 'GET') return listShadow(deps.shadow, res);
    if (method === 'DELETE') return resetShadow(deps.shadow, undefined, req, res);
    throw methodNotAllowed('GET, DELETE');
  }
  const sm = /^\/api\/v1\/shadow\/([^/]+)$/.exec(path);
  if (sm && deps.shadow) {
    const route = decodeSegment(sm[1] as string);
    if (method === 'GET') return getShadow(deps.shadow, route, res);
    if (method === 'DELETE') return resetShadow(deps.shadow, route, req, res);
    throw methodNotAllowed('GET, DELETE');
  }
  if (path === '/api/v1/status' && deps.status) {
    if (method !== 'GET') throw methodNotAllowed('GET');
    return getStatus(deps.status, res);
  }
  if (path === '/api/v1/flags') {
    if (method !== 'GET') throw methodNotAllowed('GET');
    return listFlags(deps.flags, res);
  }
  const m = FLAG_PATH.exec(path);
  if (m) {
    const name = decodeSegment(m[1] as string, 'invalid_flag');
    const status = deps.status;
    const routesOf = status !== undefined ? (flag: string) => routesOfFlag(status.topology(), flag) : undefined;
    if (method === 'GET') return getFlag(deps.flags, name, res, routesOf);
    if (method === 'POST') return postFlag(deps.flags, name, req, res, routesOf);
    throw methodNotAllowed('GET, POST');
  }
  if (deps.rollouts && (path === '/api/v1/rollouts' || path.startsWith('/api/v1/rollouts/'))) {
    return rolloutsApi(deps.rollouts, path, method, req, res);
  }
  throw new HttpError(404, 'not_found', `no admin endpoint ${method} ${path}`);
}

function methodNotAllowed(allow: string): HttpError {
  return new HttpError(405, 'method_not_allowed', `allowed: ${allow}`);
}

