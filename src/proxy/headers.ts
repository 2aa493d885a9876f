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
  'proxy-authentication-info',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'http2-settings',
]);

/**
 * Request headers the proxy sets itself (after dropping the client's copies). x-cutover-shadow
 * marks mirrored requests, which candidates may dry-run (no payment, no email): a client's copy
 * must never reach an upstream, or a real order could be skipped while the client sees success.
 */
const MANAGED_REQUEST = new Set(['host', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'x-request-id', 'expect', 'x-cutover-shadow']);

/** Header names remembered per direction (see requestNames and responseNames). */
const MAX_NAMES = 512;

/** A request header name as a client spelled it: its lowercase form, and whether it never passes. */
interface RequestName {
  readonly lower: string;
  readonly drop: boolean;
}

/**
 * Request header names seen so far, by spelling: clients send the same few on every request, and
 * a lookup is cheaper than lowercasing each name and hashing the result for two set lookups. At
 * most MAX_NAMES are kept (past that, names are classified uncached), so clients inventing names
 * cannot grow it.
 */
const requestNames = new Map<string, RequestName>();

function requestName(name: string): RequestName {
  let n = requestNames.get(name);
  if (n === undefined) {
    const lower = name.toLowerCase();
    n = { lower, drop: HOP_BY_HOP.has(lower) || MANAGED_REQUEST.has(lower) };
    if (requestNames.size < MAX_NAMES) requestNames.set(name, n);
  }
  return n;
}

/** Names listed in Connection (lowercased), or undefined when there are none to drop. */
function connectionTokens(raw: readonly string[]): Set<string> | undefined {
  let out: Set<string> | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 10 && requestName(name).lower === 'connection') out = tokensOf(raw[i + 1] as string, out);
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
    const n = requestName(name);
    if (n.drop || n.lower === drop) continue;
    if (extra !== undefined && extra.has(n.lower)) continue;
    out.push(name, raw[i + 1] as string);
  }
  return out;
}

/** What the proxy does with a response header, decided by its name. */
const PASS = 0;
const HOP = 1;
const CONNECTION = 2;
const REQUEST_ID = 3;

interface KnownName {
  readonly bytes: Buffer;
  readonly text: string;
  readonly kind: number;
  /** The last value seen under this name (cached names only), to reuse its string when it repeats. */
  readonly value: Buffer | undefined;
  valueLength: number;
  valueText: string;
}

/**
 * Response header names already seen, by length and first byte. An upstream sends the same
 * few names on every response; finding one by its bytes is cheaper than making a string,
 * lowercasing it and hashing it for the set lookups each time (copying a response's headers was
 * the proxy's costliest own step in a sampling profile). At most MAX_NAMES are kept, so an
 * upstream inventing names cannot grow it; names past that are handled uncached. Each cached
 * name also remembers its last value (up to 64 bytes): content-type, server, cache-control and
 * even date repeat from one response to the next.
 */
const responseNames = new Map<number, KnownName[]>();
let responseCount = 0;
const MAX_CACHED = 64;

function kindOf(lower: string): number {
  if (lower === 'connection') return CONNECTION;
  if (HOP_BY_HOP.has(lower)) return HOP;
  return lower === 'x-request-id' ? REQUEST_ID : PASS;
}

function nameOf(b: Buffer): KnownName {
  const len = b.length;
  const key = len * 256 + (b[0] ?? 0);
  const list = responseNames.get(key);
  if (list !== undefined) {
    for (let j = 0; j < list.length; j++) {
      const n = list[j] as KnownName;
      if (sameBytes(n.bytes, b, len)) return n;
    }
  }
  const text = b.toString('latin1');
  const lower = text.toLowerCase();
  const cache = len > 0 && len <= MAX_CACHED && responseCount < MAX_NAMES;
  const n: KnownName = {
    bytes: cache ? Buffer.from(b) : b, // a copy only when kept: b is a view of undici's read buffer
    text,
    kind: kindOf(lower),
    // Cookies are per user: not kept in memory past their response.
    value: cache && lower !== 'set-cookie' ? Buffer.alloc(MAX_CACHED) : undefined,
    valueLength: -1,
    valueText: '',
  };
  if (cache) {
    responseCount++;
    if (list === undefined) responseNames.set(key, [n]);
    else list.push(n);
  }
  return n;
}

function valueOf(n: KnownName, b: Buffer): string {
  const len = b.length;
  const cached = n.value;
  if (cached === undefined || len > MAX_CACHED) return b.toString('latin1');
  if (len === n.valueLength && sameBytes(cached, b, len)) return n.valueText;
  const text = b.toString('latin1');
  for (let i = 0; i < len; i++) cached[i] = b[i] as number;
  n.valueLength = len;
  n.valueText = text;
  return text;
}

function sameBytes(a: Buffer, b: Buffer, len: number): boolean {
  for (let i = 0; i < len; i++) if (a[i] !== b[i]) return false;
  return true;
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
    const name = nameOf(raw[i] as Buffer);
    if (name.kind !== PASS) {
      if (name.kind === CONNECTION) named = tokensOf((raw[i + 1] as Buffer).toString('latin1'), named);
      if (name.kind !== REQUEST_ID) continue;
      hasRequestId = true;
    }
    out.push(name.text, valueOf(name, raw[i + 1] as Buffer));
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
