/**
 * Normalizes a request path before matching, so that `/api/v1/customers/../orders`, `%2e%2e`,
 * `customer%73` and `//` tricks route by what the backend will actually resolve. Escapes of
 * unreserved characters (A-Z a-z 0-9 - . _ ~) are decoded, as RFC 3986 6.2.2.2 says they are the
 * same path: an upstream that decodes them would otherwise serve a route's resource without that
 * route deciding. Other escapes, including `%2F`, stay encoded (hex upper-cased) so an encoded
 * slash never becomes a segment boundary. `..` never climbs above the root.
 *
 * Returns the normalized path (no query). The fast path allocates nothing for clean paths.
 */
export function normalizePath(path: string): string {
  if (!needsWork(path)) return path;
  const decoded = path.includes('%') ? path.replace(ESCAPE, decodeUnreserved) : path;
  const out: string[] = [];
  const segments = decoded.split('/');
  const last = segments.length - 1;
  for (let i = 1; i <= last; i++) {
    const seg = segments[i] as string;
    if (seg === '' || seg === '.') {
      // A trailing slash or trailing "." keeps the path a "directory" path.
      if (i === last) out.push('');
      continue;
    }
    if (seg === '..') {
      out.pop();
      if (i === last) out.push('');
      continue;
    }
    out.push(seg);
  }
  return '/' + out.join('/');
}

function needsWork(path: string): boolean {
  if (path.charCodeAt(0) !== 47 /* / */) return true;
  if (path.includes('//') || path.includes('/.')) return true;
  // Only escapes that change: an unreserved character, or lower-case hex. `%20`, `%40`, `%2F` and
  // the like are common in ids and e-mail addresses and pass through as they are, without a copy.
  return path.includes('%') && CHANGING_ESCAPE.test(path);
}

/** %41-%5A, %61-%7A, %30-%39, %2D, %2E, %5F, %7E (either case), or any escape with a-f in it. */
const CHANGING_ESCAPE = /%(?:[46][1-9A-Fa-f]|[57][0-9Aa]|3[0-9]|2[DdEe]|5[Ff]|7[Ee]|[0-9A-Fa-f][a-f]|[a-f][0-9A-Fa-f])/;

const ESCAPE = /%([0-9A-Fa-f]{2})/g;

function decodeUnreserved(escape: string, hex: string): string {
  const c = parseInt(hex, 16);
  const unreserved =
    (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
  return unreserved ? String.fromCharCode(c) : escape.toUpperCase();
}

/** `scheme://authority` at the start of an absolute-form target. */
const ABSOLUTE_FORM = /^[a-z][a-z\d+.-]*:\/\/[^/?#]*/i;

/**
 * The origin-form of a request target: `http://host/api/x?q` becomes `/api/x?q`. Clients that
 * think they talk to a forward proxy send the absolute-form, and RFC 9112 (3.2.2) requires
 * servers to accept it; matched as-is it would be the path `/http:/host/api/x`.
 */
function originForm(url: string): string {
  if (url.charCodeAt(0) === 47 /* / */) return url;
  const m = ABSOLUTE_FORM.exec(url);
  if (m === null) return url;
  const rest = url.slice(m[0].length);
  return rest.charCodeAt(0) === 47 ? rest : '/' + rest;
}

/**
 * The authority of an absolute-form target (`http://shop.example.com:8080/x` gives
 * `shop.example.com:8080`, userinfo dropped), or undefined for any other form. RFC 9112 (3.2.2):
 * it replaces the request's Host header.
 */
export function targetAuthority(url: string): string | undefined {
  if (url.charCodeAt(0) === 47 /* / */) return undefined;
  const m = ABSOLUTE_FORM.exec(url);
  if (m === null) return undefined;
  const authority = m[0].slice(m[0].indexOf('//') + 2);
  const at = authority.lastIndexOf('@');
  return at === -1 ? authority : authority.slice(at + 1);
}

/** The normalized path of a request target (`req.url`), without its query. */
export function requestPath(url: string): string {
  const target = originForm(url);
  const q = target.indexOf('?');
  return normalizePath(q === -1 ? target : target.slice(0, q));
}

/** The query of a request target, with its leading "?", or "". */
export function requestQuery(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? '' : url.slice(q);
}
