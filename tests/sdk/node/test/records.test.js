'use strict';
// Verification Attempts, the Safe List, Templates, Forms and Messaging Configurations through
// twilio-node (`verify.v2.verificationAttempts`, `safelist`, `templates`, `forms`,
// `services(...).messagingConfigurations`).

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, expectRestError, uniquePhone, ACCOUNT_A, SID } = require('../lib/verilimit');

let env;
let cp;
before(async () => {
  env = await setup();
  cp = env.controlPlane();
});
after(async () => {
  await env?.server.stop();
});

test('attempts: one per code sent, converted once approved, filtered, summarised', async () => {
  const svc = await env.a.verify.v2.services.create({ friendlyName: 'Attempts' });
  const verifications = env.a.verify.v2.services(svc.sid).verifications;
  const one = uniquePhone();
  const two = '+447700900789';
  const first = await verifications.create({ to: one, channel: 'sms' });
  const resent = await verifications.create({ to: one, channel: 'sms' });
  const other = await verifications.create({ to: two, channel: 'sms' });
  assert.equal(resent.sid, first.sid);
  const sent = [...resent.sendCodeAttempts, ...other.sendCodeAttempts].map((a) => a.attempt_sid);

  const attempts = env.a.verify.v2.verificationAttempts;
  const mine = await attempts.list({ verifyServiceSid: svc.sid });
  assert.deepEqual(mine.map((a) => a.sid), sent);
  for (const a of mine) {
    assert.match(a.sid, SID('VL'));
    assert.equal(a.accountSid, ACCOUNT_A.sid);
    assert.equal(a.conversionStatus, 'unconverted');
    assert.equal(a.channel, 'sms');
    assert.ok(a.dateCreated instanceof Date && !Number.isNaN(a.dateCreated.getTime()));
  }
  const fetched = await env.a.verify.v2.verificationAttempts(sent[2]).fetch();
  assert.equal(fetched.verificationSid, other.sid);
  assert.equal(fetched.channelData.to, two);
  assert.equal(fetched.channelData.country, 'GB');

  const code = await cp.codeFor(first.sid, one);
  const check = await env.a.verify.v2.services(svc.sid).verificationChecks.create({ to: one, code });
  assert.equal(check.status, 'approved');

  const converted = await attempts.list({ verifyServiceSid: svc.sid, status: 'converted' });
  assert.deepEqual(converted.map((a) => a.sid), sent.slice(0, 2));
  assert.deepEqual((await attempts.list({ verificationSid: first.sid })).map((a) => a.sid), sent.slice(0, 2));
  assert.deepEqual((await attempts.list({ 'channelData.to': two })).map((a) => a.sid), sent.slice(2));
  assert.deepEqual(
    (await attempts.list({ verifyServiceSid: svc.sid, country: 'GB' })).map((a) => a.sid),
    sent.slice(2),
  );
  assert.deepEqual((await attempts.list({ verifyServiceSid: svc.sid, pageSize: 1 })).map((a) => a.sid), sent);

  const summary = await env.a.verify.v2.verificationAttemptsSummary().fetch({ verifyServiceSid: svc.sid });
  assert.equal(summary.totalAttempts, 3);
  assert.equal(summary.totalConverted, 2);
  assert.equal(summary.totalUnconverted, 1);
  assert.equal(summary.conversionRatePercentage, '66.666666667');

  assert.deepEqual(await env.b.verify.v2.verificationAttempts.list(), []);
  await expectRestError(env.b.verify.v2.verificationAttempts(sent[0]).fetch(), 404, 20404);
  await expectRestError(attempts.list({ channel: 'fax' }), 400, 60200);
});

test('safe list: add, fetch, delete, per account', async () => {
  const number = uniquePhone();
  const entry = await env.a.verify.v2.safelist.create({ phoneNumber: number });
  assert.match(entry.sid, SID('GN'));
  assert.equal(entry.phoneNumber, number);
  assert.equal((await env.a.verify.v2.safelist(number).fetch()).sid, entry.sid);
  await expectRestError(env.b.verify.v2.safelist(number).fetch(), 404, 20404);
  assert.equal(await env.a.verify.v2.safelist(number).remove(), true);
  await expectRestError(env.a.verify.v2.safelist(number).fetch(), 404, 20404);
  await expectRestError(env.a.verify.v2.safelist.create({ phoneNumber: '12' }), 400, 60200);
});

test('templates: listed, filtered by name, usable in a start', async () => {
  const templates = await env.a.verify.v2.templates.list();
  assert.ok(templates.length > 0);
  const [first] = templates;
  assert.match(first.sid, SID('HJ'));
  assert.equal(first.accountSid, ACCOUNT_A.sid);
  const named = await env.a.verify.v2.templates.list({ friendlyName: first.friendlyName });
  assert.deepEqual(named.map((t) => t.sid), [first.sid]);
  const svc = await env.a.verify.v2.services.create({ friendlyName: 'Templates' });
  const v = await env.a.verify.v2.services(svc.sid).verifications.create({
    to: uniquePhone(),
    channel: 'sms',
    templateSid: first.sid,
  });
  assert.equal(v.status, 'pending');
  await expectRestError(
    env.a.verify.v2.services(svc.sid).verifications.create({
      to: uniquePhone(),
      channel: 'sms',
      templateSid: 'HJ' + 'e'.repeat(32),
    }),
    400,
    60200,
  );
});

test('forms: form-push', async () => {
  const form = await env.a.verify.v2.forms('form-push').fetch();
  assert.equal(form.formType, 'form-push');
  for (const f of ['create_factor', 'verify_factor', 'create_challenge']) {
    assert.equal(typeof form.forms[f], 'object', f);
  }
});

test('messaging configurations: create, list, fetch, update, delete', async () => {
  const svc = await env.a.verify.v2.services.create({ friendlyName: 'Messaging' });
  const configs = env.a.verify.v2.services(svc.sid).messagingConfigurations;
  const mg = (n) => 'MG' + n.toString(16).padStart(32, '0');
  const created = await configs.create({ country: 'US', messagingServiceSid: mg(1) });
  assert.equal(created.country, 'US');
  assert.equal(created.serviceSid, svc.sid);
  assert.equal(created.messagingServiceSid, mg(1));
  await configs.create({ country: 'all', messagingServiceSid: mg(2) });
  assert.deepEqual((await configs.list()).map((m) => m.country), ['US', 'all']);
  assert.deepEqual((await configs.list({ pageSize: 1 })).map((m) => m.country), ['US', 'all']);
  const updated = await env.a.verify.v2.services(svc.sid).messagingConfigurations('US').update({
    messagingServiceSid: mg(3),
  });
  assert.equal(updated.messagingServiceSid, mg(3));
  await expectRestError(
    env.b.verify.v2.services(svc.sid).messagingConfigurations('US').fetch(),
    404,
    20404,
  );
  assert.equal(await env.a.verify.v2.services(svc.sid).messagingConfigurations('US').remove(), true);
  await expectRestError(env.a.verify.v2.services(svc.sid).messagingConfigurations('US').fetch(), 404, 20404);
});

test('webhooks: create, list, update, fetch, delete', async () => {
  const svc = await env.a.verify.v2.services.create({ friendlyName: 'Webhooks' });
  const hooks = env.a.verify.v2.services(svc.sid).webhooks;
  const hook = await hooks.create({
    friendlyName: 'push events',
    eventTypes: ['factor.created', 'challenge.denied'],
    webhookUrl: 'https://example.com/hook',
  });
  assert.match(hook.sid, SID('YW'));
  assert.deepEqual(hook.eventTypes, ['factor.created', 'challenge.denied']);
  assert.equal(hook.status, 'enabled');
  assert.deepEqual((await hooks.list()).map((w) => w.sid), [hook.sid]);
  const updated = await env.a.verify.v2.services(svc.sid).webhooks(hook.sid).update({ eventTypes: ['*'] });
  assert.deepEqual(updated.eventTypes, ['*']);
  await expectRestError(env.b.verify.v2.services(svc.sid).webhooks(hook.sid).fetch(), 404, 20404);
  assert.equal(await env.a.verify.v2.services(svc.sid).webhooks(hook.sid).remove(), true);
  await expectRestError(env.a.verify.v2.services(svc.sid).webhooks(hook.sid).fetch(), 404, 20404);
});

test('access tokens: create and fetch', async () => {
  const svc = await env.a.verify.v2.services.create({ friendlyName: 'Tokens' });
  const tokens = env.a.verify.v2.services(svc.sid).accessTokens;
  const t = await tokens.create({ identity: 'user-1234', factorType: 'push', ttl: 90 });
  assert.match(t.sid, SID('YK'));
  assert.equal(t.ttl, 90);
  assert.equal(t.token.split('.').length, 3);
  const fetched = await env.a.verify.v2.services(svc.sid).accessTokens(t.sid).fetch();
  assert.equal(fetched.token, t.token);
  await expectRestError(tokens.create({ identity: 'user-1234', factorType: 'push', ttl: 5 }), 400, 60200);
});
