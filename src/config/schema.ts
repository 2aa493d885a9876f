import { z } from 'zod';
import { normalizePath } from '../routing/normalize-path.js';
import { duration, httpUrl, name, size, HTTP_TOKEN_RE } from './scalars.js';
import { identitySchema, type jwtSourceSchema, type identitySourceSchema } from './identity-schema.js';

export { duration, NAME_RE, parseSize } from './scalars.js';
export { JWS_ALGORITHMS, identitySourceSchema } from './identity-schema.js';

export const healthSchema = z.strictObject({
  path: z.string().startsWith('/', 'must start with "/"').default('/health'),
  interval: duration.default(5000),
  timeout: duration.default(1000),
  unhealthyAfter: z.number().int().min(1).max(100).default(3),
  healthyAfter: z.number().int().min(1).max(100).default(2),
});

/** Passive checks on live traffic, after Envoy's outlier detection. */
export const outlierSchema = z.strictObject({
  consecutiveFailures: z.number().int().min(1).max(1000).default(3),
  baseEjection: duration.default(10_000),
  maxEjection: duration.default(300_000),
});

export const upstreamSchema = z.strictObject({
  url: httpUrl,
  /** Max sockets to this upstream (one undici Pool per upstream). */
  connections: z.number().int().min(1).max(10_000).default(128),
  connectTimeout: duration.default(2000),
  /** Idle timers, not deadlines (undici semantics): the route's timeout bounds the attempt. */
  headersTimeout: duration.default(30_000),
  bodyTimeout: duration.default(30_000),
  keepAliveTimeout: duration.default(4000),
  /** Send the client's Host instead of the upstream's own host (X-Forwarded-Host carries it either way). */
  preserveHost: z.boolean().default(false),
  /** Active probes; without this block the upstream is only checked passively. */
  health: healthSchema.optional(),
  outlier: outlierSchema.default({ consecutiveFailures: 3, baseEjection: 10_000, maxEjection: 300_000 }),
});

const method = z
  .string()
  .regex(HTTP_TOKEN_RE, 'not an HTTP method')
  .transform((m) => m.toUpperCase());

/** Mirror reads (or, explicitly, writes) served by legacy to the candidate and compare the answers. */
export const shadowSchema = z.strictObject({
  /** Share of users (by their own shadow bucket) whose requests are mirrored. */
  percentage: z.number().min(0).max(100),
  /** Fields never compared, as `$.a.b[*].c` paths. */
  ignore: z.array(z.string().regex(/^\$/, 'paths look like $.field or $.items[*].etag')).default([]),
  /** Response headers that must agree (lowercased). */
  headers: z.array(z.string().min(1).transform((h) => h.toLowerCase())).default(['content-type']),
  numericTolerance: z.number().min(0).default(0),
  /** Compare arrays as multisets: true for all, or only arrays at these paths. */
  unorderedArrays: z.union([z.boolean(), z.array(z.string().regex(/^\$/))]).default(false),
  /** Percent of shadowed GETs for which legacy is asked twice, to learn which fields are noise. */
  noiseSample: z.number().min(0).max(100).default(0),
  /** A noisy field counts again once no probe saw it differ for this long (also: two probes within it make a field noise). */
  noiseTtl: duration.default(10 * 60_000).refine((ms) => ms >= 1000, 'noiseTtl must be at least 1s (0 would never learn any noise)'),
  /** DANGER: mirror writes too. The candidate gets x-cutover-shadow: 1 and must not apply them. */
  writes: z.boolean().default(false),
  timeout: duration.default(2000),
  maxBody: size.default(1024 * 1024),
});

/** Process-wide bounds on shadow work, so mirroring can never starve real traffic. */
export const shadowingSchema = z.strictObject({
  concurrency: z.number().int().min(1).max(1000).default(16),
  queue: z.number().int().min(0).max(100_000).default(256),
});

/**
 * Requests are matched by their normalized path (see normalizePath) without the query, so a route
 * path that is not in that form (`//`, `/./`, `%2e`, `%7E`, `?x=1`) would load and never match.
 */
const routePath = z.string().superRefine((p, ctx) => {
  const fail = (message: string) => ctx.addIssue({ code: 'custom', message });
  if (!p.startsWith('/')) return fail('must start with "/"');
  if (p.includes('?') || p.includes('#')) return fail('routes match the path only: a query or fragment here would never match');
  // NGINX/Express habits (/customers/*, /customers/{id}): here they would match only that literal text.
  const segments = p.split('/');
  const patterned = segments.findIndex((seg) => /[*{}]/.test(seg));
  if (patterned !== -1) {
    const prefix = segments.slice(0, patterned).join('/') || '/';
    return fail(`paths are prefixes, not patterns ("*", "{", "}" match only themselves): write ${prefix}, it matches ${prefix} and everything under it`);
  }
  // Node refuses such request targets with 400, so no request could reach this route.
  if (/[^\x21-\x7e]/.test(p)) return fail('spaces, control and non-ASCII characters must be percent-encoded (UTF-8), e.g. /caf%C3%A9');
  const normal = normalizePath(p);
  if (normal !== p) fail(`requests are normalized before matching, so this path would never match: write ${normal}`);
});

export const routeSchema = z.strictObject({
  name: name('route name'),
  match: z.strictObject({
    path: routePath,
    methods: z.array(method).min(1).optional(),
  }),
  legacy: name('upstream name'),
  candidate: name('upstream name').optional(),
  flag: name('flag name').optional(),
  /** Bounds the candidate attempt (time to response headers). */
  timeout: duration.optional(),
  /** Overall time to response headers, fallback included; legacy gets what remains. */
  budget: duration.optional(),
  /** Candidate failures that send the request to legacy instead. */
  fallbackOn: z
    .array(z.union([z.enum(['connect', 'reset', 'timeout', '5xx']), z.number().int().min(500).max(599)]))
    .default(['connect', 'reset', 'timeout', '5xx']),
  /** Safe methods only: ask legacy too if the candidate has not answered by then. */
  hedge: duration.optional(),
  /** Writes carrying Idempotency-Key are buffered (up to maxBody) so they may be replayed on legacy. */
  replayWrites: z.strictObject({ maxBody: size }).optional(),
  shadow: shadowSchema.optional(),
  identity: identitySchema.optional(),
}).refine((r) => r.timeout === undefined || r.budget === undefined || r.timeout <= r.budget, {
  // The budget bounds the whole request, so such a timeout could never be given to the candidate,
  // and a candidate that used it would leave legacy nothing: refused rather than quietly cut.
  path: ['timeout'],
  error: (iss) => {
    const r = iss.input as { timeout: number; budget: number };
    return `${r.timeout} ms is longer than the route's budget (${r.budget} ms), which bounds the whole request, fallback included: use a timeout of at most the budget`;
  },
}).refine((r) => r.hedge === undefined || r.budget === undefined || r.hedge < r.budget, {
  // Legacy would be asked only once the budget is spent: the hedge could never answer.
  path: ['hedge'],
  error: (iss) => {
    const r = iss.input as { hedge: number; budget: number };
    return `${r.hedge} ms is not shorter than the route's budget (${r.budget} ms): legacy would be asked only when the request has no time left; use a hedge well below the budget`;
  },
});

/** Limits on what clients may send; header size and timeouts apply at start, maxBody on reload too. */
export const limitsSchema = z.strictObject({
  /** Request bodies larger than this get 413 (0 = no limit). */
  maxBody: size.default(100 * 1024 * 1024),
  /** Total request header bytes; larger gets 431. */
  maxHeaderSize: size.default(16 * 1024),
  /** Time for a client to send the request headers (slowloris guard). */
  headersTimeout: duration.default(20_000),
  /** Time for a client to send the whole request, body included. */
  requestTimeout: duration.default(300_000),
});

/** Lets QA force one request to a side, only with a secret; the header never reaches upstreams. */
export const qaOverrideSchema = z
  .strictObject({
    header: z.string().min(1).transform((h) => h.toLowerCase()).default('x-cutover-force'),
    secret: z.string().min(16, 'use a secret of at least 16 characters').optional(),
    secretEnv: z.string().min(1).optional(),
  })
  .refine((o) => (o.secret === undefined) !== (o.secretEnv === undefined), 'qaOverride needs exactly one of secret or secretEnv');

/** One file's worth of config; files are merged, so every key is optional here. */
export const configFileSchema = z.strictObject({
  upstreams: z.record(name('upstream name'), upstreamSchema).optional(),
  default: name('upstream name').optional(),
  identity: identitySchema.optional(),
  trustedProxies: z.array(z.string().min(1)).optional(),
  limits: limitsSchema.optional(),
  qaOverride: qaOverrideSchema.optional(),
  shadowing: shadowingSchema.optional(),
  routes: z.array(routeSchema).optional(),
});

export type UpstreamConfig = z.output<typeof upstreamSchema>;
export type HealthConfig = z.output<typeof healthSchema>;
export type OutlierConfig = z.output<typeof outlierSchema>;
export type RouteConfig = z.output<typeof routeSchema>;
export type ShadowConfig = z.output<typeof shadowSchema>;
export type ShadowingConfig = z.output<typeof shadowingSchema>;
export type LimitsConfig = z.output<typeof limitsSchema>;
export type QaOverrideConfig = z.output<typeof qaOverrideSchema>;
export type IdentityConfig = z.output<typeof identitySchema>;
export type IdentitySource = z.output<typeof identitySourceSchema>;
export type JwtSourceConfig = z.output<typeof jwtSourceSchema>;
export type ConfigFile = z.output<typeof configFileSchema>;
export type ConfigInput = z.input<typeof configFileSchema>;

/** Formats a zod issue path the way operators write config keys: routes[1].match.path */
export function formatKeyPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out ? `.${String(p)}` : String(p);
  }
  return out || '(top level)';
}
