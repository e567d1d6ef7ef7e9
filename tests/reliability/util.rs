//! What the reliability tests need beyond `../api/harness.rs`: requests that may fail at the
//! connection level, Twilio-error checks for any code or a set of codes (on the harness's one
//! checker), raw TCP exchanges for input no HTTP client would send, a seeded PRNG, and a few
//! helpers over the outbox.

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, RequestBuilder};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::fixtures::{Chain, add_rate_limit, create_chain};
pub use crate::harness::shorten;
use crate::harness::{Client, Reply, TestServer, check_twilio_error};

/// Upper bound for one hostile exchange: a server that hangs fails the test instead of hanging it.
pub const HOSTILE_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends a request and reads the whole answer; a transport failure (refused, reset, timeout,
/// truncated body) is an `Err` rather than a panic.
pub async fn try_send(rb: RequestBuilder) -> Result<Reply, String> {
    let (client, request) = rb.build_split();
    let request = request.map_err(|e| format!("build: {e}"))?;
    let method = request.method().to_string();
    let url = request.url().to_string();
    let response = client
        .execute(request)
        .await
        .map_err(|e| format!("{method} {url}: {e:?}"))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .text()
        .await
        .map_err(|e| format!("{method} {url}: reading the body: {e:?}"))?;
    Ok(Reply {
        method,
        url,
        status,
        headers,
        body,
    })
}

/// Sends with [`HOSTILE_TIMEOUT`]; panics (naming the request) on a transport failure.
pub async fn send_bounded(rb: RequestBuilder) -> Reply {
    match try_send(rb.timeout(HOSTILE_TIMEOUT)).await {
        Ok(r) => r,
        Err(e) => panic!("no HTTP answer (hang, reset or crash?): {e}"),
    }
}

/// POST of an already encoded form body, bounded in time.
pub async fn post_raw(c: &Client, path: &str, body: impl Into<Vec<u8>>) -> Reply {
    send_bounded(
        c.request(Method::POST, path)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body.into()),
    )
    .await
}

pub async fn get(c: &Client, path: &str) -> Reply {
    send_bounded(c.request(Method::GET, path)).await
}

/// A request carrying exactly this `Authorization` header value.
pub fn with_authorization(rb: RequestBuilder, value: &str) -> RequestBuilder {
    rb.header(
        AUTHORIZATION,
        HeaderValue::from_str(value).expect("a valid header value"),
    )
}

pub fn basic_value(user_and_password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_and_password)
    )
}

/// [`Reply::check_error`] for a 4xx answer; returns the code.
pub fn check_4xx(r: &Reply) -> Result<u64, String> {
    if !(400..500).contains(&r.status) {
        return Err(format!("expected a 4xx Twilio error: {}", r.context()));
    }
    Ok(r.check_error()?.0)
}

/// [`Reply::check_error`] for a (status, code) that is one of `allowed`; returns the code.
pub fn check_error_in(r: &Reply, allowed: &[(u16, u64)]) -> Result<u64, String> {
    let (code, _) = r.check_error()?;
    if !allowed.contains(&(r.status, code)) {
        return Err(format!("expected one of {allowed:?}: {}", r.context()));
    }
    Ok(code)
}

/// Checks the status; returns the JSON body.
pub fn check_status(r: &Reply, status: u16) -> Result<Value, String> {
    if r.status != status {
        return Err(format!("expected {status}: {}", r.context()));
    }
    if r.body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&r.body).map_err(|e| format!("body is not JSON ({e}): {}", r.context()))
}

#[track_caller]
pub fn twilio_4xx(r: &Reply) -> u64 {
    check_4xx(r).unwrap_or_else(|e| panic!("{e}"))
}

#[track_caller]
pub fn twilio_error_in(r: &Reply, allowed: &[(u16, u64)]) -> u64 {
    check_error_in(r, allowed).unwrap_or_else(|e| panic!("{e}"))
}

/// Collects failures of a table-driven test, to report them all at once.
#[derive(Default)]
pub struct Failures(pub Vec<String>);

impl Failures {
    pub fn check<T>(&mut self, what: &str, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(format!("{what}: {e}"));
                None
            }
        }
    }

    pub fn fail(&mut self, msg: impl Into<String>) {
        self.0.push(msg.into());
    }

    #[track_caller]
    pub fn assert_none(&self, title: &str) {
        assert!(
            self.0.is_empty(),
            "{title}: {} failure(s):\n  {}",
            self.0.len(),
            self.0.join("\n  ")
        );
    }
}

/// The server still does ordinary work: a service can be created, fetched and deleted.
pub async fn assert_alive(server: &TestServer, why: &str) {
    let c = server.a();
    let created = try_send(
        c.request(Method::POST, "/v2/Services")
            .form(&[("FriendlyName", "still alive")])
            .timeout(HOSTILE_TIMEOUT),
    )
    .await
    .unwrap_or_else(|e| panic!("server no longer answers after {why}: {e}"));
    assert_eq!(
        created.status, 201,
        "after {why}, creating a service failed: {}",
        created.body
    );
    let sid = created.json()["sid"].as_str().unwrap().to_owned();
    get(&c, &format!("/v2/Services/{sid}")).await.expect(200);
    send_bounded(c.request(Method::DELETE, &format!("/v2/Services/{sid}")))
        .await
        .expect(204);
}

/// Asserts the logs show no panic.
#[track_caller]
pub fn assert_no_panic(server: &TestServer) {
    let logs = server.stderr();
    assert!(
        !logs.contains("panicked"),
        "the server panicked:\n{}",
        tail(&logs, 4000)
    );
}

pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// Percent-encodes every byte that is not unreserved (form encoding, spaces as `%20`).
pub fn enc(s: &str) -> String {
    enc_bytes(s.as_bytes())
}

pub fn enc_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An encoded form body from already encoded `name=value` pieces.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// What came back on a raw TCP connection.
#[derive(Debug)]
pub struct RawReply {
    /// The status of the first response, if one arrived.
    pub status: Option<u16>,
    /// Everything read (headers and body of whatever arrived).
    pub text: String,
    /// The server closed (or reset) the connection.
    pub closed: bool,
    pub elapsed: Duration,
}

impl RawReply {
    /// The body after the first blank line.
    pub fn body(&self) -> &str {
        self.text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("")
    }

    /// [`check_raw_error`] on this answer; returns the code.
    pub fn check_error(&self) -> Result<u64, String> {
        match self.status {
            Some(status) => check_raw_error(status, &self.text),
            None => Err(format!("no HTTP answer: {:?}", tail(&self.text, 500))),
        }
    }
}

/// The harness's [`check_twilio_error`] on an answer read from a raw connection (status line,
/// headers, body); returns the code.
pub fn check_raw_error(status: u16, text: &str) -> Result<u64, String> {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let content_type = head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-type")
            .then(|| value.trim())
    });
    check_twilio_error(status, Some(content_type.unwrap_or_default()), body.trim())
        .map(|(code, _)| code)
        .map_err(|e| format!("{e}: {:?}", tail(text, 500)))
}

/// Reads from `stream` until the server closes it or `limit` passes.
pub async fn read_until_close(
    stream: &mut TcpStream,
    started: Instant,
    limit: Duration,
) -> RawReply {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut closed = false;
    loop {
        let left = limit.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|s| s.parse().ok());
    RawReply {
        status,
        text,
        closed,
        elapsed: started.elapsed(),
    }
}

/// Writes `bytes` on a new connection and reads until the server closes it (or `limit`).
pub async fn raw_exchange(port: u16, bytes: &[u8], limit: Duration) -> RawReply {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the server");
    // The server may answer (and close) before it has read everything: ignore write errors.
    let _ = stream.write_all(bytes).await;
    read_until_close(&mut stream, started, limit).await
}

/// SplitMix64: a small seeded generator, so a failing fuzz case can be replayed from its seed.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// A seed from the environment variable `name`, else from the clock (printed either way so a
/// failure can be replayed).
pub fn seed_from_env(name: &str) -> u64 {
    let seed = std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(42)
        });
    eprintln!("{name}={seed}");
    seed
}

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Every outbox message of the caller (optionally filtered by service), following the paging
/// links to the end.
pub async fn outbox_all(c: &Client, service: Option<&str>) -> Vec<Value> {
    let mut url = match service {
        Some(s) => format!("/emulator/v1/Outbox?ServiceSid={s}&PageSize=1000"),
        None => "/emulator/v1/Outbox?PageSize=1000".to_owned(),
    };
    let mut all = Vec::new();
    for _ in 0..10_000 {
        let page = get(c, &url).await.expect(200);
        all.extend(
            page["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .cloned(),
        );
        match page["meta"]["next_page_url"].as_str() {
            Some(next) if !next.is_empty() => url = next.to_owned(),
            _ => return all,
        }
    }
    panic!("the outbox paging never ends");
}

/// The code sent for one verification, from the outbox.
pub async fn code_of(c: &Client, verification_sid: &str) -> String {
    let page = get(
        c,
        &format!("/emulator/v1/Outbox?VerificationSid={verification_sid}"),
    )
    .await
    .expect(200);
    page["messages"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no code in the outbox for {verification_sid}: {page}"))
        .to_owned()
}

/// Resident set size of a process in KiB, from /proc.
pub fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}
