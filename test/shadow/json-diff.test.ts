import t from 'tap';
import { compilePaths, diffJson, normalizePath } from '../../src/shadow/json-diff.js';
import { compareResponses } from '../../src/shadow/compare.js';

const opts = (o: { ignore?: string[]; tol?: number; unordered?: boolean | string[] } = {}) => ({
  ignore: compilePaths(o.ignore ?? []),
  numericTolerance: o.tol ?? 0,
  unordered: typeof o.unordered === 'object' ? compilePaths(o.unordered) : (o.unordered ?? false),
});

t.test('structural JSON diff', async (t) => {
  t.same(diffJson({ a: 1, b: { c: [1, 2] } }, { b: { c: [1, 2] }, a: 1 }, opts()), [], 'key order does not matter');
  t.same(diffJson({ a: 1 }, { a: 2 }, opts()).map((d) => d.path), ['$.a']);
  t.same(diffJson({ a: 1 }, { a: 1, extra: true }, opts()).map((d) => d.path), ['$.extra'], 'added field');
  t.same(diffJson({ items: [{ etag: 'x', id: 1 }, { etag: 'y', id: 2 }] }, { items: [{ etag: 'q', id: 1 }, { etag: 'r', id: 2 }] }, opts()).map((d) => d.path), ['$.items[*].etag'], 'folded: one finding for every item');
  t.same(diffJson({ items: [{ etag: 'x' }], updated_at: 1 }, { items: [{ etag: 'q' }], updated_at: 2 }, opts({ ignore: ['$.updated_at', '$.items[*].etag'] })), [], 'ignore paths');
  t.same(diffJson({ price: 10.0 }, { price: 10.004 }, opts({ tol: 0.01 })), [], 'numeric tolerance');
  t.equal(diffJson({ price: 10.0 }, { price: 10.02 }, opts({ tol: 0.01 })).length, 1);
  t.same(diffJson({ tags: ['a', 'b'] }, { tags: ['b', 'a'] }, opts({ unordered: ['$.tags'] })), [], 'order-insensitive arrays');
  t.equal(diffJson({ tags: ['a', 'b'] }, { tags: ['b', 'a'] }, opts()).length, 1, 'ordered by default');
  t.equal(diffJson({ tags: ['a', 'b'] }, { tags: ['b', 'c'] }, opts({ unordered: true })).length, 1);
  t.same(diffJson({ l: [1, 2] }, { l: [1] }, opts()).map((d) => d.path), ['$.l.length']);
  t.same(diffJson({ l: [1, 2] }, { l: [1] }, opts({ ignore: ['$.l.length'] })), [], 'an ignored length: the common items still compared, and equal');
  t.same(diffJson({ l: [1, 2] }, { l: [3] }, opts({ ignore: ['$.l.length'] })).map((d) => d.path), ['$.l[*]'], 'an ignored length does not hide the items');
  t.equal(normalizePath('items[3].etag'), '$.items[*].etag');
});

t.test('response comparison: status, headers, JSON and non-JSON bodies', async (t) => {
  const r = (status: number, type: string, body: string) => ({ status, headers: { 'content-type': type }, body: Buffer.from(body), truncated: false });
  const o = { ...opts(), headers: ['content-type'] };
  t.same(compareResponses(r(200, 'application/json', '{"a":1,"b":2}'), r(200, 'application/json; charset=utf-8', '{"b":2,"a":1}'), o), { result: 'match' });
  const s = compareResponses(r(200, 'application/json', '{}'), r(500, 'application/json', '{}'), o);
  t.match(s, { result: 'mismatch', differences: [{ path: 'status', legacy: 200, candidate: 500 }] });
  t.match(compareResponses(r(200, 'text/plain', 'abc'), r(200, 'text/plain', 'abd'), o), { result: 'mismatch', differences: [{ path: 'body' }] });
  t.same(compareResponses(r(200, 'image/png', 'same'), r(200, 'image/png', 'same'), o), { result: 'match' });
  t.match(compareResponses(r(200, 'text/plain', 'a'), r(200, 'text/html', 'a'), o), { result: 'mismatch', differences: [{ path: 'header:content-type' }] });
  t.match(compareResponses({ ...r(200, 'x/y', 'a'), truncated: true }, r(200, 'x/y', 'a'), o), { result: 'error' });
});
