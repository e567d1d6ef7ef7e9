'use strict';
// Verify TOTP through twilio-node: Entities, Factors and Challenges. Codes are computed here with
// node's own crypto (RFC 6238, independent of the server) from the secret verilimit returns, at
// the account's clock, which each test first moves to 5 s past a whole minute (a day ahead).

const { test, before, after, describe } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { setup, expectRestError, ACCOUNT_A, SID } = require('../lib/verilimit');

let env;
let cp;
before(async () => {
  env = await setup();
  cp = env.controlPlane();
});
after(async () => {
  await env?.server.stop();
});

const IDENTITY = 'ff483d1ff591898a9942916050d2ca3f';

function base32Decode(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of text.replace(/=+$/, '').toUpperCase()) {
    const v = alphabet.indexOf(ch);
    assert.ok(v >= 0, `not base32: ${text}`);
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The RFC 6238 code of a base32 secret at epoch second `at`. */
function totp(secret, at, { digits = 6, period = 30, alg = 'sha1' } = {}) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / period)));
  const h = crypto.createHmac(alg, base32Decode(secret)).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  const n = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(n % 10 ** digits).padStart(digits, '0');
}

test('the test\'s own TOTP matches RFC 6238', () => {
  const seed = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'; // "12345678901234567890"
  assert.equal(totp(seed, 59, { digits: 8 }), '94287082');
  assert.equal(totp(seed, 1111111109, { digits: 8 }), '07081804');
});

/** Moves the account's clock to 5 s past a minute, about a day ahead; returns that time. */
async function alignedClock() {
  const now = Math.floor(Date.parse((await cp.clock()).now) / 1000);
  const target = Math.floor((now + 86400) / 60) * 60 + 65;
  const stamp = new Date(target * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
  await cp.request('POST', '/emulator/v1/Clock', { Now: stamp });
  return target;
}

function wrong(code) {
  return code.replace(/[0-9]/g, (d) => String((Number(d) + 1) % 10));
}

async function newService(name) {
  const svc = await env.a.verify.v2.services.create({ friendlyName: name });
  return env.a.verify.v2.services(svc.sid);
}

describe('Verify TOTP', () => {
  test('enrol a factor, verify it, approve a challenge once', async () => {
    const service = await newService('Node TOTP');
    const entity = service.entities(IDENTITY);
    const t = await alignedClock();

    const factor = await entity.newFactors.create({ friendlyName: 'My Phone', factorType: 'totp' });
    assert.match(factor.sid, SID('YF'));
    assert.match(factor.entitySid, SID('YE'));
    assert.equal(factor.accountSid, ACCOUNT_A.sid);
    assert.equal(factor.status, 'unverified');
    assert.deepEqual(factor.config, { alg: 'sha1', skew: 1, code_length: 6, time_step: 30 });
    const secret = factor.binding.secret;
    assert.equal(
      factor.binding.uri,
      `otpauth://totp/Node%20TOTP:My%20Phone?secret=${secret}&issuer=Node%20TOTP&algorithm=SHA1&digits=6&period=30`,
    );
    assert.equal((await entity.fetch()).sid, factor.entitySid);

    await expectRestError(
      entity.challenges.create({ factorSid: factor.sid, authPayload: totp(secret, t) }),
      403,
      60318,
    );
    const right = totp(secret, t);
    assert.equal((await entity.factors(factor.sid).update({ authPayload: wrong(right) })).status, 'unverified');
    assert.equal((await entity.factors(factor.sid).update({ authPayload: right })).status, 'verified');

    // Used up by the verification: the same code does not approve a challenge.
    const replay = await entity.challenges.create({ factorSid: factor.sid, authPayload: right });
    assert.equal(replay.status, 'pending');

    await cp.advanceClock(30);
    const next = totp(secret, t + 30);
    const approved = await entity.challenges.create({ factorSid: factor.sid, authPayload: next });
    assert.match(approved.sid, SID('YC'));
    assert.equal(approved.status, 'approved');
    assert.ok(approved.dateResponded instanceof Date);
    assert.equal((await entity.challenges.create({ factorSid: factor.sid, authPayload: next })).status, 'pending');

    // The replayed (pending) challenge is answered by a later code.
    await cp.advanceClock(30);
    const answered = await entity.challenges(replay.sid).update({ authPayload: totp(secret, t + 60) });
    assert.equal(answered.status, 'approved');

    const approvedList = await entity.challenges.list({ status: 'approved', order: 'desc', pageSize: 1 });
    assert.deepEqual(
      approvedList.map((c) => c.sid),
      [approved.sid, replay.sid],
    );
  });

  test('settings from the request and the service; lists; errors', async () => {
    const service = await newService('Node settings');
    const entity = service.entities('user-0001');
    const t = await alignedClock();
    const secret = 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP';
    const factor = await entity.newFactors.create({
      friendlyName: 'tablet',
      factorType: 'totp',
      // twilio-node names the dotted parameters as they are on the wire.
      'binding.secret': secret,
      'config.alg': 'sha512',
      'config.codeLength': 8,
      'config.timeStep': 20,
      'config.skew': 0,
    });
    assert.equal(factor.binding.secret, secret);
    assert.deepEqual(factor.config, { alg: 'sha512', skew: 0, code_length: 8, time_step: 20 });
    const verified = await entity
      .factors(factor.sid)
      .update({ authPayload: totp(secret, t, { digits: 8, period: 20, alg: 'sha512' }) });
    assert.equal(verified.status, 'verified');

    await service.entities.create({ identity: 'user-0002' });
    await expectRestError(service.entities.create({ identity: 'user-0002' }), 409, 60301);
    assert.deepEqual(
      (await service.entities.list({ pageSize: 1 })).map((e) => e.identity),
      ['user-0001', 'user-0002'],
    );
    assert.equal(await service.entities('user-0002').remove(), true);
    await expectRestError(service.entities('user-0002').fetch(), 404, 20404);
    await expectRestError(entity.newFactors.create({ friendlyName: 'p', factorType: 'push' }), 400, 60200);

    const open = await entity.challenges.create({ factorSid: factor.sid });
    assert.equal(open.status, 'pending');
    await cp.advanceClock(301);
    assert.equal((await entity.challenges(open.sid).fetch()).status, 'expired');
    await expectRestError(entity.challenges(open.sid).update({ authPayload: '12345678' }), 403, 60323);

    assert.deepEqual(
      (await entity.factors.list()).map((f) => f.sid),
      [factor.sid],
    );
    assert.equal(await entity.factors(factor.sid).remove(), true);
    await expectRestError(entity.challenges(open.sid).fetch(), 404, 20404);
  });
});
