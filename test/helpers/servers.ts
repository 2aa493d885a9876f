import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { AddressInfo } from 'node:net';
import { stringify } from 'yaml';
import { serve, type Running, type ServeOptions } from '../../src/server.js';
import { silentLogger } from '../../src/observability/logger.js';
import type { ConfigInput } from '../../src/config/schema.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  bodyBytes: number;
}

export interface Upstream {
  server: Server;
  port: number;
  url: string;
  seen: SeenRequest[];
}

type Handler = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => void;

/** A real HTTP upstream on 127.0.0.1:0 that records what reached it. */
export async function startUpstream(t: Teardown, name: string, handler?: Handler): Promise<Upstream> {
  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    const rec: SeenRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0 };
    seen.push(rec);
    if (handler) return handler(req, res, rec);
    req.on('data', (c: Buffer) => (rec.bodyBytes += c.length));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-served-by': name });
      res.end(JSON.stringify({ served_by: name, url: req.url, user: req.headers['x-user-id'] ?? null, bytes: rec.bodyBytes }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  const port = (server.address() as AddressInfo).port;
  return { server, port, url: `http://127.0.0.1:${port}`, seen };
}

export async function tempDir(t: Teardown, prefix = 'cutover-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Writes a routes dir with one YAML file and a flags dir with the given flag files. */
export async function writeConfig(
  t: Teardown,
  routes: ConfigInput,
  flags: Record<string, object> = {},
): Promise<{ routesDir: string; flagsDir: string; root: string }> {
  const root = await tempDir(t);
  const routesDir = join(root, 'routes');
  const flagsDir = join(root, 'flags');
  await mkdir(routesDir);
  await mkdir(flagsDir);
  await writeFile(join(routesDir, 'routes.yaml'), stringify(routes));
  for (const [name, state] of Object.entries(flags)) await writeFile(join(flagsDir, `${name}.json`), JSON.stringify(state));
  return { routesDir, flagsDir, root };
}

/** Standard two-upstream config: one route under `path` with legacy + candidate behind `flag`. */
export function twoSided(legacy: Upstream, candidate: Upstream, extra: Partial<ConfigInput> = {}, path = '/api'): ConfigInput {
  return {
    upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } },
    routes: [{ name: 'api', match: { path }, legacy: 'legacy', candidate: 'candidate', flag: 'f' }],
    ...extra,
  };
}

export interface InProcess {
  running: Running;
  proxy: string;
  admin: string;
}

/** Runs cutover in this process on ephemeral ports. */
export async function startCutover(
  t: Teardown,
  dirs: { routesDir: string; flagsDir: string },
  opts: { adminToken?: string; flagsPollMs?: number; watchRoutes?: boolean; logger?: import('pino').Logger; serve?: Partial<ServeOptions> } = {},
): Promise<InProcess> {
  const running = await serve({
    routesDir: dirs.routesDir,
    flagsDir: dirs.flagsDir,
    port: 0,
    host: '127.0.0.1',
    adminPort: 0,
    adminHost: '127.0.0.1',
    drainTimeoutMs: 2000,
    logger: opts.logger ?? silentLogger,
    flagsPollMs: opts.flagsPollMs ?? 200,
    watchRoutes: opts.watchRoutes ?? false,
    ...(opts.adminToken !== undefined && { adminToken: opts.adminToken }),
    ...opts.serve,
  });
  t.teardown(() => running.shutdown());
  return { running, proxy: `http://127.0.0.1:${running.proxyPort}`, admin: `http://127.0.0.1:${running.adminPort}` };
}

export interface Spawned {
  child: ChildProcess;
  proxy: string;
  admin: string;
  stdout: string[];
  exited: Promise<number | null>;
}

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname;

/** A port that was free a moment ago (for processes that must be told their port up front). */
export async function freePort(): Promise<number> {
  const { createServer: createNet } = await import('node:net');
  const s = createNet();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** An http:// URL on loopback where nothing listens (connections are refused). */
export async function deadUrl(): Promise<string> {
  return `http://127.0.0.1:${await freePort()}`;
}

/**
 * Runs the built CLI as its own process (`npm test` builds first) and waits until /readyz answers.
 * `--port 0` / `--admin-port 0` are replaced by free ports, so no log line has to be parsed.
 */
/** `nodeFlags`: node's own flags before the script (the Dockerfile's ENTRYPOINT gives some). */
export async function spawnCutover(t: Teardown, args: string[], env: Record<string, string> = {}, nodeFlags: string[] = []): Promise<Spawned> {
  const argv = [...args];
  for (const flag of ['--port', '--admin-port']) {
    const i = argv.indexOf(flag);
    if (i !== -1 && argv[i + 1] === '0') argv[i + 1] = String(await freePort());
  }
  const port = argv[argv.indexOf('--port') + 1];
  const adminPort = argv[argv.indexOf('--admin-port') + 1];
  const child = spawn(process.execPath, [...nodeFlags, CLI, ...argv], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const stdout: string[] = [];
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (stdout.length < 10_000) stdout.push(line);
  });
  const proxy = `http://127.0.0.1:${port}`;
  const admin = `http://127.0.0.1:${adminPort}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`cutover exited with ${child.exitCode}: ${stderr}`);
    const ok = await fetch(`${admin}/readyz`).then((r) => r.ok, () => false);
    if (ok) return { child, proxy, admin, stdout, exited };
    if (Date.now() > deadline) throw new Error(`cutover did not become ready in 10 s; stderr: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** serve args for a spawned proxy on ephemeral loopback ports. */
export function serveArgs(dirs: { routesDir: string; flagsDir: string }): string[] {
  // No drain delay: tests that stop a spawned proxy do not wait for load balancers.
  return ['serve', '--routes', dirs.routesDir, '--flags', dirs.flagsDir, '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--drain-delay', '0'];
}

/** Reads the resident set size of a process in bytes (Linux). */
export async function rssOf(pid: number): Promise<{ rss: number; hwm: number }> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

export async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

/**
 * A raw TCP upstream that takes the request headers and the first `readBytes` bytes, then stops
 * reading for good. Raw, so "stops reading" is exactly that: node:http's parser reads its socket
 * directly, whatever the request stream's pause state. `received()`: bytes read so far.
 */
export async function startStalledUpstream(t: Teardown, readBytes = 256 * 1024): Promise<{ url: string; received: () => number }> {
  const { createServer: createNet } = await import('node:net');
  let received = 0;
  const sockets = new Set<import('node:net').Socket>();
  const stalled = createNet((sock) => {
    sockets.add(sock);
    sock.on('data', (c: Buffer) => {
      received += c.length;
      if (received > readBytes) sock.pause();
    });
    sock.on('error', () => undefined);
  });
  stalled.listen(0, '127.0.0.1');
  await once(stalled, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => stalled.close(() => r()));
  });
  return { url: `http://127.0.0.1:${(stalled.address() as AddressInfo).port}`, received: () => received };
}
