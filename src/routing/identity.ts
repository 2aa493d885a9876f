import type { IncomingMessage } from 'node:http';
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import { LRUCache } from 'lru-cache';
import type { IdentityConfig, IdentitySource, JwtSourceConfig } from '../config/schema.js';
import { codeOf, remoteKeys, type JwksLog } from './jwks.js';

/**
 * Finds the user id of a request. Synchronous for header and cookie sources (the common, hot
 * case); a JWT source returns a Promise only when the token is not in the verified-token cache.
 */
export type Identify = (req: IncomingMessage) => string | undefined | Promise<string | undefined>;
type Source = Identify;

/** Ids longer than this are not ids; treating them as anonymous keeps hashing cheap. */
const MAX_ID_LENGTH = 512;

/** Where JWKS trouble is reported (a pino Logger fits). */
export type IdentityLog = JwksLog;

/**
 * Settings that passed the schema but cannot be used (a key that does not parse, an unset
 * secretEnv); each key is a path inside the identity block, e.g. sources[0].jwt.publicKey.
 */
export class IdentitySettingsError extends Error {
  constructor(readonly problems: ReadonlyArray<{ key: string; message: string }>) {
    super(problems.map((p) => `${p.key}: ${p.message}`).join('\n'));
    this.name = 'IdentitySettingsError';
  }
}

class SettingError extends Error {
  constructor(readonly key: string, message: string) {
    super(message);
  }
}

export function compileIdentity(cfg: IdentityConfig, env: NodeJS.ProcessEnv = process.env, log?: IdentityLog): Identify {
  const problems: Array<{ key: string; message: string }> = [];
  const sources = cfg.sources.map((s, i) => {
    try {
      return compileSource(s, env, log);
    } catch (err) {
      if (!(err instanceof SettingError)) throw err;
      problems.push({ key: `sources[${i}].jwt.${err.key}`, message: err.message });
      return () => undefined;
    }
  });
  if (problems.length > 0) throw new IdentitySettingsError(problems);
  if (sources.length === 1) return sources[0] as Source;
  const tryFrom = (req: IncomingMessage, start: number): string | undefined | Promise<string | undefined> => {
    for (let i = start; i < sources.length; i++) {
      const r = (sources[i] as Source)(req);
      if (r === undefined) continue;
      if (typeof r === 'string') return r;
      return r.then((v) => (v !== undefined ? v : tryFrom(req, i + 1)));
    }
    return undefined;
  };
  return (req) => tryFrom(req, 0);
}

function compileSource(s: IdentitySource, env: NodeJS.ProcessEnv, log: IdentityLog | undefined): Source {
  if ('header' in s) {
    const name = s.header;
    return (req) => clean(req.headers[name]);
  }
  if ('cookie' in s) {
    const name = s.cookie;
    return (req) => clean(readCookie(req.headers.cookie, name));
  }
  return jwtSource(s.jwt, env, log);
}

function clean(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined) return undefined;
  const t = s.trim();
  return t.length === 0 || t.length > MAX_ID_LENGTH ? undefined : t;
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1 || part.slice(0, eq).trim() !== name) continue;
    let v = part.slice(eq + 1).trim();
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1);
    try {
      return decodeURIComponent(v);
    } catch {
      return v;
    }
  }
  return undefined;
}

interface Cached {
  id: string | undefined;
}

function jwtSource(cfg: JwtSourceConfig, env: NodeJS.ProcessEnv, log: IdentityLog | undefined): Source {
  const verify = verifier(cfg, env, log);
  // Verifying a signature per request is the expensive part; a token's answer can't change before
  // it expires, so cache it (bounded) until then. Bad tokens are cached briefly too, so a client
  // repeating a forged token costs one verification a minute, not one per request.
  const cache = new LRUCache<string, Cached>({ max: 10_000, ttl: MAX_CACHE_MS, ttlAutopurge: false });
  const header = cfg.header.toLowerCase();
  return (req) => {
    const token = cfg.cookie ? readCookie(req.headers.cookie, cfg.cookie) : bearer(req.headers[header]);
    if (!token) return undefined;
    const hit = cache.get(token);
    if (hit) return hit.id;
    return verify(token).then(
      (payload) => {
        const id = claimValue(payload, cfg.claim);
        // Until exp exactly: a token must not be trusted a moment after it expires.
        const ttl = payload.exp !== undefined ? Math.min(payload.exp * 1000 - Date.now(), MAX_CACHE_MS) : MAX_CACHE_MS;
        if (ttl > 0) cache.set(token, { id }, { ttl });
        return id;
      },
      (err: unknown) => {
        // Only a verdict about the token itself is remembered: a JWKS that failed, timed out or does
        // not list the token's key yet says nothing about the token, and caching that would keep its
        // user anonymous (on legacy) for a minute after the JWKS is back.
        if (!TOKEN_VERDICTS.has(codeOf(err))) return undefined;
        const ttl = Math.min(notBeforeIn(err) ?? REJECTED_CACHE_MS, REJECTED_CACHE_MS);
        if (ttl > 0) cache.set(token, { id: undefined }, { ttl });
        return undefined;
      },
    );
  };
}

const MAX_CACHE_MS = 5 * 60_000;
const REJECTED_CACHE_MS = 60_000;

/**
 * A token refused for an nbf still ahead (the issuer's clock a little ahead of ours) becomes valid
 * by itself: its verdict holds only until then, in ms from now.
 */
function notBeforeIn(err: unknown): number | undefined {
  const e = err as { claim?: unknown; payload?: { nbf?: unknown } };
  const nbf = e.claim === 'nbf' ? e.payload?.nbf : undefined;
  return typeof nbf === 'number' ? nbf * 1000 - Date.now() : undefined;
}

/** jose error codes that judge the token itself: the same token always gets the same one. */
const TOKEN_VERDICTS: ReadonlySet<string> = new Set([
  'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
  'ERR_JWT_EXPIRED',
  'ERR_JWT_CLAIM_VALIDATION_FAILED',
  'ERR_JWS_INVALID',
  'ERR_JWT_INVALID',
  'ERR_JOSE_ALG_NOT_ALLOWED',
  'ERR_JOSE_NOT_SUPPORTED', // an alg in the header that no key can verify
]);

function bearer(v: string | string[] | undefined): string | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  const m = /^Bearer\s+(\S+)$/i.exec(s.trim());
  return m ? m[1] : s.includes('.') && !s.includes(' ') ? s : undefined;
}

function claimValue(payload: JWTPayload, claim: string): string | undefined {
  const v = payload[claim];
  if (typeof v === 'string') return clean(v);
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return undefined;
}

/** jose is loaded on the first token, so deployments without JWT identity never pay its memory. */
let jose: Promise<typeof import('jose')> | undefined;
const loadJose = () => (jose ??= import('jose'));

/** base64url of {"alg":"none"} */
const UNSECURED_HEADER = Buffer.from('{"alg":"none"}').toString('base64url');

function verifier(cfg: JwtSourceConfig, env: NodeJS.ProcessEnv, log: IdentityLog | undefined): (token: string) => Promise<JWTPayload> {
  const claims = {
    ...(cfg.issuer !== undefined && { issuer: cfg.issuer }),
    ...(cfg.audience !== undefined && { audience: cfg.audience }),
  };
  const options = { ...claims, ...(cfg.algorithms !== undefined && { algorithms: cfg.algorithms }) };
  if (cfg.unverified) {
    // The hop in front may verify tokens for several issuers and audiences: the configured ones
    // still decide. jose exposes its claim checks (iss, aud, exp, nbf) only through
    // UnsecuredJWT.decode, which wants an alg "none" header and no signature: give it the payload so.
    // The hop in front may also accept algorithms this route does not: configured ones still decide.
    const algorithms = cfg.algorithms;
    return async (token) => {
      const { UnsecuredJWT, errors } = await loadJose();
      const parts = token.split('.');
      if (parts.length !== 3) throw new errors.JWTInvalid('not a JWT');
      if (algorithms) {
        const alg = headerAlg(parts[0] as string);
        if (alg === undefined) throw new errors.JWSInvalid('the protected header has no "alg"');
        if (!algorithms.includes(alg)) throw new errors.JOSEAlgNotAllowed(`"alg" ${alg} is not among the configured algorithms`);
      }
      return UnsecuredJWT.decode(`${UNSECURED_HEADER}.${parts[1]}.`, claims).payload;
    };
  }
  let key: Uint8Array | KeyObject | Promise<JWTVerifyGetKey>;
  const jwksUrl = cfg.jwksUrl;
  if (jwksUrl) key = loadJose().then((j) => remoteKeys(j, jwksUrl, cfg.jwksTimeout, log));
  else if (cfg.publicKey) key = publicKey(cfg.publicKey);
  else {
    const secret = cfg.secret ?? env[cfg.secretEnv as string];
    if (!secret) throw new SettingError('secretEnv', `environment variable ${cfg.secretEnv} is not set (or empty) in this environment`);
    key = new TextEncoder().encode(secret);
  }
  return async (token) => {
    const { jwtVerify } = await loadJose();
    const k = await key;
    const r = typeof k === 'function' ? await jwtVerify(token, k, options) : await jwtVerify(token, k, options);
    return r.payload;
  };
}

function headerAlg(part: string): string | undefined {
  try {
    const header: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    const alg = typeof header === 'object' && header !== null ? (header as { alg?: unknown }).alg : undefined;
    return typeof alg === 'string' ? alg : undefined;
  } catch {
    return undefined;
  }
}

function publicKey(pem: string): KeyObject {
  try {
    return createPublicKey(pem);
  } catch (err) {
    throw new SettingError('publicKey', `not a PEM public key (${(err as Error).message}); paste the whole -----BEGIN PUBLIC KEY----- block`);
  }
}
