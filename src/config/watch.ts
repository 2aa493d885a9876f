import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from '../observability/logger.js';
import { ConfigError } from './load.js';

/**
 * Reloads when files in the routes directory change (debounced: editors write in several steps).
 * A refused config is logged with every problem; the running config keeps serving.
 */
export function watchRoutes(dir: string, reload: () => Promise<unknown>, logger: Logger, debounceMs = 300): () => void {
  let timer: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  const fire = () => {
    clearTimeout(timer);
    timer = setTimeout(() => void reloadLogged(reload, logger, 'file change'), debounceMs);
  };
  try {
    watcher = watch(dir, (_event, file) => {
      if (file === null || /\.ya?ml$/.test(file) || file.startsWith('..')) fire();
    });
    watcher.on('error', (err) => logger.warn({ dir, err: err.message }, 'routes watcher failed; reload with SIGHUP'));
  } catch (err) {
    logger.warn({ dir, err: (err as Error).message }, 'cannot watch routes directory; reload with SIGHUP');
  }
  return () => {
    clearTimeout(timer);
    watcher?.close();
  };
}

export async function reloadLogged(reload: () => Promise<unknown>, logger: Logger, trigger: string): Promise<boolean> {
  try {
    await reload();
    return true;
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems : [{ file: '', key: '', message: (err as Error).message }];
    logger.error({ trigger, problems }, 'config reload refused; the running config keeps serving');
    return false;
  }
}
