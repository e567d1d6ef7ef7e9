//! A short soak (`VERILIMIT_SOAK_SECS`, default 10): mixed traffic from many clients, with bucket
//! changes happening concurrently. Zero 5xx, every verification consistent, the hot value never
//! over its Max in any window, memory roughly flat.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tokio::sync::Mutex;

use crate::harness::{Client, Reply, ServerOptions, TestServer};
use crate::util::*;

const HOT_MAX: usize = 4;
const HOT_INTERVAL: Duration = Duration::from_secs(2);
const RSS_GROWTH_LIMIT_KIB: u64 = 50 * 1024;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Pending,
    /// Approved or canceled: fetch answers 404.
    Ended,
}

#[derive(Default)]
struct Record {
    /// (sent, answered) of every 201 for the hot value.
    hot_admissions: Vec<(Instant, Instant)>,
    hot_refusals: usize,
    /// Verification SID, what a fetch must show, when it was created.
    verifications: Vec<(String, Expect, Instant)>,
    errors: Vec<String>,
    requests: usize,
}

type Shared = Arc<Mutex<Record>>;

async fn call(_c: &Client, rb: reqwest::RequestBuilder, rec: &Shared) -> Option<Reply> {
    let r = try_send(rb.timeout(Duration::from_secs(20))).await;
    let mut g = rec.lock().await;
    g.requests += 1;
    match r {
        Ok(r) if r.status >= 500 => {
            g.errors.push(format!("5xx: {}", r.context()));
            None
        }
        Ok(r) => Some(r),
        Err(e) => {
            g.errors.push(format!("transport: {e}"));
            None
        }
    }
}

fn expect(rec: &mut Record, r: &Reply, allowed: &[u16]) -> bool {
    if allowed.contains(&r.status) {
        true
    } else {
        rec.errors
            .push(format!("expected {allowed:?}: {}", r.context()));
        false
    }
}

fn post(c: &Client, path: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    c.request(Method::POST, path).form(form)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_soak_of_mixed_traffic_stays_exact_consistent_and_flat() {
    let secs = env_number("VERILIMIT_SOAK_SECS", 10);
    let soak = Duration::from_secs(secs);
    let server = TestServer::start(ServerOptions::new()).await;
    let c = server.a();
    let Chain {
        service,
        rate_limits: rls,
        ..
    } = create_chain(
        &c,
        &[("FriendlyName", "soak")],
        &[
            ("hot", &[(HOT_MAX as u64, HOT_INTERVAL.as_secs())]),
            ("churn", &[(3, 5)]),
            ("ip", &[(1_000_000, 3600)]),
        ],
    )
    .await;
    let service = Arc::new(service);
    let churn_rk = Arc::new(rls[1].sid.clone());
    let churn_bl = Arc::new(rls[1].buckets[0].sid.clone());
    let rec: Shared = Arc::new(Mutex::new(Record::default()));
    let next_to = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let until = started + soak;
    let mut tasks = Vec::new();

    // Hot value: admitted up to Max per window, refused otherwise.
    for w in 0..3 {
        let (c, service, rec, next_to) = (c.clone(), service.clone(), rec.clone(), next_to.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let to = format!("+1777{:07}", next_to.fetch_add(1, Ordering::Relaxed));
                let rl = json!({"hot": "H", "ip": format!("hot-{w}")}).to_string();
                let sent = Instant::now();
                let rb = post(
                    &c,
                    &format!("/v2/Services/{service}/Verifications"),
                    &[("To", &to), ("Channel", "sms"), ("RateLimits", &rl)],
                );
                let Some(r) = call(&c, rb, &rec).await else {
                    continue;
                };
                let answered = Instant::now();
                let mut g = rec.lock().await;
                if expect(&mut g, &r, &[201, 429]) {
                    if r.status == 201 {
                        g.hot_admissions.push((sent, answered));
                        let sid = r.json()["sid"].as_str().unwrap_or_default().to_owned();
                        g.verifications.push((sid, Expect::Pending, sent));
                    } else if r.header("twilio-reached-rate-limit") == Some("hot") {
                        g.hot_refusals += 1;
                    } else {
                        g.errors.push(format!("429 not from hot: {}", r.context()));
                    }
                }
            }
        }));
    }
    // Churn: starts against a bucket whose Max and Interval change under them.
    for w in 0..2 {
        let (c, service, rec, next_to) = (c.clone(), service.clone(), rec.clone(), next_to.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = 0;
            while Instant::now() < until {
                k += 1;
                let to = format!("+1777{:07}", next_to.fetch_add(1, Ordering::Relaxed));
                let rl =
                    json!({"churn": format!("c{}", k % 3), "ip": format!("churn-{w}")}).to_string();
                let sent = Instant::now();
                let rb = post(
                    &c,
                    &format!("/v2/Services/{service}/Verifications"),
                    &[("To", &to), ("Channel", "sms"), ("RateLimits", &rl)],
                );
                let Some(r) = call(&c, rb, &rec).await else {
                    continue;
                };
                let mut g = rec.lock().await;
                if expect(&mut g, &r, &[201, 429]) && r.status == 201 {
                    let sid = r.json()["sid"].as_str().unwrap_or_default().to_owned();
                    g.verifications.push((sid, Expect::Pending, sent));
                }
            }
        }));
    }
    // Bucket changes, concurrently: Max and Interval of the churn bucket, plus a second bucket
    // created and deleted.
    {
        let (c, service, rec, rk, bl) = (
            c.clone(),
            service.clone(),
            rec.clone(),
            churn_rk.clone(),
            churn_bl.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(7);
            let buckets = format!("/v2/Services/{service}/RateLimits/{rk}/Buckets");
            while Instant::now() < until {
                let max = (1 + rng.below(10)).to_string();
                let interval = (1 + rng.below(30)).to_string();
                let rb = post(
                    &c,
                    &format!("{buckets}/{bl}"),
                    &[("Max", &max), ("Interval", &interval)],
                );
                if let Some(r) = call(&c, rb, &rec).await {
                    expect(&mut *rec.lock().await, &r, &[200]);
                }
                let second = (100 + rng.below(100)).to_string();
                let rb = post(&c, &buckets, &[("Max", "2"), ("Interval", &second)]);
                if let Some(r) = call(&c, rb, &rec).await {
                    if expect(&mut *rec.lock().await, &r, &[201]) {
                        let sid = r.json()["sid"].as_str().unwrap_or_default().to_owned();
                        let rb = c.request(Method::DELETE, &format!("{buckets}/{sid}"));
                        if let Some(r) = call(&c, rb, &rec).await {
                            expect(&mut *rec.lock().await, &r, &[204]);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    // Verify flows: start, read the code, sometimes a wrong check, then approve or cancel.
    for w in 0..2 {
        let (c, service, rec, next_to) = (c.clone(), service.clone(), rec.clone(), next_to.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = 0usize;
            while Instant::now() < until {
                k += 1;
                let to = format!("+1777{:07}", next_to.fetch_add(1, Ordering::Relaxed));
                let sent = Instant::now();
                let rb = post(
                    &c,
                    &format!("/v2/Services/{service}/Verifications"),
                    &[
                        ("To", &to),
                        ("Channel", "sms"),
                        (
                            "RateLimits",
                            &json!({"ip": format!("flow-{w}")}).to_string(),
                        ),
                    ],
                );
                let Some(r) = call(&c, rb, &rec).await else {
                    continue;
                };
                if !expect(&mut *rec.lock().await, &r, &[201]) {
                    continue;
                }
                let sid = r.json()["sid"].as_str().unwrap_or_default().to_owned();
                let rb = c.request(
                    Method::GET,
                    &format!("/emulator/v1/Outbox?VerificationSid={sid}"),
                );
                let Some(r) = call(&c, rb, &rec).await else {
                    continue;
                };
                let code = r.json()["messages"][0]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if code.is_empty() {
                    rec.lock()
                        .await
                        .errors
                        .push(format!("no code in the outbox for {sid}: {}", r.body));
                    continue;
                }
                let check = format!("/v2/Services/{service}/VerificationCheck");
                if k % 2 == 0 {
                    let wrong = if code.starts_with('0') { "1" } else { "0" }.repeat(code.len());
                    let rb = post(&c, &check, &[("To", &to), ("Code", &wrong)]);
                    if let Some(r) = call(&c, rb, &rec).await {
                        let mut g = rec.lock().await;
                        if expect(&mut g, &r, &[200]) && r.json()["valid"] != false {
                            g.errors.push(format!("a wrong code was valid: {}", r.body));
                        }
                    }
                }
                let outcome = match k % 4 {
                    0 | 1 => {
                        let rb = post(&c, &check, &[("VerificationSid", &sid), ("Code", &code)]);
                        call(&c, rb, &rec)
                            .await
                            .map(|r| (r.status, r.json()["status"] == "approved", r))
                    }
                    2 => {
                        let rb = post(
                            &c,
                            &format!("/v2/Services/{service}/Verifications/{sid}"),
                            &[("Status", "canceled")],
                        );
                        call(&c, rb, &rec)
                            .await
                            .map(|r| (r.status, r.json()["status"] == "canceled", r))
                    }
                    _ => Some((201, true, r)),
                };
                let mut g = rec.lock().await;
                match outcome {
                    Some((200 | 201, true, _)) => {
                        let e = if k % 4 == 3 {
                            Expect::Pending
                        } else {
                            Expect::Ended
                        };
                        g.verifications.push((sid, e, sent));
                    }
                    Some((_, _, r)) => g
                        .errors
                        .push(format!("check/cancel of {sid}: {}", r.context())),
                    None => {}
                }
            }
        }));
    }
    // CRUD of whole resource chains.
    {
        let (c, rec) = (c.clone(), rec.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let Some(r) = call(
                    &c,
                    post(&c, "/v2/Services", &[("FriendlyName", "crud")]),
                    &rec,
                )
                .await
                else {
                    continue;
                };
                if !expect(&mut *rec.lock().await, &r, &[201]) {
                    continue;
                }
                let s = r.json()["sid"].as_str().unwrap_or_default().to_owned();
                type Step<'a> = (Method, String, Vec<(&'a str, &'a str)>, u16);
                let steps: Vec<Step> = vec![
                    (
                        Method::POST,
                        format!("/v2/Services/{s}"),
                        vec![("FriendlyName", "crud2")],
                        200,
                    ),
                    (
                        Method::POST,
                        format!("/v2/Services/{s}/RateLimits"),
                        vec![("UniqueName", "x")],
                        201,
                    ),
                ];
                let mut ok = true;
                let mut rk = String::new();
                for (m, p, f, want) in steps {
                    let Some(r) = call(&c, c.request(m, &p).form(&f), &rec).await else {
                        ok = false;
                        break;
                    };
                    if !expect(&mut *rec.lock().await, &r, &[want]) {
                        ok = false;
                        break;
                    }
                    if want == 201 {
                        rk = r.json()["sid"].as_str().unwrap_or_default().to_owned();
                    }
                }
                if ok {
                    let b = format!("/v2/Services/{s}/RateLimits/{rk}/Buckets");
                    if let Some(r) =
                        call(&c, post(&c, &b, &[("Max", "5"), ("Interval", "60")]), &rec).await
                    {
                        if expect(&mut *rec.lock().await, &r, &[201]) {
                            let bl = r.json()["sid"].as_str().unwrap_or_default().to_owned();
                            for (m, p, want) in [
                                (Method::GET, format!("{b}/{bl}"), 200),
                                (Method::GET, b.clone(), 200),
                                (Method::DELETE, format!("{b}/{bl}"), 204),
                                (
                                    Method::DELETE,
                                    format!("/v2/Services/{s}/RateLimits/{rk}"),
                                    204,
                                ),
                            ] {
                                if let Some(r) = call(&c, c.request(m, &p), &rec).await {
                                    expect(&mut *rec.lock().await, &r, &[want]);
                                }
                            }
                        }
                    }
                }
                if let Some(r) = call(
                    &c,
                    c.request(Method::DELETE, &format!("/v2/Services/{s}")),
                    &rec,
                )
                .await
                {
                    expect(&mut *rec.lock().await, &r, &[204]);
                }
                if let Some(r) =
                    call(&c, c.request(Method::GET, "/v2/Services?PageSize=5"), &rec).await
                {
                    expect(&mut *rec.lock().await, &r, &[200]);
                }
            }
        }));
    }
    // Monitor: the server's own usage for the hot value never exceeds Max; RSS at a third.
    let monitor = {
        let (c, service, rec) = (c.clone(), service.clone(), rec.clone());
        let pid = server.pid();
        tokio::spawn(async move {
            let mut rss_third = None;
            let mut max_seen = 0;
            while Instant::now() < until {
                if rss_third.is_none() && started.elapsed() >= soak / 3 {
                    rss_third = Some(vm_rss_kib(pid));
                }
                let rb = c.request(
                    Method::GET,
                    &format!("/emulator/v1/Services/{service}/Usage?RateLimit=hot"),
                );
                if let Some(r) = call(&c, rb, &rec).await {
                    let mut g = rec.lock().await;
                    if expect(&mut g, &r, &[200]) {
                        for row in r.json()["usage"].as_array().cloned().unwrap_or_default() {
                            let count = row["count"].as_u64().unwrap_or(0) as usize;
                            max_seen = max_seen.max(count);
                            if count > HOT_MAX || row["max"].as_u64() != Some(HOT_MAX as u64) {
                                g.errors.push(format!("usage over Max: {row}"));
                            }
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (rss_third, max_seen)
        })
    };

    for t in tasks {
        t.await.unwrap();
    }
    let (rss_third, max_seen) = monitor.await.unwrap();
    let rss_end = vm_rss_kib(server.pid());
    let rec = Arc::try_unwrap(rec)
        .ok()
        .expect("all tasks done")
        .into_inner();
    eprintln!(
        "soak {secs}s: {} requests, {} verifications, {} hot admissions, {} hot refusals, usage max seen {max_seen}, RSS {rss_third:?} -> {rss_end} KiB",
        rec.requests,
        rec.verifications.len(),
        rec.hot_admissions.len(),
        rec.hot_refusals
    );
    assert!(
        rec.errors.is_empty(),
        "{} failures during the soak, e.g.:\n  {}",
        rec.errors.len(),
        rec.errors
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    assert!(
        rec.hot_admissions.len() >= HOT_MAX && rec.hot_refusals > 0,
        "the hot value was not exercised"
    );

    // Exactness from the clients' side: no window of Interval holds more than Max admissions.
    // Admission i happened at some time in [sent_i, answered_i]; if Max+1 of them all lie inside
    // [t, t + Interval) for certain, the limiter let one too many through.
    let mut adm = rec.hot_admissions.clone();
    adm.sort_by_key(|(s, _)| *s);
    for (i, (start, _)) in adm.iter().enumerate() {
        let inside = adm[i..]
            .iter()
            // 5 ms of slack for the server's millisecond timestamps.
            .filter(|(_, answered)| *answered + Duration::from_millis(5) < *start + HOT_INTERVAL)
            .count();
        assert!(
            inside <= HOT_MAX,
            "{inside} hot admissions certainly within one {HOT_INTERVAL:?} window (Max {HOT_MAX})"
        );
    }

    // Every verification is where it should be.
    let ttl_margin = Duration::from_secs(550);
    let mut wrong = Vec::new();
    let mut sample = rec.verifications.clone();
    if sample.len() > 3000 {
        let mut rng = Rng::new(11);
        for i in 0..3000 {
            let j = i + rng.below(sample.len() - i);
            sample.swap(i, j);
        }
        sample.truncate(3000);
    }
    let chunks: Vec<Vec<(String, Expect, Instant)>> = sample
        .chunks(sample.len().div_ceil(8).max(1))
        .map(|c| c.to_vec())
        .collect();
    let mut checks = Vec::new();
    for chunk in chunks {
        let (c, service) = (c.clone(), service.clone());
        checks.push(tokio::spawn(async move {
            let mut wrong = Vec::new();
            for (sid, e, created) in chunk {
                let r = get(&c, &format!("/v2/Services/{service}/Verifications/{sid}")).await;
                let may_have_expired = created.elapsed() > ttl_margin;
                let ok = match e {
                    Expect::Pending => {
                        (r.status == 200 && r.json()["status"] == "pending")
                            || (may_have_expired && r.status == 404)
                    }
                    Expect::Ended => r.status == 404 && check_error_in(&r, &[(404, 20404)]).is_ok(),
                };
                if !ok {
                    wrong.push(format!("{sid} ({e:?}): {} {}", r.status, r.body));
                }
            }
            wrong
        }));
    }
    for t in checks {
        wrong.extend(t.await.unwrap());
    }
    assert!(
        wrong.is_empty(),
        "{} verifications are not as their clients left them, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );

    // The server's own count for the hot value, at the end.
    let usage = get(
        &c,
        &format!("/emulator/v1/Services/{service}/Usage?RateLimit=hot&Value=H"),
    )
    .await
    .expect(200);
    for row in usage["usage"].as_array().unwrap() {
        assert!(row["count"].as_u64().unwrap() <= HOT_MAX as u64, "{usage}");
    }
    let rss_third = rss_third.expect("RSS sampled at a third of the soak");
    assert!(
        rss_end <= rss_third + RSS_GROWTH_LIMIT_KIB,
        "memory grew from {rss_third} KiB to {rss_end} KiB during the soak"
    );
    assert_no_panic(&server);
}
