import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { assertAdminBindable, checkedAdminToken } from './admin/auth.js';
import { createCutover, type Cutover, type CutoverOptions } from './cutover.js';
import type { Logger } from './observability/logger.js';
import { createLogger } from './observability/logger.js';

export interface ServeOptions extends CutoverOptions {
  port: number;
  host: string;
  adminPort: number;
  adminHost: string;
  /** How long in-flight requests may take to finish, once the proxy stops accepting, before sockets are cut. */
  drainTimeoutMs: number;
  /**
   * Pre-stop delay: after shutdown() starts, /readyz answers 503 but the proxy keeps accepting and
   * serving this long, so load balancers drop this instance before its port refuses [0; the CLI's 5s].
   */
  drainDelayMs?: number;
  /** Extra fields for the "cutover listening" line (the CLI's process-level settings). */
  startup?: Record<string, unknown>;
}

export interface Running {
  cutover: Cutover;
  logger: Logger;
  proxy: Server;
  admin: Server;
  proxyPort: number;
  adminPort: number;
  /**
   * Turns /readyz red, keeps serving for the drain delay, then stops accepting and lets in-flight
   * requests finish (up to the drain timeout); the admin listener closes last.
   */
  shutdown(): Promise<void>;
}

export async function serve(options: ServeOptions): Promise<Running> {
  const logger: Logger = options.logger ?? createLogger();
  const adminToken = checkedAdminToken(options.adminToken);
  assertAdminBindable(options.adminHost, adminToken);
  const drainDelayMs = options.drainDelayMs ?? 0;
  if (!Number.isFinite(drainDelayMs) || drainDelayMs < 0) throw new Error(`drainDelayMs must be a number of milliseconds >= 0, got ${String(drainDelayMs)}`);
  const cutover = createCutover({ ...options, adminToken, logger });
  try {
    await cutover.ready;
  } catch (err) {
    await cutover.close();
    throw err;
  }

  const limits = cutover.config.limits;
  let draining = false;
  const proxy = createServer(
    {
      requireHostHeader: false,
      maxHeaderSize: limits.maxHeaderSize,
      // Node checks header/request timeouts only this often (30 s by default), which would let a
      // slowloris client hold a socket far past headersTimeout.
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeout / 2))),
    },
    (req, res) => {
      // Every response during a drain closes its connection: a keep-alive client (a load balancer)
      // reconnects, to another instance once it has dropped this one, instead of having an idle
      // socket closed under a request it is sending.
      if (draining) res.setHeader('connection', 'close');
      cutover.handler(req, res);
    },
  );
  // Above the usual load balancer idle timeout (60 s), so the LB closes first and never sends on
  // a socket we are closing.
  proxy.keepAliveTimeout = 65_000;
  // Slowloris guards: a client gets this long to send its headers, and its whole request.
  proxy.headersTimeout = limits.headersTimeout;
  proxy.requestTimeout = limits.requestTimeout;
  proxy.on('upgrade', cutover.upgradeHandler);
  // Without a token the admin handler itself answers only local requests (DNS-rebinding guard).
  const admin = createServer(cutover.adminHandler);

  // A deep accept queue: at 1,000 new connections a second, Node's default of 511 overflowed and
  // clients retried SYNs after 1 s, 3 s... (bench connections scenario). The kernel caps it at somaxconn.
  proxy.listen({ port: options.port, host: options.host, backlog: 4096 });
  admin.listen(options.adminPort, options.adminHost);
  await Promise.all([once(proxy, 'listening'), once(admin, 'listening')]);
  const proxyPort = (proxy.address() as AddressInfo).port;
  const adminPort = (admin.address() as AddressInfo).port;
  logger.info({ proxy: `${options.host}:${proxyPort}`, admin: `${options.adminHost}:${adminPort}`, routes: cutover.config.routes.length, ...options.startup }, 'cutover listening');

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    (stopping ??= (async () => {
      logger.info({ drainDelayMs, drainTimeoutMs: options.drainTimeoutMs }, 'draining');
      cutover.setReady(false);
      draining = true;
      // Load balancers and Kubernetes endpoints need a moment to see /readyz red (or the pod
      // terminating); until then they still send here, and a refused connection would be an error.
      if (drainDelayMs > 0) {
        await sleep(drainDelayMs);
        logger.info('drain delay over: the proxy stops accepting');
      }
      const deadline = Date.now() + options.drainTimeoutMs;
      await drain(proxy, options.drainTimeoutMs, () => cutover.closeUpgraded());
      // The admin listener closes last, so /readyz answers 503 (not a refused connection) for the
      // whole drain; its own requests get what is left of the same deadline.
      await drain(admin, Math.max(0, deadline - Date.now()));
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
