'use strict';
// Auto-paging through twilio-node: the SDK follows meta.next_page_url verbatim, so the server must
// build it from the address the client used. Own server, so the account holds exactly these services.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { setup, SID } = require('../lib/verilimit');

const TOTAL = 120;

let env;
const created = new Set();

before(async () => {
  env = await setup();
  // Ten at a time: quick, and a little concurrency on the create path.
  for (let i = 0; i < TOTAL; i += 10) {
    const batch = [];
    for (let j = i; j < Math.min(i + 10, TOTAL); j++) {
      batch.push(env.a.verify.v2.services.create({ friendlyName: `Paged ${String(j).padStart(3, '0')}` }));
    }
    for (const svc of await Promise.all(batch)) created.add(svc.sid);
  }
});
after(async () => {
  await env?.server.stop();
});

test(`${TOTAL} services were created with distinct sids`, () => {
  assert.equal(created.size, TOTAL);
  for (const sid of created) assert.match(sid, SID('VA'));
});

test('list with pageSize 50 walks every page and returns each service exactly once', async () => {
  const all = await env.a.verify.v2.services.list({ pageSize: 50 });
  const sids = all.map((s) => s.sid);
  assert.equal(sids.length, TOTAL, `listed ${sids.length} services`);
  assert.equal(new Set(sids).size, TOTAL, 'a service was listed twice');
  assert.deepEqual(new Set(sids), created);
  const names = new Set(all.map((s) => s.friendlyName));
  assert.equal(names.size, TOTAL);
  assert.ok(names.has('Paged 000') && names.has(`Paged ${TOTAL - 1}`));
});

test('list with a page size that does not divide the total still returns everything once', async () => {
  const all = await env.a.verify.v2.services.list({ pageSize: 7 });
  const sids = all.map((s) => s.sid);
  assert.equal(sids.length, TOTAL);
  assert.deepEqual(new Set(sids), created);
});

test('the first page has 50 records and a next_page_url on the address the client used', async () => {
  const page = await env.a.verify.v2.services.page({ pageSize: 50 });
  assert.equal(page.instances.length, 50);
  assert.equal(typeof page.nextPageUrl, 'string', 'no next_page_url on a full first page');
  assert.ok(
    page.nextPageUrl.startsWith(`${env.base}/v2/Services?`),
    `next_page_url ${page.nextPageUrl} is not under ${env.base}/v2/Services`,
  );
  assert.equal(page._payload.meta.key, 'services');
  assert.equal(page._payload.meta.page, 0);
  assert.equal(page._payload.meta.page_size, 50);

  const second = await page.nextPage();
  assert.equal(second.instances.length, 50);
  assert.equal(second._payload.meta.page, 1);
  const third = await second.nextPage();
  assert.equal(third.instances.length, TOTAL - 100);
  assert.ok(!third.nextPageUrl, `last page still has a next_page_url: ${third.nextPageUrl}`);
  assert.equal(await third.nextPage(), undefined);

  const seen = [...page.instances, ...second.instances, ...third.instances].map((s) => s.sid);
  assert.deepEqual(new Set(seen), created);
  assert.equal(seen.length, TOTAL);
});

test('each with a limit stops after exactly that many distinct services', async () => {
  const seen = [];
  await env.a.verify.v2.services.each({ limit: 70, pageSize: 50 }, (svc) => {
    seen.push(svc.sid);
  });
  assert.equal(seen.length, 70);
  assert.equal(new Set(seen).size, 70);
  for (const sid of seen) assert.ok(created.has(sid), `${sid} was not created by this test`);
});

test('each without a limit visits every service once and then calls done', async () => {
  const seen = [];
  let doneCalls = 0;
  let doneError;
  await env.a.verify.v2.services.each({
    pageSize: 40,
    callback: (svc) => seen.push(svc.sid),
    done: (err) => {
      doneCalls += 1;
      doneError = err;
    },
  });
  assert.equal(doneCalls, 1);
  assert.equal(doneError, undefined);
  assert.equal(seen.length, TOTAL);
  assert.deepEqual(new Set(seen), created);
});

test('list with a limit returns that many services', async () => {
  const some = await env.a.verify.v2.services.list({ limit: 13 });
  assert.equal(some.length, 13);
  assert.equal(new Set(some.map((s) => s.sid)).size, 13);
  for (const s of some) assert.ok(created.has(s.sid));
});
