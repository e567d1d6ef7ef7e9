'use strict';
// Verifications, Service Rate Limits on them, and VerificationCheck through twilio-node. Codes are
// read back from the control plane's Outbox; time is moved with the control plane's Clock.

const { test, before, after, describe } = require('node:test');
const assert = require('node:assert/strict');
const { setup, rawRequest, expectRestError, uniquePhone, ACCOUNT_A, SID } = require('../lib/verilimit');

let env;
let cp;
before(async () => {
  env = await setup();
  cp = env.controlPlane();
});
after(async () => {
  await env?.server.stop();
});

/** A service with one rate limit (`uniqueName`) and one bucket on it. */
async function limitedService(name, uniqueName, { max, interval }) {
  const svc = await env.a.verify.v2.services.create({ friendlyName: name });
  const rl = await env.a.verify.v2.services(svc.sid).rateLimits.create({ uniqueName });
  const bl = await env.a.verify.v2.services(svc.sid).rateLimits(rl.sid).buckets.create({ max, interval });
  return { svc, rl, bl, verifications: env.a.verify.v2.services(svc.sid).verifications };
}

function wrongCodeFor(code) {
  // Same length, every digit different.
  return code
    .split('')
    .map((c) => (/[0-9]/.test(c) ? String((Number(c) + 1) % 10) : c === 'a' ? 'b' : 'a'))
    .join('');
}

describe('verifications with a service rate limit', () => {
  test('end_user_ip with max 3 per 60 s: three pass, the fourth is 429 / 20429, other IPs pass, time frees it', async () => {
    const { verifications } = await limitedService('RL enforcement', 'end_user_ip', { max: 3, interval: 60 });
    const start = (ip) =>
      verifications.create({ to: uniquePhone(), channel: 'sms', rateLimits: { end_user_ip: ip } });

    for (let i = 1; i <= 3; i++) {
      const v = await start('10.0.0.1');
      assert.equal(v.status, 'pending', `verification ${i}`);
      assert.match(v.sid, SID('VE'));
    }

    const refused = await expectRestError(start('10.0.0.1'), 429, 20429);
    assert.equal(refused.message, 'Too many requests');

    const otherIp = await start('10.0.0.2');
    assert.equal(otherIp.status, 'pending', 'a different IP must still be admitted');

    const clock = await cp.advanceClock(61);
    assert.ok(clock.offset_ms >= 61_000, `clock offset after advancing 61 s: ${JSON.stringify(clock)}`);

    const later = await start('10.0.0.1');
    assert.equal(later.status, 'pending', 'the same IP must be admitted once the window has passed');
  });

  test('a 429 carries Retry-After (whole seconds) and Twilio-Reached-Rate-Limit naming the rate limit', async () => {
    const { svc, verifications } = await limitedService('RL headers', 'end_user_ip', { max: 1, interval: 60 });
    const first = await verifications.create({
      to: uniquePhone(),
      channel: 'sms',
      rateLimits: { end_user_ip: '192.0.2.7' },
    });
    assert.equal(first.status, 'pending');

    const res = await rawRequest(env.base, 'POST', `/v2/Services/${svc.sid}/Verifications`, {
      user: ACCOUNT_A.sid,
      pass: ACCOUNT_A.token,
      form: { To: uniquePhone(), Channel: 'sms', RateLimits: JSON.stringify({ end_user_ip: '192.0.2.7' }) },
    });
    assert.equal(res.status, 429, res.text);
    assert.equal(res.json?.code, 20429);
    assert.equal(res.json?.status, 429);
    const retryAfter = res.headers.get('retry-after');
    assert.match(String(retryAfter), /^\d+$/, `Retry-After: ${retryAfter}`);
    assert.ok(Number(retryAfter) >= 1 && Number(retryAfter) <= 60, `Retry-After: ${retryAfter}`);
    assert.equal(res.headers.get('twilio-reached-rate-limit'), 'end_user_ip');
  });

  test('admission is all-or-nothing across rate limits: a refusal records nothing', async () => {
    const svc = await env.a.verify.v2.services.create({ friendlyName: 'RL all or nothing' });
    const rls = env.a.verify.v2.services(svc.sid).rateLimits;
    const ip = await rls.create({ uniqueName: 'ip' });
    const phone = await rls.create({ uniqueName: 'phone' });
    await rls(ip.sid).buckets.create({ max: 1, interval: 600 });
    await rls(phone.sid).buckets.create({ max: 2, interval: 600 });
    const verifications = env.a.verify.v2.services(svc.sid).verifications;

    // Fills the ip bucket for 203.0.113.1 and uses 1 of 2 for phone "p1".
    const ok = await verifications.create({ to: uniquePhone(), channel: 'sms', rateLimits: { ip: '203.0.113.1', phone: 'p1' } });
    assert.equal(ok.status, 'pending');
    // Refused by ip; must not consume phone "p1"'s last slot.
    await expectRestError(
      verifications.create({ to: uniquePhone(), channel: 'sms', rateLimits: { ip: '203.0.113.1', phone: 'p1' } }),
      429,
      20429,
    );
    const second = await verifications.create({ to: uniquePhone(), channel: 'sms', rateLimits: { ip: '203.0.113.2', phone: 'p1' } });
    assert.equal(second.status, 'pending', 'the refused request used up a phone slot');
    await expectRestError(
      verifications.create({ to: uniquePhone(), channel: 'sms', rateLimits: { ip: '203.0.113.3', phone: 'p1' } }),
      429,
      20429,
    );
  });

  test('a raised bucket max applies to the very next request', async () => {
    const { svc, rl, bl, verifications } = await limitedService('RL raise', 'session', { max: 1, interval: 600 });
    const start = () => verifications.create({ to: uniquePhone(), channel: 'sms', rateLimits: { session: 's-1' } });
    assert.equal((await start()).status, 'pending');
    await expectRestError(start(), 429, 20429);
    await env.a.verify.v2.services(svc.sid).rateLimits(rl.sid).buckets(bl.sid).update({ max: 2 });
    assert.equal((await start()).status, 'pending');
    await expectRestError(start(), 429, 20429);
  });

  test('a rate-limit key the service does not have is refused with 400 / 60200', async () => {
    const { verifications } = await limitedService('RL unknown key', 'end_user_ip', { max: 5, interval: 60 });
    await expectRestError(
      verifications.create({ to: uniquePhone(), channel: 'sms', rateLimits: { no_such_limit: 'x' } }),
      400,
      60200,
    );
  });

  test('the control plane reports live usage of a bucket', async () => {
    const { svc, rl, bl, verifications } = await limitedService('RL usage', 'end_user_phone_number', {
      max: 4,
      interval: 300,
    });
    for (let i = 0; i < 3; i++) {
      await verifications.create({ to: uniquePhone(), channel: 'sms', rateLimits: { end_user_phone_number: '+15550001111' } });
    }
    const res = await cp.request('GET', `/emulator/v1/Services/${svc.sid}/Usage`);
    const rows = res.json?.usage;
    assert.ok(Array.isArray(rows), res.text);
    const row = rows.find((u) => u.bucket_sid === bl.sid && u.value === '+15550001111');
    assert.ok(row, `no usage row for the bucket: ${res.text}`);
    assert.equal(row.rate_limit_sid, rl.sid);
    assert.equal(row.unique_name, 'end_user_phone_number');
    assert.equal(row.max, 4);
    assert.equal(row.interval, 300);
    assert.equal(row.count, 3);
    assert.equal(row.remaining, 1);
  });
});

describe('verification checks', () => {
  test('the right code approves (approved, valid), a wrong one does not (pending, not valid)', async () => {
    const svc = await env.a.verify.v2.services.create({ friendlyName: 'Check flow', codeLength: 7 });
    const service = env.a.verify.v2.services(svc.sid);
    const to = uniquePhone();

    const v = await service.verifications.create({ to, channel: 'sms' });
    assert.match(v.sid, SID('VE'));
    assert.equal(v.serviceSid, svc.sid);
    assert.equal(v.accountSid, ACCOUNT_A.sid);
    assert.equal(v.to, to);
    assert.equal(v.channel, 'sms');
    assert.equal(v.status, 'pending');
    assert.equal(v.valid, false);
    assert.equal(v.url, `${env.base}/v2/Services/${svc.sid}/Verifications/${v.sid}`);
    assert.ok(Array.isArray(v.sendCodeAttempts) && v.sendCodeAttempts.length === 1, JSON.stringify(v.sendCodeAttempts));

    const code = await cp.codeFor(v.sid, to);
    assert.match(code, /^[0-9]{7}$/, 'the code has the service code length in digits');

    const wrong = await service.verificationChecks.create({ to, code: wrongCodeFor(code) });
    assert.equal(wrong.status, 'pending');
    assert.equal(wrong.valid, false);
    assert.equal(wrong.sid, v.sid);

    const fetchedPending = await service.verifications(v.sid).fetch();
    assert.equal(fetchedPending.status, 'pending');
    assert.equal(fetchedPending.to, to);

    const right = await service.verificationChecks.create({ to, code });
    assert.equal(right.status, 'approved');
    assert.equal(right.valid, true);
    assert.equal(right.sid, v.sid);
    assert.equal(right.to, to);
    assert.equal(right.serviceSid, svc.sid);
    assert.equal(right.accountSid, ACCOUNT_A.sid);

    // Approved verifications are gone for fetch and check.
    await expectRestError(service.verifications(v.sid).fetch(), 404, 20404);
    await expectRestError(service.verificationChecks.create({ to, code }), 404, 20404);
  });

  test('a check by VerificationSid approves too', async () => {
    const svc = await env.a.verify.v2.services.create({ friendlyName: 'Check by sid' });
    const service = env.a.verify.v2.services(svc.sid);
    const to = uniquePhone();
    const v = await service.verifications.create({ to, channel: 'sms' });
    const code = await cp.codeFor(v.sid, to);
    assert.match(code, /^[0-9]{6}$/);
    const right = await service.verificationChecks.create({ verificationSid: v.sid, code });
    assert.equal(right.status, 'approved');
    assert.equal(right.valid, true);
    assert.equal(right.sid, v.sid);
  });

  test('a check naming neither To nor VerificationSid is refused with 400 / 60221', async () => {
    const svc = await env.a.verify.v2.services.create({ friendlyName: 'Check nobody' });
    await expectRestError(env.a.verify.v2.services(svc.sid).verificationChecks.create({ code: '123456' }), 400, 60221);
  });

  test('a custom code on a service with custom codes enabled is the code that approves', async () => {
    const svc = await env.a.verify.v2.services.create({ friendlyName: 'Custom codes', customCodeEnabled: true });
    assert.equal(svc.customCodeEnabled, true);
    const service = env.a.verify.v2.services(svc.sid);
    const to = uniquePhone();

    const v = await service.verifications.create({ to, channel: 'sms', customCode: '246810' });
    assert.equal(v.status, 'pending');
    assert.equal(await cp.codeFor(v.sid, to), '246810');

    const wrong = await service.verificationChecks.create({ to, code: '135791' });
    assert.equal(wrong.status, 'pending');
    assert.equal(wrong.valid, false);

    const right = await service.verificationChecks.create({ to, code: '246810' });
    assert.equal(right.status, 'approved');
    assert.equal(right.valid, true);
    assert.equal(right.sid, v.sid);
  });
});

describe('verification lifecycle', () => {
  test('updating a verification to canceled cancels it, and it is then gone', async () => {
    const svc = await env.a.verify.v2.services.create({ friendlyName: 'Cancel' });
    const service = env.a.verify.v2.services(svc.sid);
    const to = uniquePhone();
    const v = await service.verifications.create({ to, channel: 'sms' });
    assert.equal(v.status, 'pending');

    const canceled = await service.verifications(v.sid).update({ status: 'canceled' });
    assert.equal(canceled.sid, v.sid);
    assert.equal(canceled.status, 'canceled');
    assert.equal(canceled.to, to);

    await expectRestError(service.verifications(v.sid).fetch(), 404, 20404);
  });

  test('starting again while pending re-sends: same sid, two send_code_attempts, same code', async () => {
    const svc = await env.a.verify.v2.services.create({ friendlyName: 'Resend' });
    const service = env.a.verify.v2.services(svc.sid);
    const to = uniquePhone();

    const first = await service.verifications.create({ to, channel: 'sms' });
    assert.equal(first.sendCodeAttempts.length, 1);
    const again = await service.verifications.create({ to, channel: 'sms' });
    assert.equal(again.sid, first.sid);
    assert.equal(again.status, 'pending');
    assert.ok(Array.isArray(again.sendCodeAttempts), JSON.stringify(again.sendCodeAttempts));
    assert.equal(again.sendCodeAttempts.length, 2, JSON.stringify(again.sendCodeAttempts));
    for (const attempt of again.sendCodeAttempts) {
      assert.match(String(attempt.attempt_sid), SID('VL'), JSON.stringify(attempt));
      assert.equal(String(attempt.channel).toLowerCase(), 'sms', JSON.stringify(attempt));
      assert.match(String(attempt.time), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/, JSON.stringify(attempt));
    }
    assert.notEqual(again.sendCodeAttempts[0].attempt_sid, again.sendCodeAttempts[1].attempt_sid);

    const fetched = await service.verifications(first.sid).fetch();
    assert.equal(fetched.sendCodeAttempts.length, 2);

    const sent = await cp.outbox({ To: to, ServiceSid: svc.sid });
    assert.equal(sent.length, 2, JSON.stringify(sent));
    assert.equal(sent[0].code, sent[1].code, 'a re-send must send the same code');
    for (const m of sent) {
      assert.equal(m.verification_sid, first.sid);
      assert.equal(m.service_sid, svc.sid);
      assert.equal(m.account_sid, ACCOUNT_A.sid);
      assert.equal(String(m.channel).toLowerCase(), 'sms');
      assert.match(m.sid, SID('VL'));
    }

    const approved = await service.verificationChecks.create({ to, code: String(sent[0].code) });
    assert.equal(approved.status, 'approved');
  });

  test('a verification of another account is 404 / 20404', async () => {
    const svc = await env.a.verify.v2.services.create({ friendlyName: 'Private verification' });
    const v = await env.a.verify.v2.services(svc.sid).verifications.create({ to: uniquePhone(), channel: 'sms' });
    await expectRestError(env.b.verify.v2.services(svc.sid).verifications(v.sid).fetch(), 404, 20404);
    // Still pending for its owner.
    assert.equal((await env.a.verify.v2.services(svc.sid).verifications(v.sid).fetch()).status, 'pending');
  });
});
