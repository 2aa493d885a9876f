// Child processes, temp dirs and /proc readings for the bench. Everything started here is
// registered so one cleanup path (normal exit, error, Ctrl-C) can take it all down.
import { spawn, fork, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const children = new Set();
const tempDirs = new Set();

export function tempDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), `cutover-bench-${prefix}-`));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir) {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** A spawned process we own; `stop()` asks politely first so proxies can drain and exit clean. */
class Child {
  constructor(name, cp) {
    this.name = name;
    this.cp = cp;
    this.pid = cp.pid;
    this.exited = new Promise((resolve) => cp.once('exit', (code, signal) => resolve({ code, signal })));
    this.exited.then(() => children.delete(this));
    this.stderrTail = '';
    cp.stderr?.on('data', (d) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-4000);
    });
    children.add(this);
  }

  get alive() {
    return this.cp.exitCode === null && this.cp.signalCode === null;
  }

  async stop(graceMs = 3000) {
    if (!this.alive) return;
    this.cp.kill('SIGTERM');
    const t = setTimeout(() => this.alive && this.cp.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }

  killNow() {
    if (this.alive) this.cp.kill('SIGKILL');
  }
}

/** A node child with an IPC channel; it reports `{type: 'ready', port}` once listening. */
/** `wrap` ([command, ...args]) runs node under another program, e.g. valgrind. */
export async function forkReady(name, script, args, timeoutMs = 10_000, execArgv = [], wrap = undefined) {
  const opts = { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv };
  if (wrap) Object.assign(opts, { execPath: wrap[0], execArgv: [...wrap.slice(1), process.execPath, ...execArgv] });
  const cp = fork(script, args, opts);
  const child = new Child(name, cp);
  const msg = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${name} did not become ready in ${timeoutMs} ms: ${child.stderrTail}`)), timeoutMs);
    cp.on('message', function onMsg(m) {
      if (m && m.type === 'ready') {
        clearTimeout(t);
        cp.off('message', onMsg);
        resolve(m);
      }
    });
    cp.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${name} exited (${code}) before it was ready: ${child.stderrTail}`));
    });
  });
  child.port = msg.port;
  child.ports = msg.ports;
  let seq = 0;
  // Stats requests are matched by id so concurrent asks cannot get each other's answers.
  child.ask = (type) =>
    new Promise((resolve) => {
      const id = ++seq;
      const onMsg = (m) => {
        if (m && m.id === id) {
          cp.off('message', onMsg);
          resolve(m);
        }
      };
      cp.on('message', onMsg);
      cp.send({ type, id });
    });
  return child;
}

export function spawnChild(name, cmd, args, opts = {}) {
  const cp = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  return new Child(name, cp);
}

export async function stopAll() {
  await Promise.all([...children].map((c) => c.stop()));
  for (const d of [...tempDirs]) removeTempDir(d);
}

/** Last resort from process 'exit': nothing async runs there any more. */
export function killAllSync() {
  for (const c of children) c.killNow();
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
}

export async function freePort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

let clkTck;
export function clockTicks() {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

function readStat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    // f[0] is field 3 (state): ppid is field 4, utime/stime fields 14/15.
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) };
  } catch {
    return undefined;
  }
}

/** pid plus all its descendants: nginx does its work in a worker under the master. */
function processTree(root) {
  const byParent = new Map();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const st = readStat(name);
    if (!st) continue;
    if (!byParent.has(st.ppid)) byParent.set(st.ppid, []);
    byParent.get(st.ppid).push(Number(name));
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(byParent.get(out[i]) ?? []));
  return out;
}

/** CPU seconds (user + system) used so far by pid and its descendants, or NaN off Linux. */
export function cpuSeconds(pid) {
  if (pid === undefined) return NaN;
  let ticks = 0;
  let seen = false;
  for (const p of processTree(pid)) {
    const st = readStat(p);
    if (st) {
      ticks += st.ticks;
      seen = true;
    }
  }
  return seen ? ticks / clockTicks() : NaN;
}

/**
 * Scheduler counters summed over every thread of pid and its descendants (Linux schedstat):
 * seconds spent runnable but waiting for a CPU, and how many times a thread was put on one.
 * At a low request rate these explain a proxy's latency tail better than its CPU time does.
 */
export function schedStats(pid) {
  if (pid === undefined) return { waitSeconds: NaN, slices: NaN };
  let wait = 0;
  let slices = 0;
  let seen = false;
  for (const p of processTree(pid)) {
    let tasks = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        const [, w, n] = readFileSync(`/proc/${p}/task/${t}/schedstat`, 'utf8').trim().split(' ').map(Number);
        wait += w;
        slices += n;
        seen = true;
      } catch {
        // the thread ended between the listing and the read
      }
    }
  }
  return seen ? { waitSeconds: wait / 1e9, slices } : { waitSeconds: NaN, slices: NaN };
}

/** VmRSS and VmHWM (peak) in MB for one process. */
export function memoryMB(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN);
    return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
  } catch {
    return { rss: NaN, hwm: NaN };
  }
}

/** Kernel counters of connections refused by a full accept queue (SYNs then retried after 1 s). */
export function listenOverflows() {
  try {
    const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n');
    const i = lines.findIndex((l) => l.startsWith('TcpExt:'));
    const names = lines[i].split(/\s+/);
    const vals = lines[i + 1].split(/\s+/);
    const get = (k) => Number(vals[names.indexOf(k)]);
    return { overflows: get('ListenOverflows'), drops: get('ListenDrops') };
  } catch {
    return { overflows: NaN, drops: NaN };
  }
}

/**
 * Machine-wide CPU seconds from /proc/stat: `busy` is user+nice+system (what processes are
 * charged), `steal` what the hypervisor gave to other guests. Comparing `busy` with the bench's
 * own processes shows whether something else was running during a measurement.
 */
export function systemCpu() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const t = clockTicks();
    return { busy: (f[0] + f[1] + f[2]) / t, steal: (f[7] ?? 0) / t };
  } catch {
    return { busy: NaN, steal: NaN };
  }
}
