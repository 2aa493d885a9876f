import t from 'tap';
import { decide } from '../../src/routing/decide.js';
import { compileFlag, NEW_FLAG, type FlagState } from '../../src/flags/model.js';
import { bucketOf } from '../../src/routing/bucket.js';

const flag = (over: Partial<FlagState>) => compileFlag('f', { ...NEW_FLAG, enabled: true, ...over });

t.test('decision order: disabled, excluded, cohort, percentage', async (t) => {
  t.same(decide(undefined, 'u1'), { target: 'legacy', why: 'no-flag' });
  t.same(decide(flag({ enabled: false, cohort: ['u1'] }), 'u1'), { target: 'legacy', why: 'disabled' }, 'disabled beats cohort');
  t.same(decide(flag({ cohort: ['u1'], exclude: ['u1'] }), 'u1'), { target: 'legacy', why: 'excluded' }, 'excluded beats cohort');
  t.same(decide(flag({ percentage: 0, cohort: ['u1'] }), 'u1'), { target: 'candidate', why: 'cohort' }, 'cohort beats 0%');
  t.same(decide(flag({ percentage: 100, exclude: ['u1'] }), 'u1'), { target: 'legacy', why: 'excluded' }, 'excluded beats 100%');
  const d = decide(flag({ percentage: 100 }), 'u2');
  t.equal(d.target, 'candidate');
  t.equal(d.why, 'percentage');
  t.equal(d.bucket, bucketOf('f', 'u2'));
});

t.test('requests without a user id', async (t) => {
  t.same(decide(flag({ percentage: 100 }), undefined), { target: 'legacy', why: 'no-user' }, 'legacy by default');
  t.same(decide(flag({ percentage: 0, anonymous: 'candidate' }), undefined), { target: 'candidate', why: 'anonymous' });
  let cand = 0;
  for (let i = 0; i < 4000; i++) if (decide(flag({ percentage: 25, anonymous: 'random' }), undefined).target === 'candidate') cand++;
  t.ok(Math.abs(cand / 4000 - 0.25) < 0.04, `random anonymous share ~25%: ${cand / 40}%`);
  t.same(decide(flag({ enabled: false, anonymous: 'candidate' }), undefined), { target: 'legacy', why: 'disabled' });
});
