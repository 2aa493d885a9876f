import type { ServerResponse } from 'node:http';
import type { FlagView } from '../flags/model.js';
import type { UpstreamHealthInfo } from '../observability/metrics.js';
import type { CutoverObserver, FallbackStatus, TargetStatus } from '../observability/observer-impl.js';
import type { FlagSourceStatus } from '../flags/fleet.js';
import type { Target } from '../routing/decide.js';
import { sourceJson } from './flags-api.js';
import { sendJson } from './http.js';

/** A route as the status API shows it (from config). */
export interface RouteInfo {
  name: string;
  match: { path: string; methods?: string[] | undefined } | null;
  flag: string | undefined;
  legacy: string;
  candidate: string | undefined;
}

/** The routing config the status API describes; a function so a reload is picked up. */
export interface Topology {
  routes: RouteInfo[];
  /** Upstream for requests no route matches (shown as the route "default"). */
  default: string | undefined;
  upstreams: string[];
}

export interface StatusDeps {
  observer: CutoverObserver;
  /** `external`: fleet mode's flag source (Unleash), whose reachability the status shows. */
  flags: { list(): FlagView[]; readonly external?: { status(): FlagSourceStatus } | undefined };
  topology: () => Topology;
  /** Process start, for uptime (ms since epoch). */
  startedAt?: number;
  /** Shadow results per route (compared/mismatched over 1 and 5 minutes). */
  shadow?: { all(): Array<{ route: string; retiredAt: number | undefined; window(seconds: number): { compared: number; mismatched: number; rate: number | null } }> };
}

/** The routes that route by `flag` in the live config (the flags API and the status say which). */
export function routesOfFlag(topo: Topology, flag: string): string[] {
  return topo.routes.filter((r) => r.flag === flag).map((r) => r.name);
}

/** Builds the topology from a loaded Config (structurally, so tests can pass plain objects). */
export function topologyOf(config: {
  routes: ReadonlyArray<{ name: string; match: { path: string; methods?: string[] | undefined }; legacy: string; candidate?: string | undefined; flag?: string | undefined }>;
  default: string | undefined;
  upstreams: ReadonlyMap<string, unknown>;
}): Topology {
  return {
    routes: config.routes.map((r) => ({
      name: r.name,
      match: { path: r.match.path, ...(r.match.methods !== undefined && { methods: r.match.methods }) },
      flag: r.flag,
      legacy: r.legacy,
      candidate: r.candidate,
    })),
    default: config.default,
    upstreams: [...config.upstreams.keys()],
  };
}

export interface FlagSummary {
  exists: boolean;
  enabled: boolean;
  percentage: number;
  auto_disable_on_failure?: boolean;
  updated_at?: string | undefined;
  updated_by?: string | undefined;
}

export interface TargetView extends TargetStatus {
  upstream: string;
  /** null until health checking reports this upstream. */
  health: UpstreamHealthInfo | null;
}

export interface RouteStatus {
  name: string;
  match: RouteInfo['match'];
  flag: string | null;
  /** null for a route without a flag; exists:false when the flag is missing (all traffic to legacy). */
  flag_state: FlagSummary | null;
  legacy: TargetView;
  candidate: TargetView | null;
  fallbacks: FallbackStatus;
  /** Present for shadowed routes once something was mirrored. */
  shadow?: { '1m': ShadowWindow; '5m': ShadowWindow };
}

export interface ShadowWindow {
  compared: number;
  mismatched: number;
  rate: number | null;
}

export interface StatusBody {
  time: string;
  uptime_s: number;
  routes: RouteStatus[];
  flags: Array<FlagView & { routes: string[] }>;
  upstreams: Array<{ name: string; health: UpstreamHealthInfo | null; routes: string[] }>;
  /** Fleet mode only: the flag source as GET /api/v1/flags shows it (is Unleash reachable, since when). */
  flag_source?: Record<string, unknown>;
}

/** The whole live picture, as GET /api/v1/status answers it. */
export function statusBody(deps: StatusDeps, now = Date.now()): StatusBody {
  const topo = deps.topology();
  const flagList = deps.flags.list();
  const source = deps.flags.external?.status();
  const flags = new Map(flagList.map((f) => [f.name, f]));
  const health = deps.observer.health?.() ?? {};
  const healthOf = (u: string): UpstreamHealthInfo | null => health[u] ?? null;

  const target = (route: string, t: Target, upstream: string): TargetView => ({
    upstream,
    health: healthOf(upstream),
    ...deps.observer.targetStatus(route, t),
  });

  const routes: RouteStatus[] = topo.routes.map((r) => {
    const f = r.flag !== undefined ? flags.get(r.flag) : undefined;
    return {
      name: r.name,
      match: r.match,
      flag: r.flag ?? null,
      flag_state:
        r.flag === undefined
          ? null
          : f === undefined
            ? { exists: false, enabled: false, percentage: 0 }
            : {
                exists: true,
                enabled: f.enabled,
                percentage: f.percentage,
                auto_disable_on_failure: f.auto_disable_on_failure,
                updated_at: f.updated_at,
                updated_by: f.updated_by,
              },
      legacy: target(r.name, 'legacy', r.legacy),
      candidate: r.candidate !== undefined ? target(r.name, 'candidate', r.candidate) : null,
      fallbacks: deps.observer.fallbackStatus(r.name),
      ...shadowOf(deps, r.name),
    };
  });
  const known = new Set(routes.map((r) => r.name));
  if (topo.default !== undefined && !known.has('default')) {
    known.add('default');
    routes.push({
      name: 'default',
      match: null,
      flag: null,
      flag_state: null,
      legacy: target('default', 'legacy', topo.default),
      candidate: null,
      fallbacks: deps.observer.fallbackStatus('default'),
    });
  }

  const routesOfUpstream = (name: string) =>
    topo.routes.filter((r) => r.legacy === name || r.candidate === name).map((r) => r.name).concat(topo.default === name ? ['default'] : []);

  return {
    time: new Date(now).toISOString(),
    uptime_s: Math.round((now - (deps.startedAt ?? now)) / 1000),
    routes,
    flags: flagList.map((f) => ({ ...f, routes: routesOfFlag(topo, f.name) })),
    upstreams: topo.upstreams.map((name) => ({ name, health: healthOf(name), routes: routesOfUpstream(name) })),
    ...(source !== undefined && { flag_source: sourceJson(source, now) }),
  };
}

/** GET /api/v1/status */
export function getStatus(deps: StatusDeps, res: ServerResponse): void {
  sendJson(res, 200, statusBody(deps));
}

/** GET /metrics: Prometheus text format. */
export async function getMetrics(observer: CutoverObserver, res: ServerResponse): Promise<void> {
  const text = await observer.metrics.text();
  res.writeHead(200, {
    'content-type': observer.metrics.contentType,
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function shadowOf(deps: StatusDeps, route: string): Pick<RouteStatus, 'shadow'> {
  // Not a route a reload stopped shadowing: its card would read as shadowed with nothing compared.
  const s = deps.shadow?.all().find((x) => x.route === route && x.retiredAt === undefined);
  if (!s) return {};
  const w = (sec: number) => {
    const { compared, mismatched, rate } = s.window(sec);
    return { compared, mismatched, rate };
  };
  return { shadow: { '1m': w(60), '5m': w(300) } };
}
