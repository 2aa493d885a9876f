import type { Dispatcher } from 'undici';
import type { Target } from '../routing/decide.js';
import type { Upstream } from '../upstream/pools.js';
import { copyResponseHeaders } from './headers.js';
import { classify, UpstreamError } from './errors.js';
import type { ResponseCapture } from '../shadow/capture.js';
import type { AttemptOwner, AttemptResult, ForwardRequest } from './attempt-owner.js';
import { UploadWatch } from './upload-watch.js';
import { confirmAttemptTimeout, kStreaming, onAttemptTimeout, releaseHeld, resumeOnDrain, type TrackedResponse } from './attempt-callbacks.js';

/** Thrown from onConnect to drop a request undici has not written yet (keeps the body intact). */
const ABANDONED = new Error('attempt abandoned before it was sent');

/**
 * One upstream attempt, streamed into the client's response with backpressure.
 *
 * Uses undici's callback handler (onConnect/onHeaders/onData/onComplete/onError) on purpose:
 * undici 7 converts controller-style handlers back into these calls and parses every response's
 * headers into an object on the way, which the raw form avoids.
 *
 * undici calls onConnect right before it writes the request, so `sent` is false exactly while
 * the upstream provably has not received a byte: such an attempt can be given up and the request
 * replayed elsewhere, whatever its method.
 */
export class Attempt implements Dispatcher.DispatchHandler {
  /** True once undici started writing the request: the upstream may have seen it. */
  sent = false;
  /** When the route's timer last started counting on the upstream (sending, or a streamed body's end); 0 untimed. */
  private sentAt = 0;
  private timeoutMs = 0;
  /** The client's body a timed attempt streams, until undici has written all of it (onRequestSent). */
  private upload: UploadWatch | null = null;
  /** The upstream's `answered` when this attempt was dispatched. */
  private answeredBefore = 0;
  /** Set when shadow mode wants a copy of this response. */
  capture: ResponseCapture | undefined;
  readonly startedAt = performance.now();
  private abortUpstream: ((err?: Error) => void) | null = null;
  private resumeUpstream: (() => void) | null = null;
  private status = 0;
  private rejectedStatus = 0;
  private settled = false;
  private timer: NodeJS.Timeout | undefined;
  /** The timeout fired; confirmed (or not) once this turn's I/O has been read. */
  private expired = false;
  private bodyLimit = 0;
  private bodyBytes = 0;
  /** A held response (see HeadersVerdict): its raw headers, body read meanwhile, and whether it ended. */
  private heldHeaders: Buffer[] | null = null;
  private heldBody: Buffer[] | null = null;
  private heldDone = false;

  constructor(
    private readonly owner: AttemptOwner,
    private readonly res: TrackedResponse,
    readonly upstream: Upstream,
    readonly target: Target,
    private readonly requestId: string,
  ) {}

  /** `bodyLimit` > 0 counts an undeclared-length upload as undici writes it (without touching the stream). */
  start(req: ForwardRequest, timeoutMs: number, bodyLimit = 0): this {
    this.bodyLimit = bodyLimit;
    this.timeoutMs = timeoutMs;
    this.answeredBefore = this.upstream.answered;
    if (timeoutMs > 0) {
      this.timer = setTimeout(onAttemptTimeout, timeoutMs, this);
      if (req.body !== null && !Buffer.isBuffer(req.body)) this.upload = new UploadWatch(req.body);
    }
    this.upstream.pool.dispatch({ method: req.method, path: req.path, headers: req.headers, body: req.body }, this);
    return this;
  }

  onConnect(abort: (err?: Error) => void): void {
    if (this.expired) this.timedOut(); // too late to send: a timeout, and not the upstream's
    if (this.settled) throw ABANDONED;
    this.sent = true;
    if (this.timeoutMs > 0) this.sentAt = performance.now(); // read only when the route's timer fires
    this.abortUpstream = abort;
  }

  /**
   * undici wrote the whole request. A streamed body came at the client's pace, and an upstream
   * cannot be expected to answer before it has it all: the route's timer starts over from here, as
   * Envoy starts its route timeout once the whole request is in, less what the attempt queued in
   * cutover's pool (cutover's time: a queued write must not outlive the route's budget).
   */
  onRequestSent(): void {
    if (this.upload === null) return;
    this.upload = null;
    if (this.answered()) return;
    const queued = this.sentAt - this.startedAt; // sentAt: onConnect
    this.sentAt = performance.now();
    if (queued < 1) return void (this.timer as NodeJS.Timeout).refresh(); // re-arms it, fired or not
    clearTimeout(this.timer);
    this.timer = setTimeout(onAttemptTimeout, Math.max(1, this.timeoutMs - queued), this);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[] | string[] | null, resume: () => void): boolean {
    if (statusCode < 200 || this.settled) return !this.settled; // 1xx: the final response is still to come
    this.upstream.answered++;
    clearTimeout(this.timer);
    const verdict = this.owner.accept(this, statusCode);
    if (verdict === 'reject') {
      this.rejectedStatus = statusCode;
      this.abortUpstream?.(ABANDONED);
      return false;
    }
    this.status = statusCode;
    this.resumeUpstream = resume;
    if (verdict === 'accept') return this.sendHeaders((rawHeaders ?? []) as Buffer[]);
    this.heldHeaders = (rawHeaders ?? []) as Buffer[];
    return false; // paused: undici reads no more of it until release()
  }

  /** The response is held (not yet sent, not settled). */
  get held(): boolean {
    return this.heldHeaders !== null; // cleanup() clears it when the attempt settles
  }

  /** Response status received (0 before headers, or when it was rejected). */
  get statusCode(): number {
    return this.status;
  }

  /**
   * Sends a held response on to the client after all: the owner had nothing better. On the next
   * tick, since undici cannot resume a parser from inside another parser's callback.
   */
  release(): void {
    process.nextTick(releaseHeld, this);
  }

  sendHeld(): void {
    const raw = this.heldHeaders;
    if (raw === null || this.settled) return;
    this.heldHeaders = null;
    if (!this.sendHeaders(raw)) return;
    const body = this.heldBody;
    this.heldBody = null;
    if (body !== null) for (const chunk of body) this.res.write(chunk);
    if (this.heldDone) return this.onComplete();
    this.resumeUpstream?.();
  }

  private sendHeaders(raw: Buffer[]): boolean {
    const headers = copyResponseHeaders(raw, this.requestId);
    this.capture?.onHeaders(this.status, headers);
    try {
      this.res.writeHead(this.status, headers);
      return true;
    } catch (err) {
      // An upstream header Node refuses to send (bad name or bytes): the owner answers 502.
      this.status = 0;
      this.abortUpstream?.(err as Error);
      return false;
    }
  }

  onBodySent(chunk: { length: number } | number): void {
    if (this.bodyLimit === 0 || typeof chunk === 'number') return;
    this.bodyBytes += chunk.length;
    if (this.bodyBytes > this.bodyLimit) {
      this.bodyLimit = 0;
      this.owner.tooLarge();
    }
  }

  onData(chunk: Buffer): boolean {
    if (this.heldHeaders !== null) {
      // undici stops parsing while paused; kept in case a chunk was already on its way.
      (this.heldBody ??= []).push(chunk);
      return false;
    }
    this.capture?.onData(chunk);
    if (this.res.write(chunk)) return true;
    // The client is slower than the upstream: false pauses the upstream socket until the client
    // drains (resumeOnDrain). Listening only from the first backpressure on keeps the listener
    // off the common path, where the whole response fits the socket's buffer.
    if (this.res[kStreaming] !== this) {
      this.res[kStreaming] = this;
      this.res.on('drain', resumeOnDrain);
    }
    return false;
  }

  onComplete(): void {
    if (this.settled) return;
    if (this.heldHeaders !== null) {
      this.heldDone = true; // a bodiless answer (HEAD, 204) can end while held
      return;
    }
    this.res.end();
    this.settle({ status: this.status, error: undefined, headersSent: true });
  }

  onError(err: Error): void {
    if (this.settled) return;
    if (this.rejectedStatus !== 0) {
      this.settle({ status: this.rejectedStatus, error: new UpstreamError('5xx', this.upstream.name, err), headersSent: false });
      return;
    }
    const error = new UpstreamError(classify(err), this.upstream.name, err);
    if (this.res.headersSent && this.status !== 0) {
      // Mid-body failure: the client has a partial response; cut it so it can tell.
      this.res.destroy(err);
      this.settle({ status: this.status, error, headersSent: true });
      return;
    }
    this.settle({ status: 0, error, headersSent: false });
  }

  /**
   * Whether a timeout counts against the upstream. Its own headersTimeout runs from sending, so it
   * always had that time. The route's timer runs from dispatch (and again from the end of a
   * streamed body: onRequestSent), so a request that waited in cutover's own pool reaches the
   * upstream with part of its time spent, and when one timeout costs the pool its connection the
   * next queued request goes out with even less. Such a timeout is the upstream's when it held the
   * request for at least half the timeout, or when it answered nothing else while this request
   * waited (a hung upstream is still found behind a saturated pool); otherwise it is cutover's
   * queueing and must not eject a working upstream. `allowanceMs`: what the route gives the attempt
   * (its timeout, or its budget); a timer the budget cut to under half of it was spent before
   * dispatch (a JWT verified first).
   */
  timeoutIsUpstreams(allowanceMs: number): boolean {
    if (!this.sent) return false;
    if (!this.expired) return true;
    if (this.timeoutMs < allowanceMs / 2) return false;
    return performance.now() - this.sentAt >= this.timeoutMs / 2 || this.upstream.answered === this.answeredBefore;
  }

  expire(): void {
    // Still writing a body the client streams: its time, not the upstream's (UploadWatch), unless
    // it has stalled: then given up with no verdict on the upstream.
    if (this.upload !== null && this.sent) {
      if (this.upload.stalledFor(this.upstream.headersTimeoutMs)) {
        const err = Object.assign(new Error('the client sent no more of its body for the upstream headersTimeout'), { code: 'CUTOVER_UPLOAD_STALLED' });
        this.settle({ status: 0, error: new UpstreamError('aborted', this.upstream.name, err), headersSent: false });
        return this.abortUpstream?.(err);
      }
      return void (this.timer as NodeJS.Timeout).refresh();
    }
    this.expired = true;
    setImmediate(confirmAttemptTimeout, this);
  }

  /** The route's timeout fired before response headers (and headers did not arrive since). */
  timedOut(): void {
    if (this.answered()) return;
    const err = Object.assign(new Error('no response headers within the route timeout'), { code: 'CUTOVER_ATTEMPT_TIMEOUT' });
    this.settle({ status: 0, error: new UpstreamError('timeout', this.upstream.name, err), headersSent: false });
    this.abortUpstream?.(err); // not yet sent: onConnect will drop it instead
  }

  /**
   * Drops the attempt without telling the owner (the client left, or another attempt won).
   * Returns whether it was still live: the owner then records it, as attemptDone never comes.
   */
  cancel(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.cleanup();
    this.abortUpstream?.(ABANDONED);
    return true;
  }

  resume(): void {
    this.resumeUpstream?.();
  }

  /** Settled, or response headers arrived (kept or rejected): no timer matters any more. */
  private answered(): boolean {
    return this.settled || this.status !== 0 || this.rejectedStatus !== 0;
  }

  private settle(result: AttemptResult): void {
    this.settled = true;
    this.cleanup();
    this.owner.attemptDone(this, result);
  }

  private cleanup(): void {
    clearTimeout(this.timer);
    this.heldHeaders = this.heldBody = null;
    if (this.res[kStreaming] === this) {
      this.res[kStreaming] = undefined;
      this.res.off('drain', resumeOnDrain);
    }
  }
}
