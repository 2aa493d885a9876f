import { createHash } from 'node:crypto';
import { diffJson, type DiffOptions, type Difference } from './json-diff.js';

/** A response as shadow mode keeps it: status, the compared headers, and the body up to a cap. */
export interface CapturedResponse {
  status: number;
  /** Lowercased header names. */
  headers: Record<string, string>;
  body: Buffer;
  /** The body was longer than the cap (when decoded, too: see decodeBody). */
  truncated: boolean;
  /** Set when the body is still content-encoded (unknown or undecodable encoding): which, and why. */
  encoded?: string;
}

export interface CompareOptions extends DiffOptions {
  /** Lowercased names of the headers that must agree. */
  headers: readonly string[];
}

export type Verdict = { result: 'match' } | { result: 'mismatch'; differences: Difference[] } | { result: 'error'; reason: string };

/**
 * Compares legacy's and the candidate's answers: status, chosen headers, then the body, JSON
 * structurally (key order never matters) and anything else by content hash.
 */
export function compareResponses(legacy: CapturedResponse, candidate: CapturedResponse, opts: CompareOptions): Verdict {
  if (legacy.truncated || candidate.truncated) return { result: 'error', reason: 'body larger than shadow maxBody (a compressed body counts at its decoded size)' };
  const differences: Difference[] = [];
  if (legacy.status !== candidate.status) differences.push({ path: 'status', legacy: legacy.status, candidate: candidate.status });
  for (const h of opts.headers) {
    if (normalizeHeader(h, legacy.headers[h]) !== normalizeHeader(h, candidate.headers[h])) {
      differences.push({ path: `header:${h}`, legacy: legacy.headers[h], candidate: candidate.headers[h] });
    }
  }
  const a = parseJson(legacy);
  const b = parseJson(candidate);
  if (a !== NOT_JSON && b !== NOT_JSON) differences.push(...diffJson(a, b, opts));
  else if (hash(legacy.body) !== hash(candidate.body)) {
    differences.push({ path: 'body', legacy: bodyDigest(legacy), candidate: bodyDigest(candidate) });
  }
  return differences.length === 0 ? { result: 'match' } : { result: 'mismatch', differences };
}

const NOT_JSON = Symbol('not-json');

function parseJson(r: CapturedResponse): unknown {
  const type = r.headers['content-type'] ?? '';
  if (!/[/+]json\b/i.test(type) && !(type === '' && /^\s*[[{]/.test(r.body.subarray(0, 64).toString('latin1')))) return NOT_JSON;
  try {
    return JSON.parse(r.body.toString('utf8'));
  } catch {
    return NOT_JSON;
  }
}

/** Content-Type compares by media type only (`; charset=utf-8` is noise between stacks). */
function normalizeHeader(name: string, v: string | undefined): string | undefined {
  if (name === 'content-type') return v?.split(';')[0]?.trim().toLowerCase();
  return v?.replace(/\s*;\s*/g, ';').toLowerCase();
}

function bodyDigest(r: CapturedResponse): string {
  const encoded = r.encoded === undefined ? '' : `, content-encoding ${r.encoded}`;
  return `sha256:${hash(r.body).slice(0, 16)} (${r.body.length} bytes${encoded})`;
}

function hash(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
