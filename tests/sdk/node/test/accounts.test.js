'use strict';
// Authentication and account isolation: two accounts and an API key of the first.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, rawRequest, expectRestError, ACCOUNT_A, ACCOUNT_B, API_KEY_A } = require('../lib/verilimit');

let env;
before(async () => {
  env = await setup();
});
after(async () => {
  await env?.server.stop();
});

test("a service of account A is invisible to account B (404 / 20404)", async () => {
  const svc = await env.a.verify.v2.services.create({ friendlyName: 'Owned by A' });
  assert.equal(svc.accountSid, ACCOUNT_A.sid);

  await expectRestError(env.b.verify.v2.services(svc.sid).fetch(), 404, 20404);
  await expectRestError(env.b.verify.v2.services(svc.sid).update({ friendlyName: 'Stolen' }), 404, 20404);
  await expectRestError(env.b.verify.v2.services(svc.sid).remove(), 404, 20404);
  await expectRestError(env.b.verify.v2.services(svc.sid).rateLimits.list(), 404, 20404);
  const bList = await env.b.verify.v2.services.list();
  assert.ok(!bList.some((s) => s.sid === svc.sid), "B's list shows A's service");

  // Nothing B tried changed it.
  const still = await env.a.verify.v2.services(svc.sid).fetch();
  assert.equal(still.friendlyName, 'Owned by A');
});

test("account B's own services carry B's account sid and are invisible to A", async () => {
  const svc = await env.b.verify.v2.services.create({ friendlyName: 'Owned by B' });
  assert.equal(svc.accountSid, ACCOUNT_B.sid);
  const fetched = await env.b.verify.v2.services(svc.sid).fetch();
  assert.equal(fetched.friendlyName, 'Owned by B');
  await expectRestError(env.a.verify.v2.services(svc.sid).fetch(), 404, 20404);
  const aList = await env.a.verify.v2.services.list();
  assert.ok(!aList.some((s) => s.sid === svc.sid), "A's list shows B's service");
});

test('rate limits and buckets of account A are invisible to account B', async () => {
  const svc = await env.a.verify.v2.services.create({ friendlyName: 'A limits' });
  const rl = await env.a.verify.v2.services(svc.sid).rateLimits.create({ uniqueName: 'end_user_ip' });
  const bl = await env.a.verify.v2.services(svc.sid).rateLimits(rl.sid).buckets.create({ max: 3, interval: 60 });
  await expectRestError(env.b.verify.v2.services(svc.sid).rateLimits(rl.sid).fetch(), 404, 20404);
  await expectRestError(
    env.b.verify.v2.services(svc.sid).rateLimits(rl.sid).buckets(bl.sid).fetch(),
    404,
    20404,
  );
  await expectRestError(
    env.b.verify.v2.services(svc.sid).rateLimits(rl.sid).buckets(bl.sid).update({ max: 1000 }),
    404,
    20404,
  );
  const fetched = await env.a.verify.v2.services(svc.sid).rateLimits(rl.sid).buckets(bl.sid).fetch();
  assert.equal(fetched.max, 3);
});

test('a wrong auth token is refused with 401 / 20003', async () => {
  const wrong = env.clientFor(ACCOUNT_A.sid, 'not-the-token-0000000000000000000');
  await expectRestError(wrong.verify.v2.services.list(), 401, 20003);
  await expectRestError(wrong.verify.v2.services.create({ friendlyName: 'Nope' }), 401, 20003);
});

test("account B's token does not open account A", async () => {
  const mixed = env.clientFor(ACCOUNT_A.sid, ACCOUNT_B.token);
  await expectRestError(mixed.verify.v2.services.list(), 401, 20003);
});

test('an unknown account sid is refused with 401 / 20003', async () => {
  const stranger = env.clientFor('AC' + '9'.repeat(32), ACCOUNT_A.token);
  await expectRestError(stranger.verify.v2.services.list(), 401, 20003);
});

test('a request without credentials is refused with 401 / 20003', async () => {
  const res = await rawRequest(env.base, 'GET', '/v2/Services');
  assert.equal(res.status, 401, res.text);
  assert.equal(res.json?.code, 20003);
  assert.equal(res.json?.status, 401);
});

test("the API-key client sees account A's resources", async () => {
  const svc = await env.a.verify.v2.services.create({ friendlyName: 'Seen by key' });
  const viaKey = await env.apiKey.verify.v2.services(svc.sid).fetch();
  assert.equal(viaKey.sid, svc.sid);
  assert.equal(viaKey.accountSid, ACCOUNT_A.sid);
  assert.equal(viaKey.friendlyName, 'Seen by key');

  const listed = await env.apiKey.verify.v2.services.list();
  assert.ok(listed.some((s) => s.sid === svc.sid), "the key's list lacks A's service");
  assert.ok(listed.every((s) => s.accountSid === ACCOUNT_A.sid));
});

test('what the API-key client creates belongs to account A', async () => {
  const svc = await env.apiKey.verify.v2.services.create({ friendlyName: 'Made with key' });
  assert.equal(svc.accountSid, ACCOUNT_A.sid);
  const rl = await env.apiKey.verify.v2.services(svc.sid).rateLimits.create({ uniqueName: 'by_key' });
  assert.equal(rl.accountSid, ACCOUNT_A.sid);

  const viaA = await env.a.verify.v2.services(svc.sid).fetch();
  assert.equal(viaA.friendlyName, 'Made with key');
  await expectRestError(env.b.verify.v2.services(svc.sid).fetch(), 404, 20404);
});

test('an API key with the wrong secret is refused with 401 / 20003', async () => {
  const wrong = env.clientFor(API_KEY_A.sid, 'wrong-secret', { accountSid: ACCOUNT_A.sid });
  await expectRestError(wrong.verify.v2.services.list(), 401, 20003);
});
