import { bucketOf, inRollout } from './bucket.js';
import type { CompiledFlag } from '../flags/model.js';

export type Target = 'legacy' | 'candidate';
/** Why a request went where it went; logged and counted, so the set is closed and small. */
export type Why =
  | 'no-candidate'
  | 'no-flag'
  | 'disabled'
  | 'excluded'
  | 'cohort'
  | 'percentage'
  | 'no-user'
  | 'anonymous'
  | 'unleash'
  | 'override';

export interface Decision {
  readonly target: Target;
  readonly why: Why;
  /** The user's bucket (1..100) when one was computed. */
  readonly bucket?: number;
}

// Shared answers for the cases that carry no bucket: the hot path allocates nothing for them.
const NO_FLAG: Decision = Object.freeze({ target: 'legacy', why: 'no-flag' });
const DISABLED: Decision = Object.freeze({ target: 'legacy', why: 'disabled' });
const EXCLUDED: Decision = Object.freeze({ target: 'legacy', why: 'excluded' });
const COHORT: Decision = Object.freeze({ target: 'candidate', why: 'cohort' });
const NO_USER: Decision = Object.freeze({ target: 'legacy', why: 'no-user' });
const ANON_CANDIDATE: Decision = Object.freeze({ target: 'candidate', why: 'anonymous' });
const EXTERNAL_ON: Decision = Object.freeze({ target: 'candidate', why: 'unleash' });
const EXTERNAL_OFF: Decision = Object.freeze({ target: 'legacy', why: 'unleash' });

/**
 * The routing decision for one request, in the documented order:
 * disabled -> legacy; excluded -> legacy; cohort -> candidate; bucket <= percentage -> candidate;
 * else legacy. Requests without a user id go to legacy unless the flag says otherwise (that is
 * also what Unleash's flexibleRollout does with a missing stickiness value).
 */
export function decide(flag: CompiledFlag | undefined, userId: string | undefined): Decision {
  if (flag === undefined) return NO_FLAG;
  if (flag.evaluate !== undefined) return flag.evaluate(userId) ? EXTERNAL_ON : EXTERNAL_OFF;
  if (!flag.enabled) return DISABLED;
  if (userId === undefined) {
    switch (flag.anonymous) {
      case 'candidate':
        return ANON_CANDIDATE;
      case 'random': {
        const bucket = Math.floor(Math.random() * 100) + 1;
        return { target: inRollout(bucket, flag.percentage) ? 'candidate' : 'legacy', why: 'anonymous', bucket };
      }
      default:
        return NO_USER;
    }
  }
  if (flag.exclude !== undefined && flag.exclude.has(userId)) return EXCLUDED;
  if (flag.cohort !== undefined && flag.cohort.has(userId)) return COHORT;
  const bucket = bucketOf(flag.groupId, userId);
  return { target: inRollout(bucket, flag.percentage) ? 'candidate' : 'legacy', why: 'percentage', bucket };
}
