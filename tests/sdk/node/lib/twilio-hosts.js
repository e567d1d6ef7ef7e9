'use strict';
// Preloaded (`node --require`) into a child process that runs the unchanged SDK: connections to
// any `*.twilio.com:443` go to VERILIMIT_TWILIO_ADDR (verilimit's HTTPS listener, 127.0.0.1:PORT)
// instead. The name stays the Twilio one for SNI and the certificate check, and the URL and Host
// header are the SDK's own: this stands in for DNS (a compose network alias) inside this process
// only. Anything else over TLS is refused, so the real Twilio is never reached.

const tls = require('node:tls');

const target = process.env.VERILIMIT_TWILIO_ADDR;
if (!/^127\.0\.0\.1:\d+$/.test(target || '')) {
  throw new Error(`VERILIMIT_TWILIO_ADDR=${target} is not 127.0.0.1:PORT`);
}
const [host, port] = target.split(':');
const connected = [];

const original = tls.connect;
tls.connect = function connect(...args) {
  const opts = args[0];
  const name = opts && typeof opts === 'object' ? opts.servername || opts.host : undefined;
  if (typeof name === 'string' && name.endsWith('.twilio.com') && Number(opts.port) === 443) {
    connected.push(name);
    return original.call(this, { ...opts, host, port: Number(port), servername: name }, ...args.slice(1));
  }
  throw new Error(`test: refusing a TLS connection to ${name}:${opts && opts.port}`);
};

/** The Twilio names this process connected to. */
globalThis.verilimitTwilioConnections = connected;
