import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FallbackReason } from '../observability/observer.js';
import type { CompiledRoute, RoutingState } from '../routing/compile.js';
import type { Decision, Target } from '../routing/decide.js';
import { choose, type Chooser } from '../routing/choose.js';
import { requestPath, requestQuery } from '../routing/normalize-path.js';
import type { Upstream } from '../upstream/pools.js';
import { adoptTargetAuthority, appendForwarded } from './forwarded.js';
import { Attempt } from './forward.js';
import type { AttemptOwner, AttemptResult, HeadersVerdict } from './attempt-owner.js';
import type { UpstreamError } from './errors.js';
import { candidateTimeout, fallsBackOn, fallsBackOnStatus } from './fallback.js';
import { copyRequestHeaders, hasBody, IDEMPOTENT, SAFE } from './headers.js';
import { bufferBody, planBody } from './request-body.js';
import { requestIdOf } from './request-id.js';
import { UpgradeProxy } from './websocket.js';
import { ResponseCapture } from '../shadow/capture.js';
import { cancelOnFinish, ExchangeState, trackClientClose, type PipelineDeps } from './exchange-state.js';

export type { PipelineDeps };

/**
 * The request's journey, top to bottom:
 *   match route -> identify user -> decide target -> health gate   (routing/choose.ts)
 *   -> forward within budget -> fall back (or hedge) -> shadow -> respond   (here; which
 *      requests are mirrored, and the job handed over: exchange-state.ts)
 *   -> observe   (exchange-state.ts: finish)
 * Each step is a small module; this file only sequences them. One Exchange object per request
 * carries the state (exchange-state.ts), so the hot path allocates no closures.
 */
export class Pipeline {
  constructor(
    private state: RoutingState,
    private readonly deps: PipelineDeps,
  ) {
    this.upgrades = new UpgradeProxy(() => this.state, deps);
  }

  /** Swaps routes/upstreams atomically; requests already routed keep the state they started with. */
  setState(state: RoutingState): void {
    this.state = state;
  }

  /** WebSocket/Upgrade requests, routed by the same rules. */
  readonly upgrades: UpgradeProxy;

  /** `next`, when given, receives the requests no route matches (embedding in a host gateway). */
  readonly handle = (req: IncomingMessage, res: ServerResponse, next?: () => void): void => {
    new Exchange(this.state, this.deps, req, res, next).start();
  };

  /** Would a route take this request? (method and normalized path only; no identity, no I/O) */
  matches(req: IncomingMessage): boolean {
    return this.state.table.match(req.method as string, requestPath(req.url ?? '/')) !== undefined;
  }
}

class Exchange extends ExchangeState implements AttemptOwner, Chooser {
  start(): void {
    const url = this.req.url ?? '/';
    // Absolute-form: its authority is the Host (forwarded with preserveHost, X-Forwarded-Host).
    if (url.charCodeAt(0) !== 47) adoptTargetAuthority(this.req, url);
    this.path = requestPath(url);
    this.query = requestQuery(url);
    this.requestId = requestIdOf(this.req.headers['x-request-id']);
    trackClientClose(this, this.res);

    // 1-4. match route, identify user, decide target, health gate
    choose(this.state, this.deps.flags, this.req, this.path, this);
  }

  chosen(route: CompiledRoute | undefined, decision: Decision, target: Target, userId: string | undefined, unhealthy: boolean, trial: boolean): void {
    this.trial = trial;
    if (route === undefined) {
      if (this.next !== undefined) {
        this.done = true; // the host's request from here on: not ours to answer or observe
        return this.next();
      }
      if (this.state.defaultUpstream === undefined) return this.reply(404, 'no_route', `no route matches ${this.req.method} ${this.path}`);
      this.routeName = 'default';
    } else {
      this.route = route;
      this.routeName = route.name;
    }
    this.decision = decision;
    this.userId = userId;
    const declared = this.req.headers['content-length'];
    if (declared !== undefined && this.state.maxBody > 0 && Number(declared) > this.state.maxBody) return this.tooLarge();
    if (unhealthy) this.noteFallback('unhealthy');
    else if (route?.shadow !== undefined && decision.target === 'legacy') this.pickShadowing(route, route.shadow);
    this.prepare(target);
  }

  private prepare(target: Target): void {
    if (this.done || this.res.destroyed) return this.finish(); // the client left while we decided
    const req = this.req;
    const headers = copyRequestHeaders(req.rawHeaders, [], this.state.qa?.header);
    headers.push('x-request-id', this.requestId);
    appendForwarded(req, this.state.trusted, headers);
    this.headers = headers;
    this.baseHeaders = headers.length;
    const method = req.method as string;
    this.replayable = SAFE.has(method);
    if (!hasBody(req.headers)) return this.launchFirst(target);
    const plan = planBody(req, { toCandidate: target === 'candidate', safe: this.replayable, policy: this.route?.policy, shadowMaxBody: this.shadowing?.maxBody ?? 0 });
    if (plan.kind === 'buffer') {
      bufferBody(req, plan.max).then(
        (buf) => {
          this.budgetFrom = performance.now(); // the upload's time was the client's (budgetFrom)
          this.body = buf;
          if (plan.replay) this.replayable = true;
          this.launchFirst(target);
        },
        () => this.reply(400, 'bad_request', 'request body ended early'),
      );
      return;
    }
    this.shadowing = undefined; // a body we could not keep a copy of cannot be mirrored
    this.body = req; // streamed: the attempt's timer restarts once it is sent (budgetFrom)
    // A chunked upload declared no length: its attempts count the bytes as they are sent.
    if (req.headers['content-length'] === undefined) this.bodyLimit = this.state.maxBody;
    this.launchFirst(target);
  }

  /** 413 before anything reaches an upstream; the connection closes so the body is not read. */
  tooLarge(): void {
    if (this.res.headersSent) return this.cancelAttempts(); // an upstream already answered: just stop
    this.res.setHeader('connection', 'close');
    // Cancelling destroys the request stream (and socket): do it once the 413 is on the wire.
    this.res.once('finish', cancelOnFinish);
    this.reply(413, 'body_too_large', `request body is larger than ${this.state.maxBody} bytes`);
  }

  // 5. forward within budget
  private launchFirst(target: Target): void {
    if (target === 'legacy') return this.launchLegacy();
    const route = this.route as CompiledRoute;
    const left = this.budgetLeft(); // verifying a JWT may have spent some of it
    if (left < 0) return this.launchLegacy(left); // spent already: the 504 legacy would get
    this.candidate = this.launch(route.candidate as Upstream, 'candidate', candidateTimeout(route.policy, left));
    if (route.policy.hedgeMs > 0 && this.body === null && SAFE.has(this.req.method as string)) {
      this.hedgeTimer = setTimeout(onHedge, route.policy.hedgeMs, this);
    }
  }

  /** `timeout`: budgetLeft(), taken by a caller that already read it (hedge). */
  private launchLegacy(timeout = this.budgetLeft()): void {
    const up = this.route?.legacy ?? (this.state.defaultUpstream as Upstream);
    if (timeout < 0) return this.reply(504, 'upstream_timeout', `route ${this.routeName} budget of ${this.route?.policy.budgetMs} ms exhausted`);
    this.legacyTries++;
    this.legacyError = undefined;
    this.legacy = this.launch(up, 'legacy', timeout);
  }

  /** What is left of the route's budget: ms, 0 = no budget, -1 = spent. */
  private budgetLeft(): number {
    const budget = this.route?.policy.budgetMs ?? 0;
    if (budget <= 0) return 0;
    const left = Math.ceil(budget - (performance.now() - this.budgetFrom));
    return left > 0 ? left : -1;
  }

  private launch(up: Upstream, target: Target, timeoutMs: number): Attempt {
    const host = up.preserveHost ? (this.req.headers.host ?? up.host) : up.host;
    // The first attempt takes the prepared list as is; a second one (fallback, hedge) gets a copy
    // with its own Host, since undici may still be reading the first.
    const headers = this.attempts++ === 0 ? this.headers : this.headers.slice(0, this.baseHeaders);
    headers.push('host', host);
    const path = up.basePath + this.path + this.query;
    const attempt = new Attempt(this, this.res, up, target, this.requestId);
    if (this.shadowing !== undefined && target === 'legacy') {
      attempt.capture = this.capture = new ResponseCapture(this.shadowing.maxBody, this.shadowing.compare.headers);
    }
    return attempt.start(
      { method: this.req.method as string, path, headers, body: this.body },
      timeoutMs,
      this.bodyLimit,
    );
  }

  hedge(): void {
    if (this.winner || this.done || this.candidateSettled || this.legacy) return;
    // A spent budget would answer 504 with the candidate still pending: let it decide instead.
    // The budget is read once: a second read a moment later could find it spent and answer 504.
    const timeout = this.budgetLeft();
    if (timeout < 0) return;
    this.launchLegacy(timeout);
  }

  accept(attempt: Attempt, status: number): HeadersVerdict {
    if (this.winner !== undefined || this.done) return 'reject';
    if (attempt.target === 'legacy') {
      // Hedged: a legacy 5xx is not "the first good answer" while the candidate may still give
      // one, but it is the answer of last resort should the candidate fail: hold it unsent.
      if (status >= 500 && this.candidate !== undefined && !this.candidateSettled) return 'hold';
    } else if (fallsBackOnStatus((this.route as CompiledRoute).policy, status) && this.legacyCanAnswer() && this.canFallBack(attempt)) {
      return 'reject';
    } else if (this.trial && status < 500) {
      this.judgeTrialAtHeaders();
    }
    this.win(attempt);
    return 'accept';
  }

  private win(attempt: Attempt): void {
    this.winner = attempt;
    clearTimeout(this.hedgeTimer);
    this.drop(attempt === this.candidate ? this.legacy : this.candidate, 'hedged');
    if (attempt.target === 'legacy' && this.candidate !== undefined && this.fallback === undefined) this.noteFallback('hedge');
  }

  // 6. fall back, or answer the failure
  attemptDone(attempt: Attempt, result: AttemptResult): void {
    const err = result.error;
    this.recordAttempt(attempt, result.status, err?.kind);
    if (attempt.target === 'candidate') {
      this.candidateSettled = true;
      // A timeout while the request waited in our own pool, or that left the candidate too
      // little of the time, is cutover's queueing, not the candidate failing: fall back, but
      // don't eject the candidate or count toward auto-disable (judgeCandidate).
      this.judgeCandidate(attempt, result);
    } else {
      this.judgeLegacy(attempt, result.status, err);
    }
    if (err === undefined && this.capture !== undefined && attempt.capture === this.capture) this.submitShadow();
    if (err === undefined || result.headersSent) return this.finish();
    if (this.done) return;
    // The winner failed before a byte reached the client (Node refused its headers): answer.
    if (this.winner !== undefined) return this.winner === attempt ? this.replyError(err) : undefined;
    if (attempt.target === 'candidate') return this.candidateFailed(attempt, err, result.status);
    if (this.candidate !== undefined && !this.candidateSettled) {
      this.legacyError = err; // hedged: the candidate may still answer
      return;
    }
    this.legacyFailed(err);
  }

  private candidateFailed(attempt: Attempt, err: UpstreamError, status: number): void {
    const falls = fallsBackOn((this.route as CompiledRoute).policy, err.kind, status);
    const legacy = this.legacy;
    if (legacy !== undefined) {
      // Hedged: legacy's outcome is the answer, as after a fallback: its response (sent on now if
      // it was held), or its failure once it has none.
      if (this.fallback === undefined) this.noteFallback(falls ? (err.kind as FallbackReason) : 'hedge');
      if (this.legacyError !== undefined) return this.legacyFailed(this.legacyError);
      if (legacy.held) {
        this.win(legacy);
        legacy.release();
      }
      return; // otherwise legacy's answer is on its way
    }
    if (falls && this.canFallBack(attempt)) {
      this.noteFallback(err.kind as FallbackReason);
      return this.launchLegacy();
    }
    this.replyError(err);
  }

  private legacyFailed(err: UpstreamError): void {
    if (this.legacyRetries(err)) return this.launchLegacy();
    this.replyError(err);
  }

  /**
   * A keep-alive socket the upstream closed as we reused it: safe to try once more when the
   * request is idempotent and nothing of its body was consumed.
   */
  private legacyRetries(err: UpstreamError): boolean {
    return err.kind === 'reset' && this.legacyTries === 1 && IDEMPOTENT.has(this.req.method as string) && this.bodyKept();
  }

  /** Hedged with legacy already failed for good: a candidate 5xx is the only answer there is. */
  private legacyCanAnswer(): boolean {
    return this.legacyError === undefined || this.legacyRetries(this.legacyError);
  }
}

function onHedge(ex: Exchange): void {
  ex.hedge();
}
