'use strict';
// Verify Push through twilio-node, with node:crypto P-256 keys playing the phone exactly as the
// Verify Push SDKs do (twilio/twilio-verify-android): enrol with Basic `token:<access token>`,
// `Binding.PublicKey` = base64 SubjectPublicKeyInfo DER; verify with the DER ECDSA-SHA256
// signature of the factor SID; answer a challenge with an ES256 JWT over the fields named by
// the `Twilio-Verify-Signature-Fields` header of GET challenge, plus `status`.

const { test, before, after, describe } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { setup, rawRequest, expectRestError, ACCOUNT_A, SID } = require('../lib/verilimit');

let env;
before(async () => {
  env = await setup();
});
after(async () => {
  await env?.server.stop();
});

const IDENTITY = 'ff483d1ff591898a9942916050d2ca3f';

function newKey() {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    privateKey,
    publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    /** Base64 DER ECDSA-SHA256 (the factor's AuthPayload). */
    sign: (message) => crypto.sign('sha256', Buffer.from(message), privateKey).toString('base64'),
    /** An ES256 compact JWS. */
    jwt(payload) {
      const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
      const input = `${b64({ typ: 'JWT', alg: 'ES256' })}.${b64(payload)}`;
      const sig = crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
      return `${input}.${sig.toString('base64url')}`;
    },
  };
}

/** What the SDK does before answering: GET the challenge, sign its signature fields + status. */
async function answerFor(serviceSid, challengeSid, key, status) {
  const res = await rawRequest(
    env.base,
    'GET',
    `/v2/Services/${serviceSid}/Entities/${IDENTITY}/Challenges/${challengeSid}`,
    { user: ACCOUNT_A.sid, pass: ACCOUNT_A.token },
  );
  assert.equal(res.status, 200, res.text);
  const fields = res.headers.get('twilio-verify-signature-fields');
  assert.ok(fields, 'a pending push challenge names its signature fields');
  const payload = {};
  for (const f of fields.split(',')) {
    assert.ok(f in res.json, `${f} is a field of the challenge`);
    payload[f] = res.json[f];
  }
  payload.status = status;
  return key.jwt(payload);
}

describe('Verify Push', () => {
  test('enrol with an access token, verify, approve and deny challenges', async () => {
    const svc = await env.a.verify.v2.services.create({ friendlyName: 'Node Push' });
    const service = env.a.verify.v2.services(svc.sid);
    const key = newKey();
    const { token } = await service.accessTokens.create({ identity: IDENTITY, factorType: 'push' });
    const phone = env.clientFor('token', token, { accountSid: ACCOUNT_A.sid });
    const factor = await phone.verify.v2.services(svc.sid).entities(IDENTITY).newFactors.create({
      friendlyName: 'Pixel',
      factorType: 'push',
      'binding.alg': 'ES256',
      'binding.publicKey': key.publicKey,
      'config.appId': 'com.example.bank',
      'config.notificationPlatform': 'none',
      'config.sdkVersion': '0.12.0',
    });
    assert.match(factor.sid, SID('YF'));
    assert.equal(factor.factorType, 'push');
    assert.equal(factor.status, 'unverified');
    assert.deepEqual(factor.binding, { public_key: key.publicKey, alg: 'ES256' });

    const entity = service.entities(IDENTITY);
    const other = newKey();
    assert.equal((await entity.factors(factor.sid).update({ authPayload: other.sign(factor.sid) })).status, 'unverified');
    assert.equal((await entity.factors(factor.sid).update({ authPayload: key.sign(factor.sid) })).status, 'verified');

    const challenge = await entity.challenges.create({
      factorSid: factor.sid,
      'details.message': 'Log in to Bank?',
      'details.fields': [{ label: 'IP', value: '10.0.0.1' }],
      hiddenDetails: { session: 's-1' },
    });
    assert.match(challenge.sid, SID('YC'));
    assert.equal(challenge.status, 'pending');
    assert.deepEqual(challenge.details, { message: 'Log in to Bank?', fields: [{ label: 'IP', value: '10.0.0.1' }] });

    const notification = await entity.challenges(challenge.sid).notifications.create({ ttl: 60 });
    assert.match(notification.sid, SID('NT'));
    assert.equal(notification.ttl, 60);
    assert.equal(notification.priority, 'high');

    await expectRestError(
      entity.challenges(challenge.sid).update({ authPayload: await answerFor(svc.sid, challenge.sid, other, 'approved') }),
      400,
      60200,
    );
    const approved = await entity
      .challenges(challenge.sid)
      .update({ authPayload: await answerFor(svc.sid, challenge.sid, key, 'approved') });
    assert.equal(approved.status, 'approved');
    assert.ok(approved.dateResponded instanceof Date);

    const second = await entity.challenges.create({ factorSid: factor.sid, 'details.message': 'Pay?' });
    const denied = await entity
      .challenges(second.sid)
      .update({ authPayload: await answerFor(svc.sid, second.sid, key, 'denied') });
    assert.equal(denied.status, 'denied');
  });
});
