import t, { type Test } from 'tap';
import { browserOrSkipReason, loudSkip, watchErrors } from '../helpers/dashboard-browser.js';
import { http } from '../helpers/http.js';
import { startCutover, startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';

// The dashboard, driven in a real headless Chromium (see helpers/dashboard-browser.ts).

async function setup(t: Test, token?: string) {
  const legacy = await startUpstream(t, 'legacy');
  const candidate = await startUpstream(t, 'candidate');
  const cfg = twoSided(legacy, candidate);
  // Shadow every legacy-served request: the two test upstreams answer differently on purpose.
  (cfg.routes![0] as { shadow?: unknown }).shadow = { percentage: 100 };
  const dirs = await writeConfig(t, cfg, { f: { enabled: true, percentage: 25, description: 'GET /api from the new service' } });
  const cut = await startCutover(t, dirs, token !== undefined ? { adminToken: token } : {});
  for (let i = 0; i < 40; i++) await http(`${cut.proxy}/api/items/${i}`, { headers: { 'x-user-id': `user-${i}` } });
  return cut;
}

const found = await browserOrSkipReason(t);

if (typeof found === 'string') {
  t.skip(loudSkip(found), () => {});
} else {
  t.test('the page shows flags, routes and live stats; changing the percentage in the UI changes the flag', async (t) => {
    const { admin, proxy } = await setup(t);
    const ctx = await found.launch(t);
    const page = await ctx.newPage();
    const errors = watchErrors(page);
    await page.goto(`${admin}/`);

    const row = page.locator('tr[data-flag="f"]');
    await row.waitFor();
    t.equal(await row.locator('.flag-name').innerText(), 'f');
    t.equal(await row.locator('.pct-val').innerText(), '25 %', 'the percentage is shown');
    t.equal(await row.locator('.pill').innerText(), 'enabled');
    t.equal(await row.locator('.pct-input').inputValue(), '25');
    t.equal(await row.locator('.desc').innerText(), 'GET /api from the new service');

    const card = page.locator('section[data-route="api"]');
    t.match(await card.locator('header').innerText(), /25 % to candidate/);
    t.equal(await card.locator('tr[data-target="legacy"] td.up').innerText(), 'legacy', 'legacy upstream named');
    t.equal(await card.locator('tr[data-target="candidate"] td.up').innerText(), 'candidate');
    t.equal(await card.locator('tr[data-target="legacy"] .dot.ok').count(), 1, 'legacy shows healthy');
    const legacyRate = await card.locator('tr[data-target="legacy"] td.num').first().innerText();
    t.not(legacyRate, '0', `live request rate for legacy (${legacyRate}/s)`);
    const p95 = await card.locator('tr[data-target="legacy"] td.num').nth(3).innerText();
    t.match(p95, /^\d+(\.\d+)? (ms|s)$/, `p95 shown (${p95})`);
    t.equal(await page.locator('.upstream[data-upstream="candidate"] .ustate').innerText(), 'healthy');
    await waitFor(async () => (await card.locator('.sh-rate').count()) === 1, 5000, 'shadow mismatch rate on the route card');
    t.equal(await card.locator('.sh-rate').innerText(), '100.00 %', 'the shadow mismatch rate is visible (every mirrored answer differs)');

    // A rollout plan: its step, the time to the next step, each gate's live value against its limit.
    const plan = { steps: [{ percentage: 25, hold: '1h' }, { percentage: 50, hold: '1h' }], gates: { maxErrorRate: 0.01, maxP95Ms: 250, minRequests: 1 } };
    t.equal((await http(`${admin}/api/v1/rollouts/f`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(plan) })).status, 200);
    const panel = page.locator('section[data-plan="f"]');
    await panel.waitFor();
    // The gates count only traffic since the plan started, in whole seconds: send some after it.
    await new Promise((r) => setTimeout(r, 1020 - (Date.now() % 1000)));
    for (let i = 0; i < 40; i++) await http(`${proxy}/api/items/${i}`, { headers: { 'x-user-id': `user-${i}` } });
    await waitFor(async () => /^\d+(\.\d+)? (ms|s)$/.test(await panel.locator('tr[data-gate="maxP95Ms"] .gv').innerText()), 5000, 'the gates see the plan\'s traffic');
    t.equal(await panel.locator('.pstep').innerText(), 'step 1 of 2 · 25 %');
    t.match(await panel.locator('.next').innerText(), /^next step in (59m|1h)/);
    t.equal(await panel.locator('tr[data-gate="maxP95Ms"] .gl').innerText(), '250 ms');
    t.match(await panel.locator('tr[data-gate="maxP95Ms"] .gv').innerText(), /^\d+(\.\d+)? (ms|s)$/, 'live p95 shown');
    t.equal(await panel.locator('tr[data-gate="maxErrorRate"] .gs').innerText(), 'ok');

    // Change 25 -> 60 through the UI.
    await row.locator('.pct-input').fill('60');
    await row.locator('button.apply').click();
    await waitFor(async () => (await row.locator('.pct-val').innerText()) === '60 %', 5000, 'page shows 60 %');
    const flag = (await http(`${admin}/api/v1/flags/f`)).json<{ percentage: number; enabled: boolean; updated_by: string }>();
    t.equal(flag.percentage, 60, 'the API has the new percentage');
    t.equal(flag.enabled, true);
    t.match(flag.updated_by, /^admin-api:dashboard@/, 'the audit trail names the dashboard');
    t.match(await page.locator('#toast').innerText(), /f → 60 %/);
    t.match(await row.locator('.fchanged').innerText(), /^\d\d:\d\d:\d\d · \d+ s ago\n/, 'last change: time and age (a date on another day)');
    await waitFor(async () => (await panel.locator('.pstate').innerText()) === 'paused', 5000, 'a manual change shows the plan paused');

    // Roll back with one click.
    await row.locator('button.toggle').click();
    await waitFor(async () => (await row.locator('.pill').innerText()) === 'disabled', 5000, 'page shows disabled');
    t.equal((await http(`${admin}/api/v1/flags/f`)).json<{ enabled: boolean }>().enabled, false, 'the API has the flag disabled');
    t.equal(await row.locator('button.toggle').innerText(), 'Enable');

    // An out-of-range value is refused by the form itself and sends nothing.
    await row.locator('.pct-input').fill('150');
    await row.locator('button.apply').click();
    t.equal(await row.locator('.pct-input').evaluate((el) => (el as HTMLInputElement).validity.rangeOverflow), true, '150 is flagged invalid');
    await new Promise((r) => setTimeout(r, 300));
    const after = (await http(`${admin}/api/v1/flags/f`)).json<{ percentage: number; enabled: boolean }>();
    t.same([after.percentage, after.enabled], [60, false], 'nothing changed');

    // Live: a change made elsewhere shows up on the next refresh.
    await http(`${admin}/api/v1/flags/f`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"enabled":true,"percentage":75}' });
    await row.locator('.pct-input').press('Escape');
    await waitFor(async () => (await row.locator('.pct-val').innerText()) === '75 %', 6000, 'refresh picks up an API change');

    t.same(errors, [], 'no script errors and no CSP violations');
  });

  t.test('with an admin token the page asks for it, keeps it for the tab, and changes flags with it', async (t) => {
    const { admin } = await setup(t, 'tok-123');
    const ctx = await found.launch(t);
    const page = await ctx.newPage();
    const errors = watchErrors(page);
    await page.goto(`${admin}/`);

    const dialog = page.locator('#auth');
    await dialog.waitFor({ state: 'visible' });
    t.match(await page.locator('#auth-message').innerText(), /admin token/);
    await page.locator('#auth-token').fill('wrong');
    await page.locator('#auth-form button[type="submit"]').click();
    await waitFor(async () => /not accepted/.test(await page.locator('#auth-message').innerText()), 5000, 'wrong token refused');
    t.ok(await dialog.isVisible(), 'still asking after a wrong token');

    await page.locator('#auth-token').fill('tok-123');
    await page.locator('#auth-form button[type="submit"]').click();
    const row = page.locator('tr[data-flag="f"]');
    await row.waitFor();
    t.equal(await row.locator('.pct-val').innerText(), '25 %');
    t.notOk(await dialog.isVisible(), 'dialog closed');
    t.equal(await page.evaluate(() => sessionStorage.getItem('cutover.adminToken')), 'tok-123', 'kept in sessionStorage');

    await page.reload();
    await row.waitFor();
    t.notOk(await dialog.isVisible(), 'no prompt again in the same tab');

    await row.locator('.pct-input').fill('40');
    await row.locator('button.apply').click();
    await waitFor(async () => (await row.locator('.pct-val').innerText()) === '40 %', 5000, 'page shows 40 %');
    const r = await http(`${admin}/api/v1/flags/f`, { headers: { authorization: 'Bearer tok-123' } });
    t.equal(r.json<{ percentage: number }>().percentage, 40, 'the change went through with the token');
    t.same(errors, []);
  });
}
