import type { JWTVerifyGetKey } from 'jose';

/**
 * Fetching and caching a JWT source's remote key set (jwksUrl). Kept apart from identity.ts because
 * its failure handling (timeout, backoff, falling back to keys fetched before) is a concern of its
 * own, and identity.ts is about reading ids off requests.
 */

/** Where JWKS trouble is reported (a pino Logger fits). */
export interface JwksLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/**
 * Identity is resolved before routing, so every request with a token waits on a JWKS fetch in
 * flight: jose's 5 s default would hold them that long against a hanging JWKS. A timeout is a
 * failed fetch like any other (backoff, keys fetched before still used).
 */
export const JWKS_TIMEOUT_MS = 1000;

/** After a failed JWKS fetch, wait this long before the next, doubling while it keeps failing. */
const JWKS_RETRY_MS = 1000;
const JWKS_RETRY_MAX_MS = 30_000;

/** jose's answers about a key set it has (no key with that kid, several), as opposed to fetching it. */
// ERR_JOSE_NOT_SUPPORTED: the token's header names an alg no JWK can serve (a forged `alg`):
// the key set answered; counting it as a failed fetch let any client fake an outage.
const KEY_LOOKUP = new Set(['ERR_JWKS_NO_MATCHING_KEY', 'ERR_JWKS_MULTIPLE_MATCHING_KEYS', 'ERR_JOSE_NOT_SUPPORTED']);

/** The code of a jose error ('' for anything else), which is how its failures are told apart. */
export function codeOf(err: unknown): string {
  const code = err instanceof Error ? (err as { code?: unknown }).code : undefined;
  return typeof code === 'string' ? code : '';
}

/**
 * jose's remote key set coalesces concurrent fetches, but once a fetch fails the next request
 * fetches again: during an outage that is one JWKS request per request. Failures are therefore
 * retried with a backoff; meanwhile tokens are checked against the keys last fetched (if any), so
 * an outage only costs identities when there are no keys at all or the token's key is new.
 * jose is passed in, not imported, so that it stays loaded lazily by the caller.
 */
export function remoteKeys(
  j: typeof import('jose'),
  url: URL,
  timeoutMs: number | undefined,
  log: JwksLog | undefined,
): JWTVerifyGetKey {
  const remote = j.createRemoteJWKSet(url, { timeoutDuration: timeoutMs ?? JWKS_TIMEOUT_MS });
  let retryAt = 0;
  let wait = 0;
  let known: JWTVerifyGetKey | undefined;
  const fromKnown: JWTVerifyGetKey = (header, token) => {
    if (!known) throw new Error(`JWKS ${url.href} is unavailable and no keys were fetched before`);
    return known(header, token);
  };
  return async (header, token) => {
    if (Date.now() < retryAt) return fromKnown(header, token);
    try {
      const k = await remote(header, token);
      recovered();
      return k;
    } catch (err) {
      if (KEY_LOOKUP.has(codeOf(err))) {
        recovered();
        throw err;
      }
      // Every request that waited on the failed fetch lands here; the first one counts it.
      if (Date.now() >= retryAt) failed(err);
      return fromKnown(header, token);
    }
  };
  function failed(err: unknown): void {
    wait = Math.min(wait === 0 ? JWKS_RETRY_MS : wait * 2, JWKS_RETRY_MAX_MS);
    retryAt = Date.now() + wait;
    const keys = remote.jwks();
    known = keys ? j.createLocalJWKSet(keys) : undefined;
    // One line per failed fetch: the backoff keeps that to a few a minute during an outage.
    const msg = keys ? 'JWKS fetch failed: verifying with the keys fetched before' : 'JWKS fetch failed: its users are anonymous until it answers';
    log?.warn({ jwksUrl: url.href, err: String(err), retryInMs: wait }, msg);
  }
  function recovered(): void {
    if (wait === 0) return;
    wait = 0;
    log?.info({ jwksUrl: url.href }, 'JWKS answers again');
  }
}
