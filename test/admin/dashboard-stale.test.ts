import t from 'tap';
import { browserOrSkipReason, loudSkip, watchErrors } from '../helpers/dashboard-browser.js';
import { http } from '../helpers/http.js';
import { serveArgs, spawnCutover, startUpstream, twoSided, waitFor, writeConfig } from '../helpers/servers.js';

// A cutover process frozen with SIGSTOP: the kernel still accepts its connections, nobody answers.
// The dashboard must not keep saying "live" over frozen numbers. (Spawns dist/cli.js: build first.)

const found = await browserOrSkipReason(t);

if (typeof found === 'string') {
  t.skip(loudSkip(found), () => {});
} else {
  t.test('an admin API that accepts but never answers: stale within two refreshes, the age counts up, controls come back', async (t) => {
    const legacy = await startUpstream(t, 'legacy');
    const candidate = await startUpstream(t, 'candidate');
    const dirs = await writeConfig(t, twoSided(legacy, candidate), { f: { enabled: true, percentage: 25 } });
    const cut = await spawnCutover(t, serveArgs(dirs));
    const pid = cut.child.pid as number;
    let frozen = false;
    // Registered before the freeze: whatever fails below, the process is resumed (then killed).
    t.teardown(() => {
      if (frozen) process.kill(pid, 'SIGCONT');
    });
    const page = await (await found.launch(t)).newPage();
    const errors = watchErrors(page);
    await page.goto(`${cut.admin}/`);
    await page.waitForSelector('body[data-loaded]');
    const live = page.locator('#live');
    const banner = page.locator('#banner');
    const updated = page.locator('#updated');
    await waitFor(async () => (await live.innerText()).toLowerCase() === 'live', 5000, 'live');
    t.match(await updated.innerText(), /^updated [0-2] s ago$/, 'the age of the data, measured in the browser');

    process.kill(pid, 'SIGSTOP');
    frozen = true;
    const stoppedAt = Date.now();
    // Two refreshes (4 s) after the last answer at most, plus a tick.
    await waitFor(async () => (await banner.isVisible()) && (await live.innerText()).toLowerCase() !== 'live', 7000, 'stale or offline, with a banner');
    t.ok(Date.now() - stoppedAt < 7000, `stale after ${Date.now() - stoppedAt} ms`);
    t.match(await banner.innerText(), /Cannot reach the admin API \(.+\)\. Retrying every 2 s; the numbers below are from \d\d:\d\d:\d\d, \d+ s ago\./);
    const age = async () => Number(/^updated (\d+) s ago$/.exec(await updated.innerText())?.[1]);
    const a1 = await age();
    t.ok(a1 >= 4, `the age shown is past two refreshes (${a1} s)`);

    // A change sent into the void: the row is greyed while it waits, then given back with an honest message.
    const row = page.locator('tr[data-flag="f"]');
    await row.locator('.pct-input').fill('40');
    await row.locator('button.apply').click();
    t.ok(await row.evaluate((el) => el.classList.contains('busy')), 'greyed while the change waits');
    await waitFor(async () => !(await row.evaluate((el) => el.classList.contains('busy'))), 20_000, 'the controls come back');
    t.match(await page.locator('#toast').innerText(), /f: no answer in 15 s; it may or may not have been applied/);
    t.ok((await age()) > a1 + 10, 'the age keeps counting');
    t.equal((await live.innerText()).toLowerCase(), 'offline', 'the timed-out polls say offline');

    process.kill(pid, 'SIGCONT');
    frozen = false;
    await waitFor(async () => (await live.innerText()).toLowerCase() === 'live' && !(await banner.isVisible()), 8000, 'live again after SIGCONT');
    t.match(await updated.innerText(), /^updated [0-2] s ago$/);
    // Whether the resumed process still took the abandoned change in is up to it (the toast says
    // "may or may not"); the page shows whatever the server has.
    const pct = (await http(`${cut.admin}/api/v1/flags/f`)).json<{ percentage: number }>().percentage;
    await row.locator('.pct-input').press('Escape');
    await waitFor(async () => (await row.locator('.pct-val').innerText()) === `${pct} %`, 5000, 'the page shows the server\'s percentage');
    t.same(errors.filter((e) => !/ERR_|Failed to fetch|aborted|timed out|TimeoutError/i.test(e)), [], 'no script errors');
  });
}
