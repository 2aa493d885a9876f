import type { Upstream } from '../upstream/pools.js';
import type { CapturedResponse } from './compare.js';

/**
 * The mirrored request's headers: the forwarded ones with the upstream's Host and one
 * `x-cutover-shadow: 1`. A client's own copy never gets this far: copyRequestHeaders drops it
 * from every forwarded request (proxy/headers.ts), so a real order cannot look like a dry run.
 */
function shadowHeaders(forwarded: readonly string[], host: string): string[] {
  return [...forwarded, 'host', host, 'x-cutover-shadow', '1'];
}

/** What a shadow job sends: the request legacy answered (path without any upstream base path). */
export interface MirroredRequest {
  readonly method: string;
  readonly path: string;
  /** As forwarded, without Host. */
  readonly headers: readonly string[];
  readonly body: Buffer | null;
}

/** Sends `job` to `up` within the route's shadow timeout; the answer is kept up to `maxBody` bytes. */
export async function fetchCaptured(up: Upstream, job: MirroredRequest, s: { readonly timeoutMs: number; readonly maxBody: number }): Promise<CapturedResponse> {
  const r = await up.pool.request({
    method: job.method as 'GET',
    path: up.basePath + job.path,
    headers: shadowHeaders(job.headers, up.host),
    body: job.body,
    headersTimeout: s.timeoutMs,
    bodyTimeout: s.timeoutMs,
    signal: AbortSignal.timeout(s.timeoutMs),
  });
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : v;
  const chunks: Buffer[] = [];
  let size = 0;
  let truncated = false;
  for await (const chunk of r.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > s.maxBody) {
      truncated = true;
      r.body.destroy();
      break;
    }
    chunks.push(chunk);
  }
  return { status: r.statusCode, headers, body: Buffer.concat(chunks), truncated };
}
