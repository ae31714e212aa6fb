// The console in a real headless Chromium against a real `tally serve` (embedded PostgreSQL):
// signs in, finds an account, pages its history, follows a transfer, freezes and unfreezes, sees
// the live chart move under load, opens a reconciliation report and a statement, and checks what
// a reader key sees. No Content-Security-Policy violation may be reported on any page.
//
// TALLY_BIN: the binary (default target/release/tally of this repository). CHROMIUM: the browser
// (default /usr/bin/chromium). Screenshots go to SCREENSHOTS (default target/console-screenshots
// of this repository). TALLY_E2E_CONSOLE=dist tests console/dist through a proxy that sends the
// server's CSP instead of the copy embedded in the binary; TALLY_E2E_LOAD=batches loads the live
// page with batches sent from the test instead of `tally bench --mode http --listen`.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { api, load, startTally, uuid, TALLY_BIN } from './tally.mjs';
import { CSP, startProxy } from './proxy.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const CONSOLE = join(HERE, '..');
const REPO = join(CONSOLE, '..');
const SHOTS = process.env.SCREENSHOTS ?? join(REPO, 'target', 'console-screenshots');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const VIEWPORT = { width: 1280, height: 800 };
/** How long the live test sends load. */
const LOAD_SECONDS = 12;
/** Funding transfers to alice: more than two history pages of 20. */
const FUNDING = 45;

const log = (...a) => console.log('[e2e]', ...a);

let tally;
let proxy = null;
let base; // where the console is: `${base}/console/`
let browser;
const keys = {};
const ids = {};
const violations = [];
let day; // the ledger day the seeded transfers are in
let closesAt; // when that day may be reconciled (ms)

function pad(n) {
  return String(n).padStart(2, '0');
}

/** Ends the ledger day at the next whole minute at least 15 s ahead (UTC), so that it can be
 *  reconciled a minute after: the seeded transfers are in it. */
function nextCutoff() {
  const at = new Date(Math.ceil((Date.now() + 15_000) / 60_000) * 60_000);
  let cutoff = `${pad(at.getUTCHours())}:${pad(at.getUTCMinutes())}`;
  let dayOf = new Date(at);
  if (cutoff === '00:00') {
    cutoff = '24:00';
    dayOf = new Date(at.getTime() - 1);
  }
  return { cutoff, day: dayOf.toISOString().slice(0, 10), endsAt: at.getTime() };
}

async function newPage(name) {
  const context = await browser.newContext({ viewport: VIEWPORT });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  page.on('console', (message) => {
    const text = message.text();
    if (message.type() === 'error') log(`[${name} console] ${text}`);
    if (/Content Security Policy|Content-Security-Policy/i.test(text)) violations.push(`${name}: ${text}`);
  });
  page.on('pageerror', (error) => violations.push(`${name}: page error ${error.message}`));
  page.on('dialog', (dialog) => dialog.accept());
  page.checkCsp = async () => {
    const seen = await page.evaluate(() => window.__csp ?? []);
    for (const v of seen) violations.push(`${name}: ${v}`);
  };
  return page;
}

async function shot(page, name) {
  const path = join(SHOTS, `${name}.png`);
  await page.screenshot({ path });
  log(`screenshot ${path}`);
  return path;
}

async function signIn(page, key) {
  await page.goto(`${base}/console/`);
  await page.fill('#api-key', key);
  await page.click('form button[type=submit]');
  await page.waitForSelector('[data-testid=whoami]');
}

describe('operator console', { timeout: 600_000 }, () => {
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    assert.ok(existsSync(TALLY_BIN), `no tally binary at ${TALLY_BIN}`);
    tally = await startTally();
    keys.admin = tally.adminKey;
    const A = (method, path, body) => api(tally.url, keys.admin, method, path, body);

    // The seeded transfers fall in a ledger day that ends within the next minute or two.
    const cut = nextCutoff();
    log(await tally.cli('days', 'set', '--time-zone', 'UTC', '--cutoff', cut.cutoff));
    day = cut.day;
    closesAt = cut.endsAt + 62_000;
    log(`ledger day ${day} ends at ${cut.cutoff} UTC; reconcilable from ${new Date(closesAt).toISOString()}`);

    // Seed: accounts, funding, a hold posted in part, a reversal, a hold left open.
    await A('POST', '/v1/accounts', { code: 'bank', currency: 'USD', unrestricted: true });
    const alice = (await A('POST', '/v1/accounts', { code: 'alice', currency: 'USD', metadata: { name: 'Alice <script>alert(1)</script>' } })).body;
    const bob = (await A('POST', '/v1/accounts', { code: 'bob', currency: 'USD', overdraft_limit: '50.00' })).body;
    await A('POST', '/v1/accounts', { code: 'bank-usd', currency: 'USD', unrestricted: true });
    ids.alice = alice.id;
    ids.bob = bob.id;
    const transfers = Array.from({ length: FUNDING }, (_, i) => ({ id: uuid(), from: 'bank', to: 'alice', amount: `${100 + i}.00`, currency: 'USD', reference: `top-up ${i + 1}` }));
    await A('POST', '/v1/transfers/batch', { transfers });
    ids.hold = uuid();
    await A('POST', '/v1/transfers', { id: ids.hold, from: 'alice', to: 'bob', amount: '40.00', currency: 'USD', pending: true, timeout_seconds: 3600 });
    ids.post = (await A('POST', `/v1/transfers/${ids.hold}/post`, { amount: '25.00' })).body.id;
    ids.paid = uuid();
    await A('POST', '/v1/transfers', { id: ids.paid, from: 'alice', to: 'bob', amount: '10.00', currency: 'USD', reference: 'lunch' });
    ids.reversal = (await A('POST', `/v1/transfers/${ids.paid}/reverse`)).body.id;
    ids.openHold = uuid();
    await A('POST', '/v1/transfers', { id: ids.openHold, from: 'alice', to: 'bob', amount: '7.25', currency: 'USD', pending: true, timeout_seconds: 3600 });
    ids.deposit = uuid();
    await A('POST', '/v1/transfers', { id: ids.deposit, from: 'bank', to: 'bank-usd', amount: '250.00', currency: 'USD', reference: 'INV-1' });
    log(`seeded: ${FUNDING + 7} transfers; hold ${ids.hold} posted by ${ids.post}; ${ids.paid} reversed by ${ids.reversal}`);

    keys.operator = await tally.createKey('console-operator', 'operator');
    keys.auditor = await tally.createKey('console-auditor', 'auditor');
    keys.reader = await tally.createKey('console-reader', 'reader', '--account', 'alice');


    // The console: embedded in the binary (the default, what ships), or with
    // TALLY_E2E_CONSOLE=dist console/dist served beside the server by a small proxy that sends
    // the same CSP (for a binary built before the current console).
    const mode = process.env.TALLY_E2E_CONSOLE ?? 'embedded';
    if (mode === 'embedded') {
      base = tally.url;
      const served = await fetch(`${base}/console/assets/console.js`);
      const built = readFileSync(join(CONSOLE, 'dist', 'assets', 'console.js'));
      const same = served.status === 200 && Buffer.from(await served.arrayBuffer()).equals(built);
      assert.ok(same, `${TALLY_BIN} embeds another console build than console/dist (GET /console/assets/console.js: ${served.status}): rebuild tally, or run with TALLY_E2E_CONSOLE=dist`);
      log('console: the copy embedded in tally');
    } else {
      proxy = await startProxy(join(CONSOLE, 'dist'), tally.url);
      base = proxy.url;
      log('console: console/dist through a local proxy with the server\'s CSP (TALLY_E2E_CONSOLE=dist)');
    }
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await browser?.close();
    proxy?.close();
    await tally?.stop();
  });

  it('serves the built files with fixed names and the CSP', async () => {
    for (const path of ['/console/', '/console/assets/console.js', '/console/assets/console.css']) {
      const answer = await fetch(`${base}${path}`);
      assert.equal(answer.status, 200, path);
      assert.equal(answer.headers.get('content-security-policy'), CSP, path);
    }
  });

  let admin;
  it('signs in with a key kept only in sessionStorage', { timeout: 60_000 }, async () => {
    admin = await newPage('admin');
    await admin.goto(`${base}/console/`);
    await admin.waitForSelector('#api-key');
    await shot(admin, '01-sign-in');
    await admin.fill('#api-key', 'tly_nonsense');
    await admin.click('form button[type=submit]');
    await admin.waitForSelector('[data-code=key_malformed]');
    await admin.fill('#api-key', keys.admin);
    await admin.click('form button[type=submit]');
    await admin.waitForSelector('[data-testid=whoami]');
    assert.match(await admin.textContent('[data-testid=whoami]'), /admin/);
    const storage = await admin.evaluate(() => ({ session: Object.values(sessionStorage), local: localStorage.length, cookie: document.cookie }));
    assert.deepEqual(storage.session, [keys.admin]);
    assert.equal(storage.local, 0);
    assert.equal(storage.cookie, '');
    assert.ok(!admin.url().includes(keys.admin));
    await admin.waitForSelector('table.accounts tbody tr');
    assert.ok((await admin.locator('table.accounts tbody tr').count()) >= 4);
    await shot(admin, '02-accounts');
  });

  it('finds an account by code, shows balance, holds, and pages its history', { timeout: 60_000 }, async () => {
    await admin.fill('#account-search', 'alice');
    await admin.click('form.search button[type=submit]');
    await admin.waitForURL(`**/console/#/accounts/${ids.alice}`);
    await admin.waitForSelector('[data-testid=balance]');
    // 45 top-ups of 100.00 + i, less 25.00 posted, 10.00 paid and reversed back: 5,465.00; 7.25 held.
    const funded = Array.from({ length: FUNDING }, (_, i) => 100 + i).reduce((a, b) => a + b, 0) - 25;
    assert.match(await admin.textContent('[data-testid=balance]'), new RegExp(funded.toLocaleString('en-US')));
    assert.match(await admin.textContent('[data-testid=available]'), new RegExp((funded - 7.25).toLocaleString('en-US', { minimumFractionDigits: 2 })));
    await admin.waitForSelector(`#holds a[title="${ids.openHold}"]`);
    // Metadata is text, not markup.
    assert.match(await admin.textContent('pre.json'), /<script>alert\(1\)<\/script>/);
    await admin.waitForSelector('table.history[data-page="1"] tbody tr');
    const first = await admin.locator('table.history tbody tr').allTextContents();
    assert.equal(first.length, 20);
    await shot(admin, '03-account');
    await admin.click('#history [data-testid=next-page]');
    await admin.waitForSelector('table.history[data-page="2"]');
    await admin.waitForFunction((before) => document.querySelector('table.history tbody tr')?.textContent !== before, first[0]);
    const second = await admin.locator('table.history tbody tr').allTextContents();
    assert.equal(second.length, 20);
    assert.notDeepEqual(second, first);
    // Page on to the last page: the older pages hold the rest of the funding.
    let pages = 2;
    while (!(await admin.isDisabled('#history [data-testid=next-page]')) && pages < 10) {
      await admin.click('#history [data-testid=next-page]');
      pages += 1;
      await admin.waitForSelector(`table.history[data-page="${pages}"], #history p.muted`);
    }
    assert.ok(pages >= 3, `history pages: ${pages}`);
    log(`history: ${pages} pages of up to 20`);
    await admin.click('#history .pager button:first-child');
    await admin.waitForSelector(`table.history[data-page="${pages - 1}"]`);
  });

  it('follows a transfer to its page: journal entry, related transfers, audit', { timeout: 60_000 }, async () => {
    await admin.goto(`${base}/console/#/accounts/${ids.alice}`);
    await admin.reload();
    await admin.click(`#history a[title="${ids.hold}"]`);
    await admin.waitForURL(`**/#/transfers/${ids.hold}`);
    const entry = await admin.waitForSelector('[data-testid=journal-entry]');
    const text = await entry.textContent();
    assert.ok(text.includes(ids.alice) && text.includes(ids.bob) && text.includes('40.00'), text);
    await admin.waitForSelector(`[data-testid=related-children] a[title="${ids.post}"]`);
    await admin.waitForSelector('[data-testid=audit-records] tbody tr');
    await shot(admin, '04-transfer');
    await admin.click(`[data-testid=related-children] a[title="${ids.post}"]`);
    await admin.waitForURL(`**/#/transfers/${ids.post}`);
    await admin.waitForSelector(`[data-testid=related-parent] a[title="${ids.hold}"]`);
    assert.match(await admin.textContent('[data-testid=related-parent]'), /posts/);
    await admin.goto(`${base}/console/#/transfers/${ids.paid}`);
    await admin.waitForSelector(`[data-testid=related-children] a[title="${ids.reversal}"]`);
  });

  it('freezes and unfreezes an account (admin)', { timeout: 60_000 }, async () => {
    await admin.goto(`${base}/console/#/accounts/${ids.bob}`);
    await admin.waitForSelector('[data-testid=freeze-toggle]');
    await admin.click('[data-testid=freeze-toggle]');
    await admin.waitForSelector('.badge.status-frozen');
    assert.equal(await admin.textContent('[data-testid=freeze-toggle]'), 'Unfreeze account');
    await admin.click('[data-testid=freeze-toggle]');
    await admin.waitForFunction(() => document.querySelector('[data-testid=freeze-toggle]')?.textContent === 'Freeze account');
    await admin.waitForSelector('.badge.status-active');
    const bob = (await api(tally.url, keys.admin, 'GET', `/v1/accounts/${ids.bob}`)).body;
    assert.equal(bob.status, 'active');
  });

  it('shows the live chart moving while load runs', { timeout: 180_000 }, async () => {
    // The load: `tally bench --mode http --listen` (its own server and operator key, on this
    // embedded PostgreSQL), or, with a binary whose bench does not listen, batches from here.
    const useBench = process.env.TALLY_E2E_LOAD !== 'batches' && (await tally.benchListens());
    let consoleBase = base;
    let key = keys.operator;
    let bench = null;
    let benchProxy = null;
    let loaded = null;
    const started = Date.now();
    if (useBench) {
      bench = await tally.startBench(LOAD_SECONDS + 8);
      key = bench.key;
      if (proxy) {
        benchProxy = await startProxy(join(CONSOLE, 'dist'), bench.url);
        consoleBase = benchProxy.url;
      } else {
        consoleBase = bench.url;
      }
    }
    const live = await newPage('operator-live');
    await live.goto(`${consoleBase}/console/`);
    await live.fill('#api-key', key);
    await live.click('form button[type=submit]');
    await live.waitForSelector('[data-testid=whoami]');
    assert.match(await live.textContent('[data-testid=whoami]'), /operator/);
    await live.click('a[data-nav=live]');
    await live.waitForURL('**/#/live');
    await live.waitForSelector('.chart canvas');
    if (!useBench) loaded = load(tally.url, keys.operator, 'bank', 'alice', LOAD_SECONDS);
    const points = () => live.evaluate(() => Number(document.querySelector('.chart')?.getAttribute('data-points') ?? 0));
    const tpsNow = () => live.evaluate(() => Number((document.querySelector('[data-testid=tps] .value')?.textContent ?? '').replace(/,/g, '')));
    await live.waitForFunction(() => Number((document.querySelector('[data-testid=tps] .value')?.textContent ?? '').replace(/,/g, '')) > 0, null, { timeout: 30_000 });
    const n1 = await points();
    await live.waitForTimeout(3000);
    const n2 = await points();
    assert.ok(n2 > n1, `chart points grew: ${n1} → ${n2}`);
    const tps = await tpsNow();
    assert.ok(tps > 0, `transfers/s ${tps}`);
    log(`live (${useBench ? 'tally bench --mode http' : 'batches from the test'}): transfers/s ${tps}, batch ${await live.textContent('[data-testid=batch-size] .value')}, queue ${await live.textContent('[data-testid=queue] .value')}, p99 ${await live.textContent('[data-testid=p99] .value')}, chart points ${n1} → ${n2}`);
    await live.waitForSelector('[data-testid=event-tail] tbody tr');
    assert.ok((await live.locator('[data-testid=event-tail] tbody tr').count()) <= 50);
    await live.waitForTimeout(5000);
    await shot(live, '05-live');
    await live.checkCsp();
    await live.context().close();
    benchProxy?.close();
    if (bench) {
      const code = await bench.finished();
      const summary = /transfers\/s[^\n]*/.exec(bench.output());
      log(`bench exited ${code} after ${((Date.now() - started) / 1000).toFixed(1)} s${summary ? `: ${summary[0]}` : ''}`);
      assert.equal(code, 0, bench.output().slice(-3000));
    } else {
      const sent = await loaded;
      log(`load: ${sent} transfers in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  });

  it('shows a statement import: matches and breaks', { timeout: 60_000 }, async () => {
    const d = day.slice(2).replace(/-/g, '');
    const mt940 = [`:20:CONSOLE1`, `:25:US00BANK0001`, `:28C:1/1`, `:60F:C${d}USD0,00`, `:61:${d}${d.slice(2)}C250,00NTRFINV-1//B1`, `:86:INV-1`, `:61:${d}${d.slice(2)}C99,00NTRFINV-2//B2`, `:86:INV-2 not in Tally`, `:62F:C${d}USD349,00`, `-`, ''].join('\r\n');
    const imported = await api(tally.url, keys.admin, 'POST', '/v1/statements?account=bank-usd', mt940);
    log(`statement import: ${imported.status}`);
    await admin.goto(`${base}/console/#/statements`);
    await admin.waitForSelector('[data-testid=statements] tbody tr');
    await admin.click('[data-testid=statements] tbody tr a');
    await admin.waitForSelector('text=Breaks and findings');
    await admin.waitForSelector('[data-testid=matches], [data-testid=findings]');
    await shot(admin, '07-statement');
  });

  it('reads like a reader: no freeze button, no live page', { timeout: 60_000 }, async () => {
    const reader = await newPage('reader');
    await signIn(reader, keys.reader);
    assert.match(await reader.textContent('[data-testid=whoami]'), /reader/);
    assert.equal(await reader.locator('a[data-nav=live]').count(), 0);
    assert.equal(await reader.locator('a[data-nav=reconciliation]').count(), 0);
    await reader.click(`a[title="${ids.alice}"]`);
    await reader.waitForSelector('[data-testid=balance]');
    await reader.waitForSelector('table.history tbody tr');
    assert.equal(await reader.locator('[data-testid=freeze-toggle]').count(), 0);
    await shot(reader, '08-reader');
    await reader.goto(`${base}/console/#/live`);
    await reader.waitForSelector('text=Not for this key');
    // Another account: the API says no, with its code.
    await reader.goto(`${base}/console/#/accounts/${ids.bob}`);
    await reader.waitForSelector('.error[data-code=forbidden]');
    await reader.checkCsp();
    await reader.context().close();
  });

  it('shows an auditor the audit records but no freeze button', { timeout: 60_000 }, async () => {
    const auditor = await newPage('auditor');
    await signIn(auditor, keys.auditor);
    await auditor.goto(`${base}/console/#/transfers/${ids.paid}`);
    await auditor.waitForSelector('[data-testid=audit-records] tbody tr');
    await auditor.goto(`${base}/console/#/accounts/${ids.alice}`);
    await auditor.waitForSelector('[data-testid=balance]');
    assert.equal(await auditor.locator('[data-testid=freeze-toggle]').count(), 0);
    await auditor.checkCsp();
    await auditor.context().close();
  });

  it('runs the end of day and opens its report: findings and chart', { timeout: 240_000 }, async () => {
    const wait = closesAt - Date.now();
    if (wait > 0) {
      log(`waiting ${(wait / 1000).toFixed(0)} s for ledger day ${day} to be closable`);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
    await admin.goto(`${base}/console/#/reconciliation`);
    await admin.fill('#recon-day', day);
    await admin.click('form.search button[type=submit]');
    await admin.waitForURL(`**/#/reconciliation/${day}`, { timeout: 60_000 });
    await admin.waitForSelector('#findings [data-testid=findings], #findings [data-testid=no-findings]', { timeout: 60_000 });
    const chart = await admin.waitForSelector('.chart canvas');
    assert.ok(chart);
    const hours = await admin.evaluate(() => Number(document.querySelector('.chart')?.getAttribute('data-points')));
    assert.ok(hours >= 23, `hours charted: ${hours}`);
    await shot(admin, '06-reconciliation');
    await admin.click('text=← all runs');
    await admin.waitForSelector(`[data-testid=runs] a:has-text("${day}")`);
    await admin.checkCsp();
  });

  it('reported no Content-Security-Policy violation', () => {
    assert.deepEqual(violations, []);
  });
});
