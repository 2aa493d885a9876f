/** Defaults shared by the CLI, the admin listener and the deployment manifests' test. */
export const DEFAULTS = {
  port: 8080,
  host: '0.0.0.0',
  adminPort: 9090,
  adminHost: '127.0.0.1',
  drainTimeoutMs: 10_000,
  /** Pre-stop delay: /readyz is red but the proxy still serves (endpoints and balancers catch up). */
  drainDelayMs: 5_000,
  livenessPath: '/healthz',
  readinessPath: '/readyz',
  metricsPath: '/metrics',
} as const;

/** Environment variables the CLI reads. */
export const ENV = {
  adminToken: 'CUTOVER_ADMIN_TOKEN',
  logLevel: 'LOG_LEVEL',
  logUserIds: 'CUTOVER_LOG_USER_IDS',
  logUserKey: 'CUTOVER_LOG_USER_KEY',
  heapGrowingPercent: 'CUTOVER_HEAP_GROWING_PERCENT',
  unleashUrl: 'UNLEASH_URL',
  unleashToken: 'UNLEASH_API_TOKEN',
  unleashAppName: 'UNLEASH_APP_NAME',
  unleashRefreshInterval: 'UNLEASH_REFRESH_INTERVAL',
  unleashAdminToken: 'UNLEASH_ADMIN_TOKEN',
} as const;
