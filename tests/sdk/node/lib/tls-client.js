'use strict';
// Run by test/tls.test.js as a child process, preloaded with twilio-hosts.js, with the CA given
// the way an application gets it: NODE_EXTRA_CA_CERTS (read by Node at start-up only). Uses the
// official SDK exactly as an application does, with no base URL, and prints one JSON line.
//   VERILIMIT_CONTROL=http://127.0.0.1:PORT TWILIO_ACCOUNT_SID=… TWILIO_AUTH_TOKEN=… \
//     node --require ./twilio-hosts.js tls-client.js

const twilio = require('twilio');

async function main() {
  const client = twilio(process.env.TWILIO_ACCOUNT_SID, process.env.TWILIO_AUTH_TOKEN);
  const out = { baseUrl: client.verify.baseUrl };
  try {
    const service = await client.verify.v2.services.create({ friendlyName: 'TLS', codeLength: 6 });
    out.serviceUrl = service.url;
    const to = '+1555' + String(process.pid % 10_000_000).padStart(7, '0');
    const verification = await client.verify.v2.services(service.sid).verifications.create({ to, channel: 'sms' });
    out.verification = { status: verification.status, url: verification.url };
    // The code, from the control plane over plain HTTP (beside TLS).
    const auth = 'Basic ' + Buffer.from(`${process.env.TWILIO_ACCOUNT_SID}:${process.env.TWILIO_AUTH_TOKEN}`).toString('base64');
    const outbox = await fetch(`${process.env.VERILIMIT_CONTROL}/emulator/v1/Outbox?To=${encodeURIComponent(to)}`, {
      headers: { Authorization: auth },
    }).then((r) => r.json());
    const code = outbox.messages[outbox.messages.length - 1].code;
    const check = await client.verify.v2.services(service.sid).verificationChecks.create({ to, code });
    out.check = { status: check.status, valid: check.valid };
    // Paging: two more services, listed one per page through next_page_url.
    await client.verify.v2.services.create({ friendlyName: 'TLS 2' });
    await client.verify.v2.services.create({ friendlyName: 'TLS 3' });
    const page = await client.verify.v2.services.page({ pageSize: 1 });
    out.nextPageUrl = page.nextPageUrl;
    out.listed = (await client.verify.v2.services.list({ pageSize: 1 })).length;
  } catch (err) {
    out.error = { message: err.message, code: err.code, cause: err.cause && err.cause.code };
  }
  out.connections = globalThis.verilimitTwilioConnections;
  process.stdout.write(JSON.stringify(out) + '\n');
}

main();
