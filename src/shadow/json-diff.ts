/**
 * Structural JSON comparison for shadow traffic. Paths are reported in the `$.a.b[*].c` form the
 * route's `ignore` list uses: array indices are folded to `[*]`, so a field that differs in every
 * item of a list counts as one field.
 */

export interface DiffOptions {
  /** Compiled ignore paths (see compilePaths): a difference at or under one is not reported. */
  ignore: PathSet;
  /** Numbers within this absolute distance are equal. */
  numericTolerance: number;
  /** Arrays compared as multisets: `true` for all, or only those at these paths. */
  unordered: boolean | PathSet;
}

export interface Difference {
  path: string;
  legacy: unknown;
  candidate: unknown;
}

/** A set of `$.a[*].b` paths, matched against the folded path of each difference. */
export interface PathSet {
  has(path: string): boolean;
  /** True if `path` is one of the set or below one of them. */
  covers(path: string): boolean;
  readonly size: number;
}

export function compilePaths(paths: readonly string[]): PathSet {
  const set = new Set(paths.map(normalizePath));
  return {
    has: (p) => set.has(p),
    covers(p) {
      if (set.size === 0) return false;
      if (set.has(p)) return true;
      for (const s of set) if (p.startsWith(s) && (p[s.length] === '.' || p[s.length] === '[')) return true;
      return false;
    },
    get size() {
      return set.size;
    },
  };
}

/** `$.items[3].etag` and `items[*].etag` both become `$.items[*].etag`. */
export function normalizePath(p: string): string {
  let out = p.trim().replace(/\[\d+\]/g, '[*]');
  if (!out.startsWith('$')) out = out.startsWith('[') ? `$${out}` : `$.${out}`;
  return out;
}

const MAX_DIFFS = 50;

/** Differences about an array or object as a whole (its length, or its items as a set). */
const WHOLE = new WeakSet<Difference>();

/**
 * True when a difference is about one leaf value: not the document root, not a whole object or
 * array (a type change, a length, an unordered set). Only leaves may be learned as noise: a
 * container path covers every field below it, so one odd legacy answer would hide them all.
 */
export function isLeafDifference(d: Difference): boolean {
  return d.path !== '$' && !WHOLE.has(d) && !isContainer(d.legacy) && !isContainer(d.candidate);
}

function isContainer(v: unknown): boolean {
  return typeof v === 'object' && v !== null;
}

function pushWhole(out: Difference[], d: Difference): void {
  WHOLE.add(d);
  out.push(d);
}

/** Differences between two parsed JSON values (at most 50 are collected). */
export function diffJson(legacy: unknown, candidate: unknown, opts: DiffOptions): Difference[] {
  const out: Difference[] = [];
  walk(legacy, candidate, '$', opts, out);
  return out;
}

function walk(a: unknown, b: unknown, path: string, opts: DiffOptions, out: Difference[]): void {
  if (out.length >= MAX_DIFFS || opts.ignore.covers(path)) return;
  if (a === b) return;
  if (typeof a === 'number' && typeof b === 'number') {
    if (Math.abs(a - b) > opts.numericTolerance) out.push({ path, legacy: a, candidate: b });
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) return walkArray(a, b, path, opts, out);
  if (isObject(a) && isObject(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      const child = /^[A-Za-z_$][\w$]*$/.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k)}]`;
      if (!(k in a)) {
        if (!opts.ignore.covers(child)) out.push({ path: child, legacy: undefined, candidate: b[k] });
      } else if (!(k in b)) {
        if (!opts.ignore.covers(child)) out.push({ path: child, legacy: a[k], candidate: undefined });
      } else walk(a[k], b[k], child, opts, out);
      if (out.length >= MAX_DIFFS) return;
    }
    return;
  }
  out.push({ path, legacy: a, candidate: b });
}

function walkArray(a: unknown[], b: unknown[], path: string, opts: DiffOptions, out: Difference[]): void {
  const items = `${path}[*]`;
  const unordered = opts.unordered === true || (opts.unordered !== false && opts.unordered.has(path));
  if (unordered) {
    // Multiset comparison on a canonical form that already drops ignored fields.
    const canon = (v: unknown) => canonical(v, items, opts);
    const counts = new Map<string, number>();
    for (const v of a) counts.set(canon(v), (counts.get(canon(v)) ?? 0) + 1);
    let same = a.length === b.length;
    if (same) {
      for (const v of b) {
        const k = canon(v);
        const n = counts.get(k) ?? 0;
        if (n === 0) {
          same = false;
          break;
        }
        counts.set(k, n - 1);
      }
    }
    if (!same) pushWhole(out, { path, legacy: `${a.length} items`, candidate: `${b.length} items (as a set: different)` });
    return;
  }
  // `$.items.length` in a route's ignore list tolerates a different item count (the common items
  // are still compared); ignoring `$.items` itself never gets here.
  if (a.length !== b.length && !opts.ignore.covers(`${path}.length`)) pushWhole(out, { path: `${path}.length`, legacy: a.length, candidate: b.length });
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n && out.length < MAX_DIFFS; i++) {
    const before = out.length;
    walk(a[i], b[i], items, opts, out);
    // The same folded field differing in many items is one finding: keep the first.
    if (out.length > before) dedupeFrom(out, before);
  }
}

function dedupeFrom(out: Difference[], from: number): void {
  for (let i = out.length - 1; i >= from; i--) {
    const p = (out[i] as Difference).path;
    if (out.findIndex((d) => d.path === p) < i) out.splice(i, 1);
  }
}

/** Canonical JSON with sorted keys and ignored paths removed (for unordered comparison). */
function canonical(v: unknown, path: string, opts: DiffOptions): string {
  if (opts.ignore.covers(path)) return '"<ignored>"';
  if (Array.isArray(v)) return `[${v.map((x) => canonical(x, `${path}[*]`, opts)).join(',')}]`;
  if (isObject(v)) {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(v[k], `${path}.${k}`, opts)}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'undefined';
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
