import type { IncomingMessage } from 'node:http';
import type { UpstreamError } from './errors.js';
import type { Attempt } from './forward.js';

/*
 * What an upstream attempt (forward.ts) and its owner (pipeline.ts's Exchange) promise each other:
 * the request it sends, the owner's say on its response headers, and how it reports its end.
 * Types only, so nothing here costs the hot path anything.
 */

/** What the owner learns when an attempt ends. */
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
  /** The client's body stream, a buffered copy, or null for bodiless requests. */
  body: IncomingMessage | Buffer | null;
}

/**
 * What the owner makes of final response headers: `accept` sends them on to the client, `reject`
 * discards the response (nothing reaches the client), `hold` keeps it unsent with the upstream
 * paused, until the owner calls release() or cancel().
 */
export type HeadersVerdict = 'accept' | 'reject' | 'hold';

export interface AttemptOwner {
  /** Final response headers arrived. */
  accept(attempt: Attempt, status: number): HeadersVerdict;
  /** Called exactly once per attempt, unless the owner cancelled it. */
  attemptDone(attempt: Attempt, result: AttemptResult): void;
  /** An upload without Content-Length passed the body limit while streaming. */
  tooLarge(): void;
}
