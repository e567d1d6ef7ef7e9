'use strict';
// Event Streams v1 through twilio-node (`client.events.v1`): sinks, subscriptions, subscribed
// events, types; Verify events delivered to a webhook sink, checked with the SDK's own
// validateRequestWithBody.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { setup, expectRestError, uniquePhone, twilio, ACCOUNT_A, SID } = require('../lib/verilimit');

const PENDING = 'com.twilio.accountsecurity.verify.verification.pending';
const APPROVED = 'com.twilio.accountsecurity.verify.verification.approved';
const CANCELED = 'com.twilio.accountsecurity.verify.verification.canceled';
const TEST_EVENT = 'com.twilio.eventstreams.test-event';
const DELIVERY_TIMEOUT_MS = 20000;

let env;
let events;
let hook;

/** A webhook sink on a free loopback port; `next()` resolves with the next request. */
function startHook() {
  const waiting = [];
  const received = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const request = {
        url: `http://127.0.0.1:${server.address().port}${req.url}`,
        signature: req.headers['x-twilio-signature'],
        body: Buffer.concat(chunks).toString('utf8'),
      };
      res.writeHead(200).end();
      const w = waiting.shift();
      if (w) w(request);
      else received.push(request);
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () =>
      resolve({
        destination: `http://127.0.0.1:${server.address().port}/hook`,
        next: () =>
          received.length > 0
            ? Promise.resolve(received.shift())
            : new Promise((res, rej) => {
                const timer = setTimeout(() => rej(new Error('no delivery in time')), DELIVERY_TIMEOUT_MS);
                waiting.push((r) => {
                  clearTimeout(timer);
                  res(r);
                });
              }),
        close: () => new Promise((r) => server.close(r)),
      }),
    );
  });
}

/** The next request's only event, after checking its signature. */
async function nextEvent() {
  const r = await hook.next();
  assert.ok(twilio.validateRequestWithBody(ACCOUNT_A.token, r.signature, r.url, r.body), `signature of ${r.url}`);
  const body = JSON.parse(r.body);
  assert.ok(Array.isArray(body) && body.length === 1, r.body);
  return body[0];
}

before(async () => {
  env = await setup();
  env.a.events.baseUrl = env.base;
  env.b.events.baseUrl = env.base;
  events = env.a.events.v1;
  hook = await startHook();
});
after(async () => {
  await hook?.close();
  await env?.server.stop();
});

function makeSink(destination) {
  return events.sinks.create({
    description: 'Node sink',
    sinkConfiguration: { destination, method: 'POST', batch_events: false },
    sinkType: 'webhook',
  });
}

test('sinks are created active and can be fetched, updated, listed and deleted', async () => {
  const sink = await makeSink('http://127.0.0.1:9/hook');
  assert.match(sink.sid, SID('DG'));
  assert.equal(sink.status, 'active');
  assert.equal(sink.sinkType, 'webhook');
  assert.equal(sink.sinkConfiguration.destination, 'http://127.0.0.1:9/hook');
  assert.equal((await events.sinks(sink.sid).fetch()).description, 'Node sink');
  assert.equal((await events.sinks(sink.sid).update({ description: 'renamed' })).description, 'renamed');
  assert.ok((await events.sinks.list()).some((s) => s.sid === sink.sid));
  assert.equal((await events.sinks(sink.sid).sinkValidate.create({ testId: 'x' })).result, 'valid');
  await expectRestError(env.b.events.v1.sinks(sink.sid).fetch(), 404, 20404);
  assert.equal(await events.sinks(sink.sid).remove(), true);
  await expectRestError(events.sinks(sink.sid).fetch(), 404, 20404);
});

test('subscriptions take the types as the SDK serializes them', async () => {
  const sink = await makeSink('http://127.0.0.1:9/hook');
  const sub = await events.subscriptions.create({
    description: 'Node subscription',
    sinkSid: sink.sid,
    types: [{ type: PENDING, schema_version: 3 }, { type: APPROVED }],
  });
  assert.match(sub.sid, SID('DF'));
  assert.equal(sub.accountSid, ACCOUNT_A.sid);
  assert.equal(sub.sinkSid, sink.sid);
  const listed = await events.subscriptions.list({ sinkSid: sink.sid });
  assert.deepEqual(listed.map((s) => s.sid), [sub.sid]);
  const types = await events.subscriptions(sub.sid).subscribedEvents.list();
  assert.deepEqual(types.map((t) => [t.type, t.schemaVersion]).sort(), [[APPROVED, 3], [PENDING, 3]]);
  const added = await events.subscriptions(sub.sid).subscribedEvents.create({ type: CANCELED, schemaVersion: 2 });
  assert.deepEqual([added.type, added.schemaVersion], [CANCELED, 2]);
  assert.equal((await events.subscriptions(sub.sid).subscribedEvents(CANCELED).fetch()).schemaVersion, 2);
  assert.equal(await events.subscriptions(sub.sid).subscribedEvents(CANCELED).remove(), true);
  await expectRestError(env.b.events.v1.subscriptions(sub.sid).fetch(), 404, 20404);
  assert.equal(await events.subscriptions(sub.sid).remove(), true);
  await expectRestError(events.subscriptions(sub.sid).fetch(), 404, 20404);
});

test('event types list the Verify verification events', async () => {
  const names = (await events.eventTypes.list()).map((t) => t.type);
  for (const t of [PENDING, APPROVED, CANCELED, TEST_EVENT]) assert.ok(names.includes(t), t);
  const pending = await events.eventTypes(PENDING).fetch();
  assert.equal(pending.schemaId, 'AccountSecurity.VerifyEventStreamEvent');
});

test('verify events and the test event reach the webhook sink, signed', async () => {
  const sink = await makeSink(hook.destination);
  await events.subscriptions.create({
    description: 'Node delivery',
    sinkSid: sink.sid,
    types: [{ type: PENDING, schema_version: 3 }, { type: APPROVED, schema_version: 3 }],
  });
  const service = await env.a.verify.v2.services.create({
    friendlyName: 'Node events',
    verifyEventSubscriptionEnabled: true,
  });
  const to = uniquePhone();
  const v = await env.a.verify.v2.services(service.sid).verifications.create({ to, channel: 'sms' });
  const code = await env.controlPlane().codeFor(v.sid, to);
  const check = await env.a.verify.v2.services(service.sid).verificationChecks.create({ to, code });
  assert.equal(check.status, 'approved');

  const pending = await nextEvent();
  assert.equal(pending.type, PENDING);
  assert.equal(pending.data.verification_sid, v.sid);
  const approved = await nextEvent();
  assert.equal(approved.type, APPROVED);
  assert.equal(approved.data.verification_status, 'APPROVED');
  assert.equal(approved.data.code, undefined);

  assert.equal((await events.sinks(sink.sid).sinkTest.create()).result, 'submitted');
  assert.equal((await nextEvent()).type, TEST_EVENT);
});
