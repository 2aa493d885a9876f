import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../observability/logger.js';
import type { AttemptFailure, FallbackReason, Observer } from '../observability/observer.js';
import type { CompiledFlag } from '../flags/model.js';
import type { CompiledRoute, RoutingState } from '../routing/compile.js';
import type { Decision } from '../routing/decide.js';
import { UNROUTED } from '../routing/choose.js';
import type { LiveFailure, UpstreamHealth } from '../upstream/health.js';
import { liveFailure, recordCandidate, recordLegacy, type AutoDisable } from '../upstream/outcomes.js';
import type { Upstream } from '../upstream/pools.js';
import type { ResponseCapture } from '../shadow/capture.js';
import { shadowsUser, type CompiledShadow, type Shadower } from '../shadow/shadower.js';
import { sendProxyError, type UpstreamError } from './errors.js';
import { candidateAllowance } from './fallback.js';
import { SAFE } from './headers.js';
import type { Attempt } from './forward.js';
import type { AttemptResult } from './attempt-owner.js';

export interface PipelineDeps {
  flags: { get(name: string): CompiledFlag | undefined };
  logger: Logger;
  observer: Observer;
  autoDisable: AutoDisable;
  shadow?: Shadower | undefined;
}

const kExchange = Symbol('cutover.exchange');
type Tracked = ServerResponse & { [kExchange]?: ExchangeState };

/**
 * What one request carries through the pipeline, and how it ends: error replies, fallback notes,
 * the candidate's verdict, the shadow handoff, and the one record the observer gets. The journey
 * itself, the order in which these are called, is pipeline.ts's Exchange.
 */
export abstract class ExchangeState {
  /** Arrival: the request's duration (its log line) is measured from here, whatever the budget. */
  protected readonly startedAt = performance.now();
  /**
   * Where the route's budget starts. A body cutover buffers (replayWrites, shadow) is the
   * client's time until read in full: from then on, as Envoy starts its route timeout once the
   * whole request is in, or a slow upload would leave the upstreams nothing and end in a 504 none
   * of them caused. Otherwise arrival: no body to wait for, or a streamed one, which only the
   * dispatched attempt reads; that attempt restarts its timer (the route's `timeout`, cut to the
   * budget, less its queueing) once it has written the whole body (Attempt.onRequestSent), so the
   * upload is not the upstream's time either; no attempt follows one that sent a streamed body.
   * A slow-loris upload is bounded by the listener's requestTimeout, a stalled one by Attempt.expire.
   */
  protected budgetFrom = this.startedAt;
  protected route: CompiledRoute | undefined;
  protected routeName = 'unrouted';
  protected decision: Decision = UNROUTED;
  protected userId: string | undefined;
  protected path = '/';
  protected query = '';
  protected requestId = '';
  protected headers: string[] = [];
  protected body: IncomingMessage | Buffer | null = null;
  /** May a request the candidate saw be replayed on legacy? (safe method, or opted-in write) */
  protected replayable = false;
  protected bodyLimit = 0;
  /** Mirror this request to the candidate once legacy has answered. */
  protected shadowing: CompiledShadow | undefined;
  protected capture: ResponseCapture | undefined;
  protected candidate: Attempt | undefined;
  protected legacy: Attempt | undefined;
  protected winner: Attempt | undefined;
  protected candidateSettled = false;
  /** Hedged: how legacy failed while the candidate was still pending (undefined: no failure yet). */
  protected legacyError: UpstreamError | undefined;
  protected legacyTries = 0;
  protected attempts = 0;
  /** Length of `headers` before the first attempt appended its Host. */
  protected baseHeaders = 0;
  protected fallback: FallbackReason | undefined;
  protected hedgeTimer: NodeJS.Timeout | undefined;
  /** This request holds the candidate's half-open trial: finish() frees it if no outcome did. */
  protected trial = false;
  /** The trial was judged on its headers (judgeTrialAtHeaders): its end adds no second verdict. */
  private trialJudged = false;
  protected done = false;

  constructor(
    protected readonly state: RoutingState,
    protected readonly deps: PipelineDeps,
    protected readonly req: IncomingMessage,
    protected readonly res: ServerResponse,
    protected readonly next: (() => void) | undefined,
  ) {}

  /** The client left, or its upload passed the limit: stop whatever is still in flight. */
  cancelAttempts(): void {
    this.drop(this.candidate, 'aborted');
    this.drop(this.legacy, 'aborted');
  }

  /**
   * Cancels an attempt still in flight and records it (attemptDone never comes for it), so every
   * attempt is counted once: a candidate slow on every request still fills its window.
   */
  protected drop(attempt: Attempt | undefined, why: AttemptFailure): void {
    if (attempt === undefined || !attempt.cancel()) return;
    const status = attempt.statusCode;
    this.recordAttempt(attempt, status, why);
    // Legacy had answered (a 5xx held back until the hedge's candidate won, or a response the
    // client left during): an answer is a verdict, or a legacy failing every hedge looks healthy.
    if (attempt.target === 'legacy' && status !== 0) this.judgeLegacy(attempt, status, undefined);
    // A candidate 5xx relayed (not one to fall back on) whose client left mid-body is its 5xx all
    // the same, or a candidate failing requests whose clients give up would look healthy.
    else if (attempt.target === 'candidate' && status >= 500) this.candidateOutcome('5xx');
  }

  /** One upstream attempt to the observer (metrics, windows): each attempt exactly once. */
  protected recordAttempt(attempt: Attempt, status: number, failure: AttemptFailure | undefined): void {
    this.deps.observer.attempt({
      route: this.routeName,
      target: attempt.target,
      upstream: attempt.upstream.name,
      status,
      durationMs: performance.now() - attempt.startedAt,
      failure,
    });
  }

  /** Never replay a write the candidate may have seen, nor a body already streamed away. */
  protected canFallBack(attempt: Attempt): boolean {
    if (!attempt.sent) return true; // the candidate provably never received a byte
    return this.replayable && this.bodyKept();
  }

  /** No body, or one held in memory: the request can be sent again. */
  protected bodyKept(): boolean {
    return this.body === null || this.body instanceof Buffer;
  }

  /**
   * One verdict per candidate attempt, once it ended: a 5xx status (even if the body was then
   * cut, by the upstream here or by the client leaving in drop()), a success when the response
   * completed, or the failure that ended it.
   */
  protected judgeCandidate(attempt: Attempt, result: AttemptResult): void {
    if (this.trialJudged) return;
    const err = result.error;
    if (result.status >= 500) return this.candidateOutcome('5xx');
    if (err === undefined) return this.candidateOutcome(undefined);
    // No verdict: the attempt was aborted, its answer was discarded because the request was
    // already over ('5xx' with a status below 500), or the timeout was cutover's own queueing or
    // a budget spent before dispatch (a JWT verified first).
    if (err.kind === 'aborted' || err.kind === '5xx') return this.releaseTrial();
    if (err.kind === 'timeout' && !attempt.timeoutIsUpstreams(candidateAllowance((this.route as CompiledRoute).policy))) return this.releaseTrial();
    this.candidateOutcome(liveFailure(err.kind));
  }

  /** Legacy's passive health (reporting only: legacy is never gated). */
  protected judgeLegacy(attempt: Attempt, status: number, err: UpstreamError | undefined): void {
    recordLegacy(this.state.health.get(attempt.upstream.name), status, err, this.routeName);
  }

  /**
   * The trial after an ejection is judged on its response headers: waiting for the end of a
   * stream (SSE, a long poll, a download the client may abandon) would keep the candidate out
   * for as long, or for good when such clients leave first.
   */
  protected judgeTrialAtHeaders(): void {
    this.trialJudged = true;
    this.candidateOutcome(undefined);
  }

  private candidateOutcome(failure: LiveFailure | undefined): void {
    const trial = this.trial;
    this.trial = false; // success() and failure() end the trial
    recordCandidate(this.route as CompiledRoute, failure, this.deps.autoDisable, trial);
  }

  /** No verdict on the candidate (hedge lost, client left, 413, queued too long): free the trial. */
  protected releaseTrial(): void {
    if (!this.trial) return;
    this.trial = false;
    this.route?.candidateHealth?.released();
  }

  /**
   * A request the flag sent to legacy, on a shadowed route: is it mirrored once legacy answered
   * (README "Shadow traffic": safe methods unless `writes`, users sampled by their shadow bucket)?
   * An ejected candidate is spared the mirror too: it is out to recover, and its answers would be noise.
   */
  protected pickShadowing(route: CompiledRoute, shadow: CompiledShadow): void {
    if (route.candidate === undefined || this.deps.shadow === undefined) return;
    if (!SAFE.has(this.req.method as string) && !shadow.writes) return;
    if (shadowsUser(shadow, this.userId) && !(route.candidateHealth as UpstreamHealth).out()) this.shadowing = shadow;
  }

  /** Legacy answered in full: mirror the request to the candidate, off the request path. */
  protected submitShadow(): void {
    const route = this.route as CompiledRoute;
    (this.deps.shadow as Shadower).submit({
      route: route.name,
      shadow: this.shadowing as CompiledShadow,
      legacy: route.legacy,
      candidate: route.candidate as Upstream,
      method: this.req.method as string,
      path: this.path + this.query,
      headers: this.headers.slice(0, this.baseHeaders), // without the attempt's Host
      body: this.body instanceof Buffer ? this.body : null,
      requestId: this.requestId,
      legacyResponse: (this.capture as ResponseCapture).response(),
    });
  }

  protected noteFallback(reason: FallbackReason): void {
    this.fallback = reason;
    this.deps.observer.fallback(this.routeName, reason);
    // Failures are logged one by one (outlier ejection bounds how many there can be). While the
    // candidate is ejected every request falls back: that is one ejection line, plus the metric
    // and each request's own log line, not a warning per request.
    if (reason !== 'unhealthy' && reason !== 'hedge') {
      this.deps.logger.warn({ requestId: this.requestId, route: this.routeName, reason }, 'fallback to legacy');
    }
  }

  protected replyError(err: UpstreamError): void {
    this.deps.logger.warn(
      { requestId: this.requestId, route: this.routeName, upstream: err.upstream, kind: err.kind, err: err.cause.message },
      'upstream failed',
    );
    const body = this.body;
    if (body !== null && !Buffer.isBuffer(body) && body.readableDidRead && !body.complete) {
      // The upload is still streaming and partly consumed, so no answer can be clean: a 502
      // written now reached a client still sending, while undici destroys the body it was
      // sending (and the client's socket with it). Reset, so it cannot pass for an answer.
      // A body not read yet (connection refused) still gets its 502.
      this.res.destroy();
      return this.finish();
    }
    this.reply(err.status, err.status === 504 ? 'upstream_timeout' : 'bad_gateway', `upstream ${err.upstream} failed: ${err.kind}`);
  }

  protected reply(status: number, error: string, message: string): void {
    sendProxyError(this.res, status, error, message, this.requestId);
    this.finish();
  }

  /** The client's connection closed before the response finished. */
  clientClosed(): void {
    if (this.done) return;
    this.cancelAttempts();
    this.finish();
  }

  /** 7. observe: one record per request. */
  protected finish(): void {
    if (this.done) return;
    this.done = true;
    this.releaseTrial();
    clearTimeout(this.hedgeTimer);
    this.deps.observer.request({
      requestId: this.requestId,
      method: this.req.method as string,
      path: this.path,
      route: this.routeName,
      flag: this.route?.flag,
      target: this.winner?.target ?? (this.fallback ? 'legacy' : this.decision.target),
      why: this.decision.why,
      fallback: this.fallback,
      bucket: this.decision.bucket,
      userId: this.userId,
      status: this.res.headersSent ? this.res.statusCode : 0,
      durationMs: performance.now() - this.startedAt,
    });
  }
}

/** The client's connection closing, routed to its request without a closure per request. */
export function trackClientClose(ex: ExchangeState, res: ServerResponse): void {
  (res as Tracked)[kExchange] = ex;
  res.on('close', onClientClose);
}

/** A 'finish' listener: cancels the request's attempts once its response is sent. */
export function cancelOnFinish(this: ServerResponse): void {
  (this as Tracked)[kExchange]?.cancelAttempts();
}

function onClientClose(this: Tracked): void {
  if (!this.writableFinished) this[kExchange]?.clientClosed();
}
