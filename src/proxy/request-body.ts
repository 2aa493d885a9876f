import type { IncomingMessage } from 'node:http';
import type { FallbackPolicy } from './fallback.js';

/**
 * How a request's body travels: streamed (the default, never held whole), or buffered up to a
 * bound when the same bytes may have to go to a second upstream: a write with Idempotency-Key on
 * a route with replayWrites, or a request shadow mode mirrors.
 */
export type BodyPlan = { kind: 'stream' } | { kind: 'buffer'; max: number; replay: boolean };

const STREAM: BodyPlan = Object.freeze({ kind: 'stream' });

export function planBody(
  req: IncomingMessage,
  opts: { toCandidate: boolean; safe: boolean; policy: FallbackPolicy | undefined; shadowMaxBody: number },
): BodyPlan {
  const p = opts.policy;
  const replay = opts.toCandidate && !opts.safe && p !== undefined && p.replayMaxBody > 0 && req.headers['idempotency-key'] !== undefined;
  const max = replay ? (p as FallbackPolicy).replayMaxBody : opts.shadowMaxBody;
  const len = Number(req.headers['content-length']);
  return len > 0 && len <= max ? { kind: 'buffer', max, replay } : STREAM;
}

/** Reads a request body of at most `max` bytes into one Buffer. */
export function bufferBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        req.destroy();
        reject(new Error(`body larger than ${max} bytes`));
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks, size)));
    req.on('error', reject);
    req.on('aborted', () => reject(new Error('client aborted the upload')));
  });
}
