import type { ServerResponse } from 'node:http';
import type { AttemptFailure } from '../observability/observer.js';

/**
 * Why an upstream attempt failed, in the terms fallback reasons about. `connect`: refused,
 * unreachable or connect timeout. `reset`: the connection broke before a response. `5xx`: the
 * upstream answered with a status the route falls back on (the answer was discarded).
 */
export type FailureKind = AttemptFailure;

export class UpstreamError extends Error {
  constructor(
    readonly kind: FailureKind,
    readonly upstream: string,
    override readonly cause: Error,
  ) {
    super(`${upstream}: ${cause.message}`);
    this.name = 'UpstreamError';
  }

  /** The status a client gets when nothing else can answer. */
  get status(): number {
    return this.kind === 'timeout' ? 504 : 502;
  }
}

const CONNECT_CODES = new Set([
  'ECONNREFUSED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
]);
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

export function classify(err: Error): FailureKind {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return 'connect';
  if (CONNECT_CODES.has(code)) return 'connect';
  if (TIMEOUT_CODES.has(code)) return 'timeout';
  if (code === 'UND_ERR_ABORTED' || err.name === 'AbortError') return 'aborted';
  if (code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'UND_ERR_CLOSED') return 'reset';
  return 'protocol';
}

/** Answers the client with a JSON error (unless a response already started or the client left). */
export function sendProxyError(res: ServerResponse, status: number, error: string, message: string, requestId: string): void {
  if (res.headersSent || res.destroyed) return;
  // Never includes upstream internals beyond the upstream's configured name.
  const body = JSON.stringify({ error, message, requestId });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'x-request-id': requestId });
  res.end(body);
}
