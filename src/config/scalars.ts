import { z } from 'zod';
import { parseDuration } from '../util/duration.js';

// The small value types every config schema is built from.

/** Names used in metric labels and URLs: short, printable, no path tricks. */
export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
export const HTTP_TOKEN_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export const name = (what: string) =>
  z.string().regex(NAME_RE, `${what} must be 1-128 characters of letters, digits, '_', '.', '-' and start with a letter or digit`);

export const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a duration: ${JSON.stringify(v)} (use e.g. 300ms, 5s, 2m)` });
    return z.NEVER;
  }
  return ms;
});

const SIZE_RE = /^(\d+)\s*(b|kb|mb)?$/i;
export function parseSize(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 ? v : undefined;
  const m = SIZE_RE.exec(v.trim());
  if (!m) return undefined;
  const unit = (m[2] ?? 'b').toLowerCase();
  return Number(m[1]) * (unit === 'mb' ? 1024 * 1024 : unit === 'kb' ? 1024 : 1);
}

export const size = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const n = parseSize(v);
  if (n === undefined) {
    ctx.addIssue({ code: 'custom', message: `not a size: ${JSON.stringify(v)} (use e.g. 64kb, 10mb)` });
    return z.NEVER;
  }
  return n;
});

export const httpUrl = z.string().transform((v, ctx) => {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    ctx.addIssue({ code: 'custom', message: `not a URL: ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: `only http and https upstreams are supported, got ${u.protocol}` });
    return z.NEVER;
  }
  if (u.search || u.hash || u.username || u.password) {
    ctx.addIssue({ code: 'custom', message: 'upstream URL must not carry a query, fragment or credentials' });
    return z.NEVER;
  }
  return u;
});
