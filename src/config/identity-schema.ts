import { z } from 'zod';
import { duration, httpUrl } from './scalars.js';
import { keyedUnion } from './keyed-union.js';

// How a request's user is identified: headers, cookies, JWTs.

/**
 * The JWS algorithms jose verifies on Node 20 (its ML-DSA ones need a newer runtime). jose
 * compares names exactly, so `hs256` or `RSA256` would reject every token: everyone anonymous.
 */
export const JWS_ALGORITHMS = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

const jwsAlgorithm = z.string().superRefine((a, ctx) => {
  if (JWS_ALGORITHMS.includes(a)) return;
  const near = JWS_ALGORITHMS.find((k) => k.toLowerCase() === a.toLowerCase());
  const hint = near !== undefined ? ` (names are case-sensitive: ${near})` : '';
  ctx.addIssue({ code: 'custom', message: `not a JWS algorithm: ${JSON.stringify(a)}${hint}; use one of ${JWS_ALGORITHMS.join(', ')}` });
});

export const jwtSourceSchema = z
  .strictObject({
    header: z.string().min(1).default('authorization'),
    cookie: z.string().min(1).optional(),
    claim: z.string().min(1).default('sub'),
    secret: z.string().min(1).optional(),
    secretEnv: z.string().min(1).optional(),
    publicKey: z.string().min(1).optional(),
    jwksUrl: httpUrl.optional(),
    /** Per JWKS fetch; requests with tokens wait on a fetch, so this is short (default 1s). */
    jwksTimeout: duration.refine((ms) => ms >= 100 && ms <= 10_000, 'jwksTimeout must be between 100ms and 10s (requests wait on the fetch)').optional(),
    issuer: z.string().optional(),
    audience: z.string().optional(),
    algorithms: z.array(jwsAlgorithm).min(1, 'list at least one algorithm, or leave algorithms out').optional(),
    /** Decode without verifying: only for tokens a trusted hop in front has verified already. */
    unverified: z.literal(true).optional(),
  })
  .superRefine((j, ctx) => {
    const keys = [j.secret, j.secretEnv, j.publicKey, j.jwksUrl, j.unverified].filter((v) => v !== undefined);
    if (keys.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: 'a jwt source needs exactly one of secret, secretEnv, publicKey, jwksUrl, or unverified: true',
      });
    }
    if (j.jwksTimeout !== undefined && j.jwksUrl === undefined) {
      ctx.addIssue({ code: 'custom', path: ['jwksTimeout'], message: 'jwksTimeout applies to jwksUrl only' });
    }
    // jose refuses a shared secret for RS/ES/PS/EdDSA and a public key for HS: every token would fail.
    const secretKey = j.secret !== undefined || j.secretEnv !== undefined;
    const known = (j.algorithms ?? []).filter((a) => JWS_ALGORITHMS.includes(a)); // unknown names have their own issue
    const mismatched = known.filter((a) => (secretKey ? !a.startsWith('HS') : j.publicKey !== undefined && a.startsWith('HS')));
    if (keys.length === 1 && mismatched.length > 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['algorithms'],
        message: secretKey
          ? `${mismatched.join(', ')} cannot be verified with a shared secret (secret/secretEnv take HS256, HS384, HS512)`
          : `${mismatched.join(', ')} needs a shared secret, not a public key`,
      });
    }
  });

/** Which kind of source is meant is told by its key: see keyedUnion for why not a z.union. */
export const identitySourceSchema = keyedUnion(
  {
    header: z.strictObject({ header: z.string().min(1).transform((h) => h.toLowerCase()) }),
    cookie: z.strictObject({ cookie: z.string().min(1) }),
    jwt: z.strictObject({ jwt: jwtSourceSchema }),
  },
  'an identity source is one of { header: <name> }, { cookie: <name> } or { jwt: { ... } }',
  'list them as separate sources, tried in order',
);

export const identitySchema = z.strictObject({
  sources: z.array(identitySourceSchema).min(1),
});
