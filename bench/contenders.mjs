// Starting the upstreams and each contender, each in its own process on 127.0.0.1.
// A contender is { name, url, pid, child?, stop() }; `pid` is whose CPU and memory we read.
import { writeFileSync, mkdirSync, chmodSync, existsSync, symlinkSync, cpSync } from 'node:fs';
import { execFileSync, execSync } from 'node:child_process';
import { createConnection } from 'node:net';
import { fileURLToPath } from 'node:url';
import { join, delimiter } from 'node:path';
import { forkReady, spawnChild, tempDir, removeTempDir, freePort } from './proc.mjs';
import { closeSync, openSync, readSync, readFileSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

const here = fileURLToPath(new URL('.', import.meta.url));
export const repoRoot = fileURLToPath(new URL('..', import.meta.url));
export let cliPath = join(repoRoot, 'dist', 'cli.js');

export function useCli(path) {
  cliPath = path;
}

/**
 * The node flags cutover ships with: its bin's shebang (`#!/usr/bin/env -S node FLAGS`), which the
 * Dockerfile's ENTRYPOINT repeats (test/deploy/dockerfile.test.ts). The bench runs cutover as it
 * ships; the forwarders run under Node's defaults, as a team would run them.
 */
export function shippedNodeFlags(cli = cliPath) {
  const first = readFileSync(cli, 'utf8').split('\n', 1)[0];
  const m = /^#!\S*env\s+(?:-S\s+)?node((?:\s+--\S+)*)\s*$/.exec(first);
  return m ? m[1].trim().split(/\s+/).filter(Boolean) : [];
}

/**
 * Builds a committed revision (or, with rev undefined, a copy of the working tree's sources) in a
 * temp dir and uses that CLI, so a run is not disturbed by someone rebuilding dist/ from
 * half-edited sources meanwhile, and two revisions can be compared.
 */
export function buildRevision(rev) {
  const git = (...a) => execFileSync('git', a, { cwd: repoRoot, encoding: 'utf8' }).trim();
  const commit = git('rev-parse', '--short', `${rev ?? 'HEAD'}^{commit}`);
  const dir = tempDir(rev ? `rev-${commit}` : 'snapshot');
  if (rev) execSync(`git archive --format=tar ${commit} | tar -x -C '${dir}'`, { cwd: repoRoot, stdio: ['ignore', 'ignore', 'inherit'] });
  else for (const f of ['src', 'package.json', 'tsconfig.json']) cpSync(join(repoRoot, f), join(dir, f), { recursive: true });
  symlinkSync(join(repoRoot, 'node_modules'), join(dir, 'node_modules'), 'dir');
  execFileSync(process.execPath, [join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(dir, 'tsconfig.json')], { stdio: 'inherit' });
  cliPath = join(dir, 'dist', 'cli.js');
  return rev ? commit : `${commit} + working tree snapshot${git('status', '--porcelain', '--', 'src') ? ' (uncommitted src changes)' : ''}`;
}

export async function startUpstream(name, mode = 'ok') {
  const child = await forkReady(`upstream ${name}`, join(here, 'upstream.mjs'), [name, mode]);
  return { name, child, url: `http://127.0.0.1:${child.port}`, pid: child.pid, stop: () => child.stop() };
}

/** Several upstreams served by ONE process (see upstream.mjs for why). */
export async function startUpstreams(names, mode = 'ok') {
  const child = await forkReady(`upstreams ${names.join(',')}`, join(here, 'upstream.mjs'), [names.join(','), mode]);
  let stopping;
  const stop = () => (stopping ??= child.stop());
  return names.map((name) => ({ name, child, url: `http://127.0.0.1:${child.ports[name]}`, pid: child.pid, stop }));
}

export function directContender(upstream) {
  // No proxy process: the pid is the upstream's, but CPU is not reported as "proxy" CPU.
  return { name: 'direct', url: upstream.url, pid: undefined, stop: async () => {} };
}

export async function forwarderContender(kind, upstream, nodeArgs = [], wrap = undefined) {
  const child = await forkReady(kind, join(here, 'forwarders.mjs'), [kind, upstream.url], wrap ? 120_000 : 10_000, nodeArgs, wrap);
  return { name: kind, child, url: `http://127.0.0.1:${child.port}`, pid: child.pid, stop: () => child.stop() };
}

export function nginxPath() {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const p = join(dir, 'nginx');
    if (dir && existsSync(p)) return p;
  }
  for (const p of ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx']) if (existsSync(p)) return p;
  return undefined;
}

export function nginxConf(dir, port, upstreamUrl) {
  const up = new URL(upstreamUrl);
  return `daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_timeout 65s;
  keepalive_requests 1000000;
  upstream bench_upstream {
    server ${up.host};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host ${up.host};
    }
  }
}
`;
}

function waitForPort(port, timeoutMs, child) {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      if (!child.alive) return reject(new Error(`nginx exited: ${child.stderrTail}`));
      const s = createConnection({ port, host: '127.0.0.1' });
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`nginx not listening on ${port} after ${timeoutMs} ms: ${child.stderrTail}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

/** NGINX with upstream keepalive, or undefined (with the reason printed) when it isn't installed. */
export async function nginxContender(upstream, log) {
  const bin = nginxPath();
  if (!bin) {
    log('nginx not installed: skipped (apt-get install nginx)');
    return undefined;
  }
  const dir = tempDir('nginx');
  // As root, nginx workers drop to "nobody" and must be able to enter the temp dir.
  chmodSync(dir, 0o755);
  for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d));
  const port = await freePort();
  writeFileSync(join(dir, 'nginx.conf'), nginxConf(dir, port, upstream.url));
  // -e: the compiled-in error log path may not be writable; -p keeps relative paths in the temp dir.
  const child = spawnChild('nginx', bin, ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')]);
  await waitForPort(port, 5000, child);
  return {
    name: 'nginx',
    child,
    url: `http://127.0.0.1:${port}`,
    pid: child.pid,
    stop: async () => {
      await child.stop();
      removeTempDir(dir);
    },
  };
}

export function routesYaml(legacyUrl, candidateUrl, { candidateHeadersTimeout, routeTimeout = '300ms', shadowPercentage } = {}) {
  const cand = candidateHeadersTimeout ? `{ url: ${candidateUrl}, headersTimeout: ${candidateHeadersTimeout} }` : `{ url: ${candidateUrl} }`;
  return `upstreams:
  legacy: { url: ${legacyUrl} }
  candidate: ${cand}
default: legacy
identity:
  sources:
    - header: x-user-id
routes:
  - name: bench
    match: { path: /api }
    legacy: legacy
    candidate: candidate
    flag: bench_flag
    timeout: ${routeTimeout}
${shadowPercentage ? `    shadow: { percentage: ${shadowPercentage}, ignore: ["$.served_by"] }\n` : ''}`;
}

/**
 * cutover through its built CLI, with LOG_LEVEL=info as in production. Its stdout goes to a file,
 * as it would go to a log collector in production: reading and parsing ~10k lines a second in
 * this process (which is also the load generator) would tax cutover's runs and nobody else's.
 * The file is summarized (lines by level, warnings) when the results are read.
 */
export async function cutoverContender(name, legacy, candidate, percentage, opts = {}) {
  if (!existsSync(cliPath)) throw new Error(`${cliPath} not found: run "npm run build" first`);
  const dir = tempDir(name);
  const routes = join(dir, 'routes');
  const flags = join(dir, 'flags');
  mkdirSync(routes);
  mkdirSync(flags);
  writeFileSync(join(routes, 'bench.yaml'), routesYaml(legacy.url, candidate.url, opts));
  writeFileSync(join(flags, 'bench_flag.json'), JSON.stringify({ enabled: true, percentage }));
  // opts.nodeFlags replaces the shipped flags (ab-latency's LABEL=DIST@FLAGS); nodeArgs add to them.
  const args = [...(opts.nodeFlags ?? shippedNodeFlags()), ...(opts.nodeArgs ?? []), cliPath, 'serve', '--routes', routes, '--flags', flags, '--port', '0', '--admin-port', '0', '--host', '127.0.0.1', '--drain-timeout', '1s'];
  const logPath = join(dir, 'cutover.log');
  const fd = openSync(logPath, 'w');
  const [cmd, ...pre] = opts.wrap ? [...opts.wrap, process.execPath] : [process.execPath];
  const child = spawnChild(name, cmd, [...pre, ...args], {
    cwd: repoRoot,
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' },
    stdio: ['ignore', fd, 'pipe'],
  });
  closeSync(fd);
  const logs = logSummary(logPath);
  const listening = new Promise((resolve, reject) => {
    const deadline = Date.now() + (opts.wrap ? 120_000 : 10_000);
    const poll = setInterval(() => {
      const rec = logs.find('cutover listening');
      if (rec) {
        clearInterval(poll);
        resolve(rec);
      } else if (child.cp.exitCode !== null || Date.now() > deadline) {
        clearInterval(poll);
        reject(new Error(`${name} did not log "cutover listening": ${child.stderrTail} ${logs.tail.join('\n')}`));
      }
    }, 50);
  });
  const rec = await listening;
  return {
    name,
    child,
    percentage,
    url: `http://${rec.proxy}`,
    admin: `http://${rec.admin}`,
    pid: child.pid,
    logs,
    stop: async () => {
      await child.stop();
      logs.freeze(); // read the file once more before it goes
      removeTempDir(dir);
    },
  };
}

/**
 * Lines by pino level, warnings by message (and reason), the last few warnings: read from the file
 * on demand, from where the last read stopped, 1 MiB at a time. Reading the whole file as one
 * string each time built hundreds of MB of garbage in this process, which is also the load
 * generator, and would throw (string too long) once a log passed ~512 MB; a long run's was silently
 * left unread.
 */
function logSummary(path) {
  const out = { byLevel: {}, warnings: {}, tail: [], records: [] };
  const buf = Buffer.allocUnsafe(1 << 20);
  const decoder = new StringDecoder('utf8');
  let offset = 0;
  let partial = ''; // a line cutover has not finished writing yet
  let frozen = false;
  const take = (line) => {
    const m = /^\{"level":(\d+)/.exec(line);
    if (!m) return;
    const level = Number(m[1]);
    out.byLevel[level] = (out.byLevel[level] ?? 0) + 1;
    // Only the rare lines are parsed: warnings and the startup line.
    if (level < 40 && !line.includes('"msg":"cutover listening"')) return;
    let rec;
    try {
      rec = JSON.parse(line);
    } catch {
      return;
    }
    if (rec.msg === 'cutover listening') out.records.push(rec);
    if (level >= 40) {
      const why = rec.reason ?? rec.kind;
      const key = why ? `${rec.msg} (${why})` : rec.msg;
      out.warnings[key] = (out.warnings[key] ?? 0) + 1;
      out.tail = [...out.tail.slice(-4), line.slice(0, 400)];
    }
  };
  const read = () => {
    if (frozen) return out;
    let fd;
    try {
      fd = openSync(path, 'r');
    } catch {
      return out;
    }
    try {
      for (let n; (n = readSync(fd, buf, 0, buf.length, offset)) > 0; ) {
        offset += n;
        const lines = (partial + decoder.write(buf.subarray(0, n))).split('\n');
        partial = lines.pop();
        for (const line of lines) take(line);
      }
    } finally {
      closeSync(fd);
    }
    return out;
  };
  return {
    get byLevel() {
      return read().byLevel;
    },
    get warnings() {
      return read().warnings;
    },
    get tail() {
      return read().tail;
    },
    find: (msg) => read().records.find((r) => r.msg === msg),
    /** Reads what is left (the process has exited: a last line without its newline counts too), then never again. */
    freeze() {
      read();
      take(partial + decoder.end());
      partial = '';
      frozen = true;
    },
  };
}
