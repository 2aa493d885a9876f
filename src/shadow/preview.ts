import type { Difference } from './json-diff.js';

/** Longest JSON text of a differing value a shadow example keeps as is (characters). */
export const PREVIEW_CHARS = 256;

/**
 * A differing value as a shadow example keeps it: as is when its JSON text is at most
 * PREVIEW_CHARS, else a string of that text's first PREVIEW_CHARS characters, a marker and the full
 * length. A field that changes type (an object against a string) or a subtree only one side has
 * would otherwise pin a whole sub-document (up to maxBody) in each of the route's kept examples for
 * the process's life, and in every admin answer and mismatch log line.
 */
export function previewValue(v: unknown): unknown {
  if (v === undefined || v === null || typeof v === 'number' || typeof v === 'boolean') return v;
  const text = JSON.stringify(v);
  if (text === undefined || text.length <= PREVIEW_CHARS) return v;
  let cut = PREVIEW_CHARS;
  const last = text.charCodeAt(cut - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut--; // never half a surrogate pair
  // A copy, not text.slice(): V8 may keep a slice as a view into the whole multi-MB text.
  const head = Buffer.from(text.slice(0, cut), 'utf8').toString('utf8');
  return `${head}… [truncated: ${text.length} chars of JSON]`;
}

export function previewDifference(d: Difference): Difference {
  return { path: d.path, legacy: previewValue(d.legacy), candidate: previewValue(d.candidate) };
}
