import { z } from 'zod';

/**
 * A union of objects told apart by which key they have, e.g. { header: ... } | { cookie: ... } |
 * { jwt: { ... } }. Not a z.union: when every branch fails, a union reports only "Invalid input"
 * on the whole object, so `issuer: 5` or a bad URL deep inside would go unnamed. Nor a
 * z.discriminatedUnion, which needs one key with literal values. Here the key present picks the
 * branch (each branch's name is the key it requires), only that branch is checked, and its issues
 * are passed on with their path and reason. `oneOf` describes the shape for anything else,
 * `severalHint` what to do instead of giving several keys at once.
 */
export function keyedUnion<B extends Record<string, z.ZodType>>(branches: B, oneOf: string, severalHint: string) {
  type Branch = B[keyof B];
  const names = Object.keys(branches);
  // z.custom only declares the input type (it checks nothing): configs are typed by it.
  return z.custom<z.input<Branch>>().transform((v: unknown, ctx): z.output<Branch> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      ctx.addIssue({ code: 'custom', message: `${oneOf}, got ${JSON.stringify(v) ?? String(v)}` });
      return z.NEVER;
    }
    const present = names.filter((k) => k in v);
    const branch = present.length === 1 ? branches[present[0] as keyof B] : undefined;
    if (branch === undefined) {
      const keys = Object.keys(v).map((k) => JSON.stringify(k));
      const got =
        present.length > 1
          ? `${present.join(' and ')} together; ${severalHint}`
          : keys.length > 0
            ? `only ${keys.join(', ')}`
            : 'an empty object';
      ctx.addIssue({ code: 'custom', message: `${oneOf}, got ${got}` });
      return z.NEVER;
    }
    const r = branch.safeParse(v);
    if (r.success) return r.data as z.output<Branch>;
    for (const issue of r.error.issues) ctx.addIssue({ code: 'custom', path: issue.path, message: issue.message });
    return z.NEVER;
  });
}
