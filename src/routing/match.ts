import { trimTrailingSlash } from '../config/load.js';

interface Entry<T> {
  byMethod: Map<string, T>;
  anyMethod: T | undefined;
}

/**
 * Segment-aware longest-prefix route table, compiled once at config load. A lookup walks the
 * request path up one segment at a time ("/a/b/c" -> "/a/b" -> "/a" -> "/"), so it costs at most
 * one Map lookup per segment and never compiles a regex. A prefix whose routes don't take the
 * request's method lets a shorter prefix answer, as Envoy's first-match-of-all-criteria does.
 * HEAD goes where GET goes unless a route on that prefix lists HEAD itself (as NGINX and Express
 * do): otherwise HEAD and GET of one URL could be answered by different upstreams and disagree
 * on ETag and Content-Length.
 */
export class RouteTable<T> {
  private readonly entries = new Map<string, Entry<T>>();

  add(path: string, methods: readonly string[] | undefined, value: T): void {
    const key = trimTrailingSlash(path);
    let e = this.entries.get(key);
    if (!e) {
      e = { byMethod: new Map(), anyMethod: undefined };
      this.entries.set(key, e);
    }
    if (!methods) e.anyMethod = value;
    else for (const m of methods) e.byMethod.set(m, value);
  }

  /** `path` must already be normalized (see normalizePath) and carry no query string. */
  match(method: string, path: string): T | undefined {
    let p = path;
    for (;;) {
      const e = this.entries.get(p);
      if (e !== undefined) {
        const v = e.byMethod.get(method) ?? (method === 'HEAD' ? e.byMethod.get('GET') : undefined) ?? e.anyMethod;
        if (v !== undefined) return v;
      }
      if (p.length <= 1) return undefined;
      const i = p.lastIndexOf('/');
      p = i <= 0 ? '/' : p.slice(0, i);
    }
  }
}
