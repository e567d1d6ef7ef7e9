'use strict';
// Service Rate Limits and their Buckets through twilio-node.

const { test, before, after, describe } = require('node:test');
const assert = require('node:assert/strict');
const { setup, expectRestError, ACCOUNT_A, SID } = require('../lib/verilimit');

let env;
before(async () => {
  env = await setup();
});
after(async () => {
  await env?.server.stop();
});

async function newService(name) {
  return env.a.verify.v2.services.create({ friendlyName: name });
}

describe('rate limits', () => {
  test('create echoes unique name, description, owners, url and links', async () => {
    const svc = await newService('RL create');
    const rl = await env.a.verify.v2.services(svc.sid).rateLimits.create({
      uniqueName: 'end_user_phone_number',
      description: 'Limit by phone number',
    });
    assert.match(rl.sid, SID('RK'));
    assert.equal(rl.serviceSid, svc.sid);
    assert.equal(rl.accountSid, ACCOUNT_A.sid);
    assert.equal(rl.uniqueName, 'end_user_phone_number');
    assert.equal(rl.description, 'Limit by phone number');
    assert.ok(rl.dateCreated instanceof Date && !Number.isNaN(rl.dateCreated.getTime()));
    assert.ok(rl.dateUpdated instanceof Date && !Number.isNaN(rl.dateUpdated.getTime()));
    const url = `${env.base}/v2/Services/${svc.sid}/RateLimits/${rl.sid}`;
    assert.equal(rl.url, url);
    assert.equal(rl.links?.buckets, `${url}/Buckets`);
  });

  test('fetch returns the created rate limit', async () => {
    const svc = await newService('RL fetch');
    const created = await env.a.verify.v2.services(svc.sid).rateLimits.create({
      uniqueName: 'end_user_ip',
      description: 'by IP',
    });
    const fetched = await env.a.verify.v2.services(svc.sid).rateLimits(created.sid).fetch();
    assert.equal(fetched.sid, created.sid);
    assert.equal(fetched.serviceSid, svc.sid);
    assert.equal(fetched.uniqueName, 'end_user_ip');
    assert.equal(fetched.description, 'by IP');
    assert.equal(fetched.url, created.url);
  });

  test('update changes the description and nothing else', async () => {
    const svc = await newService('RL update');
    const created = await env.a.verify.v2.services(svc.sid).rateLimits.create({
      uniqueName: 'session.id-1',
      description: 'old words',
    });
    const updated = await env.a.verify.v2.services(svc.sid).rateLimits(created.sid).update({
      description: 'new words',
    });
    assert.equal(updated.sid, created.sid);
    assert.equal(updated.description, 'new words');
    assert.equal(updated.uniqueName, 'session.id-1');
    assert.equal(updated.dateCreated.getTime(), created.dateCreated.getTime());
    assert.ok(updated.dateUpdated.getTime() >= created.dateUpdated.getTime());
    const fetched = await env.a.verify.v2.services(svc.sid).rateLimits(created.sid).fetch();
    assert.equal(fetched.description, 'new words');
    assert.equal(fetched.uniqueName, 'session.id-1');
  });

  test('list returns exactly the rate limits of that service', async () => {
    const svc = await newService('RL list');
    const other = await newService('RL list other');
    const one = await env.a.verify.v2.services(svc.sid).rateLimits.create({ uniqueName: 'one' });
    const two = await env.a.verify.v2.services(svc.sid).rateLimits.create({ uniqueName: 'two' });
    await env.a.verify.v2.services(other.sid).rateLimits.create({ uniqueName: 'one' });

    const listed = await env.a.verify.v2.services(svc.sid).rateLimits.list();
    assert.deepEqual(listed.map((r) => r.sid).sort(), [one.sid, two.sid].sort());
    assert.deepEqual(listed.map((r) => r.uniqueName).sort(), ['one', 'two']);
    for (const r of listed) assert.equal(r.serviceSid, svc.sid);

    const paged = await env.a.verify.v2.services(svc.sid).rateLimits.list({ pageSize: 1 });
    assert.deepEqual(paged.map((r) => r.sid).sort(), [one.sid, two.sid].sort());
  });

  test('delete removes it: fetch then rejects with 404 / 20404', async () => {
    const svc = await newService('RL delete');
    const rl = await env.a.verify.v2.services(svc.sid).rateLimits.create({ uniqueName: 'gone' });
    assert.equal(await env.a.verify.v2.services(svc.sid).rateLimits(rl.sid).remove(), true);
    await expectRestError(env.a.verify.v2.services(svc.sid).rateLimits(rl.sid).fetch(), 404, 20404);
    assert.deepEqual(await env.a.verify.v2.services(svc.sid).rateLimits.list(), []);
    // The unique name is free again.
    const again = await env.a.verify.v2.services(svc.sid).rateLimits.create({ uniqueName: 'gone' });
    assert.notEqual(again.sid, rl.sid);
  });

  test('a duplicate unique name in the same service is refused with 400 / 60208', async () => {
    const svc = await newService('RL dup');
    await env.a.verify.v2.services(svc.sid).rateLimits.create({ uniqueName: 'end_user_ip' });
    await expectRestError(
      env.a.verify.v2.services(svc.sid).rateLimits.create({ uniqueName: 'end_user_ip' }),
      400,
      60208,
    );
    assert.equal((await env.a.verify.v2.services(svc.sid).rateLimits.list()).length, 1);
  });

  test('a unique name outside [A-Za-z0-9._-] is refused with 400 / 60209', async () => {
    const svc = await newService('RL invalid');
    await expectRestError(
      env.a.verify.v2.services(svc.sid).rateLimits.create({ uniqueName: 'has space' }),
      400,
      60209,
    );
    await expectRestError(
      env.a.verify.v2.services(svc.sid).rateLimits.create({ uniqueName: 'semi;colon' }),
      400,
      60209,
    );
    assert.deepEqual(await env.a.verify.v2.services(svc.sid).rateLimits.list(), []);
  });

  test('rate limits of an unknown service answer 404 / 20404', async () => {
    await expectRestError(
      env.a.verify.v2.services('VA' + 'f'.repeat(32)).rateLimits.create({ uniqueName: 'x' }),
      404,
      20404,
    );
  });
});

describe('buckets', () => {
  async function newRateLimit(name) {
    const svc = await newService(name);
    const rl = await env.a.verify.v2.services(svc.sid).rateLimits.create({ uniqueName: 'end_user_ip' });
    return { svc, rl, buckets: env.a.verify.v2.services(svc.sid).rateLimits(rl.sid).buckets };
  }

  test('create echoes max, interval, owners and url', async () => {
    const { svc, rl, buckets } = await newRateLimit('BL create');
    const bl = await buckets.create({ max: 5, interval: 60 });
    assert.match(bl.sid, SID('BL'));
    assert.equal(bl.rateLimitSid, rl.sid);
    assert.equal(bl.serviceSid, svc.sid);
    assert.equal(bl.accountSid, ACCOUNT_A.sid);
    assert.equal(bl.max, 5);
    assert.equal(bl.interval, 60);
    assert.ok(bl.dateCreated instanceof Date && !Number.isNaN(bl.dateCreated.getTime()));
    assert.equal(bl.url, `${env.base}/v2/Services/${svc.sid}/RateLimits/${rl.sid}/Buckets/${bl.sid}`);
  });

  test('fetch returns the created bucket', async () => {
    const { buckets } = await newRateLimit('BL fetch');
    const created = await buckets.create({ max: 2, interval: 3600 });
    const fetched = await buckets(created.sid).fetch();
    assert.equal(fetched.sid, created.sid);
    assert.equal(fetched.max, 2);
    assert.equal(fetched.interval, 3600);
    assert.equal(fetched.url, created.url);
  });

  test('updating only max leaves the interval unchanged', async () => {
    const { buckets } = await newRateLimit('BL update');
    const created = await buckets.create({ max: 5, interval: 60 });
    const updated = await buckets(created.sid).update({ max: 10 });
    assert.equal(updated.sid, created.sid);
    assert.equal(updated.max, 10);
    assert.equal(updated.interval, 60);
    const fetched = await buckets(created.sid).fetch();
    assert.equal(fetched.max, 10);
    assert.equal(fetched.interval, 60);

    const reinterval = await buckets(created.sid).update({ interval: 120 });
    assert.equal(reinterval.max, 10);
    assert.equal(reinterval.interval, 120);
  });

  test('list returns exactly the buckets of that rate limit', async () => {
    const { buckets } = await newRateLimit('BL list');
    const other = await newRateLimit('BL list other');
    const minute = await buckets.create({ max: 3, interval: 60 });
    const hour = await buckets.create({ max: 20, interval: 3600 });
    await other.buckets.create({ max: 1, interval: 60 });

    const listed = await buckets.list();
    assert.equal(listed.length, 2);
    const byInterval = Object.fromEntries(listed.map((b) => [b.interval, b]));
    assert.equal(byInterval[60]?.sid, minute.sid);
    assert.equal(byInterval[60]?.max, 3);
    assert.equal(byInterval[3600]?.sid, hour.sid);
    assert.equal(byInterval[3600]?.max, 20);
  });

  test('delete removes it: fetch then rejects with 404 / 20404', async () => {
    const { buckets } = await newRateLimit('BL delete');
    const bl = await buckets.create({ max: 1, interval: 10 });
    assert.equal(await buckets(bl.sid).remove(), true);
    await expectRestError(buckets(bl.sid).fetch(), 404, 20404);
    assert.deepEqual(await buckets.list(), []);
    // The interval is free again.
    const again = await buckets.create({ max: 1, interval: 10 });
    assert.equal(again.interval, 10);
  });

  test('a second bucket with the same interval is refused with 400 / 60211', async () => {
    const { buckets } = await newRateLimit('BL dup');
    await buckets.create({ max: 5, interval: 60 });
    await expectRestError(buckets.create({ max: 9, interval: 60 }), 400, 60211);
    const listed = await buckets.list();
    assert.equal(listed.length, 1);
    assert.equal(listed[0].max, 5);
  });

  test('moving a bucket onto an interval another bucket has is refused with 400 / 60211', async () => {
    const { buckets } = await newRateLimit('BL dup update');
    await buckets.create({ max: 5, interval: 60 });
    const hour = await buckets.create({ max: 50, interval: 3600 });
    await expectRestError(buckets(hour.sid).update({ interval: 60 }), 400, 60211);
    assert.equal((await buckets(hour.sid).fetch()).interval, 3600);
  });

  test('max below 1 or interval outside 1..86400 is refused with 400 / 60200', async () => {
    const { buckets } = await newRateLimit('BL invalid');
    await expectRestError(buckets.create({ max: 0, interval: 60 }), 400, 60200);
    await expectRestError(buckets.create({ max: 1, interval: 0 }), 400, 60200);
    await expectRestError(buckets.create({ max: 1, interval: 86401 }), 400, 60200);
    assert.deepEqual(await buckets.list(), []);
  });
});
