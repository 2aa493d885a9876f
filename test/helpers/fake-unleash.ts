// A small real HTTP server standing in for Unleash: the few Admin API calls of UnleashAdmin
// (recorded in order, any one of them made to fail or answer late) and /api/client/features for
// the SDK, served from the same state. Plus a cutover in fleet mode against it.
import type { Test } from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { postJson } from './http.js';
import { startCutover, startUpstream, waitFor, writeConfig } from './servers.js';
import type { AdminStrategy } from '../../src/flags/unleash-admin.js';

export const ENV = 'development';
export const ADMIN = '*:*.admin-secret';
export const BACKEND = '*:development.backend-secret';

interface Toggle {
  name: string;
  project: string;
  environments: Array<{ name: string; enabled: boolean; strategies: AdminStrategy[] }>;
}

/** "fail": answer 500 without changing anything; "lost": apply it, then drop the connection (the answer is lost). */
type Failure = 'fail' | 'lost';

export async function fakeUnleash(t: Test) {
  const toggles = new Map<string, Toggle>();
  const calls: string[] = [];
  const failures = new Map<number, Failure>();
  const state = { clientStatus: 200, nextId: 1 };
  /** Admin calls about these toggles answer this many ms late (a slow Unleash). */
  const slow = new Map<string, number>();
  /** Admin calls of these kinds ("POST on", "PUT strategies", ...) are applied, and answered, only this many ms late. */
  const late = new Map<string, number>();
  /** Admin calls of these kinds are applied at once but answered only this many ms late (the answer is slow, not Unleash). */
  const answerLate = new Map<string, number>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      const send = (status: number, json?: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(json === undefined ? '' : JSON.stringify(json));
      };
      if (url.pathname === '/api/client/features') {
        if (state.clientStatus !== 200) return send(state.clientStatus, { message: 'token revoked' });
        const features = [...toggles.values()].map((f) => {
          const e = f.environments.find((x) => x.name === ENV);
          return { name: f.name, type: 'release', project: f.project, stale: false, enabled: e?.enabled ?? false, strategies: (e?.strategies ?? []).map(({ name, constraints, parameters }) => ({ name, constraints, parameters })), variants: [] };
        });
        return send(200, { version: 2, features });
      }
      if (url.pathname.startsWith('/api/client/') || url.pathname.startsWith('/api/frontend')) return send(202, {});
      const m = /^\/api\/admin\/projects\/([^/]+)\/features(?:\/([^/]+)(?:\/environments\/([^/]+)\/(on|off|strategies)(?:\/([^/]+))?)?)?$/.exec(url.pathname);
      if (m === null) return send(404, { message: `no route ${req.method} ${url.pathname}` });
      const [, project, name, , action, strategyId] = m.map((x) => (x === undefined ? undefined : decodeURIComponent(x)));
      const what = `${req.method} ${action ?? (name ? 'feature' : 'features')}`;
      calls.push(what);
      const failure = failures.get(calls.length);
      const lateMs = late.get(what);
      if (lateMs !== undefined) return void setTimeout(() => admin(project, name, action, strategyId, what, failure), lateMs);
      admin(project, name, action, strategyId, what, failure);
    });
    function admin(project: string | undefined, name: string | undefined, action: string | undefined, strategyId: string | undefined, what: string, failure: Failure | undefined) {
      const send = (status: number, json?: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(json === undefined ? '' : JSON.stringify(json));
      };
      if (failure === 'fail') return send(500, { message: `injected failure of call ${calls.length} (${what})` });
      const toggle = toggles.get(name ?? (JSON.parse(body || '{}') as { name: string }).name);
      const env = toggle?.environments.find((e) => e.name === ENV);
      let answer: [number, unknown?];
      if (what === 'GET feature') answer = toggle ? [200, toggle] : [404, { message: 'not found' }];
      else if (what === 'POST features') {
        const { name: created } = JSON.parse(body) as { name: string };
        toggles.set(created, { name: created, project: project as string, environments: [{ name: ENV, enabled: false, strategies: [] }] });
        answer = [201, { name: created }];
      } else if (env === undefined) answer = [404, { message: 'no such toggle' }];
      else if (action === 'on' || action === 'off') {
        env.enabled = action === 'on';
        answer = [200];
      } else if (req.method === 'POST') {
        const s = { ...(JSON.parse(body) as AdminStrategy), id: `s${state.nextId++}` };
        env.strategies.push(s);
        answer = [200, s];
      } else if (req.method === 'PUT') {
        const i = env.strategies.findIndex((s) => s.id === strategyId);
        if (i >= 0) env.strategies[i] = { ...(JSON.parse(body) as AdminStrategy), id: strategyId as string };
        answer = i >= 0 ? [200, env.strategies[i]] : [404, { message: 'no such strategy' }];
      } else {
        const before = env.strategies.length;
        env.strategies = env.strategies.filter((s) => s.id !== strategyId);
        answer = env.strategies.length < before ? [200] : [404, { message: 'no such strategy' }];
      }
      if (failure === 'lost') return res.destroy();
      const slowMs = slow.get(name ?? '') ?? answerLate.get(what);
      if (slowMs !== undefined) return void setTimeout(() => send(...answer), slowMs);
      send(...answer);
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.listening && stop());
  const api = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`;
  /** A toggle as Unleash would have it: on/off in ENV with one flexibleRollout strategy. */
  const seed = (name: string, enabled: boolean, rollout: number) =>
    toggles.set(name, { name, project: 'default', environments: [{ name: ENV, enabled, strategies: [{ id: `s${state.nextId++}`, name: 'flexibleRollout', constraints: [], parameters: { rollout: String(rollout), stickiness: 'userId', groupId: name } }] }] });
  const env = (name: string) => toggles.get(name)?.environments.find((e) => e.name === ENV);
  const rollout = (name: string) => env(name)?.strategies.map((s) => Number(s.parameters.rollout));
  const stop = () => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  };
  return { api, toggles, calls, failures, state, slow, late, answerLate, seed, env, rollout, stop };
}

export interface AuditLine {
  actor: string;
  source: string;
  reason?: string;
  flag: string;
  before: { enabled: boolean; percentage: number; auto_disable_on_failure: boolean; auto_disable_after: number } | null;
  after: { enabled: boolean; percentage: number; auto_disable_on_failure: boolean; auto_disable_after: number } | null;
}

/** A cutover in fleet mode (admin token, 200 ms polls) routing /r by toggle "flag" (on, 25 %). */
export async function fleet(t: Test) {
  const u = await fakeUnleash(t);
  u.seed('flag', true, 25);
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, { upstreams: { legacy: { url: legacy.url }, candidate: { url: candidate.url } }, routes: [{ name: 'r', match: { path: '/r' }, legacy: 'legacy', candidate: 'candidate', flag: 'flag' }] });
  const { running } = await startCutover(t, dirs, { serve: { drainTimeoutMs: 500, unleash: { url: u.api, apiToken: BACKEND, adminToken: ADMIN, refreshIntervalMs: 200, startupWaitMs: 3000, disableMetrics: true } } });
  const post = (body: unknown, flag = 'flag') => postJson(`http://127.0.0.1:${running.adminPort}/api/v1/flags/${flag}`, body, { 'x-cutover-actor': 'alice' });
  const audit = async () => (await readFile(join(dirs.flagsDir, 'audit.log'), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditLine);
  const adminLines = async () => (await audit()).filter((l) => l.source === 'admin-api');
  return { u, dirs, post, audit, adminLines, running, adminPort: running.adminPort };
}

/** Unleash takes this long to apply and answer a "POST on": well past every answer timed below. */
export const SLOW_MS = 2500;

export type Fleet = Awaited<ReturnType<typeof fleet>>;

/** Toggle "flag" off at 25 % (as after an earlier rollback), seen by the replica; the audit log's lines so far. */
export async function offAt25(f: Fleet): Promise<number> {
  (f.u.env('flag') as { enabled: boolean }).enabled = false;
  await waitFor(() => f.running.cutover.store.view('flag')?.enabled === false, 3000, 'the replica to see the toggle off');
  // Its `unleash` audit line is written just after: counted here, not taken for one of the test's.
  await waitFor(async () => (await f.audit()).at(-1)?.after?.enabled === false, 3000, 'the replica to audit the toggle off');
  f.u.calls.length = 0;
  return (await f.audit()).length;
}

export const timed = (f: Fleet, body: unknown, who: string, started: number) =>
  postJson(`http://127.0.0.1:${f.adminPort}/api/v1/flags/flag`, body, { 'x-cutover-actor': who }).then((r) => ({ status: r.status, json: r.json<{ error?: string; message: string }>(), at: Date.now() - started }));

/** alice's ramp to 50 % under way, its "on" held SLOW_MS by Unleash; `started` is what `timed` counts from. */
export async function slowRamp(f: Fleet) {
  f.u.late.set('POST on', SLOW_MS);
  const started = Date.now();
  const ramp = timed(f, { enabled: true, percentage: 50 }, 'alice', started); // GET, PUT 50, POST on (slow)
  await new Promise((r) => setTimeout(r, 150));
  return { started, ramp };
}

/** Where the audit lines of `flag` (the local files' aside) do not chain: a line's `before` is not the `after` of the one before it. */
export function breaks(lines: AuditLine[], flag = 'flag'): string[] {
  const own = lines.filter((l) => l.flag === flag && l.source !== 'file');
  const state = (s: AuditLine['after']) => (s === null ? 'none' : `${String(s.enabled)},${String(s.percentage)}`);
  return own.slice(1).flatMap((l, i) => (state(l.before) === state(own[i]?.after ?? null) ? [] : [`line ${i + 2} (${l.actor}) starts at ${state(l.before)}, the one before ended at ${state(own[i]?.after ?? null)}`]));
}

/** Lines as "actor-without-address enabled,percentage" after each, for t.same. */
export const afters = (lines: AuditLine[]) => lines.map((l) => `${l.actor.split('@')[0]} ${String(l.after?.enabled)},${String(l.after?.percentage)}`);
