import { Client, Pool } from 'undici';
import type { UpstreamConfig } from '../config/schema.js';

/** One upstream as the proxy uses it: a bounded keep-alive pool and how to address it. */
export interface Upstream {
  readonly name: string;
  readonly pool: Pool;
  /** Prepended to every forwarded path (from the upstream URL's path; "" for none). */
  readonly basePath: string;
  /** Host header to send unless the upstream preserves the client's. */
  readonly host: string;
  readonly preserveHost: boolean;
  /** Its idle timer to response headers (0 = none); also how long an upload may stall (Attempt). */
  readonly headersTimeoutMs: number;
  /** For connections made outside the pool (WebSocket tunnels). */
  readonly hostname: string;
  readonly port: number;
  readonly secure: boolean;
  /** Responses it has begun (final status received): whether it answered anything lately. */
  answered: number;
  /**
   * A one-connection client outside `pool`, for active probes: a probe sent through the live pool
   * waits behind live traffic, and its timeout would measure our queue, not the upstream.
   */
  openProbeClient(): Client;
}

export function createUpstream(name: string, cfg: UpstreamConfig): Upstream {
  const pool = new Pool(cfg.url.origin, {
    connections: cfg.connections,
    pipelining: 1,
    connect: { timeout: cfg.connectTimeout },
    headersTimeout: cfg.headersTimeout,
    bodyTimeout: cfg.bodyTimeout,
    keepAliveTimeout: cfg.keepAliveTimeout,
  });
  return {
    name,
    pool,
    basePath: cfg.url.pathname === '/' ? '' : cfg.url.pathname.replace(/\/+$/, ''),
    host: cfg.url.host,
    preserveHost: cfg.preserveHost,
    headersTimeoutMs: cfg.headersTimeout,
    hostname: cfg.url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(cfg.url.port) || (cfg.url.protocol === 'https:' ? 443 : 80),
    secure: cfg.url.protocol === 'https:',
    answered: 0,
    openProbeClient: () =>
      new Client(cfg.url.origin, {
        pipelining: 1,
        connect: { timeout: cfg.connectTimeout },
        keepAliveTimeout: cfg.keepAliveTimeout,
      }),
  };
}

/**
 * Upstreams for a config. Given the previous set, an upstream whose config did not change keeps
 * its Upstream (and pool, with its warm connections); `retired` lists the ones to close.
 */
export function createUpstreams(
  configs: Map<string, UpstreamConfig>,
  previous?: { upstreams: ReadonlyMap<string, Upstream>; configs: ReadonlyMap<string, UpstreamConfig> },
): { upstreams: Map<string, Upstream>; retired: Upstream[] } {
  const upstreams = new Map<string, Upstream>();
  for (const [name, cfg] of configs) {
    const old = previous?.upstreams.get(name);
    const same = old !== undefined && JSON.stringify(previous?.configs.get(name)) === JSON.stringify(cfg);
    upstreams.set(name, same ? old : createUpstream(name, cfg));
  }
  const retired = [...(previous?.upstreams.values() ?? [])].filter((u) => upstreams.get(u.name) !== u);
  return { upstreams, retired };
}

/** Closes every pool, letting in-flight requests finish first. */
export async function closeUpstreams(upstreams: Iterable<Upstream>): Promise<void> {
  await Promise.all([...upstreams].map((u) => u.pool.close().catch(() => undefined)));
}
