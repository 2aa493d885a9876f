import t from 'tap';
import { RouteTable } from '../../src/routing/match.js';
import { normalizePath, requestPath, requestQuery, targetAuthority } from '../../src/routing/normalize-path.js';

t.test('segment-aware longest prefix', async (t) => {
  const table = new RouteTable<string>();
  table.add('/api/v1/customers', ['GET', 'HEAD'], 'customers-read');
  table.add('/api/v1/customers', ['POST'], 'customers-write');
  table.add('/api/v1/customers/vip/', undefined, 'vip');
  table.add('/api/v1', undefined, 'api');
  table.add('/', ['GET'], 'root');
  const m = (method: string, path: string) => table.match(method, normalizePath(path));
  t.equal(m('GET', '/api/v1/customers'), 'customers-read');
  t.equal(m('GET', '/api/v1/customers/42'), 'customers-read');
  t.equal(m('GET', '/api/v1/customers/'), 'customers-read');
  t.equal(m('HEAD', '/api/v1/customers/42/orders'), 'customers-read');
  t.equal(m('POST', '/api/v1/customers/42'), 'customers-write');
  t.equal(m('DELETE', '/api/v1/customers/42'), 'api', 'a prefix without the method lets a shorter prefix answer');
  t.equal(m('GET', '/api/v1/customersX'), 'api', 'never matches inside a segment');
  t.equal(m('GET', '/api/v1/customers/vip'), 'vip', 'trailing slash in config is ignored');
  t.equal(m('POST', '/api/v1/customers/vip/7'), 'vip', 'longest prefix wins');
  t.equal(m('GET', '/other'), 'root');
  t.equal(m('POST', '/other'), undefined);
  t.equal(m('GET', '/API/v1/customers'), 'root', 'paths are case-sensitive');
});

t.test('HEAD goes where GET goes unless a route lists HEAD itself', async (t) => {
  const table = new RouteTable<string>();
  table.add('/get-only', ['GET'], 'get-only');
  table.add('/get-and-any', ['GET'], 'get');
  table.add('/get-and-any', undefined, 'any');
  table.add('/head-first', ['HEAD'], 'head-first:head');
  table.add('/head-first', ['GET'], 'head-first:get');
  table.add('/head-last', ['GET'], 'head-last:get');
  table.add('/head-last', ['HEAD'], 'head-last:head');
  table.add('/', ['POST'], 'root-post');
  t.equal(table.match('HEAD', '/get-only/1'), 'get-only', 'a GET route takes HEAD');
  t.equal(table.match('HEAD', '/get-and-any'), 'get', "GET's route, not the catch-all on the same path");
  t.equal(table.match('PUT', '/get-and-any'), 'any');
  t.equal(table.match('HEAD', '/head-first/x'), 'head-first:head', 'an explicit HEAD route wins (listed first)');
  t.equal(table.match('HEAD', '/head-last/x'), 'head-last:head', 'an explicit HEAD route wins (listed last)');
  t.equal(table.match('GET', '/head-last/x'), 'head-last:get');
  t.equal(table.match('HEAD', '/elsewhere'), undefined, 'a POST-only route does not take HEAD');
});

t.test('path normalization', async (t) => {
  const cases: Array<[string, string]> = [
    ['/api/v1/customers', '/api/v1/customers'],
    ['/api/v1/customers/../orders', '/api/v1/orders'],
    ['/api/v1/customers/%2e%2e/orders', '/api/v1/orders'],
    ['/api/v1/customers/%2E%2e/orders', '/api/v1/orders'],
    ['/api//v1///customers', '/api/v1/customers'],
    ['/api/./v1/customers/.', '/api/v1/customers/'],
    ['/../../etc/passwd', '/etc/passwd'],
    ['/a/b/..', '/a/'],
    ['/api/v1/customers%2F..%2Forders', '/api/v1/customers%2F..%2Forders'],
    ['/', '/'],
    ['', '/'],
    // RFC 3986 6.2.2.2: escaped unreserved characters are the characters themselves.
    ['/api/v1/customers/%41', '/api/v1/customers/A'],
    ['/api/v1/customer%73/1', '/api/v1/customers/1'],
    ['/api/v1/%63ustomers/1', '/api/v1/customers/1'],
    ['/%7e%2D%5f%30z', '/~-_0z'],
    ['/api/v1/customers/%2e%2E/%6Frders', '/api/v1/orders'],
    // Reserved and other escapes stay encoded, hex upper-cased; no double decoding.
    ['/api/v1/customers%2f..%2forders', '/api/v1/customers%2F..%2Forders'],
    ['/a%20b/%c3%a9', '/a%20b/%C3%A9'],
    ['/a/%2541', '/a/%2541'],
    ['/a/%zz/%4', '/a/%zz/%4'],
  ];
  for (const [input, want] of cases) t.equal(normalizePath(input), want, input);
});

t.test('request targets: origin-form and absolute-form route by the same path', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['/api/v1/customers/1?x=1', '/api/v1/customers/1', '?x=1'],
    ['http://shop.example.com/api/v1/customers/1?x=1', '/api/v1/customers/1', '?x=1'],
    ['HTTPS://shop.example.com:8443/api/v1/../v1/orders', '/api/v1/orders', ''],
    ['http://shop.example.com', '/', ''],
    ['http://shop.example.com?x=1', '/', '?x=1'],
    ['http://user@[::1]:80/a//b', '/a/b', ''],
    ['*', '/', ''],
  ];
  for (const [target, path, query] of cases) {
    t.equal(requestPath(target), path, `${target}: path`);
    t.equal(requestQuery(target), query, `${target}: query`);
  }
  t.equal(targetAuthority('http://shop.example.com:8080/a?x'), 'shop.example.com:8080');
  t.equal(targetAuthority('http://user:pw@shop.example.com/a'), 'shop.example.com', 'userinfo dropped');
  t.equal(targetAuthority('/a'), undefined, 'origin-form has none');
  t.equal(targetAuthority('*'), undefined);
});

// Only escapes that change take the slow path; one missed here would route `customer%73` around
// its route again. Every escape, both hex cases, against the rule stated independently.
t.test('every %XX escape: unreserved ones decoded, the rest upper-cased, none skipped by the fast path', async (t) => {
  const unreserved = (c: number) => /[A-Za-z0-9._~-]/.test(String.fromCharCode(c));
  let wrong = 0;
  for (let c = 0; c < 256; c++) {
    const hex = c.toString(16).padStart(2, '0');
    for (const h of new Set([hex, hex.toUpperCase()])) {
      const want = `/a/x${unreserved(c) ? String.fromCharCode(c) : '%' + hex.toUpperCase()}y`;
      if (normalizePath(`/a/x%${h}y`) !== want) wrong++;
    }
  }
  t.equal(wrong, 0, 'all 256 bytes, lower- and upper-case hex');
});
