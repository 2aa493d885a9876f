import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../observability/logger.js';
import type { CompiledFlag } from '../flags/model.js';
import type { CompiledRoute, RoutingState } from '../routing/compile.js';
import { decide, type Decision } from '../routing/decide.js';
import { normalizePath } from '../routing/normalize-path.js';
import type { Upstream } from '../upstream/pools.js';
import { errorBody } from './errors.js';
import { appendForwarded } from './forwarded.js';
import { ForwardHandler, type AttemptOwner, type AttemptResult } from './forward.js';
import { copyRequestHeaders, hasBody, IDEMPOTENT } from './headers.js';

export interface PipelineDeps {
  flags: { get(name: string): CompiledFlag | undefined };
  logger: Logger;
}

const UNROUTED: Decision = Object.freeze({ target: 'legacy', why: 'no-candidate' });

/**
 * The request's journey, top to bottom:
 *   match route -> identify user -> decide target -> forward (streamed) -> respond or fail cleanly.
 * Each step is a small module; this file only sequences them. One Exchange object per request
 * carries the state, so no step allocates closures on the hot path.
 */
export class Pipeline {
  constructor(
    private state: RoutingState,
    private readonly deps: PipelineDeps,
  ) {}

  /** Swaps routes/upstreams atomically; requests already routed keep the state they started with. */
  setState(state: RoutingState): void {
    this.state = state;
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    new Exchange(this.state, this.deps, req, res).start();
  };
}

class Exchange implements AttemptOwner {
  private route: CompiledRoute | undefined;
  private decision: Decision = UNROUTED;
  private target: Upstream | undefined;
  private path = '/';
  private query = '';
  private requestId = '';
  private attempts = 0;

  constructor(
    private readonly state: RoutingState,
    private readonly deps: PipelineDeps,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
  ) {}

  start(): void {
    const url = this.req.url ?? '/';
    const q = url.indexOf('?');
    this.path = normalizePath(q === -1 ? url : url.slice(0, q));
    this.query = q === -1 ? '' : url.slice(q);
    const rid = this.req.headers['x-request-id'];
    this.requestId = typeof rid === 'string' && rid.length > 0 && rid.length <= 200 ? rid : randomUUID();

    // 1. match route
    const route = this.state.table.match(this.req.method as string, this.path);
    if (route === undefined) {
      if (this.state.defaultUpstream === undefined) return this.reply(404, 'no_route', `no route matches ${this.req.method} ${this.path}`);
      this.target = this.state.defaultUpstream;
      return this.send();
    }
    this.route = route;
    if (route.candidate === undefined || route.flag === undefined) {
      this.target = route.legacy;
      return this.send();
    }

    // 2. identify user (sync unless a JWT must be verified)
    const id = route.identify(this.req);
    if (typeof id === 'object') {
      id.then(
        (uid) => this.routeUser(uid),
        () => this.routeUser(undefined),
      );
      return;
    }
    this.routeUser(id);
  }

  // 3. decide target
  private routeUser(userId: string | undefined): void {
    const route = this.route as CompiledRoute;
    this.decision = decide(this.deps.flags.get(route.flag as string), userId);
    this.target = this.decision.target === 'candidate' ? (route.candidate as Upstream) : route.legacy;
    this.send();
  }

  // 4. forward, streaming both ways
  private send(): void {
    if (this.res.destroyed) return; // the client left while we were deciding
    const up = this.target as Upstream;
    const req = this.req;
    const headers = copyRequestHeaders(req.rawHeaders, []);
    headers.push('host', up.preserveHost ? (req.headers.host ?? up.host) : up.host, 'x-request-id', this.requestId);
    appendForwarded(req, this.state.trusted, headers);
    this.attempts++;
    ForwardHandler.start(
      this.res,
      up,
      {
        method: req.method as string,
        path: up.basePath + this.path + this.query,
        headers,
        body: hasBody(req.headers) ? req : null,
        requestId: this.requestId,
      },
      this,
    );
  }

  // 5. respond: success was streamed already; a failure before any byte becomes 502/504
  attemptDone(result: AttemptResult): void {
    const err = result.error;
    if (err === undefined || result.headersSent) return;
    if (err.kind === 'aborted' || this.res.destroyed) return;
    // A keep-alive socket the upstream closed as we reused it: safe to try once more when the
    // request is idempotent and had no body (nothing was consumed, nothing can be applied twice).
    if (err.kind === 'reset' && this.attempts === 1 && IDEMPOTENT.has(this.req.method as string) && !hasBody(this.req.headers)) {
      return this.send();
    }
    this.deps.logger.warn(
      { requestId: this.requestId, route: this.route?.name, upstream: err.upstream, kind: err.kind, err: err.cause.message },
      'upstream failed',
    );
    this.reply(err.status, err.status === 504 ? 'upstream_timeout' : 'bad_gateway', `upstream ${err.upstream} failed: ${err.kind}`);
  }

  private reply(status: number, error: string, message: string): void {
    const body = errorBody(error, message, this.requestId);
    this.res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'x-request-id': this.requestId,
    });
    this.res.end(body);
  }
}
