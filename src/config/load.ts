import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BlockList, isIP } from 'node:net';
import { parseDocument } from 'yaml';
import {
  configFileSchema,
  formatKeyPath,
  type ConfigFile,
  type ConfigInput,
  type IdentityConfig,
  type LimitsConfig,
  type QaOverrideConfig,
  type RouteConfig,
  type ShadowingConfig,
  type UpstreamConfig,
} from './schema.js';

/** The merged, validated configuration. Every cross-reference has been checked. */
export interface Config {
  upstreams: Map<string, UpstreamConfig>;
  default: string | undefined;
  identity: IdentityConfig;
  trustedProxies: string[];
  limits: LimitsConfig;
  qaOverride: QaOverrideConfig | undefined;
  shadowing: ShadowingConfig;
  routes: RouteConfig[];
  files: string[];
  /** Where sections were set, so problems found later (compiling keys, reading secretEnv) name file and key. */
  origin: ConfigOrigin;
}

export interface ConfigOrigin {
  identity: string | undefined;
  qaOverride: string | undefined;
  /** Per entry of `routes`: its file and its index in that file's routes list. */
  routes: Array<{ file: string; index: number }>;
}

export const DEFAULT_LIMITS: LimitsConfig = {
  maxBody: 100 * 1024 * 1024,
  maxHeaderSize: 16 * 1024,
  headersTimeout: 20_000,
  requestTimeout: 300_000,
};

export const DEFAULT_IDENTITY: IdentityConfig = { sources: [{ header: 'x-user-id' }] };

/** One problem with the config, located by file and key path. */
export interface ConfigProblem {
  file: string;
  key: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: ConfigProblem[]) {
    super(problems.map((p) => `${p.file}: ${p.key}: ${p.message}`).join('\n'));
    this.name = 'ConfigError';
  }
}

/** Reads every *.yaml / *.yml file in `dir` (sorted by name) and validates the merged result. */
export async function loadConfigDir(dir: string): Promise<Config> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => /\.ya?ml$/.test(n) && !n.startsWith('.')).sort();
  } catch (err) {
    throw new ConfigError([{ file: dir, key: '(directory)', message: (err as Error).message }]);
  }
  if (names.length === 0) {
    throw new ConfigError([{ file: dir, key: '(directory)', message: 'no .yaml or .yml files found' }]);
  }
  const sources: Array<{ file: string; text: string }> = [];
  for (const n of names) {
    const file = join(dir, n);
    sources.push({ file, text: await readFile(file, 'utf8') });
  }
  return parseConfigSources(sources);
}

/** Parses YAML texts (as if each were a file) and validates the merged result. */
export function parseConfigSources(sources: Array<{ file: string; text: string }>): Config {
  const problems: ConfigProblem[] = [];
  const parsed: Array<{ file: string; data: unknown }> = [];
  for (const { file, text } of sources) {
    const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: false });
    if (doc.errors.length > 0) {
      for (const e of doc.errors) problems.push({ file, key: '(yaml)', message: e.message.split('\n')[0] as string });
      continue;
    }
    parsed.push({ file, data: doc.toJS() ?? {} });
  }
  if (problems.length === 0) return validateConfig(parsed);
  // Still check the files that did parse, so one run shows every problem.
  try {
    validateConfig(parsed);
  } catch (err) {
    if (err instanceof ConfigError) problems.push(...err.problems);
  }
  throw new ConfigError(problems);
}

/** Validates config objects (one per source file) and merges them. Throws ConfigError. */
/** Top-level sections that one file only may set (merging them would hide a mistake). */
const SINGLE_KEYS = ['identity', 'limits', 'qaOverride', 'shadowing'] as const;
type SingleKey = (typeof SINGLE_KEYS)[number];

export function validateConfig(inputs: Array<{ file: string; data: unknown }>): Config {
  const problems: ConfigProblem[] = [];
  const files: Array<{ file: string; cfg: ConfigFile }> = [];
  for (const { file, data } of inputs) {
    const r = configFileSchema.safeParse(data);
    if (!r.success) {
      for (const issue of r.error.issues) {
        problems.push({ file, key: formatKeyPath(issue.path), message: issue.message });
      }
      continue;
    }
    files.push({ file, cfg: r.data });
  }
  if (problems.length) throw new ConfigError(problems);

  const upstreams = new Map<string, UpstreamConfig>();
  const upstreamFile = new Map<string, string>();
  let def: { name: string; file: string } | undefined;
  const single: Pick<ConfigFile, SingleKey> = {};
  // Top-level keys that one file only may set (merging them would hide a mistake).
  const setIn = new Map<string, string>();
  const once = (key: string, file: string): void => {
    const prev = setIn.get(key);
    if (prev) problems.push({ file, key, message: `already set in ${prev}` });
    setIn.set(key, file);
  };
  const trustedProxies: string[] = [];
  const routes: Array<{ route: RouteConfig; file: string; index: number }> = [];

  for (const { file, cfg } of files) {
    for (const [name, up] of Object.entries(cfg.upstreams ?? {})) {
      const prev = upstreamFile.get(name);
      if (prev) problems.push({ file, key: `upstreams.${name}`, message: `already defined in ${prev}` });
      upstreams.set(name, up);
      upstreamFile.set(name, file);
    }
    if (cfg.default !== undefined) {
      once('default', file);
      def = { name: cfg.default, file };
    }
    for (const key of SINGLE_KEYS) {
      if (cfg[key] === undefined) continue;
      once(key, file);
      Object.assign(single, { [key]: cfg[key] });
    }
    cfg.trustedProxies?.forEach((p, i) => {
      if (!validCidr(p)) problems.push({ file, key: `trustedProxies[${i}]`, message: `not an IP address or CIDR: ${p}` });
      trustedProxies.push(p);
    });
    cfg.routes?.forEach((route, index) => routes.push({ route, file, index }));
  }

  if (def && !upstreams.has(def.name)) {
    problems.push({ file: def.file, key: 'default', message: `unknown upstream "${def.name}"` });
  }

  const routeNames = new Map<string, string>();
  const claimed = new Map<string, Array<{ methods: Set<string> | null; name: string }>>();
  for (const { route, file, index } of routes) {
    const at = `routes[${index}]`;
    if (route.name === 'default' || route.name === 'unrouted') {
      problems.push({ file, key: `${at}.name`, message: `"${route.name}" is reserved (metrics and logs use it for requests no route matched)` });
    }
    const prev = routeNames.get(route.name);
    if (prev) problems.push({ file, key: `${at}.name`, message: `duplicate route name "${route.name}" (also in ${prev})` });
    routeNames.set(route.name, file);
    for (const key of ['legacy', 'candidate'] as const) {
      const up = route[key];
      if (up !== undefined && !upstreams.has(up)) {
        problems.push({ file, key: `${at}.${key}`, message: `unknown upstream "${up}"` });
      }
    }
    if (route.candidate !== undefined && route.flag === undefined) {
      problems.push({ file, key: `${at}.flag`, message: 'a route with a candidate needs a flag to decide who goes there' });
    }
    if (route.flag !== undefined && route.candidate === undefined) {
      problems.push({ file, key: `${at}.candidate`, message: `flag "${route.flag}" has no candidate upstream to send users to` });
    }
    if (route.shadow !== undefined && route.candidate === undefined) {
      problems.push({ file, key: `${at}.shadow`, message: 'shadow needs a candidate upstream to mirror to' });
    }
    if (route.candidate !== undefined && route.candidate === route.legacy) {
      problems.push({ file, key: `${at}.candidate`, message: 'candidate and legacy are the same upstream' });
    }
    // Two routes claiming the same path and method would make the winner depend on file order.
    const path = trimTrailingSlash(route.match.path);
    const methods = route.match.methods ? new Set(route.match.methods) : null;
    const onPath = claimed.get(path) ?? [];
    const clash = onPath.find((o) => !o.methods || !methods || [...methods].some((m) => o.methods?.has(m)));
    if (clash) {
      problems.push({ file, key: `${at}.match`, message: `${path} overlaps route "${clash.name}" on the same path and methods` });
    }
    onPath.push({ methods, name: route.name });
    claimed.set(path, onPath);
  }
  if (problems.length) throw new ConfigError(problems);

  return {
    upstreams,
    default: def?.name,
    identity: single.identity ?? DEFAULT_IDENTITY,
    trustedProxies,
    limits: single.limits ?? DEFAULT_LIMITS,
    qaOverride: single.qaOverride,
    shadowing: single.shadowing ?? { concurrency: 16, queue: 256 },
    routes: routes.map((r) => r.route),
    files: inputs.map((i) => i.file),
    origin: { identity: setIn.get('identity'), qaOverride: setIn.get('qaOverride'), routes: routes.map(({ file, index }) => ({ file, index })) },
  };
}

export function trimTrailingSlash(p: string): string {
  return p.length > 1 && p.endsWith('/') ? p.replace(/\/+$/, '') || '/' : p;
}

function validCidr(entry: string): boolean {
  const [addr, bits, extra] = entry.split('/');
  if (extra !== undefined || addr === undefined) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n <= (family === 4 ? 32 : 128);
}

/** Builds a BlockList (used as an allow list) from validated trustedProxies entries. */
export function trustedProxyList(entries: string[]): BlockList | undefined {
  if (entries.length === 0) return undefined;
  const list = new BlockList();
  for (const entry of entries) {
    const [addr, bits] = entry.split('/') as [string, string | undefined];
    const type = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return list;
}

/** For library users who pass config as an object instead of a directory. */
export function configFromObject(data: ConfigInput, label = '(inline config)'): Config {
  return validateConfig([{ file: label, data }]);
}
