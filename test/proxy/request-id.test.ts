import t from 'tap';
import { MAX_REQUEST_ID, newRequestId, requestIdOf } from '../../src/proxy/request-id.js';

const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

t.test('generated ids are RFC 4122 version 4 UUIDs, unique across many random-pool refills', async (t) => {
  const seen = new Set<string>();
  let bad = 0;
  // 20 000 ids: the 4 KiB random pool (256 ids) is refilled ~78 times.
  for (let i = 0; i < 20_000; i++) {
    const id = newRequestId();
    if (!V4.test(id)) bad++;
    seen.add(id);
  }
  t.equal(bad, 0, 'every id has the v4 shape, version and variant bits');
  t.equal(seen.size, 20_000, 'no id repeats');
  const a = newRequestId();
  const b = newRequestId();
  t.not(a, b, 'the reused output buffer does not leak into earlier strings');
  t.match(a, V4);
});

t.test("the client's id is kept when usable, replaced otherwise", async (t) => {
  t.equal(requestIdOf('abc-123'), 'abc-123');
  t.equal(requestIdOf('x'.repeat(MAX_REQUEST_ID)), 'x'.repeat(MAX_REQUEST_ID), 'at the limit: kept');
  t.match(requestIdOf('x'.repeat(MAX_REQUEST_ID + 1)), V4, 'over the limit: replaced');
  t.match(requestIdOf(''), V4, 'empty: replaced');
  t.match(requestIdOf(undefined), V4, 'absent: generated');
  t.match(requestIdOf(['a', 'b']), V4, 'several values: replaced');
});
