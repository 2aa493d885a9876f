import { join } from 'node:path';
import type { UnleashConfig } from 'unleash-client';
import type { Logger } from '../observability/logger.js';

/** The bootstrap file's name inside the flags directory. */
export const UNLEASH_BOOTSTRAP_FILE = '.unleash-bootstrap.json';

export interface UnleashSourceOptions {
  /** The Unleash API URL, as for any server-side SDK: `https://unleash.example.com/api`. */
  url: string;
  /** A backend (client) token: `<project>:<environment>.<secret>`. */
  apiToken: string;
  /** Shown in Unleash's UI as the application [cutover]. */
  appName?: string;
  /** Poll period in ms [1000]. */
  refreshIntervalMs?: number;
  /** When set, admin POSTs for Unleash flags are applied through Unleash's Admin API. */
  adminToken?: string;
  /** The environment admin changes go to [from the API token, else "development"]. */
  environment?: string;
  /** Project for toggles created through the admin API ["default"]. */
  project?: string;
  /** Where the last fetched state is kept for restarts during an outage [no file]. */
  bootstrapFile?: string;
  /** How long start() waits for the first fetch when there is no bootstrap file, ms [5000]. */
  startupWaitMs?: number;
  /** Don't send usage metrics (per-toggle yes/no counts) to Unleash [false: send them]. */
  disableMetrics?: boolean;
  /** SDK request timeout, ms [10000]. */
  timeoutMs?: number;
  logger: Logger;
}

/** The unleash-client configuration for our options. */
export function sdkConfig(
  opts: UnleashSourceOptions,
  environment: string,
  refreshIntervalMs: number,
  storageProvider: NonNullable<UnleashConfig['storageProvider']>,
): UnleashConfig {
  return {
    url: opts.url,
    appName: opts.appName ?? 'cutover',
    environment,
    customHeaders: { Authorization: opts.apiToken },
    refreshInterval: refreshIntervalMs,
    disableMetrics: opts.disableMetrics ?? false,
    storageProvider,
    timeout: opts.timeoutMs ?? 10_000,
    skipInstanceCountWarning: true,
    disableAutoStart: true,
  };
}

/** `<project>:<environment>.<secret>` -> the environment; undefined for other token formats. */
export function environmentOfToken(token: string): string | undefined {
  const m = /^[^:]+:([^.]+)\./.exec(token);
  return m && m[1] !== '*' ? m[1] : undefined;
}

/** The default bootstrap file for a flags directory. */
export function bootstrapFileIn(flagsDir: string): string {
  return join(flagsDir, UNLEASH_BOOTSTRAP_FILE);
}
