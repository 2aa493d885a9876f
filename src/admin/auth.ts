import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';

/**
 * Bearer-token check for admin calls. Both sides are hashed first so the comparison is
 * constant-time regardless of the presented token's length.
 */
export function tokenChecker(token: string): (req: IncomingMessage) => boolean {
  const want = createHash('sha256').update(token).digest();
  return (req) => {
    const h = req.headers.authorization;
    if (typeof h !== 'string' || !/^Bearer /i.test(h)) return false;
    const got = createHash('sha256').update(h.slice(7).trim()).digest();
    return timingSafeEqual(want, got);
  };
}

/**
 * The configured admin token, trimmed: a Secret made with `kubectl create secret --from-file` keeps
 * the file's trailing newline, and the presented token is trimmed, so every call would be 401.
 * Refuses what cannot be a bearer token (the value itself is never echoed: it is a secret).
 */
export function checkedAdminToken(token: string | undefined): string | undefined {
  if (token === undefined) return undefined;
  const trimmed = token.trim();
  if (trimmed === '') throw new Error('the admin token (CUTOVER_ADMIN_TOKEN, or the adminToken option) is empty or only whitespace: set a token, or leave it unset');
  if (/\s/.test(trimmed)) {
    throw new Error('the admin token (CUTOVER_ADMIN_TOKEN, or the adminToken option) contains whitespace, which a bearer token cannot: was it read from a file with several lines?');
  }
  return trimmed;
}

/** True for addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  const h = host.replace(/^\[|\]$/g, '');
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || /^::ffff:127\./i.test(h);
  return false;
}

/**
 * Without a token, admin calls are answered only when they come from this machine (loopback peer)
 * and are addressed to it (loopback Host): the peer check stops remote clients of a host app that
 * mounts the admin handler on a public port, the Host check stops a DNS-rebinding web page, whose
 * requests arrive from the operator's own browser under the attacker's host name.
 */
export function isLocalRequest(req: IncomingMessage): boolean {
  const host = (req.headers.host ?? '').replace(/:\d+$/, '');
  return isLoopback(host) && isLoopback(req.socket.remoteAddress ?? '');
}

/** Refuses to expose the admin API beyond loopback without a token. */
export function assertAdminBindable(host: string, token: string | undefined): void {
  if (!token && !isLoopback(host)) {
    throw new Error(
      `refusing to bind the admin API to ${host} without CUTOVER_ADMIN_TOKEN: anyone who can reach it could flip flags. ` +
        'Set CUTOVER_ADMIN_TOKEN, or bind --admin-host 127.0.0.1.',
    );
  }
}
