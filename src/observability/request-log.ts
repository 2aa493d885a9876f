import { createHmac, randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { pino } from 'pino';
import { isStandardLogger, type Logger } from './logger.js';
import type { FallbackReason, RequestRecord } from './observer.js';

/**
 * How user ids appear in request logs:
 *   hash (default): `userHash`, a keyed hash (HMAC-SHA256, first 16 hex chars = 64 bits) that
 *                   lets you follow one user through the logs without the logs holding the id;
 *   raw:            `user`, the id as received;
 *   none:           no user field at all (the bucket is still logged).
 */
export type UserIdMode = 'hash' | 'raw' | 'none';

export const USER_ID_MODES: readonly UserIdMode[] = ['hash', 'raw', 'none'];

export interface RequestLogOptions {
  /** Default: CUTOVER_LOG_USER_IDS, else "hash". */
  userIds?: UserIdMode;
  /**
   * HMAC key for "hash". Default: CUTOVER_LOG_USER_KEY, else 32 random bytes per process (hashes
   * then match within one process only; set the key to correlate across replicas and restarts).
   */
  userKey?: string | Buffer;
  /** Hashes remembered (HMAC costs ~2 µs; a cache hit ~0.1 µs). Default 10 000. */
  hashCache?: number;
}

export function parseUserIdMode(v: string | undefined): UserIdMode | undefined {
  if (v === undefined || v === '') return undefined;
  if ((USER_ID_MODES as readonly string[]).includes(v)) return v as UserIdMode;
  throw new Error(`CUTOVER_LOG_USER_IDS must be one of ${USER_ID_MODES.join(', ')}; got ${JSON.stringify(v)}`);
}

const FALLBACK_WHY: Record<FallbackReason, string> = {
  connect: 'fallback:connect',
  reset: 'fallback:reset',
  timeout: 'fallback:timeout',
  '5xx': 'fallback:5xx',
  unhealthy: 'fallback:unhealthy',
  hedge: 'fallback:hedge',
};

/** The fields of one request line (undefined fields are left out of the JSON). */
export interface RequestLine {
  requestId: string;
  method: string;
  path: string;
  route: string;
  flag: string | undefined;
  target: string;
  /** The routing reason, or fallback:<reason> when legacy served after a candidate failure. */
  why: string;
  /** With a fallback: the reason the request was first sent to the candidate. */
  decided: string | undefined;
  bucket: number | undefined;
  user?: string;
  userHash?: string;
  status: number;
  /** Duration in ms, to the microsecond. */
  ms: number;
}

const { streamSym, chindingsSym } = pino.symbols;

/** Characters that need JSON escaping (and lone surrogates, which JSON.stringify escapes). */
const NEEDS_ESCAPE = /[\u0000-\u001f"\\\ud800-\udfff]/;

function str(s: string): string {
  return NEEDS_ESCAPE.test(s) ? JSON.stringify(s) : '"' + s + '"';
}

/** Route, flag, method, target and why come from small closed sets: escape each once. */
const quoted = new Map<string, string>();
function cached(s: string): string {
  let q = quoted.get(s);
  if (q === undefined) {
    if (quoted.size >= 4096) quoted.clear();
    quoted.set(s, (q = str(s)));
  }
  return q;
}

function num(n: number): string {
  return Number.isFinite(n) ? String(n) : 'null';
}

/**
 * `String(Math.round(ms * 1000) / 1000)`, built from integers: turning a fractional double into
 * its shortest decimal was ~1.2 us a request in a CPU profile (the costliest step of the line),
 * small integers are cheap. Same text as JSON.stringify would give.
 */
export function millis(ms: number): string {
  const us = Math.round(ms * 1000);
  if (!(us >= 0 && us <= 0x7fffffff)) return num(us / 1000);
  const whole = Math.floor(us / 1000);
  const frac = us - whole * 1000;
  if (frac === 0) return String(whole);
  if (frac % 100 === 0) return whole + '.' + frac / 100;
  if (frac % 10 === 0) return whole + (frac < 100 ? '.0' : '.') + frac / 10;
  return whole + (frac < 10 ? '.00' : frac < 100 ? '.0' : '.') + frac;
}

const FLUSH_MS = 25;

/** Request logs not yet written, flushed at exit. */
const unflushed = new Set<RequestLog>();
let exitHook = false;

/**
 * One line per request at `info`, through a pino child whose bindings ({"log":"request"} after
 * the parent's pid and name) are serialized once. When the level is above info nothing is built.
 *
 * With a logger from createLogger the line is formatted here, in pino's exact JSON shape, and
 * lines are written to the logger's destination in batches (every 25 ms, or 64 KiB)
 * instead of one write per line: ~1.2-1.3 µs a request, against ~4 µs through pino.info() with a
 * sync destination (both bench/observer.mjs, 2026-11-21). Any other pino logger gets
 * pino.info(), unchanged.
 */
export class RequestLog {
  private readonly log: Logger;
  readonly mode: UserIdMode;
  private readonly key: Buffer;
  private readonly hashes: LRUCache<string, string> | undefined;
  /** Fast path: the destination and the child's serialized bindings, or undefined for pino.info(). */
  private readonly stream: { write(s: string): unknown } | undefined;
  private readonly bindings: string;
  private batch = '';
  private scheduled = false;

  constructor(logger: Logger, options: RequestLogOptions = {}) {
    this.log = logger.child({ log: 'request' });
    this.mode = options.userIds ?? parseUserIdMode(process.env.CUTOVER_LOG_USER_IDS) ?? 'hash';
    const key = options.userKey ?? process.env.CUTOVER_LOG_USER_KEY;
    this.key = key === undefined || key === '' ? randomBytes(32) : Buffer.isBuffer(key) ? key : Buffer.from(key, 'utf8');
    this.hashes = this.mode === 'hash' ? new LRUCache({ max: options.hashCache ?? 10_000 }) : undefined;
    const internals = this.log as unknown as Record<symbol, unknown>;
    const stream = internals[streamSym] as { write(s: string): unknown } | undefined;
    this.stream = isStandardLogger(logger) && typeof stream?.write === 'function' ? stream : undefined;
    this.bindings = typeof internals[chindingsSym] === 'string' ? (internals[chindingsSym] as string) : '';
  }

  /** False when request lines would be dropped anyway (level above info). */
  get enabled(): boolean {
    return this.log.levelVal <= 30;
  }

  write(r: RequestRecord): void {
    if (this.log.levelVal > 30) return;
    const why = r.fallback === undefined ? r.why : FALLBACK_WHY[r.fallback];
    let user: string | undefined;
    if (r.userId !== undefined && this.mode !== 'none') user = this.mode === 'hash' ? this.hash(r.userId) : r.userId;

    if (this.stream === undefined) {
      const line: RequestLine = {
        requestId: r.requestId,
        method: r.method,
        path: r.path,
        route: r.route,
        flag: r.flag,
        target: r.target,
        why,
        decided: r.fallback === undefined ? undefined : r.why,
        bucket: r.bucket,
        status: r.status,
        ms: Math.round(r.durationMs * 1000) / 1000,
      };
      if (user !== undefined) line[this.mode === 'hash' ? 'userHash' : 'user'] = user;
      this.log.info(line, 'request');
      return;
    }

    // The same fields, in the same order, as pino would write them.
    let line =
      '{"level":30,"time":' + Date.now() + this.bindings +
      ',"requestId":' + str(r.requestId) +
      ',"method":' + cached(r.method) +
      ',"path":' + str(r.path) +
      ',"route":' + cached(r.route);
    if (r.flag !== undefined) line += ',"flag":' + cached(r.flag);
    line += ',"target":' + cached(r.target) + ',"why":' + cached(why);
    if (r.fallback !== undefined) line += ',"decided":' + cached(r.why);
    if (r.bucket !== undefined) line += ',"bucket":' + num(r.bucket);
    line += ',"status":' + num(r.status) + ',"ms":' + millis(r.durationMs);
    // A hash is hex: nothing to escape.
    if (user !== undefined) line += this.mode === 'hash' ? ',"userHash":"' + user + '"' : ',"user":' + str(user);
    line += ',"msg":"request"}\n';

    this.batch += line;
    if (this.batch.length >= 65_536) this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      unflushed.add(this);
      if (!exitHook) {
        exitHook = true;
        process.once('exit', () => {
          for (const l of unflushed) l.flush();
        });
      }
      // Batching for 25 ms instead of one event-loop turn cut the proxy's write syscalls for logs
      // from thousands to ~40 a second under load (it was ~9% of proxy CPU in a profile).
      setTimeout(this.flushSoon, FLUSH_MS).unref();
    }
  }

  /** Writes out lines still batched (every 25 ms or 64 KiB, at exit and on close). */
  flush(): void {
    this.scheduled = false;
    unflushed.delete(this);
    if (this.batch === '') return;
    const out = this.batch;
    this.batch = '';
    this.stream?.write(out);
  }

  private readonly flushSoon = (): void => {
    if (this.scheduled) this.flush();
  };

  /** The keyed hash logged for a user id. */
  hash(userId: string): string {
    const cache = this.hashes;
    let h = cache?.get(userId);
    if (h === undefined) {
      h = createHmac('sha256', this.key).update(userId, 'utf8').digest('hex').slice(0, 16);
      cache?.set(userId, h);
    }
    return h;
  }
}
