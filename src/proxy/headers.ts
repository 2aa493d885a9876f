/**
 * Pure header helpers (no I/O). Hop-by-hop headers, and every header named in Connection, are
 * meaningful for one connection only and must not cross the proxy in either direction; undici
 * also throws if asked to send some of them.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/** Request headers the proxy sets itself (after dropping the client's copies). */
const MANAGED_REQUEST = new Set(['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-request-id', 'expect']);

/** Names listed in Connection (lowercased), or undefined when there are none to drop. */
function connectionTokens(raw: readonly string[]): Set<string> | undefined {
  let out: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 10 && name.toLowerCase() === 'connection') out = tokensOf(raw[i + 1] as string, out);
  }
  return out;
}

/**
 * Copies the client's raw headers (flat [name, value, ...]) into `out`, dropping hop-by-hop
 * headers, those named in Connection, the ones the proxy manages, and `drop`. Returns `out`.
 */
export function copyRequestHeaders(raw: readonly string[], out: string[], drop?: string): string[] {
  const extra = connectionTokens(raw);
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || MANAGED_REQUEST.has(lower) || lower === drop) continue;
    if (extra !== undefined && extra.has(lower)) continue;
    out.push(name, raw[i + 1] as string);
  }
  return out;
}

/**
 * Converts undici's raw response headers (Buffers, flat) into strings for `res.writeHead` in one
 * pass, dropping hop-by-hop headers and those named in Connection, and adding `x-request-id`
 * when the upstream did not send one.
 */
export function copyResponseHeaders(raw: readonly Buffer[], requestId: string): string[] {
  const out: string[] = [];
  let named: Set<string> | undefined;
  let hasRequestId = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as Buffer).toString('latin1');
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower)) {
      if (lower === 'connection') named = tokensOf((raw[i + 1] as Buffer).toString('latin1'), named);
      continue;
    }
    if (lower === 'x-request-id') hasRequestId = true;
    out.push(name, (raw[i + 1] as Buffer).toString('latin1'));
  }
  // Rare: a Connection header naming other headers, which may have come before it.
  const result = named === undefined ? out : withoutNamed(out, named);
  if (!hasRequestId) result.push('x-request-id', requestId);
  return result;
}

function withoutNamed(flat: string[], named: Set<string>): string[] {
  const kept: string[] = [];
  for (let i = 0; i < flat.length; i += 2) {
    if (!named.has((flat[i] as string).toLowerCase())) kept.push(flat[i] as string, flat[i + 1] as string);
  }
  return kept;
}

function tokensOf(value: string, into: Set<string> | undefined): Set<string> | undefined {
  // Nearly every upstream response says just this: nothing to drop, nothing to split.
  if (value === 'keep-alive' || value === 'close' || value === 'Keep-Alive') return into;
  for (const t of value.split(',')) {
    const tok = t.trim().toLowerCase();
    if (tok && tok !== 'close' && tok !== 'keep-alive') (into ??= new Set()).add(tok);
  }
  return into;
}

/** True when the request has a body to stream (framing per RFC 9112 section 6.3). */
export function hasBody(headers: { 'content-length'?: string; 'transfer-encoding'?: string }): boolean {
  const te = headers['transfer-encoding'];
  if (te !== undefined) return true;
  const cl = headers['content-length'];
  return cl !== undefined && cl !== '0';
}

/** Methods that may be retried or replayed without changing anything on the server. */
export const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
export const SAFE = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);
