import t from 'tap';
import type { Route } from 'playwright-core';
import { browserOrSkipReason, loudSkip, watchErrors } from '../helpers/dashboard-browser.js';
import { fleet } from '../helpers/fake-unleash.js';
import { waitFor } from '../helpers/servers.js';

// Rollback is never greyed out: while a change to a flag waits on a slow Unleash (up to 15 s), its
// Disable is still clickable and sent at once, the server applies it at once (not behind the
// change: test/flags/fleet-rollback.test.ts), and the page ends on the server's final state.

const found = await browserOrSkipReason(t);

if (typeof found === 'string') {
  t.skip(loudSkip(found), () => {});
} else {
  t.test('Disable during a slow Set %: clickable, sent, and the final state is what stays on screen', async (t) => {
    const f = await fleet(t);
    f.u.late.set('PUT strategies', 4000); // Unleash takes 4 s to apply and answer a rollout change
    const page = await (await found.launch(t)).newPage();
    const errors = watchErrors(page, /status of 409 \(Conflict\)/); // the Set %'s answer: superseded_by_rollback
    await page.goto(`http://127.0.0.1:${f.adminPort}/`);
    const row = page.locator('tr[data-flag="flag"]');
    const toggle = row.locator('button.toggle');
    const pill = row.locator('.pill');
    await waitFor(async () => (await toggle.innerText()) === 'Disable', 5000, 'the button offers Disable');

    // Status answers from before the rollback (flag still on) are held back until the rollback is
    // on screen, then delivered: a refresh answered late must not paint the old state over it.
    let holding = false;
    const held: Array<() => Promise<void>> = [];
    await page.route('**/api/v1/status', async (route: Route) => {
      const res = await route.fetch();
      const on = ((await res.json()) as { flags: Array<{ name: string; enabled: boolean }> }).flags.some((x) => x.name === 'flag' && x.enabled);
      if (holding && on) held.push(() => route.fulfill({ response: res }).catch(() => undefined));
      else await route.fulfill({ response: res });
    });

    await row.locator('.pct-input').fill('50');
    await row.locator('.apply').click();
    await waitFor(async () => f.u.calls.length > 0, 3000, 'the Set % reaching Unleash');
    t.ok(await row.evaluate((el) => el.classList.contains('busy')), 'the row shows a change in flight');
    t.ok(await row.locator('.apply').isDisabled(), 'Set % waits for it');
    t.ok(await row.locator('.pct-input').isDisabled(), 'so does the percentage box');
    t.ok(await toggle.isEnabled(), 'Disable does not');

    holding = true;
    await waitFor(() => held.length > 0, 5000, 'a status answer from before the rollback');
    const clickedAt = Date.now();
    const clicked = await toggle.click({ timeout: 2000 }).then(
      () => true,
      (err: Error) => t.fail(`Disable not clickable while Set % is in flight: ${err.message.split('\n')[0]}`),
    );
    t.ok(clicked, 'Disable clicked during the Set %');
    const toast = page.locator('#toast');
    await waitFor(async () => /flag disabled: everyone on legacy/.test(await toast.innerText()), 10_000, 'the rollback confirmed');
    t.ok(Date.now() - clickedAt < 3000, `confirmed ${Date.now() - clickedAt} ms after the click, not behind the Set % (4 s)`);
    await waitFor(async () => (await pill.innerText()) === 'disabled', 5000, 'the page shows it off');
    holding = false;
    await Promise.all(held.map((release) => release()));
    await new Promise((r) => setTimeout(r, 500));
    t.equal(await pill.innerText(), 'disabled', 'still shown off after the late answers');

    // The Set %'s rollout lands in Unleash after the rollback: off at 50 %, and its late 409 is not toasted.
    await waitFor(async () => (await row.locator('.pct-val').innerText()) === '50 %', 10_000, 'the final state on screen');
    t.equal(await pill.innerText(), 'disabled');
    t.equal(await toggle.innerText(), 'Enable');
    t.match(await toast.innerText(), /flag disabled: everyone on legacy/, 'the last word is the rollback');
    t.notOk(await row.evaluate((el) => el.classList.contains('busy')), 'nothing in flight any more');
    t.ok(await row.locator('.apply').isEnabled(), 'Set % back');
    t.equal(f.u.env('flag')?.enabled, false, 'off in Unleash');
    t.same(f.u.rollout('flag'), [50]);
    t.same((await f.adminLines()).map((l) => [l.after?.enabled, l.after?.percentage]), [[false, 25], [false, 50]], 'the rollback, then the Set % as it landed (overridden: it never turned the toggle on)');
    t.same(errors, [], 'no script errors');
  });
}
