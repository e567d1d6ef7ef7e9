'use strict';
// Services through twilio-node: create/fetch/update/delete, echoed settings, validation errors.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, rawRequest, expectRestError, ACCOUNT_A, SID } = require('../lib/verilimit');

let env;
before(async () => {
  env = await setup();
});
after(async () => {
  await env?.server.stop();
});

const TWILIO_DATE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/;

function assertDate(d, what) {
  assert.ok(d instanceof Date && !Number.isNaN(d.getTime()), `${what} is not a date: ${d}`);
}

test('creating a service echoes every setting that was sent', async () => {
  const svc = await env.a.verify.v2.services.create({
    friendlyName: 'Echo Service',
    codeLength: 8,
    customCodeEnabled: true,
    lookupEnabled: false,
    psd2Enabled: true,
    skipSmsToLandlines: true,
    dtmfInputRequired: false,
    ttsName: 'alice',
    doNotShareWarningEnabled: true,
    'push.includeDate': true,
    'totp.issuer': 'Verilimit Test',
    'totp.timeStep': 45,
    'totp.codeLength': 7,
    'totp.skew': 2,
    verifyEventSubscriptionEnabled: true,
  });

  assert.match(svc.sid, SID('VA'));
  assert.equal(svc.accountSid, ACCOUNT_A.sid);
  assert.equal(svc.friendlyName, 'Echo Service');
  assert.equal(svc.codeLength, 8);
  assert.equal(svc.customCodeEnabled, true);
  assert.equal(svc.lookupEnabled, false);
  assert.equal(svc.psd2Enabled, true);
  assert.equal(svc.skipSmsToLandlines, true);
  assert.equal(svc.dtmfInputRequired, false);
  assert.equal(svc.ttsName, 'alice');
  assert.equal(svc.doNotShareWarningEnabled, true);
  assert.equal(svc.verifyEventSubscriptionEnabled, true);
  assert.equal(svc.push?.include_date, true, `push: ${JSON.stringify(svc.push)}`);
  assert.equal(svc.totp?.issuer, 'Verilimit Test', `totp: ${JSON.stringify(svc.totp)}`);
  assert.equal(svc.totp?.time_step, 45, `totp: ${JSON.stringify(svc.totp)}`);
  assert.equal(svc.totp?.code_length, 7, `totp: ${JSON.stringify(svc.totp)}`);
  assert.equal(svc.totp?.skew, 2, `totp: ${JSON.stringify(svc.totp)}`);
  assertDate(svc.dateCreated, 'dateCreated');
  assertDate(svc.dateUpdated, 'dateUpdated');
  assert.equal(svc.url, `${env.base}/v2/Services/${svc.sid}`);
  assert.equal(svc.links?.rate_limits, `${env.base}/v2/Services/${svc.sid}/RateLimits`);
  assert.equal(svc.links?.verifications, `${env.base}/v2/Services/${svc.sid}/Verifications`);
  assert.equal(svc.links?.verification_checks, `${env.base}/v2/Services/${svc.sid}/VerificationCheck`);
});

test("a service created with only a friendly name gets Twilio's default code length of 6", async () => {
  const svc = await env.a.verify.v2.services.create({ friendlyName: 'Defaults' });
  assert.match(svc.sid, SID('VA'));
  assert.equal(svc.accountSid, ACCOUNT_A.sid);
  assert.equal(svc.friendlyName, 'Defaults');
  assert.equal(svc.codeLength, 6);
});

test('fetching a service returns what was created', async () => {
  const created = await env.a.verify.v2.services.create({
    friendlyName: 'Fetch Me',
    codeLength: 5,
    psd2Enabled: true,
  });
  const fetched = await env.a.verify.v2.services(created.sid).fetch();
  assert.equal(fetched.sid, created.sid);
  assert.equal(fetched.accountSid, ACCOUNT_A.sid);
  assert.equal(fetched.friendlyName, 'Fetch Me');
  assert.equal(fetched.codeLength, 5);
  assert.equal(fetched.psd2Enabled, true);
  assert.equal(fetched.url, created.url);
  assert.equal(fetched.dateCreated.getTime(), created.dateCreated.getTime());
});

test('service dates are on the wire as YYYY-MM-DDTHH:MM:SSZ', async () => {
  const created = await env.a.verify.v2.services.create({ friendlyName: 'Wire Dates' });
  const res = await rawRequest(env.base, 'GET', `/v2/Services/${created.sid}`, {
    user: ACCOUNT_A.sid,
    pass: ACCOUNT_A.token,
  });
  assert.equal(res.status, 200, res.text);
  assert.match(res.json.date_created, TWILIO_DATE);
  assert.match(res.json.date_updated, TWILIO_DATE);
  assert.equal(res.json.friendly_name, 'Wire Dates');
});

test('updating a service changes only the fields that were sent', async () => {
  const created = await env.a.verify.v2.services.create({
    friendlyName: 'Before',
    codeLength: 7,
    lookupEnabled: true,
    psd2Enabled: false,
    customCodeEnabled: false,
    'totp.issuer': 'Issuer One',
  });

  const renamed = await env.a.verify.v2.services(created.sid).update({ friendlyName: 'After' });
  assert.equal(renamed.sid, created.sid);
  assert.equal(renamed.friendlyName, 'After');
  assert.equal(renamed.codeLength, 7);
  assert.equal(renamed.lookupEnabled, true);
  assert.equal(renamed.psd2Enabled, false);
  assert.equal(renamed.customCodeEnabled, false);
  assert.equal(renamed.totp?.issuer, 'Issuer One');
  assert.ok(renamed.dateUpdated.getTime() >= created.dateUpdated.getTime());
  assert.equal(renamed.dateCreated.getTime(), created.dateCreated.getTime());

  const toggled = await env.a.verify.v2.services(created.sid).update({ psd2Enabled: true, codeLength: 9 });
  assert.equal(toggled.friendlyName, 'After');
  assert.equal(toggled.psd2Enabled, true);
  assert.equal(toggled.codeLength, 9);
  assert.equal(toggled.lookupEnabled, true);
  assert.equal(toggled.totp?.issuer, 'Issuer One');

  const fetched = await env.a.verify.v2.services(created.sid).fetch();
  assert.equal(fetched.friendlyName, 'After');
  assert.equal(fetched.psd2Enabled, true);
  assert.equal(fetched.codeLength, 9);
  assert.equal(fetched.lookupEnabled, true);
  assert.equal(fetched.customCodeEnabled, false);
});

test('a deleted service is gone: fetch rejects with 404 / 20404', async () => {
  const created = await env.a.verify.v2.services.create({ friendlyName: 'Doomed' });
  const removed = await env.a.verify.v2.services(created.sid).remove();
  assert.equal(removed, true);
  await expectRestError(env.a.verify.v2.services(created.sid).fetch(), 404, 20404);
  await expectRestError(env.a.verify.v2.services(created.sid).remove(), 404, 20404);
  const all = await env.a.verify.v2.services.list();
  assert.ok(!all.some((s) => s.sid === created.sid), 'deleted service still listed');
});

test('fetching a service that never existed rejects with 404 / 20404', async () => {
  await expectRestError(env.a.verify.v2.services('VA' + '0'.repeat(32)).fetch(), 404, 20404);
});

test('a service without a friendly name is refused with 400 / 20001', async () => {
  // twilio-node refuses to send it at all...
  assert.throws(
    () => env.a.verify.v2.services.create({}),
    (err) => /friendlyName/.test(err.message) && !(err instanceof require('twilio').RestException),
  );
  // ...so the same request goes out raw.
  const res = await rawRequest(env.base, 'POST', '/v2/Services', {
    user: ACCOUNT_A.sid,
    pass: ACCOUNT_A.token,
    form: {},
  });
  assert.equal(res.status, 400, res.text);
  assert.ok(res.json, `body is not JSON: ${res.text}`);
  assert.equal(res.json.code, 20001);
  assert.equal(res.json.status, 400);
  assert.equal(res.json.more_info, 'https://www.twilio.com/docs/errors/20001');
  assert.match(res.json.message, /FriendlyName/);
});

test('a code length outside 4..10 is refused with 400 / 60200', async () => {
  await expectRestError(
    env.a.verify.v2.services.create({ friendlyName: 'Too Short', codeLength: 3 }),
    400,
    60200,
  );
  await expectRestError(
    env.a.verify.v2.services.create({ friendlyName: 'Too Long', codeLength: 11 }),
    400,
    60200,
  );
  const svc = await env.a.verify.v2.services.create({ friendlyName: 'Ok', codeLength: 4 });
  await expectRestError(env.a.verify.v2.services(svc.sid).update({ codeLength: 3 }), 400, 60200);
  assert.equal((await env.a.verify.v2.services(svc.sid).fetch()).codeLength, 4);
});
