import type { IncomingMessage, ServerResponse } from 'node:http';
import { configFromObject, loadConfigDir, type Config } from './config/load.js';
import type { ConfigInput } from './config/schema.js';
import { FilePersistence } from './flags/file-persistence.js';
import { FlagStore } from './flags/store.js';
import { createAdminHandler } from './admin/router.js';
import { createLogger, type Logger } from './observability/logger.js';
import { compileRouting } from './routing/compile.js';
import { Pipeline } from './proxy/pipeline.js';
import { closeUpstreams, createUpstreams } from './upstream/pools.js';
import { HealthRegistry } from './upstream/health-registry.js';
import { AutoDisabler } from './flags/auto-disable.js';
import { noopObserver, type Observer } from './observability/observer.js';
import { CutoverObserver, teeObserver } from './observability/observer-impl.js';
import type { UserIdMode } from './observability/request-log.js';
import { topologyOf } from './admin/status-api.js';

export interface CutoverOptions {
  /** A directory of routes/*.yaml files, or the same config as an object. */
  routesDir?: string;
  routes?: ConfigInput;
  /** Keep flags as JSON files in this directory (persisted, audited, watched). Else in memory. */
  flagsDir?: string;
  /** Rescan period for flags/ in ms (file watching is immediate; this is a safety net). */
  flagsPollMs?: number;
  adminToken?: string;
  logger?: Logger;
  observer?: Observer;
  /** User ids in request logs: hash (default; or CUTOVER_LOG_USER_IDS), raw, none. */
  logUserIds?: UserIdMode;
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface Cutover {
  handler: Handler;
  adminHandler: Handler;
  flags: FlagStore;
  config: Config;
  health: HealthRegistry;
  /** Metrics, live windows and request logs (what /metrics, /api/v1/status and the dashboard show). */
  observability: CutoverObserver;
  /** False while draining, so /readyz turns red before listeners close. */
  setReady(ready: boolean): void;
  close(): Promise<void>;
}

/** Loads config and flags, builds pools and the pipeline. The CLI is a thin user of this. */
export async function createCutover(options: CutoverOptions): Promise<Cutover> {
  const logger = options.logger ?? createLogger();
  let config: Config;
  if (options.routes) config = configFromObject(options.routes);
  else if (options.routesDir) config = await loadConfigDir(options.routesDir);
  else throw new Error('createCutover needs routesDir or routes');

  const persistence = options.flagsDir
    ? new FilePersistence({ dir: options.flagsDir, logger, pollMs: options.flagsPollMs ?? 2000 })
    : undefined;
  const flags = new FlagStore(logger, persistence);
  await flags.start();

  const upstreams = createUpstreams(config.upstreams);
  const health = new HealthRegistry(config, upstreams, flags, logger);
  health.start();
  const observability = new CutoverObserver({ logger, flags, health: () => health.view(), ...(options.logUserIds !== undefined && { userIds: options.logUserIds }) });
  const observer: Observer = options.observer && options.observer !== noopObserver ? teeObserver(observability, options.observer) : observability;
  const startedAt = Date.now();
  const pipeline = new Pipeline(compileRouting(config, upstreams, health.byName), {
    flags,
    logger,
    observer,
    autoDisable: new AutoDisabler(flags, logger),
  });
  let ready = true;

  for (const r of config.routes) {
    if (r.flag && !flags.get(r.flag)) {
      logger.warn({ route: r.name, flag: r.flag }, 'route flag does not exist yet: every user goes to legacy until it is created');
    }
  }

  return {
    handler: pipeline.handle,
    adminHandler: createAdminHandler({
      flags,
      logger,
      token: options.adminToken,
      isReady: () => ready,
      status: { observer: observability, flags, topology: () => topologyOf(config), startedAt },
    }),
    flags,
    config,
    health,
    observability,
    setReady(r) {
      ready = r;
    },
    async close() {
      ready = false;
      health.close();
      observability.close();
      await flags.close();
      await closeUpstreams(upstreams.values());
    },
  };
}
