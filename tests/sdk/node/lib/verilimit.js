'use strict';
// Starts a real verilimit process for one test file and builds official twilio-node clients
// pointed at it. Each test file gets its own server and SQLite file, so files can run in parallel.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const assert = require('node:assert/strict');

// The SDK must never be steered towards Twilio's real hosts (127.0.0.1 would become 127.us1.0.1).
delete process.env.TWILIO_REGION;
delete process.env.TWILIO_EDGE;

const twilio = require('twilio');

const STARTUP_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;
const STDERR_KEEP_CHARS = 64 * 1024;
const LISTENING = /^verilimit listening on (http:\/\/127\.0\.0\.1:\d+)\s*$/;
// With --tls, a second line names the HTTPS listener.
const TLS_LISTENING = /^verilimit listening on https:\/\/(127\.0\.0\.1:\d+)\s*$/;

// Account A is the main account (TWILIO_ACCOUNT_SID/TWILIO_AUTH_TOKEN), B comes from
// VERILIMIT_ACCOUNTS, and the API key belongs to A (VERILIMIT_API_KEYS).
const ACCOUNT_A = Object.freeze({
  sid: 'AC' + '1a'.repeat(16),
  token: '0123456789abcdef0123456789abcdef',
});
const ACCOUNT_B = Object.freeze({
  sid: 'AC' + '2b'.repeat(16),
  token: 'fedcba9876543210fedcba9876543210',
});
const API_KEY_A = Object.freeze({
  sid: 'SK' + '3c'.repeat(16),
  secret: 'apikeysecret0123456789abcdefABCD',
});

function serverBinary() {
  const bin = process.env.VERILIMIT_BIN;
  if (!bin) {
    throw new Error('VERILIMIT_BIN is not set (path to the verilimit server binary)');
  }
  const abs = path.resolve(bin);
  try {
    fs.accessSync(abs, fs.constants.X_OK);
  } catch {
    throw new Error(`VERILIMIT_BIN=${bin} is not an executable file`);
  }
  return abs;
}

// The server's environment: ours, minus anything that could override the flags we pass.
function serverEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('TWILIO_')) continue;
    if (k.startsWith('VERILIMIT_') && k !== 'VERILIMIT_LOG') continue;
    env[k] = v;
  }
  return {
    ...env,
    TWILIO_ACCOUNT_SID: ACCOUNT_A.sid,
    TWILIO_AUTH_TOKEN: ACCOUNT_A.token,
    VERILIMIT_ACCOUNTS: `${ACCOUNT_B.sid}:${ACCOUNT_B.token}`,
    VERILIMIT_API_KEYS: `${API_KEY_A.sid}:${API_KEY_A.secret}:${ACCOUNT_A.sid}`,
    ...extra,
  };
}

/**
 * Starts `VERILIMIT_BIN --listen 127.0.0.1:0 --database-url sqlite://<tmp>/db.sqlite` and resolves
 * once it printed its start-up line (both, with `--tls`). Resolves to
 * { base, tlsAddr, dir, stop(), stderr() }.
 */
async function startServer({ args = [], env = {}, ownDatabase = false } = {}) {
  const bin = serverBinary();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'verilimit-node-sdk-'));
  // With VERILIMIT_SDK_DATABASE_URL (a PostgreSQL database for this run), every server shares it,
  // one test file at a time (run.sh), and `setup` empties both accounts first.
  // `ownDatabase`: always a SQLite file of its own.
  const shared = ownDatabase ? undefined : process.env.VERILIMIT_SDK_DATABASE_URL;
  const dbUrl = shared || `sqlite://${path.join(dir, 'db.sqlite')}`;
  const child = spawn(bin, ['--listen', '127.0.0.1:0', '--database-url', dbUrl, ...args], {
    env: serverEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });

  // Keep draining both pipes for the server's whole life (a full pipe would block its logging);
  // keep the tail of stderr for error messages.
  let stderrTail = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => {
    stderrTail = (stderrTail + chunk).slice(-STDERR_KEEP_CHARS);
  });
  const stdoutLines = [];
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  // Safety net: never leave a server behind if the test process ends without calling stop().
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const started = await new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err, value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        child.kill('SIGKILL');
        process.removeListener('exit', killOnExit);
        fs.rmSync(dir, { recursive: true, force: true });
        reject(err);
      } else {
        resolve(value);
      }
    };
    const describe = (what) =>
      `${what}\ncommand: ${bin} --listen 127.0.0.1:0 --database-url ${dbUrl}` +
      `\nstdout:\n${stdoutLines.join('\n')}\nstderr:\n${stderrTail}`;
    const timer = setTimeout(
      () => finish(new Error(describe(`verilimit did not print its start-up line within ${STARTUP_TIMEOUT_MS} ms`))),
      STARTUP_TIMEOUT_MS,
    );
    child.once('error', (err) => finish(new Error(describe(`could not start verilimit: ${err.message}`))));
    exited.then(({ code, signal }) =>
      finish(new Error(describe(`verilimit exited (code ${code}, signal ${signal}) before listening`))),
    );
    const rl = readline.createInterface({ input: child.stdout });
    let http = null;
    let https = null;
    rl.on('line', (line) => {
      if (stdoutLines.length < 200) stdoutLines.push(line);
      const m = LISTENING.exec(line);
      if (m) http = m[1];
      const t = TLS_LISTENING.exec(line);
      if (t) https = t[1];
      if (http && (https || !args.includes('--tls'))) finish(null, { http, https });
    });
  });
  const { http: base, https: tlsAddr } = started;

  let stopped = null;
  async function stop() {
    if (!stopped) {
      stopped = (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
          await exited;
          clearTimeout(timer);
        }
        process.removeListener('exit', killOnExit);
        fs.rmSync(dir, { recursive: true, force: true });
      })();
    }
    return stopped;
  }

  // tlsAddr: with --tls, the HTTPS listener's `127.0.0.1:PORT`; dir: the server's own directory.
  return { base, tlsAddr, dir, stop, stderr: () => stderrTail, pid: child.pid };
}

/** An official twilio-node client pointed at verilimit (no autoRetry: it would retry 429s). */
function clientFor(base, username, password, opts = {}) {
  const client = twilio(username, password, opts);
  client.verify.baseUrl = base;
  return client;
}

/** Starts a server and builds the three clients every test file uses. */
async function setup(opts) {
  const server = await startServer(opts);
  const { base } = server;
  if (process.env.VERILIMIT_SDK_DATABASE_URL) {
    for (const account of [ACCOUNT_A, ACCOUNT_B]) {
      await new ControlPlane(base, account.sid, account.token).request('POST', '/emulator/v1/Reset', {
        Scope: 'all',
      });
    }
  }
  return {
    server,
    base,
    a: clientFor(base, ACCOUNT_A.sid, ACCOUNT_A.token),
    b: clientFor(base, ACCOUNT_B.sid, ACCOUNT_B.token),
    apiKey: clientFor(base, API_KEY_A.sid, API_KEY_A.secret, { accountSid: ACCOUNT_A.sid }),
    clientFor: (u, p, o) => clientFor(base, u, p, o),
    controlPlane: (account = ACCOUNT_A) => new ControlPlane(base, account.sid, account.token),
  };
}

function basicAuth(user, pass) {
  return 'Basic ' + Buffer.from(`${user}:${pass}`).toString('base64');
}

/** Raw HTTP with global fetch, for what the SDK cannot send or does not expose (headers). */
async function rawRequest(base, method, pathAndQuery, { user, pass, form } = {}) {
  const headers = { Accept: 'application/json' };
  if (user !== undefined) headers.Authorization = basicAuth(user, pass);
  let body;
  if (form !== undefined) {
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  const res = await fetch(base + pathAndQuery, { method, headers, body });
  const text = await res.text();
  let json = null;
  try {
    json = text === '' ? null : JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** The /emulator/v1 test control plane, as one account. */
class ControlPlane {
  constructor(base, sid, token) {
    this.base = base;
    this.sid = sid;
    this.token = token;
  }

  async request(method, p, form) {
    const res = await rawRequest(this.base, method, p, { user: this.sid, pass: this.token, form });
    if (res.status >= 300) {
      throw new Error(`${method} ${p} answered ${res.status}: ${res.text}`);
    }
    return res;
  }

  async outbox(filters = {}) {
    const q = new URLSearchParams(filters).toString();
    const res = await this.request('GET', '/emulator/v1/Outbox' + (q ? `?${q}` : ''));
    assert.ok(res.json && Array.isArray(res.json.messages), `Outbox body: ${res.text}`);
    return res.json.messages;
  }

  /** The code last "sent" for a verification. */
  async codeFor(verificationSid, to) {
    const messages = await this.outbox({ To: to, VerificationSid: verificationSid });
    assert.ok(messages.length > 0, `no Outbox message for ${to} / ${verificationSid}`);
    const last = messages[messages.length - 1];
    assert.equal(last.to, to);
    assert.equal(last.verification_sid, verificationSid);
    assert.match(String(last.code), /^[0-9A-Za-z]{4,10}$/);
    return String(last.code);
  }

  async advanceClock(seconds) {
    const res = await this.request('POST', '/emulator/v1/Clock', { AdvanceSeconds: String(seconds) });
    return res.json;
  }

  async clock() {
    return (await this.request('GET', '/emulator/v1/Clock')).json;
  }
}

/**
 * Asserts that `promise` rejects with the SDK's RestException carrying Twilio's error body:
 * HTTP `status`, Twilio `code`, and more_info pointing at the code's page.
 */
async function expectRestError(promise, status, code) {
  let err;
  try {
    const value = await promise;
    assert.fail(`expected RestException ${status}/${code}, but the call resolved with ${safeJson(value)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  assert.ok(
    err instanceof twilio.RestException,
    `expected a RestException ${status}/${code}, got ${err && err.constructor && err.constructor.name}: ${err && err.message}`,
  );
  assert.deepEqual(
    { status: err.status, code: err.code },
    { status, code },
    `RestException status/code (message: ${JSON.stringify(err.message)})`,
  );
  assert.equal(err.moreInfo, `https://www.twilio.com/docs/errors/${code}`);
  assert.equal(typeof err.message, 'string');
  assert.ok(err.message.length > 0, 'error message is empty');
  return err;
}

function safeJson(v) {
  try {
    return JSON.stringify(typeof v?.toJSON === 'function' ? v.toJSON() : v);
  } catch {
    return String(v);
  }
}

const SID = (prefix) => new RegExp(`^${prefix}[0-9a-f]{32}$`);

/** A fresh E.164 number per call, so the 5-sends-per-To rule (60203) never interferes. */
let phoneCounter = 0;
function uniquePhone() {
  phoneCounter += 1;
  const n = (process.pid % 1000) * 10000 + phoneCounter;
  return '+1555' + String(n).padStart(7, '0');
}

module.exports = {
  ACCOUNT_A,
  ACCOUNT_B,
  API_KEY_A,
  SID,
  startServer,
  setup,
  clientFor,
  rawRequest,
  ControlPlane,
  expectRestError,
  uniquePhone,
  twilio,
};
