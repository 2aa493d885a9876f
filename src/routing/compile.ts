import type { BlockList } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { createHash } from 'node:crypto';
import { ConfigError, trustedProxyList, type Config, type ConfigProblem } from '../config/load.js';
import type { Upstream } from '../upstream/pools.js';
import type { UpstreamHealth } from '../upstream/health.js';
import { compilePolicy, type FallbackPolicy } from '../proxy/fallback.js';
import { compileShadow, type CompiledShadow } from '../shadow/shadower.js';
import { compileIdentity, IdentitySettingsError, type Identify, type IdentityLog } from './identity.js';
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

export interface CompileOptions {
  env?: NodeJS.ProcessEnv;
  /** Where identity sources report trouble (a failing JWKS); cutover passes its logger. */
  log?: IdentityLog;
  userId?: (req: IncomingMessage) => string | undefined;
}

export function compileRouting(
  config: Config,
  upstreams: ReadonlyMap<string, Upstream>,
  health: ReadonlyMap<string, UpstreamHealth>,
  options: CompileOptions = {},
): RoutingState {
  const { qa, defaultIdentity, routeIdentity } = compileSettings(config, options);
  const table = new RouteTable<CompiledRoute>();
  const routes: CompiledRoute[] = [];
  for (const [i, r] of config.routes.entries()) {
    const route: CompiledRoute = {
      name: r.name,
      legacy: upstreams.get(r.legacy) as Upstream,
      candidate: r.candidate !== undefined ? upstreams.get(r.candidate) : undefined,
      flag: r.flag,
      identify: routeIdentity[i] ?? defaultIdentity,
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

/**
 * Checks what loading cannot: keys that must parse and secrets read from the environment (as
 * serve reads them). Throws ConfigError naming the file and key of every problem.
 */
export function checkRouting(config: Config, options: CompileOptions = {}): void {
  compileSettings(config, options);
}

/** The environment variables the config reads its secrets from (qaOverride and jwt secretEnv). */
export function secretEnvNames(config: Config): string[] {
  const names = new Set<string>();
  if (config.qaOverride?.secretEnv) names.add(config.qaOverride.secretEnv);
  for (const id of [config.identity, ...config.routes.map((r) => r.identity)]) {
    for (const s of id?.sources ?? []) if ('jwt' in s && s.jwt.secretEnv) names.add(s.jwt.secretEnv);
  }
  return [...names];
}

interface Settings {
  qa: QaOverride | undefined;
  defaultIdentity: Identify;
  /** Per route: its own identity, if it has one (the host's wins over everything). */
  routeIdentity: Array<Identify | undefined>;
}

function compileSettings(config: Config, options: CompileOptions): Settings {
  const env = options.env ?? process.env;
  const problems: ConfigProblem[] = [];
  const origin = config.origin;
  let qa: QaOverride | undefined;
  if (config.qaOverride) {
    const file = origin.qaOverride ?? '';
    const secret = config.qaOverride.secret ?? env[config.qaOverride.secretEnv as string];
    if (!secret) problems.push({ file, key: 'qaOverride.secretEnv', message: `environment variable ${config.qaOverride.secretEnv} is not set (or empty) in this environment` });
    else if (secret.length < 16) problems.push({ file, key: 'qaOverride.secretEnv', message: `environment variable ${config.qaOverride.secretEnv} holds ${secret.length} characters: use a secret of at least 16` });
    else qa = { header: config.qaOverride.header, secretHash: createHash('sha256').update(secret).digest() };
  }
  const identity = (cfg: Parameters<typeof compileIdentity>[0], file: string, at: string): Identify => {
    try {
      return compileIdentity(cfg, env, options.log);
    } catch (err) {
      if (!(err instanceof IdentitySettingsError)) throw err;
      for (const p of err.problems) problems.push({ file, key: `${at}.${p.key}`, message: p.message });
      return () => undefined;
    }
  };
  // A host gateway may know the user already (its own auth): that wins over every configured source.
  const host: Identify | undefined = options.userId;
  const defaultIdentity = host ?? identity(config.identity, origin.identity ?? '', 'identity');
  const routeIdentity = config.routes.map((r, i) => {
    if (host) return host;
    const at = origin.routes[i] ?? { file: '', index: i };
    return r.identity ? identity(r.identity, at.file, `routes[${at.index}].identity`) : undefined;
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return { qa, defaultIdentity, routeIdentity };
}
