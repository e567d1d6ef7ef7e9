'use strict';
// verilimit for tests: starts a verilimit server (the binary, or the Docker image), or reuses a
// running one, and offers its test control plane plus an official twilio client pointed at it.
// Works with node:test, Jest, Vitest or anything else: start it in a before-all hook, reset() it
// before each test, stop() it in an after-all hook.

const { spawn, execFile } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

/** The development account that a bare `verilimit` serves on loopback. */
const DEV_ACCOUNT_SID = 'AC00000000000000000000000000000000';
const DEV_AUTH_TOKEN = 'verilimit-dev-token';
/** The image the README's "Run with Docker" builds. */
const DEFAULT_IMAGE = 'verilimit:local';

const LISTENING = /^verilimit listening on http:\/\/(\S+):(\d+)\s*$/;
const CONTAINER_PORT = 8765; // the image listens on 0.0.0.0:8765 (VERILIMIT_LISTEN)
const STOP_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;
const KEEP_LOG_CHARS = 64 * 1024;

class VerilimitError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'VerilimitError';
  }
}

/** A control-plane or health request that did not answer as expected. */
class ControlPlaneError extends VerilimitError {
  constructor(method, p, status, body) {
    super(`${method} ${p} answered ${status}: ${String(body).slice(0, 2000)}`);
    this.name = 'ControlPlaneError';
    this.method = method;
    this.path = p;
    this.status = status;
    this.body = body;
  }
}

function isExecutable(file) {
  try {
    if (!fs.statSync(file).isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The verilimit executable: `bin`, else $VERILIMIT_BIN, else `verilimit` on PATH (for example
 * from the Python wheel installed in an activated virtual environment).
 */
function findBinary(bin) {
  const given = bin || process.env.VERILIMIT_BIN;
  if (given) {
    const abs = path.resolve(given);
    if (!isExecutable(abs)) {
      const where = bin ? 'the bin option' : 'VERILIMIT_BIN';
      throw new VerilimitError(`${where} names ${given}, which is not an executable file`);
    }
    return abs;
  }
  const exe = process.platform === 'win32' ? 'verilimit.exe' : 'verilimit';
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, exe);
    if (isExecutable(candidate)) return path.resolve(candidate);
  }
  throw new VerilimitError(
    'no verilimit binary found: put verilimit on PATH (e.g. `pip install` the verilimit wheel ' +
      'into an activated virtual environment), set VERILIMIT_BIN, pass { bin }, ' +
      'or use { docker: true } / { url }',
  );
}

function run(command, args, timeoutMs) {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs }, (error, stdout, stderr) => {
      resolve({ error, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

class Verilimit {
  /**
   * Options (all optional):
   * - url: use the verilimit server already running there (never stopped here);
   * - bin: the binary to start (default: findBinary());
   * - docker: true to `docker run --rm` the image instead; image (default 'verilimit:local');
   *   dockerCommand (default $VERILIMIT_DOCKER or 'docker', e.g. 'podman');
   * - accountSid, authToken: the account the helpers and the client use, and that a server
   *   started here serves (default: the development account);
   * - args: extra server arguments (e.g. ['--code-ttl', '300']); env: extra server environment;
   * - startupTimeoutMs: default 30 s (120 s with docker, which may pull the image);
   * - twilio: the twilio module to build `client` with (default: require('twilio')).
   */
  constructor(opts = {}) {
    const {
      url,
      bin,
      docker = false,
      image = DEFAULT_IMAGE,
      dockerCommand,
      accountSid = DEV_ACCOUNT_SID,
      authToken = DEV_AUTH_TOKEN,
      args = [],
      env = {},
      startupTimeoutMs,
      twilio,
    } = opts;
    if (url && (docker || bin)) {
      throw new TypeError('url reuses a running server; it cannot be combined with bin or docker');
    }
    if (docker && bin) throw new TypeError('docker runs the image; it cannot be combined with bin');
    this._reuseUrl = url ? String(url).replace(/\/+$/, '') : null;
    this._bin = bin;
    this._docker = Boolean(docker);
    this._image = image;
    this._dockerCommand = dockerCommand || process.env.VERILIMIT_DOCKER || 'docker';
    this.accountSid = accountSid;
    this.authToken = authToken;
    this._args = [...args];
    this._env = { ...env };
    this._startupTimeoutMs = startupTimeoutMs ?? (this._docker ? 120_000 : 30_000);
    this._twilio = twilio;
    this._url = null;
    this._child = null;
    this._exited = null;
    this._container = null;
    this._tmpdir = null;
    this._log = '';
    this._client = null;
    this._killOnExit = null;
    this._authHeader = 'Basic ' + Buffer.from(`${accountSid}:${authToken}`).toString('base64');
  }

  /** Starts a server (or checks the one at `url`); resolves to it. */
  static async start(opts) {
    return new Verilimit(opts).start();
  }

  /** The base URL, e.g. http://127.0.0.1:41235 (no trailing slash). */
  get url() {
    if (!this._url) throw new VerilimitError('the server is not started (await start() first)');
    return this._url;
  }

  /** 'binary', 'docker' or 'url'. */
  get mode() {
    return this._reuseUrl ? 'url' : this._docker ? 'docker' : 'binary';
  }

  /** Starts (or, with `url`, checks) the server; resolves to `this`. Idempotent. */
  async start() {
    if (this._url) return this;
    try {
      if (this._reuseUrl) {
        this._url = this._reuseUrl;
        await this._waitHealthy();
      } else {
        this._tmpdir = fs.mkdtempSync(path.join(os.tmpdir(), 'verilimit-'));
        if (this._docker) await this._startDocker();
        else await this._startBinary();
      }
      // Fail early, with a clear message, when the credentials are not the server's.
      try {
        await this.clock();
      } catch (err) {
        throw new VerilimitError(
          `verilimit at ${this._url} refused the control plane to ${this.accountSid}: ${err.message} ` +
            '(wrong account SID/auth token, or started with --control-plane false?)',
          { cause: err },
        );
      }
    } catch (err) {
      await this.stop();
      this._url = null;
      throw err;
    }
    return this;
  }

  /**
   * Stops a server started here (SIGTERM, then SIGKILL after 10 s) and removes its temporary
   * files. A reused server (`url`) keeps running. Idempotent.
   */
  async stop() {
    const child = this._child;
    const exited = this._exited;
    const container = this._container;
    this._child = null;
    this._container = null;
    if (container) await run(this._dockerCommand, ['stop', '--time', '5', container], 30_000);
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited;
      clearTimeout(timer);
    }
    // Normally gone already (`docker run --rm`); this covers a killed `docker run`.
    if (container) await run(this._dockerCommand, ['rm', '--force', container], 30_000);
    if (this._killOnExit) {
      process.removeListener('exit', this._killOnExit);
      this._killOnExit = null;
    }
    if (this._tmpdir) {
      fs.rmSync(this._tmpdir, { recursive: true, force: true });
      this._tmpdir = null;
    }
    if (!this._reuseUrl) this._url = null;
    this._client = null;
  }

  /** The tail of the server's log output (stderr; empty for a reused server). */
  logs() {
    return this._log;
  }

  _serverEnv() {
    // Only what is set here reaches the server: a TWILIO_* or VERILIMIT_* variable of the
    // caller's environment must not change what the tests get (VERILIMIT_LOG excepted).
    const env = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (k.startsWith('TWILIO_')) continue;
      if (k.startsWith('VERILIMIT_') && k !== 'VERILIMIT_LOG') continue;
      env[k] = v;
    }
    return {
      ...env,
      TWILIO_ACCOUNT_SID: this.accountSid,
      TWILIO_AUTH_TOKEN: this.authToken,
      ...this._env,
    };
  }

  async _startBinary() {
    const bin = findBinary(this._bin);
    const db = `sqlite://${path.join(this._tmpdir, 'verilimit.db')}`;
    const { host, port } = await this._spawn(
      bin,
      ['--listen', '127.0.0.1:0', '--database-url', db, ...this._args],
      this._serverEnv(),
      bin,
    );
    this._url = `http://${host}:${port}`;
  }

  async _startDocker() {
    const name = `verilimit-test-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    const args = ['run', '--rm', '--name', name, '-p', `127.0.0.1::${CONTAINER_PORT}`];
    // Values travel in docker's environment, not on its command line.
    for (const key of ['TWILIO_ACCOUNT_SID', 'TWILIO_AUTH_TOKEN', ...Object.keys(this._env)]) {
      args.push('-e', key);
    }
    args.push(this._image, ...this._args);
    this._container = name;
    await this._spawn(this._dockerCommand, args, this._serverEnv(), `${this._dockerCommand} run … ${this._image}`);
    const out = await run(this._dockerCommand, ['port', name, `${CONTAINER_PORT}/tcp`], 30_000);
    const m = /:(\d+)\s*$/m.exec(out.stdout);
    if (!m) {
      throw new VerilimitError(
        `\`${this._dockerCommand} port ${name} ${CONTAINER_PORT}/tcp\` printed no port: ` +
          `${JSON.stringify(out.stdout)} ${JSON.stringify(out.stderr)} ${out.error ? out.error.message : ''}`,
      );
    }
    this._url = `http://127.0.0.1:${m[1]}`;
  }

  /** Spawns the server and resolves once it printed its start-up line (never a sleep). */
  _spawn(command, args, env, what) {
    const child = spawn(command, args, { env, cwd: this._tmpdir, stdio: ['ignore', 'pipe', 'pipe'] });
    this._child = child;
    this._exited = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
    // Safety net: never leave a server (or its files) behind when the process ends without stop().
    const tmpdir = this._tmpdir;
    this._killOnExit = () => {
      child.kill('SIGKILL');
      if (tmpdir) fs.rmSync(tmpdir, { recursive: true, force: true });
    };
    process.once('exit', this._killOnExit);
    // Keep draining both pipes for the server's whole life; keep the tail of stderr.
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      this._log = (this._log + chunk).slice(-KEEP_LOG_CHARS);
    });
    const seen = [];
    return new Promise((resolve, reject) => {
      let settled = false;
      const describe = (why) =>
        `${what}: ${why}\nstdout: ${JSON.stringify(seen)}\nlog:\n${this._log.slice(-4000)}`;
      const finish = (err, value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          reject(new VerilimitError(err));
          return;
        }
        // A started server does not keep the test process alive by itself: stop() it in an
        // after-all hook; if that never happens, the 'exit' handler above kills it.
        child.unref();
        child.stdout.unref?.();
        child.stderr.unref?.();
        resolve(value);
      };
      const timer = setTimeout(
        () => finish(describe(`no start-up line within ${this._startupTimeoutMs} ms`)),
        this._startupTimeoutMs,
      );
      child.once('error', (err) => finish(describe(`could not run ${command}: ${err.message}`)));
      this._exited.then(({ code, signal }) =>
        finish(describe(`exited (code ${code}, signal ${signal}) before listening`)),
      );
      readline.createInterface({ input: child.stdout }).on('line', (line) => {
        if (seen.length < 100) seen.push(line);
        const m = LISTENING.exec(line);
        if (m) finish(null, { host: m[1], port: Number(m[2]) });
      });
    });
  }

  async _waitHealthy() {
    const deadline = Date.now() + this._startupTimeoutMs;
    for (;;) {
      let problem;
      try {
        const res = await this._request('GET', '/healthz', { auth: false });
        if (res.status === 200) return;
        problem = `answered ${res.status}: ${res.text.slice(0, 200)}`;
      } catch (err) {
        problem = err.cause?.message || err.message;
      }
      if (Date.now() >= deadline) {
        throw new VerilimitError(`no verilimit at ${this._reuseUrl}: GET /healthz ${problem}`);
      }
      // Polling a server started elsewhere; bounded by the deadline.
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async _request(method, p, { query, form, auth = true } = {}) {
    let url = this.url + p;
    if (query && Object.keys(query).length) url += (url.includes('?') ? '&' : '?') + new URLSearchParams(query);
    const headers = { Accept: 'application/json' };
    if (auth) headers.Authorization = this._authHeader;
    let body;
    if (form !== undefined) {
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
      body = new URLSearchParams(form).toString();
    }
    const res = await fetch(url, { method, headers, body, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    return { status: res.status, text: await res.text() };
  }

  async _control(method, p, expect, opts) {
    const res = await this._request(method, p, opts);
    if (res.status !== expect) throw new ControlPlaneError(method, p, res.status, res.text);
    return res.text ? JSON.parse(res.text) : null;
  }

  /**
   * An official twilio client for this account whose Verify domain points here (other Twilio
   * domains are untouched: only Verify is emulated). No autoRetry: it would retry the 429s.
   */
  get client() {
    if (!this._client) {
      let twilio = this._twilio;
      if (!twilio) {
        try {
          twilio = require('twilio');
        } catch (err) {
          throw new VerilimitError('Verilimit.client needs the official SDK: npm install twilio', { cause: err });
        }
      }
      const client = twilio(this.accountSid, this.authToken);
      // TWILIO_REGION / TWILIO_EDGE would rewrite the host name (127.0.0.1 -> 127.us1.0.1).
      client.region = undefined;
      client.edge = undefined;
      client.verify.baseUrl = this.url;
      this._client = client;
    }
    return this._client;
  }

  /**
   * POST /emulator/v1/Reset: forgets this account's services, rate limits, buckets,
   * verifications, outbox and counters and puts its clock back to real time
   * (scope 'counters' clears only the rate-limit counters).
   */
  async reset(scope = 'all') {
    await this._control('POST', '/emulator/v1/Reset', 204, { form: { Scope: scope } });
  }

  /**
   * The codes "sent" (GET /emulator/v1/Outbox, every page), oldest first: objects with sid, to,
   * channel, code, verification_sid, service_sid, account_sid, date_created.
   * outbox(), outbox('+15005550006') or outbox({ to, serviceSid, verificationSid }).
   */
  async outbox(filter = {}) {
    const { to, serviceSid, verificationSid } = typeof filter === 'string' ? { to: filter } : filter || {};
    const query = { PageSize: '1000' };
    if (to !== undefined) query.To = to;
    if (serviceSid !== undefined) query.ServiceSid = serviceSid;
    if (verificationSid !== undefined) query.VerificationSid = verificationSid;
    const messages = [];
    let page = await this._control('GET', '/emulator/v1/Outbox', 200, { query });
    for (;;) {
      messages.push(...page.messages);
      const next = page.meta && page.meta.next_page_url;
      if (!next) return messages;
      // Follow the link's path and query on our own base URL.
      const u = new URL(next);
      page = await this._control('GET', u.pathname + u.search, 200);
    }
  }

  /** The code most recently "sent" to `to`; throws when none was. */
  async latestCode(to) {
    const messages = await this.outbox({ to });
    if (messages.length === 0) throw new VerilimitError(`verilimit sent no code to ${to}`);
    return messages[messages.length - 1].code;
  }

  /** GET /emulator/v1/Clock: { now, now_ms, offset_ms }. */
  async clock() {
    return this._control('GET', '/emulator/v1/Clock', 200);
  }

  /**
   * POST /emulator/v1/Clock AdvanceSeconds=seconds: moves this account's clock forward (code
   * expiry, rate-limit windows, Retry-After all follow it); resolves to the new clock.
   */
  async advanceClock(seconds) {
    if (!Number.isInteger(seconds) || seconds < 0) {
      throw new TypeError(`seconds must be a whole number >= 0, not ${seconds}`);
    }
    return this._control('POST', '/emulator/v1/Clock', 200, { form: { AdvanceSeconds: String(seconds) } });
  }

  /**
   * GET /emulator/v1/Services/{sid}/Usage: one object per bucket and value in use, with
   * rate_limit_sid, unique_name, bucket_sid, max, interval, value, count, remaining,
   * next_slot_at, retry_after. `rateLimit` (SID or unique name) and `value` narrow it down.
   */
  async usage(serviceSid, { rateLimit, value } = {}) {
    const query = {};
    if (rateLimit !== undefined) query.RateLimit = rateLimit;
    if (value !== undefined) query.Value = value;
    const body = await this._control('GET', `/emulator/v1/Services/${encodeURIComponent(serviceSid)}/Usage`, 200, {
      query,
    });
    return body.usage;
  }
}

// `await using vl = await Verilimit.start()` where the runtime supports explicit resource management.
if (typeof Symbol.asyncDispose === 'symbol') {
  Verilimit.prototype[Symbol.asyncDispose] = function asyncDispose() {
    return this.stop();
  };
}

module.exports = {
  Verilimit,
  start: (opts) => Verilimit.start(opts),
  findBinary,
  VerilimitError,
  ControlPlaneError,
  DEV_ACCOUNT_SID,
  DEV_AUTH_TOKEN,
  DEFAULT_IMAGE,
};
