//! Crash safety: SIGKILL at random moments under concurrent load, then SIGTERM under load.
//! What was acknowledged survives, counters never go backwards, the database always reopens.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tokio::sync::Notify;

use crate::harness::{Client, ServerOptions, TestServer};
use crate::util::*;

const WORKERS: usize = 32;
const ROUNDS: usize = 4;
/// The bucket of the hot value: at most this many admissions per hour, whatever crashes.
const HOT_MAX: usize = 30;
const HOT_INTERVAL: u64 = 3600;

/// One start that was answered.
#[derive(Clone, Debug)]
struct Acked {
    sid: String,
    to: String,
    hot: bool,
}

#[derive(Default)]
struct WorkerLog {
    acked: Vec<Acked>,
    hot_refusals: usize,
    unexpected: Vec<String>,
    transport_errors: usize,
}

/// The `n`-th start of the whole test: a distinct `To`, and every third one also uses the hot value.
fn to_of(n: usize) -> String {
    format!("+1666{n:07}")
}

fn is_hot(n: usize) -> bool {
    n % 3 == 0
}

fn rate_limits_of(worker: usize, n: usize) -> String {
    if is_hot(n) {
        json!({"ip": format!("w{worker}"), "hot": "H"}).to_string()
    } else {
        json!({"ip": format!("w{worker}")}).to_string()
    }
}

async fn start_once(
    c: &Client,
    service: &str,
    n: usize,
    worker: usize,
) -> Result<crate::harness::Reply, String> {
    let to = to_of(n);
    let rl = rate_limits_of(worker, n);
    try_send(
        c.request(
            Method::POST,
            &format!("/v2/Services/{service}/Verifications"),
        )
        .form(&[
            ("To", to.as_str()),
            ("Channel", "sms"),
            ("RateLimits", rl.as_str()),
        ])
        .timeout(Duration::from_secs(20)),
    )
    .await
}

/// Starts verifications until the server stops answering or `stop` is set; `pause` between them.
/// `first_ack` is notified when this worker gets its first 201.
async fn load_worker(
    c: Client,
    service: Arc<String>,
    worker: usize,
    next: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    pause: Duration,
    first_ack: Arc<Notify>,
) -> WorkerLog {
    let mut log = WorkerLog::default();
    while !stop.load(Ordering::Relaxed) {
        let n = next.fetch_add(1, Ordering::Relaxed);
        match start_once(&c, &service, n, worker).await {
            Ok(r) if r.status == 201 => {
                if log.acked.is_empty() {
                    first_ack.notify_one();
                }
                let v = r.json();
                log.acked.push(Acked {
                    sid: v["sid"].as_str().unwrap_or_default().to_owned(),
                    to: to_of(n),
                    hot: is_hot(n),
                });
            }
            Ok(r)
                if r.status == 429
                    && is_hot(n)
                    && r.header("twilio-reached-rate-limit") == Some("hot") =>
            {
                log.hot_refusals += 1;
            }
            Ok(r) => log.unexpected.push(format!(
                "start #{n} ({}) -> {} {}",
                rate_limits_of(worker, n),
                r.status,
                r.body
            )),
            Err(_) => {
                // The server is gone (killed or draining): this request failed at the
                // connection level, which is allowed. Stop.
                log.transport_errors += 1;
                break;
            }
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    log
}

/// After a restart: every acknowledged verification is there and pending, its code is in the
/// outbox, no code is orphaned, and the hot counter covers every persisted hot admission.
/// Returns the hot usage count.
async fn check_after_restart(
    server: &TestServer,
    service: &str,
    acked: &[Acked],
    round: usize,
    check_hot: bool,
) -> usize {
    let c = server.a();
    // Every acknowledged verification can be fetched (in parallel, 16 at a time).
    let chunks: Vec<Vec<Acked>> = acked
        .chunks(acked.len().div_ceil(16).max(1))
        .map(|c| c.to_vec())
        .collect();
    let mut tasks = Vec::new();
    for chunk in chunks {
        let c = c.clone();
        let service = service.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut missing = Vec::new();
            for a in chunk {
                let r = get(
                    &c,
                    &format!("/v2/Services/{service}/Verifications/{}", a.sid),
                )
                .await;
                let ok = r.status == 200 && {
                    let v = r.json();
                    v["status"] == "pending" && v["to"] == a.to.as_str()
                };
                if !ok {
                    missing.push(format!(
                        "{} (To {}) -> {} {}",
                        a.sid, a.to, r.status, r.body
                    ));
                }
            }
            missing
        }));
    }
    let mut missing = Vec::new();
    for t in tasks {
        missing.extend(t.await.unwrap());
    }
    assert!(
        missing.is_empty(),
        "round {round}: {} of {} acknowledged verifications are lost after the restart, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );

    // Every acknowledged verification has its code in the outbox.
    let outbox = outbox_all(&c, Some(service)).await;
    let mut codes: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for m in &outbox {
        codes
            .entry(
                m["verification_sid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
            .or_default()
            .push((
                m["to"].as_str().unwrap_or_default().to_owned(),
                m["code"].as_str().unwrap_or_default().to_owned(),
            ));
    }
    for a in acked {
        let sent = codes.get(&a.sid).unwrap_or_else(|| {
            panic!(
                "round {round}: acknowledged verification {} (To {}) has no code in the outbox",
                a.sid, a.to
            )
        });
        assert!(
            sent.iter().any(|(to, code)| to == &a.to
                && code.len() == 6
                && code.bytes().all(|b| b.is_ascii_digit())),
            "round {round}: the outbox entry of {} is wrong: {sent:?}",
            a.sid
        );
    }
    // No orphaned code: every code in the outbox belongs to a verification that exists.
    let acked_sids: HashSet<&str> = acked.iter().map(|a| a.sid.as_str()).collect();
    let mut hot_persisted = 0;
    for m in &outbox {
        let sid = m["verification_sid"].as_str().unwrap_or_default();
        let to = m["to"].as_str().unwrap_or_default();
        let n: usize = to
            .strip_prefix("+1666")
            .and_then(|d| d.parse().ok())
            .unwrap_or(usize::MAX);
        if n != usize::MAX && is_hot(n) {
            hot_persisted += 1;
        }
        if !acked_sids.contains(sid) {
            // Admitted, but its answer was lost in the crash: it must still be whole.
            let r = get(&c, &format!("/v2/Services/{service}/Verifications/{sid}")).await;
            assert_eq!(
                r.status, 200,
                "round {round}: the outbox has a code for {sid} (To {to}) but the verification is gone: {}",
                r.body
            );
        }
    }

    if !check_hot {
        assert_no_panic(server);
        return 0;
    }
    // The hot counter did not go backwards: it covers every admission that persisted.
    let usage = get(
        &c,
        &format!("/emulator/v1/Services/{service}/Usage?RateLimit=hot&Value=H"),
    )
    .await
    .expect(200);
    let count = usage["usage"]
        .as_array()
        .expect("usage array")
        .iter()
        .map(|r| r["count"].as_u64().expect("count") as usize)
        .max()
        .unwrap_or(0);
    let hot_acked = acked.iter().filter(|a| a.hot).count();
    assert!(
        count >= hot_persisted && count >= hot_acked,
        "round {round}: a counter went backwards: usage of hot=H is {count}, but {hot_persisted} hot \
         verifications persisted ({hot_acked} acknowledged): {usage}"
    );
    assert!(
        count <= HOT_MAX && hot_persisted <= HOT_MAX,
        "round {round}: hot=H admitted more than Max={HOT_MAX}: usage {count}, persisted {hot_persisted}"
    );
    assert_no_panic(server);
    count
}

/// A start with the hot value, sequential: 201 or a 429 that names `hot`.
async fn hot_start(c: &Client, service: &str, n: usize) -> Result<Acked, u64> {
    let r = start_once(c, service, n, 999)
        .await
        .expect("the server answers");
    match r.status {
        201 => Ok(Acked {
            sid: r.json()["sid"].as_str().unwrap().to_owned(),
            to: to_of(n),
            hot: true,
        }),
        _ => {
            r.expect_error(429, 20429);
            assert_eq!(
                r.header("twilio-reached-rate-limit"),
                Some("hot"),
                "{}",
                r.body
            );
            Err(r
                .header("retry-after")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_never_loses_an_acknowledged_verification_nor_rewinds_a_counter() {
    let seed = seed_from_env("VERILIMIT_CRASH_SEED");
    let mut rng = Rng::new(seed);
    let mut server = TestServer::start(ServerOptions::new()).await;
    let Chain { service, .. } = create_chain(
        &server.a(),
        &[("FriendlyName", "crash")],
        &[
            ("ip", &[(1_000_000, 3600)]),
            ("hot", &[(HOT_MAX as u64, HOT_INTERVAL)]),
        ],
    )
    .await;
    let service = Arc::new(service);
    let next = Arc::new(AtomicUsize::new(0));
    let mut acked: Vec<Acked> = Vec::new();
    let mut hot_full = false;
    let mut total_transport_errors = 0;
    // Index numbers for sequential hot starts: far from the workers' range.
    let mut seq = 9_000_000;

    for round in 0..ROUNDS {
        if round == 1 {
            // Fill the hot value to its limit now, so the next crashes happen while it is full.
            loop {
                seq += 3;
                match hot_start(&server.a(), &service, seq).await {
                    Ok(a) => acked.push(a),
                    Err(_) => break,
                }
            }
            hot_full = true;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let first_ack = Arc::new(Notify::new());
        let mut tasks = Vec::new();
        for w in 0..WORKERS {
            tasks.push(tokio::spawn(load_worker(
                server.a(),
                service.clone(),
                w,
                next.clone(),
                stop.clone(),
                Duration::ZERO,
                first_ack.clone(),
            )));
        }
        // The kill comes at a random moment after the first acknowledgement (a restarted server
        // on a loaded machine may take a while to answer its first start; a kill before any
        // answer would test nothing).
        let first = Instant::now();
        tokio::time::timeout(Duration::from_secs(60), first_ack.notified())
            .await
            .unwrap_or_else(|_| panic!("round {round}: no start acknowledged within 60 s"));
        let waited = first.elapsed();
        let delay = Duration::from_millis(150 + rng.below(900) as u64);
        tokio::time::sleep(delay).await;
        let before = next.load(Ordering::Relaxed);
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        let mut round_acked = 0;
        for t in tasks {
            let log = t.await.unwrap();
            assert!(
                log.unexpected.is_empty(),
                "round {round}: unexpected answers under load: {:?}",
                &log.unexpected[..log.unexpected.len().min(5)]
            );
            if log.hot_refusals > 0 {
                hot_full = true;
            }
            round_acked += log.acked.len();
            total_transport_errors += log.transport_errors;
            acked.extend(log.acked);
        }
        eprintln!(
            "round {round}: first 201 after {waited:?}, killed {delay:?} later, {before} starts sent, \
             {round_acked} acknowledged"
        );
        assert!(
            round_acked > 0,
            "round {round}: no start was acknowledged before the kill"
        );
        let hot_acked = acked.iter().filter(|a| a.hot).count();
        assert!(
            hot_acked <= HOT_MAX,
            "across {} rounds, {hot_acked} hot starts were admitted, more than Max={HOT_MAX}",
            round + 1
        );

        // Restart on the same file: it must reopen cleanly and have everything acknowledged.
        let restarted = TestServer::start(ServerOptions::new().database_of(&server)).await;
        server = restarted;
        let count = check_after_restart(&server, &service, &acked, round, true).await;
        if hot_full {
            assert_eq!(
                count, HOT_MAX,
                "round {round}: the full hot value lost admissions"
            );
            // Still at its limit: refused until the window passes.
            seq += 3;
            match hot_start(&server.a(), &service, seq).await {
                Ok(a) => panic!(
                    "round {round}: after the crash, hot=H (full at Max={HOT_MAX}) admitted {} again",
                    a.sid
                ),
                Err(retry_after) => assert!(
                    retry_after > 0 && retry_after <= HOT_INTERVAL,
                    "Retry-After {retry_after}"
                ),
            }
        }
    }
    assert!(
        hot_full,
        "the hot value never reached its limit: the test did not test it"
    );
    eprintln!(
        "{} starts acknowledged, {total_transport_errors} failed at the connection level",
        acked.len()
    );

    // One last crash with an idle server, then the window passes: the hot value is admitted again.
    server.kill9();
    let server = TestServer::start(ServerOptions::new().database_of(&server)).await;
    let c = server.a();
    seq += 3;
    assert!(
        hot_start(&c, &service, seq).await.is_err(),
        "hot=H admitted before its window passed"
    );
    c.post_form(
        "/emulator/v1/Clock",
        &[("AdvanceSeconds", &(HOT_INTERVAL + 1).to_string())],
    )
    .await
    .expect(200);
    seq += 3;
    hot_start(&c, &service, seq)
        .await
        .expect("hot=H is admitted again once the window has passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_finishes_or_refuses_cleanly_and_exits_zero() {
    let mut server = TestServer::start(ServerOptions::new()).await;
    let Chain { service, .. } = create_chain(
        &server.a(),
        &[("FriendlyName", "sigterm")],
        &[("ip", &[(1_000_000, 3600)]), ("hot", &[(1_000_000, 3600)])],
    )
    .await;
    let service = Arc::new(service);
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..16 {
        tasks.push(tokio::spawn(load_worker(
            server.a(),
            service.clone(),
            w,
            next.clone(),
            stop.clone(),
            Duration::from_millis(15),
            Arc::new(Notify::new()),
        )));
    }
    // One request in flight across the signal: headers and half a body now, the rest later.
    let body = form(&[("To", "+16669999998"), ("Channel", "sms")]);
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let head = format!(
        "POST /v2/Services/{service}/Verifications HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: {}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        basic_value(&format!(
            "{}:{}",
            crate::harness::ACCOUNT_A,
            crate::harness::TOKEN_A
        )),
        body.len()
    );
    use tokio::io::AsyncWriteExt;
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    let rest = body.as_bytes()[body.len() / 2..].to_vec();
    let in_flight = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let _ = slow.write_all(&rest).await;
        read_until_close(&mut slow, Instant::now(), Duration::from_secs(20)).await
    });

    tokio::time::sleep(Duration::from_millis(600)).await;
    let status = server.terminate().await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for t in tasks {
        let log = t.await.unwrap();
        assert!(
            log.unexpected.is_empty(),
            "answers other than 201 during shutdown (a 5xx?): {:?}",
            &log.unexpected[..log.unexpected.len().min(5)]
        );
        acked.extend(log.acked);
    }
    let slow_reply = in_flight.await.unwrap();
    assert!(
        status.success(),
        "SIGTERM exit status {status:?}; stderr:\n{}",
        tail(&server.stderr(), 3000)
    );
    assert_no_panic(&server);
    assert!(!acked.is_empty(), "nothing was acknowledged before SIGTERM");
    eprintln!(
        "{} acknowledged before shutdown; the request in flight got {:?}",
        acked.len(),
        slow_reply.status
    );
    match slow_reply.status {
        None => {} // failed at the connection level: allowed
        Some(201) => {
            let v: serde_json::Value = serde_json::from_str(slow_reply.body().trim())
                .unwrap_or_else(|e| {
                    panic!(
                        "the in-flight answer is not JSON ({e}): {:?}",
                        slow_reply.text
                    )
                });
            acked.push(Acked {
                sid: v["sid"].as_str().unwrap().to_owned(),
                to: "+16669999998".into(),
                hot: false,
            });
        }
        Some(other) => panic!(
            "the request in flight during SIGTERM got {other}, not 201 or a closed connection: {}",
            slow_reply.text
        ),
    }

    let server = TestServer::start(ServerOptions::new().database_of(&server)).await;
    check_after_restart(&server, &service, &acked, 0, false).await;
}
