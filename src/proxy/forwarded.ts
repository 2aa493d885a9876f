import type { BlockList } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { targetAuthority } from '../routing/normalize-path.js';

/**
 * Appends X-Forwarded-For/-Proto/-Host to an outgoing header list. A client's own X-Forwarded-*
 * values are believed only when the peer is a configured trusted proxy; otherwise they are
 * overwritten, so a client cannot forge its address or scheme to the backend.
 */
export function appendForwarded(req: IncomingMessage, trusted: BlockList | undefined, out: string[]): void {
  const peer = stripMapped(req.socket.remoteAddress ?? '');
  const host = req.headers.host ?? '';
  if (trusted !== undefined && peer !== '' && trusted.check(peer, peer.includes(':') ? 'ipv6' : 'ipv4')) {
    const xff = req.headers['x-forwarded-for'];
    out.push(
      'x-forwarded-for',
      xff ? `${xff}, ${peer}` : peer,
      'x-forwarded-proto',
      first(req.headers['x-forwarded-proto']) ?? 'http',
      'x-forwarded-host',
      first(req.headers['x-forwarded-host']) ?? host,
    );
    const fwd = req.headers.forwarded;
    if (fwd) out.push('forwarded', fwd);
    return;
  }
  out.push('x-forwarded-for', peer, 'x-forwarded-proto', 'http', 'x-forwarded-host', host);
}

function first(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

export function stripMapped(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

/**
 * An absolute-form request (`GET http://shop.example.com/x`) names its host in the target, and
 * RFC 9112 (3.2.2) says that replaces the Host header: what preserveHost forwards and
 * X-Forwarded-Host reports from here on.
 */
export function adoptTargetAuthority(req: IncomingMessage, url: string): void {
  const authority = targetAuthority(url);
  if (authority !== undefined && authority !== '') req.headers.host = authority;
}
