import type { BlockList } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { createHash } from 'node:crypto';
import { trustedProxyList, type Config } from '../config/load.js';
import type { Upstream } from '../upstream/pools.js';
import type { UpstreamHealth } from '../upstream/health.js';
import { compilePolicy, type FallbackPolicy } from '../proxy/fallback.js';
import { compileShadow, type CompiledShadow } from '../shadow/shadower.js';
import { compileIdentity, type Identify } from './identity.js';
import { RouteTable } from './match.js';

/** A route as the hot path sees it: upstreams resolved, identity compiled. */
export interface CompiledRoute {
  readonly name: string;
  readonly legacy: Upstream;
  readonly candidate: Upstream | undefined;
  readonly flag: string | undefined;
  readonly identify: Identify;
  readonly policy: FallbackPolicy;
  readonly legacyHealth: UpstreamHealth;
  readonly candidateHealth: UpstreamHealth | undefined;
  readonly shadow: CompiledShadow | undefined;
}

/** Everything a request needs from config, swapped as one object on reload. */
export interface RoutingState {
  readonly table: RouteTable<CompiledRoute>;
  readonly routes: readonly CompiledRoute[];
  readonly defaultUpstream: Upstream | undefined;
  readonly trusted: BlockList | undefined;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly health: ReadonlyMap<string, UpstreamHealth>;
  /** Health of the default upstream (for accounting unrouted traffic). */
  readonly defaultHealth: UpstreamHealth | undefined;
  /** Request bodies above this many bytes get 413 (0 = unlimited). */
  readonly maxBody: number;
  readonly qa: QaOverride | undefined;
}

/** The QA override header and the SHA-256 of its secret (compared in constant time). */
export interface QaOverride {
  readonly header: string;
  readonly secretHash: Buffer;
}

export function compileRouting(
  config: Config,
  upstreams: ReadonlyMap<string, Upstream>,
  health: ReadonlyMap<string, UpstreamHealth>,
  options: { env?: NodeJS.ProcessEnv; userId?: (req: IncomingMessage) => string | undefined } = {},
): RoutingState {
  const env = options.env ?? process.env;
  let qa: QaOverride | undefined;
  if (config.qaOverride) {
    const secret = config.qaOverride.secret ?? env[config.qaOverride.secretEnv as string];
    if (!secret) throw new Error(`qaOverride: environment variable ${config.qaOverride.secretEnv} is not set`);
    if (secret.length < 16) throw new Error('qaOverride: the secret must be at least 16 characters');
    qa = { header: config.qaOverride.header, secretHash: createHash('sha256').update(secret).digest() };
  }
  const table = new RouteTable<CompiledRoute>();
  // A host gateway may know the user already (its own auth): that wins over every configured source.
  const hostIdentity: Identify | undefined = options.userId;
  const defaultIdentity = hostIdentity ?? compileIdentity(config.identity);
  const routes: CompiledRoute[] = [];
  for (const r of config.routes) {
    const route: CompiledRoute = {
      name: r.name,
      legacy: upstreams.get(r.legacy) as Upstream,
      candidate: r.candidate !== undefined ? upstreams.get(r.candidate) : undefined,
      flag: r.flag,
      identify: hostIdentity ?? (r.identity ? compileIdentity(r.identity) : defaultIdentity),
      policy: compilePolicy(r),
      legacyHealth: health.get(r.legacy) as UpstreamHealth,
      candidateHealth: r.candidate !== undefined ? health.get(r.candidate) : undefined,
      shadow: r.shadow ? compileShadow(r.shadow) : undefined,
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
    health,
    defaultHealth: config.default !== undefined ? health.get(config.default) : undefined,
    maxBody: config.limits.maxBody,
    qa,
  };
}
