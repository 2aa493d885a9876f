/**
 * Normalizes a request path before matching, so that `/api/v1/customers/../orders`, `%2e%2e`,
 * and `//` tricks route by what the backend will actually resolve. Percent-encoded dots are
 * decoded (they are dot segments in disguise); other escapes, including `%2F`, are left alone so
 * an encoded slash never becomes a segment boundary. `..` never climbs above the root.
 *
 * Returns the normalized path (no query). The fast path allocates nothing for clean paths.
 */
export function normalizePath(path: string): string {
  if (!needsWork(path)) return path;
  const decoded = path.replace(/%2e/gi, '.');
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
  return path.includes('%') && /%2e/i.test(path);
}

/** The normalized path of a request target (`req.url`), without its query. */
export function requestPath(url: string): string {
  const q = url.indexOf('?');
  return normalizePath(q === -1 ? url : url.slice(0, q));
}

/** The query of a request target, with its leading "?", or "". */
export function requestQuery(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? '' : url.slice(q);
}
