'use strict';
// Example node:test suite: the verilimit helpers and the official twilio SDK, nothing else.
// One server for the file, reset before each test. Run it from a project that has `verilimit`
// (packages/node, e.g. `npm pack`ed) and `twilio` installed, with verilimit on PATH or
// VERILIMIT_BIN set:   node --test verify-flow.test.js
const { before, beforeEach, after, test } = require('node:test');
const assert = require('node:assert/strict');
const twilio = require('twilio');
const { Verilimit } = require('verilimit');

let vl;
before(async () => {
  vl = await Verilimit.start();
});
beforeEach(() => vl.reset());
after(() => vl.stop());

const services = () => vl.client.verify.v2.services;

/** A new Verify service: its SID and its context (for sub-resources). */
async function newService(opts = {}) {
  const { sid } = await services().create({ friendlyName: 'Example app', ...opts });
  return [sid, services()(sid)];
}

async function rejects(promise, status, code) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof twilio.RestException, `not a RestException: ${err}`);
    assert.deepEqual({ status: err.status, code: err.code }, { status, code });
    return true;
  });
}

test('the helper exposes the server, its account and a client pointed at it', async () => {
  assert.match(vl.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.match(vl.accountSid, /^AC[0-9a-f]{32}$/);
  assert.equal(typeof vl.authToken, 'string');
  assert.equal(vl.client.verify.baseUrl, vl.url);
  assert.deepEqual(await services().list(), []);
});

test('start a verification, read the code, check it', async () => {
  const [, service] = await newService({ codeLength: 6 });
  const to = '+15005550006';
  const verification = await service.verifications.create({ to, channel: 'sms' });
  assert.equal(verification.status, 'pending');

  const code = await vl.latestCode(to);
  assert.match(code, /^\d{6}$/);
  const [message] = await vl.outbox(to);
  assert.equal(message.verification_sid, verification.sid);

  const wrong = code.slice(0, -1) + (code.endsWith('1') ? '2' : '1');
  assert.equal((await service.verificationChecks.create({ to, code: wrong })).status, 'pending');
  const check = await service.verificationChecks.create({ to, code });
  assert.equal(check.status, 'approved');
  assert.equal(check.valid, true);
});

test('a bucket refuses with 429 / 20429 until the clock moves past its window', async () => {
  const [serviceSid, service] = await newService();
  const rateLimit = await service.rateLimits.create({ uniqueName: 'end_user_ip' });
  await service.rateLimits(rateLimit.sid).buckets.create({ max: 2, interval: 60 });
  const start = (to, ip) =>
    service.verifications.create({ to, channel: 'sms', rateLimits: { end_user_ip: ip } });

  await start('+15005550001', '203.0.113.7');
  await start('+15005550002', '203.0.113.7');
  await rejects(start('+15005550003', '203.0.113.7'), 429, 20429);
  await start('+15005550004', '198.51.100.1'); // another value has its own count

  const [row] = await vl.usage(serviceSid, { value: '203.0.113.7' });
  assert.equal(row.unique_name, 'end_user_ip');
  assert.equal(row.count, 2);
  assert.equal(row.remaining, 0);
  assert.ok(row.retry_after >= 1 && row.retry_after <= 60, `retry_after ${row.retry_after}`);

  const clock = await vl.advanceClock(row.retry_after);
  assert.equal(clock.offset_ms, row.retry_after * 1000);
  await start('+15005550003', '203.0.113.7');
});

test('a code expires when the clock moves past its ten minutes', async () => {
  const [, service] = await newService();
  const to = '+15005550006';
  await service.verifications.create({ to, channel: 'sms' });
  const code = await vl.latestCode(to);
  await vl.advanceClock(601);
  await rejects(service.verificationChecks.create({ to, code }), 404, 20404);
});

test('reset forgets services, codes and the clock', async () => {
  const [, service] = await newService();
  await service.verifications.create({ to: '+15005550006', channel: 'sms' });
  await vl.advanceClock(3600);

  await vl.reset();
  await rejects(service.fetch(), 404, 20404);
  assert.deepEqual(await vl.outbox(), []);
  await assert.rejects(vl.latestCode('+15005550006'), /sent no code/);
  assert.equal((await vl.clock()).offset_ms, 0);
});
