import { pino, type DestinationStream, type Logger } from 'pino';
import pinoPretty from 'pino-pretty';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  name?: string;
  /** Human-readable, colourised lines (pino-pretty) instead of JSON: `cutover demo` uses this. */
  pretty?: boolean;
  /** Where JSON lines go (default stdout). Tests pass a stream to capture them. */
  destination?: DestinationStream;
}

/**
 * Loggers made by createLogger: plain pino JSON (level number, epoch time, "msg"), no hooks,
 * mixins or redaction. The request log writes their lines itself on the hot path (see
 * request-log.ts); any other pino logger gets its lines through pino's own call.
 */
const standard = new WeakSet<Logger>();

export function isStandardLogger(logger: Logger): boolean {
  return standard.has(logger);
}

/** JSON logs to stdout at LOG_LEVEL (default info). Tests pass a silent logger. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const logger = buildLogger(options);
  standard.add(logger);
  return logger;
}

function buildLogger(options: LoggerOptions): Logger {
  const opts = {
    name: options.name ?? 'cutover',
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
  };
  if (options.pretty) {
    const stream = pinoPretty({
      colorize: process.stdout.isTTY === true,
      sync: true,
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,name,log,method,path,status,ms,target',
      singleLine: true,
      // Request lines read as a sentence: "GET /api/v1/customers/42 → candidate 200 in 3.1 ms".
      messageFormat: (log: Record<string, unknown>, messageKey: string) =>
        log.log === 'request'
          ? `${String(log.method)} ${String(log.path)} → ${String(log.target)} ${String(log.status)} in ${String(log.ms)} ms`
          : String(log[messageKey] ?? ''),
      ...(options.destination !== undefined && { destination: options.destination as unknown as NodeJS.WritableStream }),
    });
    return pino(opts, stream);
  }
  return options.destination !== undefined ? pino(opts, options.destination) : pino(opts);
}

export const silentLogger: Logger = pino({ level: 'silent' });
