'use strict';
// The dashboard in a real browser: Debian's Chromium driven by playwright-core, against the server
// that run.sh started (VERILIMIT_URL, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN). The tests run in
// order and build on each other's data, like a person watching the page while a test suite runs.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const BASE = mustEnv('VERILIMIT_URL');
const ACCOUNT = mustEnv('TWILIO_ACCOUNT_SID');
const TOKEN = mustEnv('TWILIO_AUTH_TOKEN');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARTIFACTS = process.env.UI_ARTIFACTS || path.join(__dirname, '..', 'artifacts');
const DOCS_SCREENSHOT = process.env.UI_DOCS_SCREENSHOT || path.join(__dirname, '..', '..', '..', 'docs', 'dashboard.png');

// Every wait on the page is bounded by this (the page polls about once a second).
const WAIT_MS = 15_000;
const FRIENDLY_NAME = 'Acme Checkout';
// Markup in a friendly name must show as text.
const MARKUP_NAME = 'Partner API <b>beta</b>';
const IP = '203.0.113.7';

function mustEnv(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run this through tests/ui/run.sh`);
  return v;
}

const AUTH = 'Basic ' + Buffer.from(`${ACCOUNT}:${TOKEN}`).toString('base64');

/** A form-encoded API call with the account's credentials: { status, body }. */
async function api(method, urlPath, params) {
  const res = await fetch(BASE + urlPath, {
    method,
    headers: {
      Authorization: AUTH,
      Accept: 'application/json',
      ...(params ? { 'Content-Type': 'application/x-www-form-urlencoded' } : {}),
    },
    body: params ? new URLSearchParams(params).toString() : undefined,
  });
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  return { status: res.status, body, headers: res.headers };
}

async function created(method, urlPath, params) {
  const r = await api(method, urlPath, params);
  assert.equal(r.status, 201, `${method} ${urlPath}: ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Starts a verification; the HTTP status tells admitted (201) from refused (429). */
async function start(serviceSid, to, rateLimits) {
  return api('POST', `/v2/Services/${serviceSid}/Verifications`, {
    To: to,
    Channel: 'sms',
    RateLimits: JSON.stringify(rateLimits),
  });
}

const LAUNCH_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let browser;
let context;
let page;
const pageProblems = [];
const ids = {};

before(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: LAUNCH_ARGS });
  context = await browser.newContext({
    httpCredentials: { username: ACCOUNT, password: TOKEN },
    viewport: { width: 1440, height: 900 },
    deviceScaleFactor: 1,
    colorScheme: 'light',
    locale: 'en-US',
    timezoneId: 'UTC',
  });
  context.setDefaultTimeout(WAIT_MS);
  page = await context.newPage();
  page.on('pageerror', (e) => pageProblems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') pageProblems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('dialog', (d) => {
    pageProblems.push(`dialog: ${d.message()}`);
    d.dismiss().catch(() => {});
  });

  const service = await created('POST', '/v2/Services', { FriendlyName: FRIENDLY_NAME });
  ids.service = service.sid;
  const rl = await created('POST', `/v2/Services/${service.sid}/RateLimits`, {
    UniqueName: 'end_user_ip',
    Description: 'Starts per client IP',
  });
  ids.rateLimit = rl.sid;
  const bucket = await created('POST', `/v2/Services/${service.sid}/RateLimits/${rl.sid}/Buckets`, {
    Max: '1',
    Interval: '60',
  });
  ids.bucket = bucket.sid;
  await created('POST', '/v2/Services', { FriendlyName: MARKUP_NAME });
});

after(async () => {
  await browser?.close();
});

test('an unauthenticated page load gets 401 with a Basic challenge', async () => {
  const anonymous = await browser.newContext();
  try {
    const p = await anonymous.newPage();
    const responded = p.waitForResponse((r) => new URL(r.url()).pathname === '/ui');
    // Headless Chromium has no one to ask for credentials: the navigation either shows the 401
    // answer or fails with ERR_INVALID_AUTH_CREDENTIALS. Either way the server answered 401.
    const navigated = p.goto(`${BASE}/ui`).then(
      (r) => r,
      (e) => e,
    );
    const res = await responded;
    assert.equal(res.status(), 401);
    assert.equal(await res.headerValue('www-authenticate'), 'Basic realm="Twilio API"');
    const outcome = await navigated;
    if (outcome instanceof Error) assert.match(outcome.message, /ERR_INVALID_AUTH_CREDENTIALS/);
    else assert.equal(outcome.status(), 401);
    assert.equal(await p.locator('#service-view').count(), 0);
  } finally {
    await anonymous.close();
  }
  for (const asset of ['/ui', '/ui/', '/ui/app.js', '/ui/app.css']) {
    const wrong = await fetch(BASE + asset, {
      headers: { Authorization: 'Basic ' + Buffer.from(`${ACCOUNT}:wrong`).toString('base64') },
    });
    assert.equal(wrong.status, 401, `${asset} with a wrong token`);
  }
});

test('the page and its assets are served with a strict CSP and no-store', async () => {
  const expected = {
    '/ui': 'text/html',
    '/ui/': 'text/html',
    '/ui/app.js': 'text/javascript',
    '/ui/app.css': 'text/css',
  };
  for (const [asset, type] of Object.entries(expected)) {
    const res = await fetch(BASE + asset, { headers: { Authorization: AUTH } });
    assert.equal(res.status, 200, asset);
    assert.ok(res.headers.get('content-type').startsWith(type), `${asset}: ${res.headers.get('content-type')}`);
    assert.equal(res.headers.get('cache-control'), 'no-store', asset);
    const csp = res.headers.get('content-security-policy') || '';
    assert.match(csp, /(^|;)\s*default-src 'self'\s*(;|$)/, `${asset}: ${csp}`);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/, `${asset}: ${csp}`);
    await res.arrayBuffer();
  }
});

test('lists the services and shows the selected one with its rate limit and bucket', async () => {
  const res = await page.goto(`${BASE}/ui`);
  assert.equal(res.status(), 200);

  const item = page.locator('#services button.service', { hasText: FRIENDLY_NAME });
  await item.waitFor();
  // Markup in a name is shown as text, never parsed.
  await page.locator('#services .service-name', { hasText: MARKUP_NAME }).waitFor();
  assert.equal(await page.locator('#services b').count(), 0);

  await item.click();
  await page.locator(`#services button.service[aria-current="true"][data-sid="${ids.service}"]`).waitFor();
  await page.locator('#service-name', { hasText: FRIENDLY_NAME }).waitFor();
  await page.locator('#service-sid', { hasText: ids.service }).waitFor();

  const rlRow = page.locator(`#rate-limits tbody tr[data-sid="${ids.rateLimit}"]`);
  await rlRow.locator('code.name', { hasText: /^end_user_ip$/ }).waitFor();
  await rlRow.locator('td', { hasText: 'Starts per client IP' }).waitFor();
  await rlRow.locator(`.chip[data-sid="${ids.bucket}"]`, { hasText: /^1 per minute$/ }).waitFor();

  await page.locator('#clock-now', { hasText: /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/ }).waitFor();
  await page.locator('#status.ok').waitFor();
  await page.locator('#events-empty:visible').waitFor();
});

test("the browser's own Basic credentials (as after its prompt) reach the page's requests", async () => {
  // No Playwright credential handling here: Chromium authenticates from the URL's user info and
  // reuses that for the page's fetches, as it does with what a user typed into its prompt.
  const plain = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  try {
    const p = await plain.newPage();
    const problems = [];
    p.on('pageerror', (e) => problems.push(e.message));
    const url = new URL(`${BASE}/ui/#${ids.service}`);
    url.username = ACCOUNT;
    url.password = TOKEN;
    const res = await p.goto(url.href);
    assert.equal(res.status(), 200);
    await p.locator('#service-name', { hasText: FRIENDLY_NAME }).waitFor({ timeout: WAIT_MS });
    await p.locator(`#rate-limits tbody tr[data-sid="${ids.rateLimit}"]`).waitFor({ timeout: WAIT_MS });
    await p.locator('#status.ok').waitFor({ timeout: WAIT_MS });
    assert.deepEqual(problems, []);
  } finally {
    await plain.close();
  }
});

test('an admission and a refusal show up live in events, usage, chart and outbox', async () => {
  const first = await start(ids.service, '+15005550006', { end_user_ip: IP });
  assert.equal(first.status, 201, JSON.stringify(first.body));
  const second = await start(ids.service, '+15005550007', { end_user_ip: IP });
  assert.equal(second.status, 429, JSON.stringify(second.body));
  assert.equal(second.body.code, 20429);

  // The refusal names the rate limit and the error code.
  const refused = page
    .locator('#events tbody tr.ev-refused')
    .filter({ has: page.locator('code.name', { hasText: /^end_user_ip$/ }) })
    .filter({ has: page.locator('td.error', { hasText: '20429' }) })
    .filter({ has: page.locator('td.to', { hasText: /^\+15005550007$/ }) });
  await refused.waitFor();
  await page
    .locator('#events tbody tr.ev-started')
    .filter({ has: page.locator('td.to', { hasText: /^\+15005550006$/ }) })
    .waitFor();

  // Usage of the value: 1 admission in the window, none remaining.
  const usage = page
    .locator('#usage tbody tr[data-rate-limit="end_user_ip"]')
    .filter({ has: page.locator('td.value', { hasText: /^203\.0\.113\.7$/ }) });
  await usage
    .filter({ has: page.locator('td.count', { hasText: /^1$/ }) })
    .filter({ has: page.locator('td.remaining', { hasText: /^0$/ }) })
    .filter({ has: page.locator('td.next', { hasText: /^blocked · retry in \d+ (s|min)$/ }) })
    .waitFor();

  await page.locator('#total-admitted', { hasText: /^1$/ }).waitFor();
  await page.locator('#total-refused', { hasText: /^1$/ }).waitFor();
  await page.locator('#chart svg rect.admitted').first().waitFor();
  await page.locator('#chart svg rect.refused').first().waitFor();

  // The code the server "sent" is in the outbox.
  const outbox = await api('GET', `/emulator/v1/Outbox?ServiceSid=${ids.service}`);
  assert.equal(outbox.status, 200);
  assert.equal(outbox.body.messages.length, 1);
  const { code } = outbox.body.messages[0];
  await page
    .locator('#outbox tbody tr')
    .filter({ has: page.locator('td.to', { hasText: /^\+15005550006$/ }) })
    .filter({ has: page.locator('code.otp', { hasText: new RegExp(`^${code}$`) }) })
    .waitFor();

  assert.deepEqual(pageProblems, []);
});

test('a populated dashboard: screenshot', async () => {
  // Another service, a second rate limit, and a few minutes of traffic on the account clock.
  await created('POST', '/v2/Services', { FriendlyName: 'Acme Login', CodeLength: '8' });
  const phone = await created('POST', `/v2/Services/${ids.service}/RateLimits`, {
    UniqueName: 'phone_number',
    Description: 'Starts per destination number',
  });
  for (const [max, interval] of [
    ['3', '600'],
    ['10', '86400'],
  ]) {
    await created('POST', `/v2/Services/${ids.service}/RateLimits/${phone.sid}/Buckets`, {
      Max: max,
      Interval: interval,
    });
  }
  await created('POST', `/v2/Services/${ids.service}/RateLimits/${ids.rateLimit}/Buckets`, {
    Max: '20',
    Interval: '3600',
  });
  const phones = ['+14155550101', '+14155550102', '+447700900123', '+4915112345678'];
  const ips = ['198.51.100.4', '198.51.100.9', '192.0.2.33'];
  let admitted = 1;
  let refused = 1;
  for (let round = 0; round < 9; round++) {
    const to = phones[round % phones.length];
    const attempts = [
      { to, limits: { end_user_ip: ips[round % ips.length], phone_number: to } },
      // A second start from the same address within the minute: refused.
      { to: phones[(round + 1) % phones.length], limits: { end_user_ip: ips[round % ips.length], phone_number: phones[(round + 1) % phones.length] } },
    ];
    if (round % 3 === 2) attempts.push({ to, limits: { end_user_ip: `10.0.0.${round}`, phone_number: to } });
    for (const a of attempts) {
      const r = await start(ids.service, a.to, a.limits);
      if (r.status === 201) admitted++;
      else if (r.status === 429) refused++;
      else assert.fail(`unexpected ${r.status}: ${JSON.stringify(r.body)}`);
    }
    if (round < 8) {
      const c = await api('POST', '/emulator/v1/Clock', { AdvanceSeconds: '25' });
      assert.equal(c.status, 200);
    }
  }
  assert.ok(refused > 2 && admitted > 2, `admitted ${admitted}, refused ${refused}`);

  await page.locator(`#rate-limits tbody tr[data-sid="${phone.sid}"] .chip`).nth(1).waitFor();
  await page.locator('#total-admitted', { hasText: new RegExp(`^${admitted}$`) }).waitFor();
  await page.locator('#total-refused', { hasText: new RegExp(`^${refused}$`) }).waitFor();
  await page.locator('#clock-offset:visible').waitFor();
  await page.locator('#usage tbody tr[data-rate-limit="phone_number"]').first().waitFor();

  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const shot = path.join(ARTIFACTS, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(fs.statSync(shot).size > 10_000, 'the screenshot is suspiciously small');
  if (process.env.UPDATE_SCREENSHOT === '1') {
    fs.mkdirSync(path.dirname(DOCS_SCREENSHOT), { recursive: true });
    fs.copyFileSync(shot, DOCS_SCREENSHOT);
  }
  assert.deepEqual(pageProblems, []);
});

test("a service's entities and factors are listed with their status", async () => {
  const identity = 'dashboard-user-0001';
  const factor = await created('POST', `/v2/Services/${ids.service}/Entities/${identity}/Factors`, {
    FriendlyName: 'Authenticator',
    FactorType: 'totp',
  });
  const row = page
    .locator(`#factors tbody tr[data-factor="${factor.sid}"]`)
    .filter({ has: page.locator('td.identity', { hasText: new RegExp(`^${identity}$`) }) })
    .filter({ has: page.locator('td.type', { hasText: /^totp$/ }) })
    .filter({ has: page.locator('td.status', { hasText: /^unverified$/ }) });
  await row.waitFor({ timeout: WAIT_MS });
  await page.locator('#factors-count', { hasText: /^1$/ }).waitFor({ timeout: WAIT_MS });
  assert.deepEqual(pageProblems, []);
});

test("a simulated device's pending push challenges are approved and denied from the dashboard", async () => {
  const identity = 'dashboard-phone-0001';
  const device = await created('POST', '/emulator/v1/Devices');
  const factor = await created('POST', `/v2/Services/${ids.service}/Entities/${identity}/Factors`, {
    FriendlyName: 'Pixel',
    FactorType: 'push',
    'Binding.Alg': 'ES256',
    'Binding.PublicKey': device.public_key,
    'Config.AppId': 'com.example.bank',
    'Config.NotificationPlatform': 'none',
    'Config.SdkVersion': '0.12.0',
  });
  const verified = await api('POST', `/emulator/v1/Devices/${device.id}/Factors/${factor.sid}/Verify`, {
    ServiceSid: ids.service,
    Identity: identity,
  });
  assert.equal(verified.status, 200, JSON.stringify(verified.body));
  const challenges = `/v2/Services/${ids.service}/Entities/${identity}/Challenges`;
  const first = await created('POST', challenges, { FactorSid: factor.sid, 'Details.Message': 'Log in?' });
  const second = await created('POST', challenges, { FactorSid: factor.sid, 'Details.Message': 'Pay 10 EUR?' });

  for (const [c, status] of [[first, 'approved'], [second, 'denied']]) {
    const pending = page.locator(`#factors span.challenge[data-challenge="${c.sid}"]`);
    await pending.locator(`button[data-status="${status}"]`).click({ timeout: WAIT_MS });
    // Once answered it is no longer pending, so the page drops it.
    await pending.waitFor({ state: 'detached', timeout: WAIT_MS });
    const fetched = await api('GET', `${challenges}/${c.sid}`);
    assert.equal(fetched.status, 200);
    assert.equal(fetched.body.status, status);
  }
  assert.deepEqual(pageProblems, []);
});
