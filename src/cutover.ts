import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { configFromObject, loadConfigDir, type Config } from './config/load.js';
import type { ConfigInput } from './config/schema.js';
import { FilePersistence } from './flags/file-persistence.js';
import { FlagStore, type Actor } from './flags/store.js';
import type { FlagPatch, FlagView } from './flags/model.js';
import { bootstrapFileIn, UnleashSource, type UnleashSourceOptions } from './flags/unleash-source.js';
import { createAdminHandler } from './admin/router.js';
import { checkedAdminToken } from './admin/auth.js';
import { createLogger, type Logger } from './observability/logger.js';
import { compileRouting } from './routing/compile.js';
import { Pipeline } from './proxy/pipeline.js';
import { closeUpstreams, createUpstreams } from './upstream/pools.js';
import { HealthRegistry } from './upstream/health-registry.js';
import { watchRoutes } from './config/watch.js';
import { AutoDisabler } from './flags/auto-disable.js';
import { noopObserver, type Observer } from './observability/observer.js';
import { CutoverObserver, teeObserver } from './observability/observer-impl.js';
import type { UserIdMode } from './observability/request-log.js';
import { topologyOf } from './admin/status-api.js';
import { RolloutDriver } from './rollout/driver.js';
import { Shadower } from './shadow/shadower.js';
import { registerShadowMetrics } from './shadow/metrics.js';

export interface CutoverOptions {
  /** A directory of routes/*.yaml files, or the same config as an object. */
  routesDir?: string;
  routes?: ConfigInput;
  /** Keep flags as JSON files in this directory (persisted, audited, watched). Else in memory. */
  flagsDir?: string;
  /** Rescan period for flags/ in ms (file watching is immediate; this is a safety net). */
  flagsPollMs?: number;
  /** Admin API bearer token; trimmed, and an empty one or one with inner whitespace throws. Unset: local requests only. */
  adminToken?: string;
  /** Reload when files in routesDir change (SIGHUP and reload() work either way). */
  watchRoutes?: boolean;
  logger?: Logger;
  observer?: Observer;
  /** User ids in request logs: hash (default; or CUTOVER_LOG_USER_IDS), raw, none. */
  logUserIds?: UserIdMode;
  /** The user id from the host's own auth (takes precedence over configured identity sources). */
  userId?: (req: IncomingMessage) => string | undefined;
  /**
   * Fleet mode: routing flags come from this Unleash server (see README "Running a fleet");
   * flagsDir then keeps the bootstrap file, the audit log and per-replica settings only.
   */
  unleash?: Omit<UnleashSourceOptions, 'logger'>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;
/** A node:http request handler; `next`, when given, gets the requests no route matches. */
export type ProxyHandler = (req: IncomingMessage, res: ServerResponse, next?: () => void) => void;

/** Flags for code: the same partial updates, validation, persistence and audit as the admin API. */
export interface FlagsApi {
  list(): FlagView[];
  get(name: string): FlagView | undefined;
  /** Throws FlagValidationError (bad name or patch; nothing changes) like the API's 400. */
  set(name: string, patch: FlagPatch, actor?: Actor): Promise<FlagView>;
}

export interface Cutover {
  handler: ProxyHandler;
  /** Resolves once config and flags are loaded (rejects with ConfigError on bad config). Until then handler answers 503. */
  ready: Promise<void>;
  /** Would one of cutover's routes take this request? (for framework adapters) */
  matches(req: IncomingMessage): boolean;
  /** For the server's 'upgrade' event (WebSockets). */
  upgradeHandler: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** Closes open WebSocket tunnels (at the end of a drain). */
  closeUpgraded(): void;
  adminHandler: Handler;
  flags: FlagsApi;
  /** The flag store itself (hot-path compiled flags, change events). */
  store: FlagStore;
  /** Fleet mode's flag source; `status()` feeds cutover_flags_source_up and ..._last_success_seconds. */
  flagSource: UnleashSource | undefined;
  config: Config;
  health: HealthRegistry;
  /** Shadow traffic results (GET /api/v1/shadow), also a rollout gate input. */
  shadow: Shadower;
  /** Re-reads routesDir and swaps routes and upstreams without dropping a connection. */
  reload(): Promise<Config>;
  /** Metrics, live windows and request logs (what /metrics, /api/v1/status and the dashboard show). */
  observability: CutoverObserver;
  /**
   * False while draining: serve() sets it as a drain starts, and /readyz answers 503 through the
   * drain delay and the drain (the proxy still serves, the admin listener closes last).
   */
  setReady(ready: boolean): void;
  close(): Promise<void>;
}

type Core = Omit<Cutover, 'ready' | 'flags' | 'matches' | 'handler' | 'adminHandler'> & {
  pipeline: Pipeline;
  adminHandler: Handler;
};

/**
 * Creates cutover for a server of yours, or for `cutover serve` (the CLI is a thin user of this).
 * Returns at once; `ready` resolves when config and flags are loaded.
 */
export function createCutover(options: CutoverOptions): Cutover {
  // Before anything starts, so a bad token leaves no timers or watchers behind.
  const adminToken = checkedAdminToken(options.adminToken);
  const logger = options.logger ?? createLogger();
  const { store, flagSource } = createStore(options, logger);
  let core: Core | undefined;
  const ready = startCore({ ...options, adminToken }, logger, store, flagSource).then((c) => {
    core = c;
  });
  ready.catch(() => undefined); // callers see the error through `ready`
  const started = (): Core => {
    if (core === undefined) throw new Error('cutover is not ready yet: await cutover.ready first');
    return core;
  };
  const actorDefault: Actor = { source: 'library' };
  return {
    ready,
    handler: (req, res, next) => (core ? core.pipeline.handle(req, res, next) : notReady(res)),
    adminHandler: (req, res) => (core ? core.adminHandler(req, res) : notReady(res)),
    matches: (req) => core?.pipeline.matches(req) ?? false,
    flags: {
      list: () => store.list(),
      get: (name) => store.view(name),
      set: async (name, patch, actor) => store.set(name, patch, actor ?? actorDefault),
    },
    store,
    flagSource,
    upgradeHandler: (req, socket, head) => {
      if (core) return core.upgradeHandler(req, socket, head);
      socket.end('HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
    },
    closeUpgraded: () => core?.closeUpgraded(),
    get config() {
      return started().config;
    },
    get health() {
      return started().health;
    },
    get shadow() {
      return started().shadow;
    },
    get observability() {
      return started().observability;
    },
    reload: () => started().reload(),
    setReady: (r) => started().setReady(r),
    close: async () => {
      await ready.catch(() => undefined);
      if (core) await core.close();
      else await store.close();
    },
  };
}

function notReady(res: ServerResponse): void {
  const body = '{"error":"starting","message":"cutover is still loading its config and flags"}';
  res.writeHead(503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'retry-after': '1' });
  res.end(body);
}

function createStore(options: CutoverOptions, logger: Logger): { store: FlagStore; flagSource: UnleashSource | undefined } {
  const persistence = options.flagsDir
    ? new FilePersistence({ dir: options.flagsDir, logger, pollMs: options.flagsPollMs ?? 2000 })
    : undefined;
  const flagSource = options.unleash
    ? new UnleashSource({
        ...options.unleash,
        bootstrapFile: options.unleash.bootstrapFile ?? (options.flagsDir ? bootstrapFileIn(options.flagsDir) : undefined),
        logger,
      })
    : undefined;
  return { store: new FlagStore(logger, persistence, flagSource), flagSource };
}

async function startCore(options: CutoverOptions, logger: Logger, flags: FlagStore, flagSource: UnleashSource | undefined): Promise<Core> {
  let config: Config;
  if (options.routes) config = configFromObject(options.routes);
  else if (options.routesDir) config = await loadConfigDir(options.routesDir);
  else throw new Error('createCutover needs routesDir or routes');
  flags.setRouteFlags(config.routes.map((r) => r.flag));
  await flags.start();
  const routing = { log: logger, ...(options.userId !== undefined && { userId: options.userId }) };

  let { upstreams } = createUpstreams(config.upstreams);
  const health = new HealthRegistry(flags, logger);
  const healthMap = health.update(config, upstreams);
  const observability = new CutoverObserver({ logger, flags, health: () => health.view(), ...(options.logUserIds !== undefined && { userIds: options.logUserIds }) });
  const observer: Observer = options.observer && options.observer !== noopObserver ? teeObserver(observability, options.observer) : observability;
  observability.metrics.declareConfig(config.routes, config.default);
  const startedAt = Date.now();
  const shadow = new Shadower(config.shadowing, logger, config.routes);
  registerShadowMetrics(observability.metrics.registry, shadow);
  const pipeline = new Pipeline(compileRouting(config, upstreams, healthMap, routing), {
    flags,
    logger,
    observer,
    shadow,
    autoDisable: new AutoDisabler(flags, logger),
  });
  let ready = true;
  // Rollout plans (README "Rollout plans"): gates read the observer's windows of the flag's routes.
  const rollouts = new RolloutDriver({ flags, logger, observer: observability, shadow: (flag, from) => shadow.forFlag(flag, from), routesOf: (flag) => config.routes.filter((r) => r.flag === flag).map((r) => r.name), flagsDir: options.flagsDir, pollMs: options.flagsPollMs ?? 2000 });
  await rollouts.start();

  warnMissingFlags(config, flags, logger);
  const stopWatching = options.watchRoutes && options.routesDir ? watchRoutes(options.routesDir, reload, logger) : () => undefined;

  /** Re-reads routesDir; an invalid config throws ConfigError and the running one keeps serving. */
  async function reload(): Promise<Config> {
    if (!options.routesDir) throw new Error('config was given as an object: nothing to reload from');
    const next = await loadConfigDir(options.routesDir);
    const built = createUpstreams(next.upstreams, { upstreams, configs: config.upstreams });
    try {
      // Compile once before touching health state: a config that cannot compile (a missing
      // secret, say) is refused with nothing changed.
      compileRouting(next, built.upstreams, new Map(health.byName), routing);
    } catch (err) {
      const current = new Set(upstreams.values());
      await closeUpstreams([...built.upstreams.values()].filter((u) => !current.has(u)));
      throw err;
    }
    const healthNext = health.update(next, built.upstreams);
    pipeline.setState(compileRouting(next, built.upstreams, healthNext, routing));
    shadow.setLimits(next.shadowing);
    shadow.setRouteFlags(next.routes);
    config = next;
    flags.setRouteFlags(next.routes.map((r) => r.flag));
    upstreams = built.upstreams;
    observability.metrics.declareConfig(next.routes, next.default);
    warnMissingFlags(config, flags, logger);
    // Retired pools finish their in-flight requests, then close.
    void closeUpstreams(built.retired);
    logger.info({ routes: next.routes.length, upstreams: next.upstreams.size, retired: built.retired.map((u) => u.name) }, 'config reloaded');
    return next;
  }

  return {
    pipeline,
    upgradeHandler: pipeline.upgrades.handle,
    closeUpgraded: () => pipeline.upgrades.closeAll(),
    adminHandler: createAdminHandler({
      flags,
      logger,
      token: options.adminToken,
      isReady: () => ready,
      status: { observer: observability, flags, topology: () => topologyOf(config), startedAt, shadow },
      rollouts,
      shadow,
    }),
    store: flags,
    flagSource,
    get config() {
      return config;
    },
    reload,
    health,
    shadow,
    observability,
    setReady(r) {
      ready = r;
    },
    async close() {
      ready = false;
      await rollouts.close();
      stopWatching();
      shadow.close();
      pipeline.upgrades.closeAll();
      health.close();
      observability.close();
      await flags.close();
      await closeUpstreams(upstreams.values());
    },
  };
}

function warnMissingFlags(config: Config, flags: FlagStore, logger: Logger): void {
  for (const r of config.routes) {
    if (r.flag && !flags.get(r.flag)) {
      logger.warn({ route: r.name, flag: r.flag }, 'route flag does not exist yet: every user goes to legacy until it is created');
    }
  }
}
