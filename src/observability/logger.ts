import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON logs to stdout at LOG_LEVEL (default info). Tests pass a silent logger. */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino({
    name: options.name ?? 'cutover',
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
  });
}

export const silentLogger: Logger = pino({ level: 'silent' });
