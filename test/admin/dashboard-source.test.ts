import t from 'tap';
import { browserOrSkipReason, loudSkip, watchErrors } from '../helpers/dashboard-browser.js';
import { fleet } from '../helpers/fake-unleash.js';

// Fleet mode: routing follows Unleash, so the dashboard must show an Unleash outage, and must not
// tell the operator to create flags with POST (they live in Unleash).

const found = await browserOrSkipReason(t);

if (typeof found === 'string') {
  t.skip(loudSkip(found), () => {});
} else {
  t.test('a red banner while Unleash is down; no "create one with POST" in fleet mode', async (t) => {
    const { u, adminPort } = await fleet(t);
    const page = await (await found.launch(t)).newPage();
    const errors = watchErrors(page);
    await page.goto(`http://127.0.0.1:${adminPort}/`);
    await page.locator('tr[data-flag="flag"]').waitFor();
    const banner = page.locator('#source-banner');
    t.notOk(await banner.isVisible(), 'no banner while Unleash answers');

    u.state.clientStatus = 500;
    await banner.waitFor({ state: 'visible', timeout: 6000 });
    t.match(await banner.innerText(), /^Unleash is unreachable \(.*500.*\): routing keeps the flags as last fetched at \d\d:\d\d:\d\d \(\d+ s ago\)\./);
    t.equal(await page.locator('#live').innerText().then((s) => s.toLowerCase()), 'live', 'our own admin API is fine: still live');
    u.state.clientStatus = 200;
    await banner.waitFor({ state: 'hidden', timeout: 6000 });

    // No toggles in Unleash: the empty table says so, without pointing at POST.
    u.toggles.clear();
    const empty = page.locator('#flags-empty');
    await empty.waitFor({ state: 'visible', timeout: 6000 });
    t.equal(await empty.innerText(), 'No flags from Unleash.');
    t.same(errors, [], 'no script errors');
  });
}
