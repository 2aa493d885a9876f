#!/usr/bin/env -S node --min-semi-space-size=8 --no-memory-reducer
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { cp, mkdir, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { ConfigError, loadConfigDir } from './config/load.js';
import { FilePersistence } from './flags/file-persistence.js';
import { listenBackend } from './demo/backends.js';
import { createLogger, silentLogger } from './observability/logger.js';
import { serve, type Running } from './server.js';
import { parseDuration } from './util/duration.js';
import { reloadLogged } from './config/watch.js';
import { checkRouting, secretEnvNames } from './routing/compile.js';
import { DEFAULTS, ENV } from './defaults.js';
import { CHECK_HELP, DEMO_HELP, mainHelp, SERVE_HELP } from './cli-help.js';
import { applyHeapGrowth, type HeapGrowth } from './util/heap-growth.js';

const pkgRoot = fileURLToPath(new URL('..', import.meta.url));
const version = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

type Values = Record<string, string | boolean | undefined>;

function parse(args: string[], options: ParseArgsConfig['options'], help: string): Values {
  try {
    const { values } = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false });
    if (values.help) {
      process.stdout.write(help);
      process.exit(0);
    }
    return values as Values;
  } catch (err) {
    fail(`${(err as Error).message}\n\n${help}`);
  }
}

function fail(message: string, code = 2): never {
  process.stderr.write(`cutover: ${message}\n`);
  process.exit(code);
}

/** Plain decimal digits only: Number() also takes '' (0), '0x1F91', '1e3' and ' 80 '. */
function wholeNumber(v: string): number | undefined {
  return /^\d+$/.test(v) ? Number(v) : undefined;
}

function port(v: string | boolean | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = wholeNumber(String(v));
  // JSON quoting, so --port "$PORT" with PORT unset shows up as "" rather than nothing.
  if (n === undefined || n > 65535) fail(`--${name} must be a port number (0-65535, decimal digits), got ${JSON.stringify(v)}`);
  return n;
}

function durationOpt(v: string | boolean | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (String(v) === '0') return 0;
  const ms = parseDuration(String(v));
  if (ms === undefined) fail(`--${name} must be a duration like 10s or 500ms, got ${String(v)}`);
  return ms;
}

function installSignals(running: Running): void {
  let signalled = false;
  const stop = (sig: string) => {
    if (signalled) process.exit(1); // a second signal: the operator wants out now
    signalled = true;
    process.stderr.write(`cutover: ${sig} received, draining\n`);
    running.shutdown().then(
      () => process.exit(0),
      (err: unknown) => fail(`shutdown failed: ${(err as Error).message}`, 1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => void reloadLogged(() => running.cutover.reload(), running.logger, 'SIGHUP'));
}

async function cmdServe(args: string[]): Promise<void> {
  const v = parse(
    args,
    {
      routes: { type: 'string' },
      flags: { type: 'string' },
      port: { type: 'string' },
      host: { type: 'string' },
      'admin-port': { type: 'string' },
      'admin-host': { type: 'string' },
      'drain-timeout': { type: 'string' },
      'drain-delay': { type: 'string' },
      'no-watch': { type: 'boolean' },
      'unleash-url': { type: 'string' },
      'unleash-token': { type: 'string' },
      'unleash-app-name': { type: 'string' },
      'unleash-refresh-interval': { type: 'string' },
      'unleash-admin-token': { type: 'string' },
    },
    SERVE_HELP,
  );
  const unleash = unleashOptions(v);
  let heapGrowingPercent: HeapGrowth;
  try {
    heapGrowingPercent = applyHeapGrowth(process.env[ENV.heapGrowingPercent]);
  } catch (err) {
    fail((err as Error).message);
  }
  const running = await startOrExplain({
    routesDir: (v.routes as string | undefined) ?? './routes',
    flagsDir: (v.flags as string | undefined) ?? './flags',
    port: port(v.port, 'port', DEFAULTS.port),
    host: (v.host as string | undefined) ?? DEFAULTS.host,
    adminPort: port(v['admin-port'], 'admin-port', DEFAULTS.adminPort),
    adminHost: (v['admin-host'] as string | undefined) ?? DEFAULTS.adminHost,
    drainTimeoutMs: durationOpt(v['drain-timeout'], 'drain-timeout', DEFAULTS.drainTimeoutMs),
    drainDelayMs: durationOpt(v['drain-delay'], 'drain-delay', DEFAULTS.drainDelayMs),
    adminToken: process.env[ENV.adminToken] || undefined,
    watchRoutes: v['no-watch'] !== true,
    ...(unleash && { unleash }),
    startup: { heapGrowingPercent },
  });
  installSignals(running);
}

/** Fleet mode's options: a flag wins over its environment variable; URL and token go together. */
function unleashOptions(v: Values): NonNullable<Parameters<typeof serve>[0]['unleash']> | undefined {
  const opt = (flag: string, env: string) => (v[flag] as string | undefined) ?? (process.env[env] || undefined);
  const url = opt('unleash-url', 'UNLEASH_URL');
  const apiToken = opt('unleash-token', 'UNLEASH_API_TOKEN');
  if (url === undefined && apiToken === undefined) return undefined;
  if (url === undefined) fail('--unleash-token (UNLEASH_API_TOKEN) needs --unleash-url (UNLEASH_URL) too');
  if (apiToken === undefined) fail('--unleash-url (UNLEASH_URL) needs --unleash-token (UNLEASH_API_TOKEN) too: a backend token');
  try {
    if (!/^https?:$/.test(new URL(url).protocol)) throw new Error('not http(s)');
  } catch {
    fail(`--unleash-url (UNLEASH_URL) must be an http(s) URL like http://unleash:4242/api, got ${url}`);
  }
  const rawInterval = opt('unleash-refresh-interval', 'UNLEASH_REFRESH_INTERVAL');
  let refreshIntervalMs = 1000;
  if (rawInterval !== undefined) {
    const ms = wholeNumber(rawInterval.trim()) ?? parseDuration(rawInterval);
    if (ms === undefined || ms < 100) fail(`--unleash-refresh-interval (UNLEASH_REFRESH_INTERVAL) must be ms (>= 100) or a duration like 2s, got ${rawInterval}`);
    refreshIntervalMs = ms;
  }
  const appName = opt('unleash-app-name', 'UNLEASH_APP_NAME');
  const adminToken = opt('unleash-admin-token', 'UNLEASH_ADMIN_TOKEN');
  return { url, apiToken, refreshIntervalMs, ...(appName && { appName }), ...(adminToken && { adminToken }) };
}

async function startOrExplain(opts: Parameters<typeof serve>[0]): Promise<Running> {
  try {
    return await serve(opts);
  } catch (err) {
    if (err instanceof ConfigError) fail(`invalid config:\n${err.message}`);
    fail((err as Error).message, 1);
  }
}

async function cmdCheck(args: string[]): Promise<void> {
  const v = parse(args, { routes: { type: 'string' }, flags: { type: 'string' } }, CHECK_HELP);
  const dir = (v.routes as string | undefined) ?? './routes';
  let bad = false;
  try {
    const cfg = await loadConfigDir(dir);
    // Keys and secrets are compiled as serve compiles them, so a config check passes serve accepts.
    checkRouting(cfg);
    process.stdout.write(`${dir}: ok (${cfg.files.length} file(s), ${cfg.upstreams.size} upstream(s), ${cfg.routes.length} route(s))\n`);
    const envNames = secretEnvNames(cfg);
    if (envNames.length > 0) process.stdout.write(`${dir}: secretEnv ${envNames.join(', ')} checked against this environment (serve reads its own)\n`);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`${err.message}\n`);
    bad = true;
  }
  if (typeof v.flags === 'string') {
    const found = await new FilePersistence({ dir: v.flags, logger: silentLogger }).scan().catch((err: Error) => fail(`${v.flags}: ${err.message}`));
    for (const [name, state] of found) {
      if (state instanceof Error) {
        process.stderr.write(`${v.flags}/${name}.json: ${state.message}\n`);
        bad = true;
      }
    }
    if (!bad) process.stdout.write(`${v.flags}: ok (${found.size} flag(s))\n`);
  }
  process.exit(bad ? 1 : 0);
}

async function cmdDemo(args: string[]): Promise<void> {
  const v = parse(args, { port: { type: 'string' }, 'admin-port': { type: 'string' }, flags: { type: 'string' } }, DEMO_HELP);
  // Before anything is created or bound: a bad option changes nothing.
  const p = port(v.port, 'port', DEFAULTS.port);
  const ap = port(v['admin-port'], 'admin-port', DEFAULTS.adminPort);
  const flagsDir = (v.flags as string | undefined) ?? '.cutover-demo/flags';
  if (!(await stat(flagsDir).catch(() => undefined))) {
    await mkdir(flagsDir, { recursive: true });
    await cp(`${pkgRoot}/flags`, flagsDir, { recursive: true, filter: (src) => !src.endsWith('audit.log') });
  }
  const legacy = await listenBackend('legacy', 7001).catch((e: Error) => fail(`cannot start the legacy sample backend on :7001: ${e.message}`, 1));
  const fresh = await listenBackend('new', 7002).catch((e: Error) => fail(`cannot start the new sample backend on :7002: ${e.message}`, 1));
  const running = await startOrExplain({
    routesDir: `${pkgRoot}/routes`,
    flagsDir,
    port: p,
    host: '127.0.0.1',
    adminPort: ap,
    adminHost: '127.0.0.1',
    drainTimeoutMs: 2000,
    adminToken: process.env.CUTOVER_ADMIN_TOKEN || undefined,
    logger: createLogger({ level: process.env.LOG_LEVEL ?? 'info', pretty: true }),
  });
  const auth = process.env.CUTOVER_ADMIN_TOKEN ? ' -H "Authorization: Bearer $CUTOVER_ADMIN_TOKEN"' : '';
  process.stdout.write(`
cutover demo: proxy on http://127.0.0.1:${running.proxyPort}, admin on http://127.0.0.1:${running.adminPort}
dashboard: http://127.0.0.1:${running.adminPort}/   metrics: http://127.0.0.1:${running.adminPort}/metrics
sample backends: legacy on :7001, new on :7002 (routes in ${pkgRoot}routes, flags in ${flagsDir})

Try:
  # who serves customer 42? (the same user always lands on the same side)
  curl -s http://127.0.0.1:${running.proxyPort}/api/v1/customers/42 -H 'x-user-id: user-42'

  # see the flags
  curl -s http://127.0.0.1:${running.adminPort}/api/v1/flags${auth}

  # move 50% of users to the new customer service
  curl -s -X POST http://127.0.0.1:${running.adminPort}/api/v1/flags/customer_read${auth} \\
    -H 'Content-Type: application/json' -d '{"enabled": true, "percentage": 50}'

  # count who goes where for 100 users
  for i in $(seq 1 100); do curl -s http://127.0.0.1:${running.proxyPort}/api/v1/customers/1 -H "x-user-id: u$i"; done | grep -o '"served_by":"[a-z]*"' | sort | uniq -c

  # roll back at once
  curl -s -X POST http://127.0.0.1:${running.adminPort}/api/v1/flags/customer_read${auth} \\
    -H 'Content-Type: application/json' -d '{"enabled": false}'

Ctrl-C to stop.
`);
  installSignals({
    ...running,
    shutdown: async () => {
      await running.shutdown();
      legacy.close();
      fresh.close();
    },
  });
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'serve':
      return cmdServe(rest);
    case 'check':
      return cmdCheck(rest);
    case 'demo':
      return cmdDemo(rest);
    case '--version':
    case '-v':
      process.stdout.write(`${version}\n`);
      return;
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(mainHelp(version));
      return;
    default:
      fail(`unknown command "${cmd}"\n\n${mainHelp(version)}`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => fail((err as Error).stack ?? String(err), 1));
