#!/usr/bin/env node
// Runs a real Unleash server (the pinned unleash-server installed by ensure-server.sh) on
// loopback, against the PostgreSQL in DATABASE_URL. Prints one JSON line
// {"unleash":"ready","url":"http://127.0.0.1:PORT"} on stdout once it answers /health.
//
//   node run-server.mjs --install DIR --port PORT --database-url postgres://...
//                       [--admin-token '*:*.secret'] [--backend-token '*:development.secret']
//
// SIGTERM/SIGINT stop it cleanly; tests also SIGKILL it to simulate an outage.
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';

const { values } = parseArgs({
  options: {
    install: { type: 'string' },
    port: { type: 'string' },
    'database-url': { type: 'string' },
    'admin-token': { type: 'string', multiple: true, default: [] },
    'backend-token': { type: 'string', multiple: true, default: [] },
    'log-level': { type: 'string', default: 'warn' },
  },
});
if (!values.install || !values.port || !values['database-url']) {
  process.stderr.write('usage: run-server.mjs --install DIR --port PORT --database-url URL [--admin-token T] [--backend-token T]\n');
  process.exit(2);
}

// Nothing leaves this machine: no version check, no telemetry.
process.env.SEND_TELEMETRY = 'false';
process.env.CHECK_VERSION = 'false';
process.env.TZ = 'UTC';

const entry = join(values.install, 'node_modules', 'unleash-server', 'dist', 'lib', 'server-impl.js');
const unleashServer = await import(pathToFileURL(entry).href);
const start = unleashServer.start ?? unleashServer.default?.start;

const db = new URL(values['database-url']);
const token = (secret, type) => {
  const [project, rest] = secret.split(':');
  return { tokenName: `cutover-${type}`, type, environment: (rest ?? '*').split('.')[0], projects: [project || '*'], secret };
};
const port = Number(values.port);

const unleash = await start({
  db: {
    host: db.hostname,
    port: Number(db.port || 5432),
    user: decodeURIComponent(db.username),
    password: decodeURIComponent(db.password),
    database: db.pathname.slice(1),
    ssl: false,
    pool: { min: 0, max: 4 },
  },
  server: { host: '127.0.0.1', port, gracefulShutdownEnable: false },
  versionCheck: { enable: false },
  logLevel: values['log-level'],
  authentication: {
    initApiTokens: [
      ...values['admin-token'].map((s) => token(s, 'admin')),
      ...values['backend-token'].map((s) => token(s, 'backend')),
    ],
  },
});

const url = `http://127.0.0.1:${port}`;
const deadline = Date.now() + 60_000;
for (;;) {
  try {
    const r = await fetch(`${url}/health`);
    if (r.ok) break;
  } catch {
    /* not yet */
  }
  if (Date.now() > deadline) {
    process.stderr.write('run-server: Unleash did not become healthy within 60 s\n');
    process.exit(1);
  }
  await new Promise((r) => setTimeout(r, 100));
}
process.stdout.write(JSON.stringify({ unleash: 'ready', url, pid: process.pid }) + '\n');

let stopping = false;
const stop = async () => {
  if (stopping) process.exit(1);
  stopping = true;
  try {
    await unleash.stop();
  } finally {
    process.exit(0);
  }
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
