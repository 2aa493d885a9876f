import type { BlockList } from 'node:net';
import { trustedProxyList, type Config } from '../config/load.js';
import type { Upstream } from '../upstream/pools.js';
import { compileIdentity, type Identify } from './identity.js';
import { RouteTable } from './match.js';

/** A route as the hot path sees it: upstreams resolved, identity compiled. */
export interface CompiledRoute {
  readonly name: string;
  readonly legacy: Upstream;
  readonly candidate: Upstream | undefined;
  readonly flag: string | undefined;
  readonly timeoutMs: number | undefined;
  readonly identify: Identify;
}

/** Everything a request needs from config, swapped as one object on reload. */
export interface RoutingState {
  readonly table: RouteTable<CompiledRoute>;
  readonly routes: readonly CompiledRoute[];
  readonly defaultUpstream: Upstream | undefined;
  readonly trusted: BlockList | undefined;
  readonly upstreams: ReadonlyMap<string, Upstream>;
}

export function compileRouting(config: Config, upstreams: ReadonlyMap<string, Upstream>): RoutingState {
  const table = new RouteTable<CompiledRoute>();
  const defaultIdentity = compileIdentity(config.identity);
  const routes: CompiledRoute[] = [];
  for (const r of config.routes) {
    const route: CompiledRoute = {
      name: r.name,
      legacy: upstreams.get(r.legacy) as Upstream,
      candidate: r.candidate !== undefined ? upstreams.get(r.candidate) : undefined,
      flag: r.flag,
      timeoutMs: r.timeout,
      identify: r.identity ? compileIdentity(r.identity) : defaultIdentity,
    };
    routes.push(route);
    table.add(r.match.path, r.match.methods, route);
  }
  return {
    table,
    routes,
    defaultUpstream: config.default !== undefined ? upstreams.get(config.default) : undefined,
    trusted: trustedProxyList(config.trustedProxies),
    upstreams,
  };
}
