import t, { type Test } from 'tap';
import { browserOrSkipReason, loudSkip, watchErrors } from '../helpers/dashboard-browser.js';
import { http, postJson } from '../helpers/http.js';
import { startCutover, startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';

// The flag row's one Enable/Disable button is relabelled from server state every refresh. A click
// must act on the state the operator saw, never re-enable a flag switched off under the cursor.

async function setup(t: Test) {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 25 } });
  const { admin } = await startCutover(t, dirs);
  const flag = async () => (await http(`${admin}/api/v1/flags/f`)).json<{ enabled: boolean; percentage: number; updated_by?: string }>();
  const post = (body: unknown) => postJson(`${admin}/api/v1/flags/f`, body, { 'x-cutover-actor': 'colleague' });
  return { admin, flag, post };
}

const found = await browserOrSkipReason(t);

if (typeof found === 'string') {
  t.skip(loudSkip(found), () => {});
} else {
  t.test('a click on a button relabelled under the cursor does nothing; Enable asks first and sends what it was drawn for', async (t) => {
    const { admin, flag, post } = await setup(t);
    const page = await (await found.launch(t)).newPage();
    const errors = watchErrors(page, /409 \(Conflict\)/); // the refused changes
    await page.goto(`${admin}/`);
    const row = page.locator('tr[data-flag="f"]');
    const toggle = row.locator('button.toggle');
    const toast = page.locator('#toast');
    await waitFor(async () => (await toggle.innerText()) === 'Disable', 5000, 'the button offers Disable');

    // Auto-disable (or a colleague) switches the flag off; the operator's click lands just after the relabel.
    await post({ enabled: false });
    await waitFor(async () => (await toggle.innerText()) === 'Enable', 5000, 'the refresh relabels the button');
    await toggle.click();
    t.match(await toast.innerText(), /Ignored: the button just changed to "Enable"/, 'the click is ignored, and the page says why');
    t.notOk(await page.locator('#confirm').isVisible(), 'no confirmation asked either');
    await new Promise((r) => setTimeout(r, 500));
    t.match(await flag(), { enabled: false, updated_by: 'admin-api:colleague@127.0.0.1' }, 'still off: not re-enabled by the dashboard');

    // A deliberate Enable (after the button settled) asks first; Cancel changes nothing.
    await new Promise((r) => setTimeout(r, 1000));
    await toggle.click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    t.match(await page.locator('#confirm-message').innerText(), /Enable f\? Users in 25 % go to the candidate/);
    await page.locator('#confirm-no').click();
    t.notOk(await page.locator('#confirm').isVisible(), 'dialog closed');
    await new Promise((r) => setTimeout(r, 300));
    t.equal((await flag()).enabled, false, 'Cancel: still off');

    // While the operator reads the question, the percentage goes to 100 %: confirming what they
    // read (25 %) is refused by the server, and the flag stays off.
    await toggle.click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await post({ percentage: 100 });
    await page.locator('#confirm-yes').click();
    await waitFor(async () => /changed meanwhile/.test(await toast.innerText()), 5000, 'the refusal is shown');
    t.match(await toast.innerText(), /Not changed: f changed meanwhile \(now disabled, 100 %\)/);
    t.match(await flag(), { enabled: false, percentage: 100 }, 'still off');

    // Confirmed on the state as it is: enabled.
    await waitFor(async () => (await row.locator('.pct-val').innerText()) === '100 %', 5000, 'the page shows 100 %');
    await toggle.click();
    await page.locator('#confirm-yes').click();
    await waitFor(async () => (await flag()).enabled, 5000, 'enabled');
    t.match((await flag()).updated_by, /^admin-api:dashboard@/);
    t.same(errors, [], 'no script errors');
  });

  t.test('Disable is one click, and a rollback that finds the flag already off says so, not an error', async (t) => {
    const { admin, flag } = await setup(t);
    const page = await (await found.launch(t)).newPage();
    const errors = watchErrors(page, /409 \(Conflict\)/); // the refused changes
    await page.goto(`${admin}/`);
    const toggle = page.locator('tr[data-flag="f"] button.toggle');
    await waitFor(async () => (await toggle.innerText()) === 'Disable', 5000, 'the button offers Disable');
    // Switched off elsewhere, then clicked before the page's next refresh relabels the button
    // (done in the page, so no refresh runs in between; retried if one did).
    let outcome = '';
    for (let i = 0; i < 5 && outcome !== 'clicked'; i++) {
      if (i > 0) await postJson(`${admin}/api/v1/flags/f`, { enabled: true });
      await waitFor(async () => (await toggle.innerText()) === 'Disable', 5000, 'Disable again');
      await new Promise((r) => setTimeout(r, 1100));
      outcome = await page.evaluate(async () => {
        const b = document.querySelector('tr[data-flag="f"] button.toggle') as HTMLButtonElement;
        await fetch('api/v1/flags/f', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"enabled":false}' });
        if (b.textContent !== 'Disable') return 'relabelled';
        b.click();
        return 'clicked';
      });
    }
    t.equal(outcome, 'clicked');
    const toast = page.locator('#toast');
    await waitFor(async () => /already off/.test(await toast.innerText()), 5000, 'the toast says already off');
    t.equal(await toast.innerText(), 'f was already off: everyone on legacy');
    t.notOk(await toast.evaluate((el) => el.classList.contains('error')), 'not shown as an error');
    t.equal(await page.locator('#confirm').isVisible(), false, 'Disable asks nothing');
    t.equal((await flag()).enabled, false);

    // And the plain rollback: one click, no question.
    await postJson(`${admin}/api/v1/flags/f`, { enabled: true });
    await waitFor(async () => (await toggle.innerText()) === 'Disable', 5000, 'Disable again');
    await new Promise((r) => setTimeout(r, 1100));
    await toggle.click();
    await waitFor(async () => !(await flag()).enabled, 5000, 'one click disables');
    t.match(await toast.innerText(), /f disabled: everyone on legacy/);
    t.same(errors, [], 'no script errors');
  });
}
