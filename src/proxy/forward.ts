import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Upstream } from '../upstream/pools.js';
import { copyResponseHeaders } from './headers.js';
import { classify, UpstreamError } from './errors.js';

/** What the pipeline learns when an attempt ends. */
export interface AttemptResult {
  /** Upstream status, or 0 when no response headers arrived. */
  status: number;
  /** Set when the attempt failed; `headersSent` tells whether the client already has a response. */
  error: UpstreamError | undefined;
  headersSent: boolean;
}

export interface ForwardRequest {
  method: string;
  /** Path and query as sent upstream (base path already applied). */
  path: string;
  headers: string[];
  /** The client's body stream, or null for bodiless requests. */
  body: IncomingMessage | null;
  requestId: string;
}

/** Receives the end of an attempt; an object rather than a callback so no closure is made per request. */
export interface AttemptOwner {
  attemptDone(result: AttemptResult): void;
}

const kAttempt = Symbol('cutover.attempt');
const kHooked = Symbol('cutover.closeHooked');
type TrackedResponse = ServerResponse & { [kAttempt]?: ForwardHandler | undefined; [kHooked]?: true };

/**
 * Streams one upstream attempt into the client's response with backpressure.
 *
 * Uses undici's callback handler (onConnect/onHeaders/onData/onComplete/onError) on purpose:
 * undici 7 converts controller-style handlers back into these calls and parses every response's
 * headers into an object on the way, which the raw form avoids. Listeners on `res` are shared
 * functions that find the attempt through a symbol, so an attempt allocates no closures.
 */
export class ForwardHandler implements Dispatcher.DispatchHandler {
  private abortUpstream: ((err?: Error) => void) | null = null;
  private resumeUpstream: (() => void) | null = null;
  private status = 0;
  private settled = false;

  constructor(
    private readonly res: TrackedResponse,
    private readonly upstream: Upstream,
    private readonly requestId: string,
    private readonly owner: AttemptOwner,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    this.abortUpstream = abort;
    if (this.res.destroyed) abort(clientGone());
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[] | string[] | null, resume: () => void): boolean {
    if (statusCode < 200) return true; // 1xx: the final response is still to come
    const headers = copyResponseHeaders((rawHeaders ?? []) as Buffer[]);
    if (!hasHeader(headers, 'x-request-id')) headers.push('x-request-id', this.requestId);
    try {
      this.res.writeHead(statusCode, headers);
    } catch (err) {
      // An upstream header Node refuses to send (bad name or bytes): answer 502, don't crash.
      this.abortUpstream?.(err as Error);
      return false;
    }
    this.status = statusCode;
    this.resumeUpstream = resume;
    this.res.on('drain', resumeOnDrain);
    return true;
  }

  onData(chunk: Buffer): boolean {
    // false pauses the upstream socket until the client drains (see resumeOnDrain).
    return this.res.write(chunk);
  }

  onComplete(): void {
    this.res.end();
    this.settle({ status: this.status, error: undefined, headersSent: true });
  }

  onError(err: Error): void {
    const error = new UpstreamError(classify(err), this.upstream.name, err);
    if (this.res.headersSent) {
      // Mid-body failure: the client has a partial response; cut it so it can tell.
      this.res.destroy(err);
      this.settle({ status: this.status, error, headersSent: true });
      return;
    }
    this.settle({ status: 0, error, headersSent: false });
  }

  /** Called when the client's connection closes before the response finished. */
  clientClosed(): void {
    this.abortUpstream?.(clientGone());
  }

  private settle(result: AttemptResult): void {
    if (this.settled) return;
    this.settled = true;
    this.res.off('drain', resumeOnDrain);
    if (this.res[kAttempt] === this) this.res[kAttempt] = undefined;
    this.owner.attemptDone(result);
  }

  resume(): void {
    this.resumeUpstream?.();
  }

  /** Starts the attempt. `owner.attemptDone` is called exactly once. */
  static start(res: ServerResponse, upstream: Upstream, req: ForwardRequest, owner: AttemptOwner): void {
    const tracked = res as TrackedResponse;
    const handler = new ForwardHandler(tracked, upstream, req.requestId, owner);
    if (tracked[kHooked] === undefined) {
      tracked[kHooked] = true;
      res.on('close', abortOnClientClose);
    }
    tracked[kAttempt] = handler;
    upstream.pool.dispatch({ method: req.method, path: req.path, headers: req.headers, body: req.body }, handler);
  }
}

function resumeOnDrain(this: TrackedResponse): void {
  this[kAttempt]?.resume();
}

function abortOnClientClose(this: TrackedResponse): void {
  if (!this.writableFinished) this[kAttempt]?.clientClosed();
}

function hasHeader(flat: string[], lower: string): boolean {
  for (let i = 0; i < flat.length; i += 2) if ((flat[i] as string).toLowerCase() === lower) return true;
  return false;
}

function clientGone(): Error {
  const err = new Error('client closed the connection');
  err.name = 'AbortError';
  return err;
}
