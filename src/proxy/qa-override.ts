import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { QaOverride } from '../routing/compile.js';
import type { Decision } from '../routing/decide.js';

const FORCE_CANDIDATE: Decision = Object.freeze({ target: 'candidate', why: 'override' });
const FORCE_LEGACY: Decision = Object.freeze({ target: 'legacy', why: 'override' });

/**
 * `<header>: candidate:<secret>` or `legacy:<secret>` forces one request to a side. Without the
 * right secret the header is ignored (and it is never forwarded either way).
 */
export function qaDecision(req: IncomingMessage, qa: QaOverride): Decision | undefined {
  const v = req.headers[qa.header];
  if (typeof v !== 'string') return undefined;
  const colon = v.indexOf(':');
  if (colon === -1) return undefined;
  const side = v.slice(0, colon).trim();
  if (side !== 'candidate' && side !== 'legacy') return undefined;
  const got = createHash('sha256').update(v.slice(colon + 1).trim()).digest();
  if (!timingSafeEqual(got, qa.secretHash)) return undefined;
  return side === 'candidate' ? FORCE_CANDIDATE : FORCE_LEGACY;
}
