'use strict';
// The official twilio-node SDK, unchanged (no base URL), against verilimit's --tls listener. A
// child process runs the SDK with verilimit's CA in NODE_EXTRA_CA_CERTS, as an application in a
// container would, and with *.twilio.com:443 sent to verilimit inside that process only
// (lib/twilio-hosts.js). A wrong CA must be refused; plain HTTP keeps working beside TLS.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { setup, startServer, ACCOUNT_A } = require('../lib/verilimit');

let env;
let caFile;

before(async () => {
  caFile = path.join(fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'verilimit-ca-')), 'ca.pem');
  env = await setup({ args: ['--tls', '--tls-listen', '127.0.0.1:0', '--tls-ca-out', caFile] });
});
after(async () => {
  await env?.server.stop();
  if (caFile) fs.rmSync(path.dirname(caFile), { recursive: true, force: true });
});

/** Runs lib/tls-client.js with `extraCa` as NODE_EXTRA_CA_CERTS (none when null). */
function runSdk(extraCa) {
  const childEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(TWILIO_|VERILIMIT_|NODE_EXTRA_CA_CERTS$|NODE_OPTIONS$|HTTPS?_PROXY$|https?_proxy$)/.test(k)) continue;
    childEnv[k] = v;
  }
  Object.assign(childEnv, {
    TWILIO_ACCOUNT_SID: ACCOUNT_A.sid,
    TWILIO_AUTH_TOKEN: ACCOUNT_A.token,
    VERILIMIT_TWILIO_ADDR: env.server.tlsAddr,
    VERILIMIT_CONTROL: env.base,
  });
  if (extraCa !== null) childEnv.NODE_EXTRA_CA_CERTS = extraCa;
  const lib = path.join(__dirname, '..', 'lib');
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--require', path.join(lib, 'twilio-hosts.js'), path.join(lib, 'tls-client.js')],
      { env: childEnv, cwd: path.join(__dirname, '..'), timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) return reject(new Error(`tls-client failed: ${err.message}\n${stderr}`));
        resolve(JSON.parse(stdout.trim().split('\n').pop()));
      },
    );
  });
}

test('the CA is served without credentials and written to --tls-ca-out', async () => {
  const res = await fetch(`${env.base}/emulator/v1/ca.pem`);
  assert.equal(res.status, 200);
  const pem = await res.text();
  assert.match(pem, /^-----BEGIN CERTIFICATE-----/);
  assert.equal(fs.readFileSync(caFile, 'utf8'), pem);
});

test('the unchanged SDK verifies a number over TLS as verify.twilio.com, paging included', async () => {
  const out = await runSdk(caFile);
  assert.equal(out.error, undefined, JSON.stringify(out));
  assert.equal(out.baseUrl, 'https://verify.twilio.com');
  assert.match(out.serviceUrl, /^https:\/\/verify\.twilio\.com\/v2\/Services\/VA[0-9a-f]{32}$/);
  assert.equal(out.verification.status, 'pending');
  assert.match(out.verification.url, /^https:\/\/verify\.twilio\.com\/v2\/Services\//);
  assert.deepEqual(out.check, { status: 'approved', valid: true });
  assert.match(out.nextPageUrl, /^https:\/\/verify\.twilio\.com\/v2\/Services\?/);
  assert.equal(out.listed, 3);
  assert.ok(out.connections.length > 0 && out.connections.every((h) => h === 'verify.twilio.com'), out.connections);
});

test('a wrong CA is refused: the system bundle, none, or another verilimit CA', async () => {
  // A server with a database of its own has a CA of its own.
  const other = await startServer({ args: ['--tls', '--tls-listen', '127.0.0.1:0'], ownDatabase: true });
  const otherCa = path.join(other.dir, 'other-ca.pem');
  try {
    fs.writeFileSync(otherCa, await (await fetch(`${other.base}/emulator/v1/ca.pem`)).text());
    for (const bundle of ['/etc/ssl/certs/ca-certificates.crt', null, otherCa]) {
      if (bundle !== null && !fs.existsSync(bundle)) continue;
      const out = await runSdk(bundle);
      assert.ok(out.error, `${bundle}: the SDK was answered: ${JSON.stringify(out)}`);
      assert.match(
        String(out.error.code),
        /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED_CERT_IN_CHAIN|CERT_SIGNATURE_FAILURE/,
        `${bundle}: ${JSON.stringify(out.error)}`,
      );
      assert.equal(out.serviceUrl, undefined);
    }
  } finally {
    await other.stop();
  }
});

test('plain HTTP keeps working beside TLS', async () => {
  const svc = await env.a.verify.v2.services.create({ friendlyName: 'plain' });
  assert.equal(svc.url, `${env.base}/v2/Services/${svc.sid}`);
});
