// verilimit dashboard: plain JavaScript, no dependencies, no build step.
//
// Polls the server's public JSON about once a second (never two polls at once) and redraws:
//   GET /emulator/v1/Clock                         the account's clock (header)
//   GET /v2/Services                               the sidebar
//   GET /v2/Services/{sid}/RateLimits[/{rl}/Buckets] the selected service's configuration
//   GET /emulator/v1/Services/{sid}/Usage           live usage per value
//   GET /emulator/v1/Events?ServiceSid={sid}        the events table and the chart
//   GET /emulator/v1/Outbox?ServiceSid={sid}        the latest codes (the last page)
//   GET /v1/Sinks, GET /metrics                      Event Streams and Service Webhooks deliveries
// The browser adds the Basic credentials it prompted for to these same-origin requests.
// Every string from the server reaches the page through textContent or an attribute value,
// never as HTML.
'use strict';

(() => {
  const POLL_MS = 1000;
  const RETRY_MS = 3000;
  const EVENTS_FETCHED = 1000; // the server keeps at most 1,000 per account
  const EVENTS_SHOWN = 60;
  const OUTBOX_SHOWN = 30;
  // The greatest possible send-attempt SID: "the page before it" is the newest page.
  const AFTER_LAST_ATTEMPT = 'VL' + 'f'.repeat(32);
  const SERVICE_SID = /^VA[0-9a-fA-F]{32}$/;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const ADMITTED = new Set(['started', 'resent']);
  const ERRORS = {
    20429: 'rate limit',
    60202: 'max check attempts',
    60203: 'max send attempts',
  };
  // Chart windows: seconds shown → bin width in seconds.
  const BIN_SECONDS = { 60: 2, 300: 5, 900: 15 };
  // Where the time axis is labelled, in seconds before now.
  const TICKS = { 60: [60, 45, 30, 15, 0], 300: [300, 240, 180, 120, 60, 0], 900: [900, 600, 300, 0] };

  const state = {
    services: [],
    servicesKey: '',
    selected: null,
    clock: null, // { now, now_ms, offset_ms }
    events: [], // of the selected service, newest first
    windowS: 300,
    timer: null,
    inFlight: false,
    again: false,
  };

  // ---------------------------------------------------------------- DOM helpers

  const $ = (id) => document.getElementById(id);

  /** An element with a class, text and attributes; children are nodes or strings. */
  function el(tag, opts = {}, ...children) {
    const node = document.createElement(tag);
    if (opts.class) node.className = opts.class;
    if (opts.text !== undefined && opts.text !== null) node.textContent = String(opts.text);
    if (opts.title) node.title = String(opts.title);
    for (const [k, v] of Object.entries(opts.attrs || {})) node.setAttribute(k, String(v));
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  /** Replaces a table's rows and shows its "empty" note when there are none. */
  function fillTable(tableId, emptyId, rows) {
    const table = $(tableId);
    table.tBodies[0].replaceChildren(...rows);
    table.hidden = rows.length === 0;
    $(emptyId).hidden = rows.length !== 0;
  }

  const dash = () => el('span', { class: 'muted', text: '—' });

  // ---------------------------------------------------------------- formatting

  const pad = (n) => String(n).padStart(2, '0');

  /** "HH:MM:SS" (UTC, like every date the server answers). */
  function hms(ms) {
    const d = new Date(ms);
    return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  }

  function dateTime(ms) {
    const d = new Date(ms);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${hms(ms)}`;
  }

  /** 45 → "45 s", 90 → "1 min 30 s", 3600 → "1 h", 86400 → "1 day". */
  function duration(seconds) {
    let s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    const parts = [];
    const units = [
      [86400, 'day'],
      [3600, 'h'],
      [60, 'min'],
      [1, 's'],
    ];
    for (const [size, name] of units) {
      const n = Math.floor(s / size);
      if (n > 0) {
        parts.push(name === 'day' ? `${n} day${n === 1 ? '' : 's'}` : `${n} ${name}`);
        s -= n * size;
      }
      if (parts.length === 2) break;
    }
    return parts.join(' ');
  }

  /** Bucket interval: 60 → "minute", 300 → "5 min". */
  function per(interval) {
    const named = { 1: 'second', 60: 'minute', 3600: 'hour', 86400: 'day' };
    return named[interval] || duration(interval);
  }

  const parseDate = (s) => (typeof s === 'string' ? Date.parse(s) : NaN);
  const nowMs = () => (state.clock ? state.clock.now_ms : Date.now());

  function shortSid(sid) {
    return typeof sid === 'string' && sid.length > 12 ? `${sid.slice(0, 6)}…${sid.slice(-4)}` : String(sid ?? '');
  }

  // ---------------------------------------------------------------- HTTP

  class HttpError extends Error {
    constructor(status, body) {
      const detail = body && typeof body.message === 'string' ? `: ${body.message}` : '';
      super(`HTTP ${status}${detail}`);
      this.status = status;
    }
  }

  async function getJson(path) {
    // Absolute from the origin: a page opened as http://user:pass@host/ui has those credentials
    // in its base URL, and fetch refuses URLs that carry credentials.
    const res = await fetch(new URL(path, location.origin).href, {
      headers: { Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'same-origin',
    });
    if (!res.ok) {
      let body = null;
      try {
        body = await res.json();
      } catch {
        // not JSON: the status alone says enough
      }
      throw new HttpError(res.status, body);
    }
    return res.json();
  }

  /** The path and query of a URL the server built, so that it is fetched from this origin. */
  function localPath(url) {
    const u = new URL(url, location.href);
    return u.pathname + u.search;
  }

  /** Every item of a Twilio-style list, following meta.next_page_url (bounded). */
  async function listAll(path, key, maxPages = 20) {
    const items = [];
    let next = path;
    for (let i = 0; next && i < maxPages; i++) {
      const page = await getJson(next);
      items.push(...(Array.isArray(page[key]) ? page[key] : []));
      next = page.meta && page.meta.next_page_url ? localPath(page.meta.next_page_url) : null;
    }
    return items;
  }

  const enc = encodeURIComponent;

  // ---------------------------------------------------------------- status and clock

  function setStatus(kind, text) {
    const s = $('status');
    s.className = `status ${kind}`;
    $('status-text').textContent = text;
  }

  function renderClock() {
    const c = state.clock;
    if (!c) return;
    $('clock-now').textContent = `${dateTime(c.now_ms)} UTC`;
    const off = $('clock-offset');
    if (c.offset_ms) {
      off.hidden = false;
      off.textContent = `+${duration(c.offset_ms / 1000)} ahead`;
      off.title = `${c.offset_ms} ms ahead of real time (POST /emulator/v1/Reset puts it back)`;
    } else {
      off.hidden = true;
    }
  }

  // ---------------------------------------------------------------- services

  function renderServices() {
    const key = state.services.map((s) => `${s.sid}\u0000${s.friendly_name}`).join('\u0001');
    if (key !== state.servicesKey) {
      state.servicesKey = key;
      const items = state.services.map((s) =>
        el(
          'li',
          {},
          el(
            'button',
            { class: 'service', attrs: { type: 'button', 'data-sid': s.sid } },
            el('span', { class: 'service-name', text: s.friendly_name }),
            el('span', { class: 'service-sid', text: s.sid }),
          ),
        ),
      );
      $('services').replaceChildren(...items);
    }
    $('services-count').textContent = state.services.length ? String(state.services.length) : '';
    $('services-empty').hidden = state.services.length !== 0;
    for (const b of $('services').querySelectorAll('button.service')) {
      if (b.dataset.sid === state.selected) b.setAttribute('aria-current', 'true');
      else b.removeAttribute('aria-current');
    }
  }

  function selectedService() {
    return state.services.find((s) => s.sid === state.selected) || null;
  }

  function select(sid) {
    if (sid === state.selected) return;
    state.selected = sid;
    state.events = [];
    if (sid) history.replaceState(null, '', `#${sid}`);
    renderServices();
    renderServiceHead();
    for (const [t, e] of [
      ['rate-limits', 'rl-empty'],
      ['usage', 'usage-empty'],
      ['events', 'events-empty'],
      ['outbox', 'outbox-empty'],
    ]) {
      $(t).tBodies[0].replaceChildren();
      $(e).hidden = true;
    }
    renderChart();
    refreshNow();
  }

  function renderServiceHead() {
    const s = selectedService();
    $('no-service').hidden = !!s;
    $('no-service-text').textContent = state.services.length
      ? 'Select a service on the left.'
      : 'This account has no services yet.';
    $('service-view').hidden = !s;
    if (!s) return;
    $('service-name').textContent = s.friendly_name;
    $('service-sid').textContent = s.sid;
    const bits = [`${s.code_length}-digit codes`];
    if (s.custom_code_enabled) bits.push('custom codes');
    const created = parseDate(s.date_created);
    if (!Number.isNaN(created)) bits.push(`created ${dateTime(created)} UTC`);
    $('service-details').textContent = bits.join(' · ');
    const title = `${s.friendly_name} · verilimit`;
    if (document.title !== title) document.title = title;
  }

  // ---------------------------------------------------------------- rate limits

  function renderRateLimits(rateLimits) {
    $('rl-count').textContent = rateLimits.length ? String(rateLimits.length) : '';
    const rows = rateLimits.map(({ rl, buckets }) => {
      const chips = buckets
        .slice()
        .sort((a, b) => a.interval - b.interval || a.max - b.max)
        .map((b) =>
          el('span', {
            class: 'chip',
            text: `${b.max} per ${per(b.interval)}`,
            title: `${b.sid}: Max ${b.max}, Interval ${b.interval} s`,
            attrs: { 'data-sid': b.sid },
          }),
        );
      return el(
        'tr',
        { attrs: { 'data-sid': rl.sid } },
        el('td', {}, el('code', { class: 'name', text: rl.unique_name, title: rl.sid })),
        el('td', rl.description ? { class: 'wrap', text: rl.description } : {}, rl.description ? null : dash()),
        el('td', { class: 'chips' }, ...(chips.length ? chips : [el('span', { class: 'muted', text: 'no buckets: not enforced' })])),
      );
    });
    fillTable('rate-limits', 'rl-empty', rows);
  }

  // ---------------------------------------------------------------- usage

  function fillBar(count, max) {
    const w = 96;
    const h = 8;
    const ratio = max > 0 ? Math.min(1, count / max) : 1;
    const full = ratio >= 1;
    return el(
      'span',
      { class: 'bar', title: `${count} of ${max}` },
      (() => {
        const s = svg('svg', { width: w, height: h, viewBox: `0 0 ${w} ${h}`, 'aria-hidden': 'true' });
        s.append(svg('rect', { class: 'bar-bg', x: 0, y: 0, width: w, height: h, rx: 4 }));
        if (ratio > 0) {
          s.append(svg('rect', { class: full ? 'bar-full' : 'bar-fill', x: 0, y: 0, width: Math.max(h, Math.round(w * ratio)), height: h, rx: 4 }));
        }
        return s;
      })(),
    );
  }

  function renderUsage(usage) {
    const now = nowMs();
    const rows = usage
      .slice()
      .sort(
        (a, b) =>
          String(a.unique_name).localeCompare(String(b.unique_name)) ||
          String(a.value).localeCompare(String(b.value)) ||
          a.interval - b.interval,
      )
      .map((u) => {
        const blocked = u.remaining <= 0;
        const at = parseDate(u.next_slot_at);
        let next;
        if (blocked) {
          next = el('span', { class: 'blocked', text: `blocked · retry in ${duration(u.retry_after)}`, title: u.next_slot_at || '' });
        } else if (!Number.isNaN(at)) {
          next = el('span', { class: 'muted', text: `a slot frees in ${duration((at - now) / 1000)}`, title: `${dateTime(at)} UTC` });
        } else {
          next = dash();
        }
        return el(
          'tr',
          { class: blocked ? 'is-blocked' : '', attrs: { 'data-value': u.value, 'data-rate-limit': u.unique_name } },
          el('td', {}, el('code', { class: 'name', text: u.unique_name })),
          el('td', { class: 'value', text: u.value }),
          el('td', { text: `${u.max} per ${per(u.interval)}`, title: u.bucket_sid }),
          el('td', { class: 'num count', text: u.count }),
          el('td', { class: `num remaining${blocked ? ' zero' : ''}`, text: u.remaining }),
          el('td', {}, fillBar(u.count, u.max)),
          el('td', { class: 'next' }, next),
        );
      });
    fillTable('usage', 'usage-empty', rows);
  }

  // ---------------------------------------------------------------- events

  function renderEvents() {
    const rows = state.events.slice(0, EVENTS_SHOWN).map((e) => {
      const at = parseDate(e.date_created);
      const code = e.error_code;
      return el(
        'tr',
        { class: `ev-${e.type}` },
        el('td', { class: 'time', text: Number.isNaN(at) ? '' : hms(at), title: e.date_created }),
        el('td', {}, el('span', { class: `badge ${ADMITTED.has(e.type) ? 'ok' : e.type === 'refused' ? 'bad' : e.type === 'approved' ? 'good' : 'neutral'}`, text: e.type })),
        el('td', { class: 'to', text: e.to ?? '' }),
        el('td', {}, e.rate_limit ? el('code', { class: 'name', text: e.rate_limit }) : dash()),
        el(
          'td',
          { class: 'error' },
          code ? el('span', { class: 'code', text: code }) : dash(),
          code && ERRORS[code] ? el('span', { class: 'muted small', text: ` ${ERRORS[code]}` }) : null,
        ),
        el('td', {}, e.verification_sid ? el('code', { class: 'sid', text: shortSid(e.verification_sid), title: e.verification_sid }) : dash()),
      );
    });
    fillTable('events', 'events-empty', rows);
  }

  // ---------------------------------------------------------------- chart

  function renderChart() {
    const box = $('chart');
    const width = Math.floor(box.clientWidth);
    const height = 170;
    if (!width) return;
    const windowS = state.windowS;
    const binS = BIN_SECONDS[windowS];
    const n = Math.round(windowS / binS);
    const binMs = binS * 1000;
    // Bins end at the current second of the account's clock.
    const end = Math.floor(nowMs() / 1000) * 1000 + 1000;
    const start = end - n * binMs;
    const admitted = new Array(n).fill(0);
    const refused = new Array(n).fill(0);
    let totalA = 0;
    let totalR = 0;
    for (const e of state.events) {
      const isA = ADMITTED.has(e.type);
      if (!isA && e.type !== 'refused') continue;
      const t = parseDate(e.date_created);
      if (Number.isNaN(t) || t < start || t >= end) continue;
      const i = Math.floor((t - start) / binMs);
      if (isA) {
        admitted[i]++;
        totalA++;
      } else {
        refused[i]++;
        totalR++;
      }
    }
    $('total-admitted').textContent = String(totalA);
    $('total-refused').textContent = String(totalR);
    $('totals').title = `In the last ${duration(windowS)}`;
    $('totals-window').textContent = `last ${duration(windowS)}`;

    const peak = Math.max(1, ...admitted.map((a, i) => a + refused[i]));
    const step = niceStep(peak);
    const top = Math.ceil(peak / step) * step;
    const m = { l: 34, r: 8, t: 10, b: 22 };
    const pw = width - m.l - m.r;
    const ph = height - m.t - m.b;
    const y = (v) => m.t + ph - (v / top) * ph;
    const s = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, 'aria-hidden': 'true' });
    for (let v = 0; v <= top; v += step) {
      s.append(svg('line', { class: 'gridline', x1: m.l, x2: width - m.r, y1: y(v), y2: y(v) }));
      s.append(svg('text', { class: 'axis', x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end' }, v));
    }
    const slot = pw / n;
    const bw = Math.max(1, slot - Math.min(3, slot * 0.25));
    for (let i = 0; i < n; i++) {
      const x = m.l + i * slot + (slot - bw) / 2;
      const a = admitted[i];
      const r = refused[i];
      const when = `${hms(start + i * binMs)}–${hms(start + (i + 1) * binMs)}`;
      if (a) {
        const rect = svg('rect', { class: 'admitted', x, y: y(a), width: bw, height: y(0) - y(a) });
        rect.append(svg('title', {}, `${when}: ${a} admitted`));
        s.append(rect);
      }
      if (r) {
        const rect = svg('rect', { class: 'refused', x, y: y(a + r), width: bw, height: y(a) - y(a + r) });
        rect.append(svg('title', {}, `${when}: ${r} refused`));
        s.append(rect);
      }
    }
    s.append(svg('line', { class: 'baseline', x1: m.l, x2: width - m.r, y1: y(0), y2: y(0) }));
    for (const secondsAgo of TICKS[windowS]) {
      const x = m.l + ((windowS - secondsAgo) / windowS) * pw;
      const anchor = secondsAgo === windowS ? 'start' : secondsAgo === 0 ? 'end' : 'middle';
      s.append(svg('text', { class: 'axis', x, y: height - 6, 'text-anchor': anchor }, secondsAgo ? `−${duration(secondsAgo)}` : 'now'));
    }
    if (!totalA && !totalR) {
      s.append(svg('text', { class: 'nodata', x: m.l + pw / 2, y: m.t + ph / 2, 'text-anchor': 'middle' }, `no starts in the last ${duration(windowS)}`));
    }
    box.replaceChildren(s);
    box.setAttribute('aria-label', `${totalA} admitted and ${totalR} refused in the last ${duration(windowS)}`);
  }

  /** 1, 2 or 5 times a power of ten, so that the axis has at most 4 steps. */
  function niceStep(peak) {
    const raw = peak / 4;
    const p = 10 ** Math.floor(Math.log10(raw));
    for (const k of [1, 2, 5, 10]) if (k * p >= raw) return Math.max(1, k * p);
    return Math.max(1, 10 * p);
  }

  // ---------------------------------------------------------------- outbox

  function renderOutbox(messages) {
    const rows = messages
      .slice()
      .reverse()
      .slice(0, OUTBOX_SHOWN)
      .map((m) => {
        const at = parseDate(m.date_created);
        return el(
          'tr',
          {},
          el('td', { class: 'time', text: Number.isNaN(at) ? '' : hms(at), title: m.date_created }),
          el('td', { class: 'to', text: m.to }),
          el('td', { text: m.channel }),
          el('td', {}, el('code', { class: 'otp', text: m.code, title: m.verification_sid })),
        );
      });
    fillTable('outbox', 'outbox-empty', rows);
  }

  /** Entities shown with their factors (the first ones, by SID). */
  const ENTITIES_SHOWN = 25;

  /** Approves or denies a push challenge as the simulated device that verified its factor. */
  async function answerChallenge(device, challengeSid, status) {
    const url = new URL(`/emulator/v1/Devices/${enc(device)}/Challenges/${enc(challengeSid)}`, location.origin);
    const res = await fetch(url.href, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ Status: status }).toString(),
      cache: 'no-store',
      credentials: 'same-origin',
    });
    if (!res.ok) setStatus('error', `answering ${challengeSid}: HTTP ${res.status}`);
    refreshNow();
  }

  /** A pending challenge: its SID, and approve/deny buttons when a simulated device holds its factor. */
  function pendingChallenge(c, device) {
    const chip = el('code', { class: 'chip', text: shortSid(c.sid), title: c.sid });
    if (!device) return chip;
    const button = (status, label) => {
      const b = el('button', { class: `answer ${status}`, text: label, attrs: { type: 'button', 'data-status': status } });
      b.addEventListener('click', () => {
        b.disabled = true;
        answerChallenge(device, c.sid, status);
      });
      return b;
    };
    return el('span', { class: 'challenge', attrs: { 'data-challenge': c.sid } }, chip, button('approved', 'Approve'), button('denied', 'Deny'));
  }

  function renderFactors(entities, deviceOf) {
    const rows = [];
    for (const { entity, factors, challenges } of entities) {
      const pendingOf = (sid) => challenges.filter((c) => c.factor_sid === sid);
      const list = factors.length ? factors : [null];
      for (const f of list) {
        const pending = f ? pendingOf(f.sid) : [];
        rows.push(
          el(
            'tr',
            { attrs: { 'data-identity': entity.identity, ...(f ? { 'data-factor': f.sid } : {}) } },
            el('td', { class: 'identity', text: entity.identity }),
            f ? el('td', {}, el('code', { text: shortSid(f.sid), title: f.sid })) : el('td', {}, dash()),
            el('td', { class: 'type', text: f ? f.factor_type : '' }),
            el('td', { text: f ? f.friendly_name : '' }),
            el('td', { class: `status ${f ? f.status : ''}`, text: f ? f.status : '' }),
            el(
              'td',
              { class: 'pending' },
              ...(pending.length ? pending.map((c) => pendingChallenge(c, deviceOf.get(f.sid))) : [dash()]),
            ),
          ),
        );
      }
    }
    $('factors-count').textContent = String(entities.length);
    fillTable('factors', 'factors-empty', rows);
  }

  /** The service's entities, each with its factors and pending challenges. */
  async function loadFactors(base) {
    const entities = await listAll(`${base}/Entities?PageSize=${ENTITIES_SHOWN}`, 'entities', 1);
    const devices = await getJson('/emulator/v1/Devices').catch(() => ({ devices: [] }));
    const deviceOf = new Map();
    for (const d of Array.isArray(devices.devices) ? devices.devices : []) {
      for (const f of d.factor_sids || []) deviceOf.set(f, d.id);
    }
    const loaded = await Promise.all(
      entities.map(async (entity) => {
        const e = `${base}/Entities/${enc(entity.identity)}`;
        const [factors, challenges] = await Promise.all([
          listAll(`${e}/Factors?PageSize=1000`, 'factors', 1),
          listAll(`${e}/Challenges?Status=pending&PageSize=1000`, 'challenges', 1),
        ]);
        return { entity, factors, challenges };
      }),
    );
    return { entities: loaded, deviceOf };
  }

  // ---------------------------------------------------------------- polling

  async function loadService(sid) {
    const base = `/v2/Services/${enc(sid)}`;
    const [rls, usage, events, outbox, entities] = await Promise.all([
      listAll(`${base}/RateLimits?PageSize=1000`, 'rate_limits'),
      getJson(`/emulator/v1/Services/${enc(sid)}/Usage`),
      getJson(`/emulator/v1/Events?ServiceSid=${enc(sid)}&PageSize=${EVENTS_FETCHED}`),
      getJson(`/emulator/v1/Outbox?ServiceSid=${enc(sid)}&PageSize=${OUTBOX_SHOWN}&PageToken=PB${AFTER_LAST_ATTEMPT}`),
      loadFactors(base),
    ]);
    const rateLimits = await Promise.all(
      rls.map(async (rl) => ({
        rl,
        buckets: await listAll(`${base}/RateLimits/${enc(rl.sid)}/Buckets?PageSize=1000`, 'buckets'),
      })),
    );
    if (sid !== state.selected) return; // the selection changed meanwhile
    rateLimits.sort((a, b) => String(a.rl.unique_name).localeCompare(String(b.rl.unique_name)));
    state.events = Array.isArray(events.events) ? events.events : [];
    renderRateLimits(rateLimits);
    renderUsage(Array.isArray(usage.usage) ? usage.usage : []);
    renderEvents();
    renderChart();
    renderOutbox(Array.isArray(outbox.messages) ? outbox.messages : []);
    renderFactors(entities.entities, entities.deviceOf);
  }

  // ---------------------------------------------------------------- Event Streams

  /** The delivery counters of one family of metrics (`event_stream`, `service_webhook`). */
  const deliveryRows = (family) => [
    ['delivered', `verilimit_${family}_deliveries_total{outcome="delivered"}`],
    ['retried', `verilimit_${family}_deliveries_total{outcome="retried"}`],
    ['failed', `verilimit_${family}_deliveries_total{outcome="failed"}`],
    ['dropped', `verilimit_${family}_deliveries_total{outcome="dropped"}`],
    ['queued', `verilimit_${family}_queued`],
  ];

  /** Sinks, and the delivery counters of Event Streams and Service Webhooks; a failure here
   * never stops the rest of the page. */
  async function pollEventStreams() {
    try {
      const [sinks, res] = await Promise.all([
        getJson('/v1/Sinks?PageSize=1000'),
        fetch(new URL('/metrics', location.origin).href, { cache: 'no-store', credentials: 'same-origin' }),
      ]);
      const text = res.ok ? await res.text() : '';
      const values = new Map();
      for (const line of text.split('\n')) {
        const i = line.lastIndexOf(' ');
        if (i > 0 && !line.startsWith('#')) values.set(line.slice(0, i), line.slice(i + 1));
      }
      $('es-sinks-count').textContent = String(Array.isArray(sinks.sinks) ? sinks.sinks.length : 0);
      for (const [table, family] of [['event-streams', 'event_stream'], ['service-webhooks', 'service_webhook']]) {
        $(table).tBodies[0].replaceChildren(
          ...deliveryRows(family).map(([label, key]) => el('tr', {}, el('td', { text: label }), el('td', { text: values.get(key) ?? '0' }))),
        );
      }
    } catch {
      // shown again at the next poll
    }
  }

  async function poll() {
    pollEventStreams();
    const [clock, services] = await Promise.all([
      getJson('/emulator/v1/Clock'),
      listAll('/v2/Services?PageSize=1000', 'services'),
    ]);
    state.clock = clock;
    renderClock();
    state.services = services;
    if (!services.some((s) => s.sid === state.selected)) {
      const wanted = location.hash.slice(1);
      const next = services.find((s) => s.sid === wanted) || services[0] || null;
      state.selected = null;
      select(next ? next.sid : null);
      if (!next) {
        renderServices();
        renderServiceHead();
      }
      return;
    }
    renderServices();
    renderServiceHead();
    try {
      await loadService(state.selected);
    } catch (e) {
      if (e instanceof HttpError && e.status === 404) return; // deleted meanwhile: next poll
      throw e;
    }
  }

  async function tick() {
    clearTimeout(state.timer);
    state.inFlight = true;
    let delay = POLL_MS;
    try {
      await poll();
      setStatus('ok', 'live');
      $('status').title = `Last updated ${new Date().toLocaleTimeString()} (every ${POLL_MS / 1000} s)`;
    } catch (e) {
      delay = RETRY_MS;
      if (e instanceof HttpError && e.status === 401) setStatus('error', 'not signed in: reload the page');
      else if (e instanceof HttpError) setStatus('error', e.message);
      else setStatus('error', 'server unreachable');
    } finally {
      state.inFlight = false;
    }
    if (state.again) {
      state.again = false;
      delay = 0;
    }
    state.timer = setTimeout(tick, delay);
  }

  function refreshNow() {
    if (state.inFlight) {
      state.again = true;
    } else {
      clearTimeout(state.timer);
      state.timer = setTimeout(tick, 0);
    }
  }

  // ---------------------------------------------------------------- wiring

  function start() {
    const wanted = location.hash.slice(1);
    if (SERVICE_SID.test(wanted)) state.selected = wanted;
    $('services').addEventListener('click', (ev) => {
      const b = ev.target.closest('button.service');
      if (b) select(b.dataset.sid);
    });
    $('chart-window').addEventListener('click', (ev) => {
      const b = ev.target.closest('button[data-window]');
      if (!b) return;
      state.windowS = Number(b.dataset.window);
      for (const o of $('chart-window').querySelectorAll('button')) o.classList.toggle('on', o === b);
      renderChart();
    });
    window.addEventListener('resize', () => renderChart());
    renderServiceHead();
    tick();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
