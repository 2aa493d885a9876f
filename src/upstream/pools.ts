import { Pool } from 'undici';
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
  };
}

export function createUpstreams(configs: Map<string, UpstreamConfig>): Map<string, Upstream> {
  const out = new Map<string, Upstream>();
  for (const [name, cfg] of configs) out.set(name, createUpstream(name, cfg));
  return out;
}

/** Closes every pool, letting in-flight requests finish first. */
export async function closeUpstreams(upstreams: Iterable<Upstream>): Promise<void> {
  await Promise.all([...upstreams].map((u) => u.pool.close().catch(() => undefined)));
}
