import t from 'tap';
import { dashboardFormat, type DashboardFormat } from '../../src/admin/dashboard/format.js';

// The page ships dashboardFormat as text, so it is tested here as the browser gets it: rebuilt
// from its source with nothing from this module in scope.
const shipped = new Function(`return (${dashboardFormat.toString()})();`)() as DashboardFormat;

t.test('the shipped text stands alone and gives the same formatters', async (t) => {
  t.same(Object.keys(shipped), Object.keys(dashboardFormat()));
});

t.test('durations: the two largest units, seconds alone under a minute', async (t) => {
  const { fmtDur } = shipped;
  t.equal(fmtDur(0), '0s');
  t.equal(fmtDur(5_000), '5s');
  t.equal(fmtDur(65_000), '1m 5s');
  t.equal(fmtDur(3_660_000), '1h 1m');
  t.equal(fmtDur(2 * 86_400_000 + 3 * 3_600_000), '2d 3h');
  t.equal(fmtDur(-1_000), '0s', 'a deadline already past');
});

t.test('latencies, error rates and gate values', async (t) => {
  const { fmtMs, fmtErr, errClass, fmtGate, fmtRate } = shipped;
  t.equal(fmtMs(null), '—');
  t.equal(fmtMs(0.456), '0.46 ms');
  t.equal(fmtMs(12.34), '12.3 ms');
  t.equal(fmtMs(2500), '2.50 s');
  t.equal(fmtErr(0), '0 %');
  t.equal(fmtErr(0.0123), '1.23 %');
  t.equal(fmtErr(0.0004), '0.040 %');
  t.equal(errClass(0.06), 'bad');
  t.equal(errClass(0.02), 'warn');
  t.equal(errClass(0.001), 'meh');
  t.equal(fmtGate('p95Ms', 12.34), '12.3 ms');
  t.equal(fmtGate('p99VsLegacy', 1.5), '1.50×');
  t.equal(fmtGate('errorRate', 0.02), '2.00 %');
  t.equal(fmtRate(1234.6), '1,235');
});

t.test('HTML text is escaped', async (t) => {
  const { esc, healthDot } = shipped;
  t.equal(esc(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  t.equal(esc(undefined), '');
  t.match(healthDot({ healthy: false, lastReason: '<script>' }), 'title="unhealthy: &lt;script&gt;"');
  t.match(healthDot(null), 'unknown');
});

t.test('a trend line spans the slots it is given, newest on the right', async (t) => {
  const { sparkline } = shipped;
  t.notMatch(sparkline([1], 45), 'polyline', 'one sample draws nothing');
  const svg = sparkline([0, 2], 3);
  t.match(svg, 'points="60.0,26.0 120.0,2.0"');
});

t.test('a sample without traffic breaks the trend line instead of drawing 0 ms', async (t) => {
  const { sparkline } = shipped;
  const svg = sparkline([5, null, 3, 4], 4);
  t.equal(svg.match(/<polyline/g)?.length, 1, 'a lone point before the gap draws nothing');
  t.match(svg, 'points="80.0,11.6 120.0,6.8"', 'the run after the gap, scaled to the samples there are');
  t.notMatch(svg, ',26.0', 'nothing drawn at 0 ms');
  t.equal(sparkline([2, 4, null, null, 4, 2], 6).match(/<polyline/g)?.length, 2, 'two runs, two lines');
  t.notMatch(sparkline([null, null, null], 3), 'polyline', 'no traffic at all: no line');
});

t.test('"Last change": time and age today, date and time on another day', async (t) => {
  const { fmtWhen } = shipped;
  const now = new Date(2026, 10, 22, 14, 30, 0).getTime();
  t.equal(fmtWhen(new Date(2026, 10, 22, 14, 27, 0).toISOString(), now), '14:27:00 · 3 min ago');
  t.equal(fmtWhen(new Date(2026, 10, 22, 14, 29, 48).toISOString(), now), '14:29:48 · 12 s ago');
  t.equal(fmtWhen(new Date(2026, 10, 21, 23, 50, 0).toISOString(), now), '2026-11-21 23:50', 'yesterday: the date, not a bare time');
  t.equal(fmtWhen(new Date(2025, 0, 3, 9, 5, 0).toISOString(), now), '2025-01-03 09:05');
  t.equal(fmtWhen(undefined, now), '');
  t.equal(fmtWhen('not a date', now), '');
});
