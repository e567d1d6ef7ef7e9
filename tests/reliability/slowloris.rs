//! Slow clients: headers trickled byte by byte, bodies that never complete, idle connections.
//! The server cuts each of them within its timeouts (headers 10 s, request `--request-timeout`)
//! and serves everyone else promptly meanwhile.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{ACCOUNT_A, ServerOptions, TOKEN_A, TestServer};
use crate::util::*;

const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT_SECS: u64 = 2;
/// Slack for a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(4);

#[derive(Debug)]
struct SlowOutcome {
    /// When the server answered or closed, if it did before we gave up.
    cut_after: Option<Duration>,
    /// The status line's code, if it answered.
    status: Option<u16>,
    text: String,
}

/// Sends `prefix`, then `drip` one byte every `every`, until the server answers or closes the
/// connection, or `give_up` passes.
async fn slow_client(
    port: u16,
    prefix: Vec<u8>,
    drip: Vec<u8>,
    every: Duration,
    give_up: Duration,
) -> SlowOutcome {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let _ = stream.write_all(&prefix).await;
    let mut drip = drip.into_iter().cycle();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if started.elapsed() >= give_up {
            return SlowOutcome {
                cut_after: None,
                status: None,
                text: String::from_utf8_lossy(&buf).into_owned(),
            };
        }
        tokio::select! {
            read = stream.read(&mut chunk) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    // An answer counts as being cut off; keep reading until the close.
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let rest = read_until_close(&mut stream, Instant::now(), Duration::from_secs(2)).await;
                        buf.extend_from_slice(rest.text.as_bytes());
                        break;
                    }
                }
            },
            _ = tokio::time::sleep(every) => {
                if let Some(b) = drip.next() {
                    if stream.write_all(&[b]).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok());
    SlowOutcome {
        cut_after: Some(started.elapsed()),
        status,
        text,
    }
}

fn auth_header() -> String {
    basic_value(&format!("{ACCOUNT_A}:{TOKEN_A}"))
}

/// Ordinary requests every 100 ms until `until`; returns (count, slowest, failures).
async fn steady_client(
    server_client: crate::harness::Client,
    until: Instant,
) -> (usize, Duration, Vec<String>) {
    let mut n = 0;
    let mut slowest = Duration::ZERO;
    let mut failures = Vec::new();
    while Instant::now() < until {
        let t = Instant::now();
        let r = try_send(
            server_client
                .request(reqwest::Method::GET, "/v2/Services")
                .timeout(Duration::from_secs(5)),
        )
        .await;
        slowest = slowest.max(t.elapsed());
        match r {
            Ok(r) if r.status == 200 => {}
            Ok(r) => failures.push(format!("{} {}", r.status, r.body)),
            Err(e) => failures.push(e),
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (n, slowest, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_within_the_timeouts_while_others_are_served() {
    let server =
        TestServer::start(ServerOptions::new().arg("--request-timeout", REQUEST_TIMEOUT_SECS))
            .await;
    let port = server.port();
    let auth = auth_header();
    let give_up = HEADER_TIMEOUT + MARGIN + Duration::from_secs(6);
    let request_deadline = Duration::from_secs(REQUEST_TIMEOUT_SECS) + MARGIN;
    let header_deadline = HEADER_TIMEOUT + MARGIN;

    // Headers trickled one byte every 300 ms, forever.
    let slow_headers = tokio::spawn(slow_client(
        port,
        b"POST /v2/Services HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".to_vec(),
        b"abcdefgh".to_vec(),
        Duration::from_millis(300),
        give_up,
    ));
    // 48 more, each with a partial request line, sending nothing more.
    let mut partial = Vec::new();
    for _ in 0..48 {
        partial.push(tokio::spawn(slow_client(
            port,
            b"GET /v2/Servi".to_vec(),
            Vec::new(),
            Duration::from_secs(60),
            give_up,
        )));
    }
    // A body announced as 100 bytes, of which 10 arrive.
    let head = format!(
        "POST /v2/Services HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nFriendlyNa"
    );
    let stalled_body = tokio::spawn(slow_client(
        port,
        head.into_bytes(),
        Vec::new(),
        Duration::from_secs(60),
        give_up,
    ));
    // A body of 1,000 bytes trickled one byte every 200 ms.
    let head = format!(
        "POST /v2/Services HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nFriendlyName="
    );
    let trickled_body = tokio::spawn(slow_client(
        port,
        head.into_bytes(),
        b"x".to_vec(),
        Duration::from_millis(200),
        give_up,
    ));

    // Meanwhile, an ordinary client is served promptly throughout.
    let steady = tokio::spawn(steady_client(server.a(), Instant::now() + header_deadline));

    let mut fails = Failures::default();
    let o = slow_headers.await.unwrap();
    match o.cut_after {
        Some(t) if t <= header_deadline => {
            if let Some(s) = o.status {
                if s >= 500 {
                    fails.fail(format!("slow headers answered {s}: {}", o.text));
                }
            }
        }
        other => fails.fail(format!(
            "headers trickled byte by byte were not cut within {header_deadline:?} (cut: {other:?})"
        )),
    }
    let mut uncut = 0;
    for p in partial {
        let o = p.await.unwrap();
        if o.cut_after.is_none_or(|t| t > header_deadline) {
            uncut += 1;
        }
    }
    if uncut > 0 {
        fails.fail(format!("{uncut} of 48 connections with a partial request line were not closed within {header_deadline:?}"));
    }
    for (what, task) in [
        ("a body that stops after 10 of 100 bytes", stalled_body),
        ("a body trickled at 5 bytes/s", trickled_body),
    ] {
        let o = task.await.unwrap();
        match o.cut_after {
            Some(t) if t <= request_deadline => match o.status {
                None => {} // closed: fine
                Some(status @ (408 | 503)) => {
                    // Answered: with Twilio's error body (503 is the documented timeout answer).
                    if let Err(e) = check_raw_error(status, &o.text) {
                        fails.fail(format!("{what}: answered without a Twilio body: {e}"));
                    }
                }
                Some(s) => fails.fail(format!("{what}: answered {s}: {:?}", o.text)),
            },
            other => fails.fail(format!(
                "{what}: not answered or closed within --request-timeout {REQUEST_TIMEOUT_SECS} s + margin (cut: {other:?}, got {:?})",
                o.text
            )),
        }
    }
    let (n, slowest, failures) = steady.await.unwrap();
    if !failures.is_empty() || slowest > Duration::from_secs(2) {
        fails.fail(format!(
            "ordinary requests suffered during the slow-client attack: {n} sent, slowest {slowest:?}, failures {failures:?}"
        ));
    }
    fails.assert_none("slow clients");
    assert_alive(&server, "slow clients").await;
    assert_no_panic(&server);
}

#[tokio::test]
async fn a_connection_that_never_sends_anything_is_closed() {
    let server =
        TestServer::start(ServerOptions::new().arg("--request-timeout", REQUEST_TIMEOUT_SECS))
            .await;
    let deadline = HEADER_TIMEOUT + MARGIN;
    let idle = tokio::spawn(slow_client(
        server.port(),
        Vec::new(),
        Vec::new(),
        Duration::from_secs(60),
        deadline + Duration::from_secs(2),
    ));
    let o = idle.await.unwrap();
    assert!(
        o.cut_after.is_some_and(|t| t <= deadline),
        "an idle connection (no byte sent) was kept open past {deadline:?}: a slowloris without a single byte holds a connection forever"
    );
    assert_alive(&server, "idle connections").await;
}
