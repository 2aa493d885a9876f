import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { assertAdminBindable } from './admin/auth.js';
import { createCutover, type Cutover, type CutoverOptions } from './cutover.js';
import type { Logger } from './observability/logger.js';
import { createLogger } from './observability/logger.js';

export interface ServeOptions extends CutoverOptions {
  port: number;
  host: string;
  adminPort: number;
  adminHost: string;
  /** How long in-flight requests may take to finish after SIGTERM before sockets are cut. */
  drainTimeoutMs: number;
}

export interface Running {
  cutover: Cutover;
  logger: Logger;
  proxy: Server;
  admin: Server;
  proxyPort: number;
  adminPort: number;
  /** Stops accepting, lets in-flight requests finish (up to the drain timeout), releases everything. */
  shutdown(): Promise<void>;
}

export async function serve(options: ServeOptions): Promise<Running> {
  const logger: Logger = options.logger ?? createLogger();
  assertAdminBindable(options.adminHost, options.adminToken);
  const cutover = createCutover({ ...options, logger });
  try {
    await cutover.ready;
  } catch (err) {
    await cutover.close();
    throw err;
  }

  const limits = cutover.config.limits;
  const proxy = createServer(
    {
      requireHostHeader: false,
      maxHeaderSize: limits.maxHeaderSize,
      // Node checks header/request timeouts only this often (30 s by default), which would let a
      // slowloris client hold a socket far past headersTimeout.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeout / 2))),
    },
    cutover.handler,
  );
  // Above the usual load balancer idle timeout (60 s), so the LB closes first and never sends on
  // a socket we are closing.
  proxy.keepAliveTimeout = 65_000;
  // Slowloris guards: a client gets this long to send its headers, and its whole request.
  proxy.headersTimeout = limits.headersTimeout;
  proxy.requestTimeout = limits.requestTimeout;
  proxy.on('upgrade', cutover.upgradeHandler);
  const admin = createServer(cutover.adminHandler);

  // A deep accept queue: at 1,000 new connections a second, Node's default of 511 overflowed and
  // clients retried SYNs after 1 s, 3 s... (bench connections scenario). The kernel caps it at somaxconn.
  proxy.listen({ port: options.port, host: options.host, backlog: 4096 });
  admin.listen(options.adminPort, options.adminHost);
  await Promise.all([once(proxy, 'listening'), once(admin, 'listening')]);
  const proxyPort = (proxy.address() as AddressInfo).port;
  const adminPort = (admin.address() as AddressInfo).port;
  logger.info({ proxy: `${options.host}:${proxyPort}`, admin: `${options.adminHost}:${adminPort}`, routes: cutover.config.routes.length }, 'cutover listening');

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    (stopping ??= (async () => {
      logger.info({ drainTimeoutMs: options.drainTimeoutMs }, 'draining');
      cutover.setReady(false);
      await Promise.all([
        drain(proxy, options.drainTimeoutMs, () => cutover.closeUpgraded()),
        drain(admin, options.drainTimeoutMs),
      ]);
      await cutover.close();
      logger.info('stopped');
    })());

  return { cutover, logger, proxy, admin, proxyPort, adminPort, shutdown };
}

/**
 * Stops accepting connections and closes keep-alive sockets as soon as they go idle, so every
 * in-flight request completes; after `timeoutMs` whatever is left is cut.
 */
async function drain(server: Server, timeoutMs: number, atDeadline?: () => void): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const sweep = setInterval(() => server.closeIdleConnections(), 50);
  const deadline = setTimeout(() => {
    server.closeAllConnections();
    atDeadline?.(); // upgraded sockets (WebSockets) are no longer the HTTP server's to close
  }, timeoutMs);
  await closed;
  clearInterval(sweep);
  clearTimeout(deadline);
}
