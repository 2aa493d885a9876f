import type { IncomingMessage } from 'node:http';
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { JWTPayload, JWTVerifyGetKey } from 'jose';
import { LRUCache } from 'lru-cache';
import type { IdentityConfig, IdentitySource, JwtSourceConfig } from '../config/schema.js';

/**
 * Finds the user id of a request. Synchronous for header and cookie sources (the common, hot
 * case); a JWT source returns a Promise only when the token is not in the verified-token cache.
 */
export type Identify = (req: IncomingMessage) => string | undefined | Promise<string | undefined>;
type Source = Identify;

/** Ids longer than this are not ids; treating them as anonymous keeps hashing cheap. */
const MAX_ID_LENGTH = 512;

export function compileIdentity(cfg: IdentityConfig, env: NodeJS.ProcessEnv = process.env): Identify {
  const sources = cfg.sources.map((s) => compileSource(s, env));
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

function compileSource(s: IdentitySource, env: NodeJS.ProcessEnv): Source {
  if ('header' in s) {
    const name = s.header;
    return (req) => clean(req.headers[name]);
  }
  if ('cookie' in s) {
    const name = s.cookie;
    return (req) => clean(readCookie(req.headers.cookie, name));
  }
  return jwtSource(s.jwt, env);
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

function jwtSource(cfg: JwtSourceConfig, env: NodeJS.ProcessEnv): Source {
  const verify = verifier(cfg, env);
  // Verifying a signature per request is the expensive part; a token's answer can't change before
  // it expires, so cache it (bounded) until then. Bad tokens are cached briefly too, so a client
  // repeating a forged token costs one verification a minute, not one per request.
  const cache = new LRUCache<string, Cached>({ max: 10_000, ttl: 5 * 60_000, ttlAutopurge: false });
  const header = cfg.header.toLowerCase();
  return (req) => {
    const token = cfg.cookie ? readCookie(req.headers.cookie, cfg.cookie) : bearer(req.headers[header]);
    if (!token) return undefined;
    const hit = cache.get(token);
    if (hit) return hit.id;
    return verify(token).then(
      (payload) => {
        const id = claimValue(payload, cfg.claim);
        const ttl = payload.exp ? Math.max(1000, Math.min(payload.exp * 1000 - Date.now(), 5 * 60_000)) : 5 * 60_000;
        cache.set(token, { id }, { ttl });
        return id;
      },
      () => {
        cache.set(token, { id: undefined }, { ttl: 60_000 });
        return undefined;
      },
    );
  };
}

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

function verifier(cfg: JwtSourceConfig, env: NodeJS.ProcessEnv): (token: string) => Promise<JWTPayload> {
  const options = {
    ...(cfg.issuer !== undefined && { issuer: cfg.issuer }),
    ...(cfg.audience !== undefined && { audience: cfg.audience }),
    ...(cfg.algorithms !== undefined && { algorithms: cfg.algorithms }),
  };
  if (cfg.unverified) {
    return async (token) => {
      const payload = (await loadJose()).decodeJwt(token);
      if (payload.exp !== undefined && payload.exp * 1000 < Date.now()) throw new Error('expired');
      return payload;
    };
  }
  let key: Uint8Array | KeyObject | Promise<JWTVerifyGetKey>;
  const jwksUrl = cfg.jwksUrl;
  if (jwksUrl) key = loadJose().then((j) => j.createRemoteJWKSet(jwksUrl));
  else if (cfg.publicKey) key = createPublicKey(cfg.publicKey);
  else {
    const secret = cfg.secret ?? env[cfg.secretEnv as string];
    if (!secret) throw new Error(`identity jwt: environment variable ${cfg.secretEnv} is not set`);
    key = new TextEncoder().encode(secret);
  }
  return async (token) => {
    const { jwtVerify } = await loadJose();
    const k = await key;
    const r = typeof k === 'function' ? await jwtVerify(token, k, options) : await jwtVerify(token, k, options);
    return r.payload;
  };
}
